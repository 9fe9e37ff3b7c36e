"""pytest setup shared by every test module: the `slow` marker (tests over ~20 s)."""


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes over ~20 s on a 2-core CPU (deselect with -m 'not slow')")

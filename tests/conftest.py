"""pytest setup shared by the tests: the `slow` marker (runs over ~20 s on 2 CPU cores)."""


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes over ~20 s on 2 CPU cores")

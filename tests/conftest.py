"""pytest setup shared by the test files: the `slow` marker."""


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s on a 2-core CPU")

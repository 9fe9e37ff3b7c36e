"""pytest setup shared by the tests: the `slow` marker (runs over ~20 s; deselect with -m 'not slow')."""


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: runs over ~20 s on 2 CPU cores')

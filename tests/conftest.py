"""Test tiers: whole modules of subprocess training runs are `slow`; `pytest -m "not slow"` is the quick tier."""

import pytest

# Modules whose every test starts training subprocesses or compiles for 8 devices.
SLOW_MODULES = frozenset({
    "test_train_cli.py",
    "test_train_sharding.py",
    "test_evaluate_cli.py",
})


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if item.path.name in SLOW_MODULES:
      item.add_marker(pytest.mark.slow)

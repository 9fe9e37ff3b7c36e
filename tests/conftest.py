"""Test tiers: `pytest -m "not slow"` is the quick tier (under 2 minutes on 2 CPU cores).

Slow: whole modules of subprocess training runs (below), and each test marked
`@pytest.mark.slow` in its file (subprocesses, 8-device compiles, or more than ~1.5 s each).
CI runs both tiers.
"""

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

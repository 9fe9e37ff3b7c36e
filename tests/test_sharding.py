"""The model sharded over a (data=2, fsdp=2, tensor=2) mesh of 8 CPU devices equals unsharded.

Runs in a subprocess (tests/fresh_interpreter/sharded_logits.py): the fake device count must be
set before JAX starts, and other tests in this session have already started it with one device.
"""

import pytest

from glm_jax import sharding
from tests import fresh_interpreter

@pytest.mark.slow
def test_sharded_logits_on_8_devices_equal_unsharded():
  result = fresh_interpreter.run("sharded_logits", devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "OK" in result.stdout


@pytest.mark.parametrize("mesh,devices,expected", [
    ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
    ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
    ({"data": 1, "fsdp": 1, "tensor": 1}, 1, (1, 1, 1)),
])
def test_mesh_shape_fills_the_free_axis(mesh, devices, expected):
  assert sharding.mesh_shape(mesh, devices) == expected


@pytest.mark.parametrize("mesh,message", [
    ({"data": -1, "fsdp": -1, "tensor": 1}, "at most one"),
    ({"data": 3, "fsdp": -1, "tensor": 1}, "do not divide"),
    ({"data": 2, "fsdp": 2, "tensor": 1}, "uses 4 devices but 8"),
])
def test_bad_mesh_gets_a_clear_error(mesh, message):
  with pytest.raises(ValueError, match=message):
    sharding.mesh_shape(mesh, 8)

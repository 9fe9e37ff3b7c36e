"""The model sharded over a (data=2, fsdp=2, tensor=2) mesh of 8 CPU devices equals unsharded.

Runs in a subprocess (tests/fresh_interpreter/sharded_logits.py): the fake device count must be
set before JAX starts, and other tests in this session have already started it with one device.
"""

import jax
import numpy as np
import pytest

from glm_jax.modeling import sharding
from glm_jax.errors import ConfigError
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


class _SlicedDevice:
  """A stand-in CPU device of a multislice pod: what the mesh builder reads of a device."""

  platform, device_kind, process_index = "cpu", "cpu", 0

  def __init__(self, index, slice_index):
    self.id, self.slice_index = index, slice_index


def _two_slices(per_slice=4):
  return [_SlicedDevice(i, i // per_slice) for i in range(2 * per_slice)]


def _slices(grid):
  return np.vectorize(lambda d: d.slice_index)(grid)


def test_two_slices_put_the_data_axis_across_them_and_the_rest_inside_one():
  grid = sharding.device_grid({"data": -1, "fsdp": 2, "tensor": 1}, _two_slices())
  assert grid.shape == (4, 2, 1)
  np.testing.assert_array_equal(_slices(grid)[:, 0, 0], [0, 0, 1, 1])
  assert (_slices(grid)[:, 1:] == _slices(grid)[:, :1]).all()   # fsdp and tensor stay in a slice


def test_two_slices_cross_on_fsdp_when_data_does_not_divide():
  grid = sharding.device_grid({"data": 1, "fsdp": -1, "tensor": 2}, _two_slices())
  np.testing.assert_array_equal(_slices(grid)[0, :, 0], [0, 0, 1, 1])


def test_a_mesh_that_cannot_split_over_the_slices_names_the_fix():
  with pytest.raises(ConfigError, match="neither data nor fsdp is a multiple of the 2 slices"):
    sharding.device_grid({"data": 1, "fsdp": 1, "tensor": -1}, _two_slices())


def test_one_slice_keeps_the_device_order():
  devices = [_SlicedDevice(i, 0) for i in range(8)]
  grid = sharding.device_grid({"data": 2, "fsdp": -1, "tensor": 2}, devices)
  assert [d.id for d in grid.flat] == list(range(8))


def test_the_mesh_has_auto_axes():
  mesh = sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1}, jax.devices()[:1])
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 3
  assert sharding.slices_per_axis(mesh) == {"data": 1, "fsdp": 1, "tensor": 1}

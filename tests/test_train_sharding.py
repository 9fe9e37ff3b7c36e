"""The train step on 8 fake CPU devices: every parallelism axis gives the same losses.

(The mixed run also uses gradient accumulation and remat: equal losses over two steps mean the
micro-batch normalisation and the checkpointed backward pass match one big batch.)

JAX fixes its device count at import, so the checks (tests/fresh_interpreter/sharded_train_steps.py)
run in a fresh interpreter with 8 fake CPU devices and report JSON on its last line.
"""

import pytest

from tests import fresh_interpreter

@pytest.fixture(scope="module")
def eight_device_results(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reshard"))
  proc = fresh_interpreter.run("sharded_train_steps", workdir, devices=8)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return fresh_interpreter.last_json(proc)


@pytest.mark.parametrize("axis", ["fsdp", "tensor", "mixed_accum2_remat"])
def test_each_parallelism_axis_matches_pure_data_parallel_losses(eight_device_results, axis):
  reference = eight_device_results["data"]
  for got, want in zip(eight_device_results[axis], reference):
    assert abs(got - want) <= 1e-5 * abs(want), (axis, eight_device_results[axis], reference)


def test_checkpoint_restores_onto_a_different_mesh(eight_device_results):
  reshard = eight_device_results["reshard"]
  assert reshard["max_diff"] == 0.0
  assert reshard["data_state"] == {"synthetic_step": 1}
  assert reshard["meshes"] == [str({"data": 4, "fsdp": 1, "tensor": 2})]

"""The data-iterator state is an item of the Orbax step (committed with it), combined over
processes; checkpoints of older runs (data_state/<step>/process_<i>.json) still restore."""

import json
import os

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from glm_jax.training import checkpoint, data_state
from glm_jax.errors import MissingDataStateError


from glm_jax.training.train_state import TrainState


def _state():
  return TrainState(step=jnp.int32(3), params={"w": jnp.arange(4.0)}, opt_state={},
                    rng=jnp.zeros(2, jnp.uint32))


def test_the_data_state_is_saved_inside_the_step_and_restores(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  saved = {"blocks": {"0": {"step": 3, "loc": [0, 128, 8, 2]}}}
  ckpt.save(3, _state(), saved)
  ckpt.wait()
  with open(tmp_path / "checkpoints" / "3" / "data" / "metadata") as f:
    assert json.load(f) == saved
  assert not (tmp_path / "data_state").exists()
  state, restored = ckpt.restore(3, _state())
  assert restored == saved and float(state.params["w"][3]) == 3.0
  ckpt.close()


def test_a_checkpoint_with_the_state_beside_it_still_restores(tmp_path):
  manager = ocp.CheckpointManager(tmp_path / "checkpoints",
                                  item_handlers={"state": ocp.StandardCheckpointHandler()})
  manager.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(_state())))
  manager.wait_until_finished()
  manager.close()
  os.makedirs(tmp_path / "data_state" / "5")
  (tmp_path / "data_state" / "5" / "process_0.json").write_text('{"synthetic_step": 5}')
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  assert ckpt.restore(5, _state())[1] == {"synthetic_step": 5}
  ckpt.close()


def test_per_process_states_need_the_same_process_count():
  assert data_state.combine({"synthetic_step": 2}) == {"synthetic_step": 2}
  assert data_state.own_part({"per_process": [{"a": 1}]}, 4) == {"a": 1}
  with pytest.raises(MissingDataStateError, match="2 processes"):
    data_state.own_part({"per_process": [{"a": 1}, {"a": 2}]}, 4)

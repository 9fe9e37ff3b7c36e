"""Checkpoints: the train state through Orbax, the data-iterator state as one JSON per process.

Layout of a workdir:
  checkpoints/<step>/state/...        Orbax (every process writes its own shards, async)
  data_state/<step>/process_<i>.json  each process's input-iterator state at that step
Params-only checkpoints (`save_params` / `load_params`) are what `glm_jax.convert` writes and what
`--config.init_from` and `glm_jax.generate` read.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A checkpoint whose parameter shapes do not match the configured model."""


def _leaf_shapes(tree) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(getattr(leaf, "shape", ())) for path, leaf in flat}


def check_param_shapes(stored, expected, where: str) -> None:
  """Raises CheckpointMismatchError naming every parameter whose shape (or presence) differs."""
  stored, expected = _leaf_shapes(stored), _leaf_shapes(expected)
  problems = [f"  {k}: checkpoint {stored[k]} vs config {expected[k]}"
              for k in sorted(set(stored) & set(expected)) if stored[k] != expected[k]]
  problems += [f"  {k}: missing from the checkpoint" for k in sorted(set(expected) - set(stored))]
  problems += [f"  {k}: in the checkpoint, not in the model" for k in sorted(set(stored) - set(expected))]
  if problems:
    shown = "\n".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
    raise CheckpointMismatchError(
        f"The checkpoint at {where} holds a model of another shape than the config:\n{shown}\n"
        "Use the config the checkpoint was trained with (model.* keys), or a fresh --workdir.")


def _with_shardings(shapes, shardings):
  if shardings is None:
    return shapes
  return jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


class Checkpointer:
  """Async Orbax saves every K steps keeping N, plus per-process data-iterator state."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.data_directory = os.path.abspath(os.path.join(workdir, "data_state"))
    self.manager = ocp.CheckpointManager(
        self.directory, item_handlers={"state": ocp.StandardCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(
            max_to_keep=int(keep), create=True, enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def _data_path(self, step: int) -> str:
    return os.path.join(self.data_directory, str(step), f"process_{jax.process_index()}.json")

  def save(self, step: int, state, data_state: Any) -> None:
    """Starts an async save of `state`; writes this process's iterator state synchronously."""
    path = self._data_path(step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(data_state, f)
    os.replace(path + ".tmp", path)
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                      force=True)
    self._prune_data_states(keep_step=step)

  def _prune_data_states(self, keep_step: int) -> None:
    if jax.process_index() != 0 or not os.path.isdir(self.data_directory):
      return
    kept = set(self.manager.all_steps()) | {keep_step}
    oldest = min(kept)
    for name in os.listdir(self.data_directory):
      if name.isdigit() and int(name) < oldest:
        shutil.rmtree(os.path.join(self.data_directory, name), ignore_errors=True)

  def restore(self, step: int, abstract_state):
    """(state, data_state) at `step`, placed with the shardings in `abstract_state`.

    The stored layout may come from another mesh; Orbax reshards on read. Parameter shapes are
    checked first so that a checkpoint of another model fails with a readable message.
    """
    stored = self.manager.item_metadata(step)["state"]
    stored = getattr(stored, "tree", stored)
    check_param_shapes(stored["params"], abstract_state.params,
                       os.path.join(self.directory, str(step)))
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    path = self._data_path(step)
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"Checkpoint step {step} has no data-iterator state for process "
          f"{jax.process_index()} at {path}; was it written with another process count?")
    with open(path) as f:
      return restored["state"], json.load(f)

  def reached_preemption(self, step: int) -> bool:
    """Multi-host preemption notice agreed by all processes (False when single-process)."""
    return jax.process_count() > 1 and self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def save_params(path: str, params) -> None:
  """Writes a params-only Orbax checkpoint (a plain nested dict of arrays) to `path`."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(path), params, force=True)
  checkpointer.wait_until_finished()


def load_params(path: str, target_shapes=None, shardings=None):
  """Reads a `save_params` checkpoint; with `target_shapes`, checks shapes and places shards.

  target_shapes: tree of ShapeDtypeStructs (e.g. `model.param_shapes(config)`); shardings: a
  matching tree of `jax.sharding.Sharding` (optional). Without a target, arrays come back as
  they were saved, on this process's default device.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"No params checkpoint at {path} (expected a directory written by "
                            "glm_jax.checkpoint.save_params / `python -m glm_jax.convert import`).")
  checkpointer = ocp.StandardCheckpointer()
  if target_shapes is None:
    return checkpointer.restore(path)
  stored = checkpointer.metadata(path)
  stored = getattr(stored, "item_metadata", stored)
  stored = getattr(stored, "tree", stored)
  check_param_shapes(stored, target_shapes, path)
  return checkpointer.restore(path, _with_shardings(target_shapes, shardings))


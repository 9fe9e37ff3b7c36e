"""Training checkpoints: the train state and the data-iterator state, two items of one Orbax step.

Layout of a workdir:
  checkpoints/<step>/state/...        Orbax (every process writes its own shards, async)
  checkpoints/<step>/data/metadata    the input iterators' state of all processes (data_state.py)
The step commits as a whole, so a crash cannot pair a step with another step's data position.
(Older runs kept it as data_state/<step>/process_<i>.json; those still restore.)
A checkpoint that cannot be read (e.g. blobs truncated by an interrupted copy) is moved aside to
`checkpoints/<step>.unreadable` (with `data_state/<step>.unreadable`), never deleted, and the newest
older one that reads is restored (`restore_latest`). Paths may be local or gs:// (etils.epath).
Commands that only read a workdir (extract_params) take its params with
`params_from_training_checkpoint`; params-only checkpoints are glm_jax.storage.params_io's.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from glm_jax.errors import (CheckpointMismatchError, MissingDataStateError,
                            UnreadableCheckpointError)
from glm_jax.modeling import sharding
from glm_jax.modeling.model_shape import check_param_shapes, infer_config
from glm_jax.storage import io_failures
from glm_jax.storage import params_io
from glm_jax.storage import paths
from glm_jax.training import data_state as data_state_lib


def warning(message: str) -> None:
  """A warning: one line on stderr (process 0 only), never on stdout with the results."""
  if jax.process_index() == 0:
    print(message if message.startswith("WARNING") else f"WARNING: {message}", file=sys.stderr,
          flush=True)


class Checkpointer:
  """Async Orbax saves every K steps keeping N, each with the data-iterator state inside."""

  def __init__(self, workdir: str, keep: int):
    io_failures.quiet_failed_writes()
    workdir = paths.as_path(workdir)
    self.directory = workdir / "checkpoints"
    self.data_directory = workdir / "data_state"
    self.manager = ocp.CheckpointManager(
        self.directory, item_handlers={"state": ocp.StandardCheckpointHandler(),
                                       "data": ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(
            max_to_keep=int(keep), create=True, enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    """The newest saved step (None before the first save): where a resumed run starts."""
    return self.manager.latest_step()

  def _data_path(self, step: int):
    return self.data_directory / str(step) / f"process_{jax.process_index()}.json"

  def save(self, step: int, state, data_state: Any) -> None:
    """Starts an async save of `state` with all processes' iterator state in the same step.

    A failed write (disk full, permissions; this save's or the previous async one's) is one
    SaveError line: the partial checkpoint is removed, so the previous one stays the latest.
    """
    data = data_state_lib.combine(data_state)  # a collective: every process saves each step
    with self._saving(step):
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      data=ocp.args.JsonSave(data)), force=True)

  @contextlib.contextmanager
  def _saving(self, step: int | None):
    """Turns a failed write into SaveError after removing what the failed save left."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      if io_failures.write_failure(e) is None:
        raise
      try:  # an earlier async save may still be writing: let it end before cleaning up
        self.manager.wait_until_finished()
      except Exception:  # pylint: disable=broad-except
        pass  # the same full disk, most likely; reported below
      failed = sorted(set(self._remove_partial()) | ({step} if step is not None else set()))
      kept = self.manager.latest_step()
      after = ("the partial checkpoint was removed, "
               + (f"step {kept} is intact and a re-run resumes from it" if kept is not None
                  else "no earlier checkpoint exists"))
      what = "checkpoint " + " and ".join(f"step {failed_step}" for failed_step in failed)
      raise io_failures.save_error(e, what if failed else "a checkpoint", self.directory,
                                   after) from None

  def _remove_partial(self) -> list[int]:
    """Removes what unfinished saves left: Orbax's `<step>.orbax-checkpoint-tmp*` folders (never
    restorable) and iterator states of steps without a checkpoint; returns those steps.
    Finished checkpoints stay."""
    steps = []
    if jax.process_index() == 0:
      try:
        for child in (self.directory.iterdir() if self.directory.is_dir() else ()):
          if ".orbax-checkpoint-tmp" in child.name:
            steps.append(int(child.name.split(".")[0]))
            child.rmtree(missing_ok=True)
        for child in (self.data_directory.iterdir() if self.data_directory.is_dir() else ()):
          if child.name.isdigit() and not (self.directory / child.name).exists():
            child.rmtree(missing_ok=True)
      except (OSError, ValueError):
        pass  # the disk may still refuse; the message already says what to free
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("glm_jax removed a partial checkpoint")
    self.manager.reload()
    return steps

  def restore(self, step: int, abstract_state):
    """(state, data_state) at `step`, placed with the shardings in `abstract_state`.

    The stored layout may come from another mesh; Orbax reshards on read. Parameter shapes are
    checked first so that a checkpoint of another model fails with a readable message.
    """
    stored = self.manager.item_metadata(step)["state"]
    stored = getattr(stored, "tree", stored)
    check_param_shapes(stored["params"], abstract_state.params, str(self.directory / str(step)))
    if (self.directory / str(step) / "data").exists():
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      return restored["state"], data_state_lib.own_part(restored["data"], step)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    path = self._data_path(step)  # a checkpoint of an older run: the state beside it
    if not path.exists():
      raise MissingDataStateError(
          f"Checkpoint step {step} has no data-iterator state for process "
          f"{jax.process_index()} at {path}; was it written with another process count?")
    return restored["state"], json.loads(path.read_text())

  def restore_latest(self, abstract_state, fallback: bool = True,
                     warn: Callable[[str], None] = warning):
    """(step, state, data_state) of the newest checkpoint that reads, or None if there is none.

    A checkpoint that fails to read is named in one line (step, path, reason); with `fallback`
    the next older one is tried and, once one reads, the unreadable newer ones are moved aside
    (never deleted, so their steps can be saved again). When checkpoints exist and none reads,
    UnreadableCheckpointError names each step and why, and nothing is moved: a run never starts
    over by itself. A model of another shape (CheckpointMismatchError) or missing iterator
    state for this process count is not "unreadable": it is raised as is, and nothing is moved.
    """
    io_failures.quiet_failed_reads()
    unreadable = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state, data_state = self.restore(step, abstract_state)
        error = None
      except (CheckpointMismatchError, MissingDataStateError):
        raise
      except Exception as e:  # pylint: disable=broad-except
        error = e  # TensorStore, asyncio and JSON errors all mean: these bytes do not read.
        time.sleep(1.0)  # let the reads still in flight finish (quietly, see the hook)
      failed = multihost_utils.process_allgather(np.int32(error is not None)) \
          if jax.process_count() > 1 else [error is not None]
      if not any(failed):
        for bad, line in unreadable:
          aside = self.set_aside(bad)
          warn(f"WARNING: {line}. Moved it to {aside}; resuming from step {step}.")
        return step, state, data_state
      reason = (io_failures.root_cause(error) if error is not None
                else "another process failed to read it")
      line = f"Checkpoint step {step} at {self.directory / str(step)} cannot be read: {reason}"
      if not fallback:
        raise UnreadableCheckpointError(
            line + " (restore_fallback=False; set --config.restore_fallback=True to resume "
            "from the newest older checkpoint that reads)")
      unreadable.append((step, line))
    if unreadable:
      raise UnreadableCheckpointError(
          f"no checkpoint under {self.directory} reads, so the run stops instead of starting "
          "over (nothing was changed): " + "; ".join(
              f"step {step}: {line.split(': ', 1)[1]}" for step, line in unreadable)
          + ". Restore the checkpoints from a copy, or pass a new --workdir to start afresh.")
    return None

  def set_aside(self, step: int):
    """Moves checkpoint `step` and its iterator state to `<step>.unreadable`; returns the new
    path."""
    aside = self.directory / f"{step}.unreadable"
    if jax.process_index() == 0:
      aside = paths.move_aside(self.directory / str(step), ".unreadable")
      if (self.data_directory / str(step)).exists():
        paths.move_aside(self.data_directory / str(step), ".unreadable")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"glm_jax set aside checkpoint {step}")
    self.manager.reload()
    return aside

  def reached_preemption(self, step: int) -> bool:
    """Multi-host preemption notice agreed by all processes (False when single-process)."""
    return jax.process_count() > 1 and self.manager.reached_preemption(step)

  def wait(self) -> None:
    """Blocks until async saves are on disk (before reading them back or exiting)."""
    with self._saving(None):
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and releases Orbax's threads."""
    with self._saving(None):
      self.manager.close()

def training_steps(workdir: str) -> list[int]:
  """The steps under `workdir/checkpoints`, newest first, without opening an Orbax manager."""
  directory = paths.as_path(workdir) / "checkpoints"
  if paths.as_path(workdir).exists() and not paths.as_path(workdir).is_dir():
    raise FileNotFoundError(f"--workdir={workdir} is a file; pass the training run's folder.")
  steps = sorted((int(p.name) for p in directory.iterdir() if p.name.isdigit()), reverse=True) \
      if directory.is_dir() else []
  if not steps:
    raise FileNotFoundError(f"No training checkpoints under {directory}; pass the --workdir "
                            "that `python -m glm_jax.train` wrote.")
  return steps


def latest_step(workdir: str) -> int:
  """The newest step under `workdir/checkpoints`, without opening an Orbax manager."""
  return training_steps(workdir)[0]


def read_newest(workdir: str, read: Callable[[int], Any], warn: Callable[[str], None] = warning):
  """(step, read(step)) for the newest step that reads: train's fallback rule for commands that
  only read a workdir (nothing is moved). Each unreadable step is one warning line; when none
  reads, UnreadableCheckpointError names every step and why."""
  io_failures.quiet_failed_reads()
  failures = []
  for step in training_steps(workdir):
    try:
      value = read(step)
    except (CheckpointMismatchError, FileNotFoundError):
      raise
    except Exception as e:  # pylint: disable=broad-except
      failures.append((step, io_failures.root_cause(e)))
      time.sleep(1.0)  # let the reads still in flight finish (quietly, see the hook)
      continue
    for bad, reason in failures:
      warn(f"WARNING: Checkpoint step {bad} at {paths.as_path(workdir) / 'checkpoints' / str(bad)}"
           f" cannot be read: {reason}; used step {step}, the newest that reads.")
    return step, value
  raise UnreadableCheckpointError(
      f"no checkpoint under {paths.as_path(workdir) / 'checkpoints'} reads: "
      + "; ".join(f"step {bad}: {reason}" for bad, reason in failures)
      + ". Restore them from a copy, or pass --step of one that reads.")


def params_from_training_checkpoint(workdir: str, step: int | None = None, mesh=None,
                                    dtype: str | None = None):
  """The params of a training checkpoint (`workdir/checkpoints/<step>/state`), on `mesh`;
  without `step`, of the newest step that reads (`read_newest`, train's fallback rule).

  A partial restore of the `params` subtree: the optimizer state is never read. Each leaf is read
  straight into the sharding its logical axes give on `mesh` (default: every device on fsdp),
  whatever mesh or device count the run trained on; floating leaves are cast to `dtype` on read.
  """
  if mesh is None:
    mesh = sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})

  def read(step):
    path = paths.as_path(workdir) / "checkpoints" / str(step) / "state"
    if not path.is_dir():
      raise FileNotFoundError(f"No train state at {path}; choose a step under "
                              f"{path.parent.parent}.")
    stored = params_io.stored_tree(ocp.StandardCheckpointer(), path)
    stored = stored["params"] if isinstance(stored, dict) else stored.params
    config = infer_config(stored)
    return params_io.restore_sharded(path, params_io.shapes_of(stored), mesh, config,
                                     subtree="params", dtype=dtype)
  if step is None:
    return read_newest(workdir, read)[1]
  training_steps(workdir)
  io_failures.quiet_failed_reads()
  try:
    return read(int(step))
  except (CheckpointMismatchError, FileNotFoundError):
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise UnreadableCheckpointError(
        f"Checkpoint step {step} at {paths.as_path(workdir) / 'checkpoints' / str(step)} cannot "
        f"be read: {io_failures.root_cause(e)}; pass another --step, or none for the newest "
        "that reads.") from None

"""Checkpoints: the train state and the data-iterator state, as two items of one Orbax step.

Layout of a workdir:
  checkpoints/<step>/state/...        Orbax (every process writes its own shards, async)
  checkpoints/<step>/data/metadata    the input iterators' state of all processes (data_state.py)
The step commits as a whole, so a crash cannot pair a step with another step's data position.
(Older runs kept it as data_state/<step>/process_<i>.json; those still restore.)
A checkpoint that cannot be read (e.g. blobs truncated by an interrupted copy) is moved aside to
`checkpoints/<step>.unreadable` (with `data_state/<step>.unreadable`), never deleted, and the newest
older one that reads is restored (`restore_latest`). Paths may be local or gs:// (etils.epath).
Params-only checkpoints (`save_params` / `load_params`; `save_for_inference` /
`load_for_inference` with the model shape from `infer_config`) are all read and written here:
`glm_jax.convert` and `glm_jax.extract_params` write them; `--config.init_from`, `generate`,
`evaluate` and `finetune` read them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from glm_jax import data_state as data_state_lib
from glm_jax import outputs
from glm_jax import paths
from glm_jax import quantization as quantization_lib
from glm_jax import sharding
from glm_jax.model import GLMConfig, strip_boxes
from glm_jax.errors import (  # pylint: disable=unused-import (old import path)
    CheckpointMismatchError, MissingDataStateError, SaveError, UnreadableCheckpointError)


PARAM_DTYPES = ("float32", "bfloat16", "float16")  # what params may be stored / computed in


def root_cause(error: BaseException, limit: int = 400) -> str:
  """The first line of the innermost cause: e.g. TensorStore's 'OUT_OF_RANGE: Error reading ...'."""
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  for e in reversed(seen):
    lines = str(e).strip().splitlines()
    if lines:
      reason = lines[0].split(" [tensorstore_spec=")[0]   # drop TensorStore's 1 kB spec dump
      reason = reason if len(reason) <= limit else reason[:limit] + " ..."
      return f"{type(e).__name__}: {reason}"
  return type(seen[-1]).__name__


def _ignore_reads_finishing_after_a_failed_restore() -> None:
  """After one read of a restore fails, Orbax closes its event loop while TensorStore still has
  reads in flight; each then prints 'RuntimeError: Event loop is closed' through sys.unraisablehook.
  Those are echoes of the failure reported in one line, so they are dropped (only those)."""
  previous = sys.unraisablehook
  if getattr(previous, "_glm_jax_quiet", False):
    return
  def hook(unraisable):
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
      return
    previous(unraisable)
  hook._glm_jax_quiet = True  # pylint: disable=protected-access
  sys.unraisablehook = hook
  # The same reads can also end as asyncio tasks whose failure nobody awaited; asyncio logs those
  # ("Task exception was never retrieved" + a traceback) when they are garbage-collected.
  logging.getLogger("asyncio").addFilter(_drop_unretrieved_task_errors)


def _drop_unretrieved_task_errors(record: logging.LogRecord) -> bool:
  """logging filter: False for asyncio's report of an un-awaited failed task or future."""
  return not str(record.msg).split("\n", 1)[0].endswith("exception was never retrieved")


def warning(message: str) -> None:
  """A warning: one line on stderr (process 0 only), never on stdout with the results."""
  if jax.process_index() == 0:
    print(message if message.startswith("WARNING") else f"WARNING: {message}", file=sys.stderr,
          flush=True)


def free_space(path) -> str:
  """'N MiB free there' on the disk holding `path` (its nearest existing folder); '' unknown."""
  if paths.is_remote(path):
    return ""
  folder = os.fspath(path)
  while folder and not os.path.exists(folder):
    folder = os.path.dirname(folder)
  try:
    free = shutil.disk_usage(folder or "/").free
  except OSError:
    return ""
  return f"{free / 2**20:.1f} MiB free there" if free >= 2**20 else f"{free // 1024} KiB free there"


_WRITE_FAILURES = {"No space left": "no space left on device",
                   "Disk quota": "disk quota exceeded",
                   "Permission denied": "permission denied",
                   "Read-only file": "read-only file system",
                   "Input/output error": "input/output error"}


def _write_failure(error: BaseException) -> str | None:
  """What stopped a write, in a few words (disk full, permissions, I/O), or None when `error`
  (and what caused it) is not the filesystem refusing a write. TensorStore reports these as
  ValueError text ("... No space left on device [os_error_code='28']"), Python as OSError."""
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    for key, words in _WRITE_FAILURES.items():
      if key in str(error):
        return words
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
      return (error.strerror or str(error)).lower()
    error = error.__cause__ or error.__context__
  return None


def save_error(error: BaseException, what: str, where, after: str = "") -> SaveError:
  """One line for a failed write: what, where, why, how much space is free, what to do."""
  free = free_space(where)
  return SaveError(f"could not write {what} to {where}: {_write_failure(error)}"
                   + (f" ({free})" if free else "") + (f"; {after}" if after else "")
                   + "; free some space (or fix the folder's permissions) and re-run.")


class _DropEchoesOfAFailedWrite(logging.Filter):
  """Orbax logs a failed write from each of its threads as ERROR with a traceback (some 300
  lines for one full disk); the caller reports it in one SaveError line, so those are dropped."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR or "orbax" not in record.pathname:
      return True
    error = record.exc_info[1] if record.exc_info else None
    text = record.getMessage()
    return _write_failure(error) is None and not any(k in text for k in _WRITE_FAILURES)


def _quiet_failed_writes() -> None:
  for name in ("absl", ""):
    target = logging.getLogger(name)
    if not any(isinstance(f, _DropEchoesOfAFailedWrite) for f in target.filters):
      target.addFilter(_DropEchoesOfAFailedWrite())


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


class Checkpointer:
  """Async Orbax saves every K steps keeping N, each with the data-iterator state inside."""

  def __init__(self, workdir: str, keep: int):
    _quiet_failed_writes()
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
      if _write_failure(e) is None:
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
      raise save_error(e, what if failed else "a checkpoint", self.directory, after) from None

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
    _ignore_reads_finishing_after_a_failed_restore()
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
      line = (f"Checkpoint step {step} at {self.directory / str(step)} cannot be read: "
              f"{root_cause(error) if error is not None else 'another process failed to read it'}")
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
    """Moves checkpoint `step` and its iterator state to `<step>.unreadable`; returns the new path."""
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


def write_params(path, params) -> None:
  """Writes a params-only Orbax checkpoint (a plain nested dict of arrays) to the new folder
  `path` (see `save_params` for writing a user's --output)."""
  _quiet_failed_writes()
  checkpointer = ocp.StandardCheckpointer()
  try:
    checkpointer.save(paths.as_path(path), params)
    checkpointer.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    if _write_failure(e) is not None:
      raise save_error(e, "params", path) from None
    raise


def save_params(path: str, params, *, command: str = "save_params",
                overwrite: bool = False) -> None:
  """Writes a params-only checkpoint to `path` through `outputs.directory`: a folder that holds
  anything but a previous `command` output is refused, and with `overwrite` only that is replaced."""
  with outputs.directory(path, command, overwrite) as tmp:
    write_params(tmp, params)


def params_directory(path):
  """`path` as a Path when it is a params checkpoint's folder; one line otherwise (nothing there,
  or a training workdir, which `extract_params` turns into one)."""
  path = paths.as_path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"No params checkpoint at {path} (expected a directory written by "
                            "glm_jax.checkpoint.save_params / `python -m glm_jax.convert import`).")
  if (path / "checkpoints").is_dir() and not (path / "_METADATA").exists():
    raise FileNotFoundError(
        f"{path} is a training workdir, not a params checkpoint: extract one with `python -m "
        f"glm_jax.extract_params --workdir={path} --output=DIR` and pass DIR.")
  return path


def load_params(path: str, target_shapes=None, shardings=None):
  """Reads a `save_params` checkpoint; with `target_shapes`, checks shapes and places shards.

  target_shapes: tree of ShapeDtypeStructs (e.g. `model.param_shapes(config)`); shardings: a
  matching tree of `jax.sharding.Sharding` (optional). Without a target, arrays come back as
  they were saved, on this process's default device.
  """
  path = params_directory(path)
  checkpointer = ocp.StandardCheckpointer()
  if target_shapes is None:  # on this process's first device, whatever mesh wrote it
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    stored = _shapes_of(_stored_tree(checkpointer, path))
    return checkpointer.restore(path, sharding.abstract_arrays(
        stored, jax.tree_util.tree_map(lambda _: device, stored)))
  check_param_shapes(_stored_tree(checkpointer, path), target_shapes, path)
  return checkpointer.restore(path, sharding.abstract_arrays(target_shapes, shardings))


def _stored_tree(checkpointer, path):
  """The stored tree of shapes and dtypes (nothing is read but the metadata)."""
  stored = checkpointer.metadata(path)
  stored = getattr(stored, "item_metadata", stored)
  return getattr(stored, "tree", stored)


# ----------------------------------------------------------- params-only checkpoints: model shape


def infer_config(params, dtype: str | None = None, quantization: str | None = None) -> GLMConfig:
  """The model shape of a params tree (inference config: no dropout).

  Every `GLMConfig` shape field follows from the parameter shapes, so a params checkpoint needs no
  config file beside it and cannot disagree with one. `params` may be arrays or Orbax metadata.
  dtype: compute dtype; default the params' own dtype (bf16 params compute in bf16).
  quantization: what the checkpoint records (`read_quantization`); it must match the tree (int8
  kernels with scales, or float ones). None: taken from the tree.
  """
  try:
    vocab, hidden = params["word_embeddings"]["embedding"].shape
    positions = params["position_embeddings"]["embedding"].shape[0]
    qkv = params["layers"]["attention"]["query_key_value"]["kernel"].shape  # [L, h, 3, H, d]
    ffn = params["layers"]["mlp"]["dense_h_to_4h"]["kernel"].shape[-1]
  except (KeyError, TypeError, AttributeError) as e:
    raise CheckpointMismatchError(
        f"Not a GLM params tree (missing {e}); extract one with `python -m "
        "glm_jax.extract_params` or convert it with `python -m glm_jax.convert import`.") from e
  param_dtype = jnp.dtype(params["word_embeddings"]["embedding"].dtype).name
  if param_dtype not in PARAM_DTYPES:
    raise CheckpointMismatchError(
        f"the params are stored as {param_dtype}; generate, evaluate and finetune read "
        f"{', '.join(PARAM_DTYPES)}: extract them again with --dtype=bfloat16 (or no --dtype).")
  in_tree = quantization_lib.params_method(params)
  if quantization is not None and quantization != in_tree:
    raise CheckpointMismatchError(
        f"The checkpoint records quantization {quantization or 'none'!r} but its kernels are "
        f"{in_tree or 'float'}; it was altered after writing: extract or convert it again.")
  return GLMConfig(vocab_size=int(vocab), num_layers=int(qkv[0]), hidden_size=int(hidden),
                   num_heads=int(qkv[3]), max_sequence_length=int(positions) - 1,
                   mlp_ratio=int(ffn) // int(hidden), embedding_dropout=0.0,
                   attention_dropout=0.0, hidden_dropout=0.0, dtype=dtype or param_dtype,
                   param_dtype=param_dtype, quantization=in_tree)


QUANTIZATION_FILE = "quantization.json"


def read_quantization(path: str) -> str:
  """The quantization recorded in a params checkpoint: 'int8', or '' when none is recorded.

  A recorded method this version does not know is refused (its kernels would be misread).
  """
  record = paths.as_path(path) / QUANTIZATION_FILE
  if not record.exists():
    return ""
  method = json.loads(record.read_text()).get("method", "")
  if method not in quantization_lib.METHODS:
    raise CheckpointMismatchError(
        f"{record} records quantization {method!r}, which this glm_jax cannot read (it knows "
        f"{sorted(quantization_lib.METHODS)}); use a newer glm_jax or re-extract the params.")
  return method


def _record_quantization(path: str, method: str) -> None:
  record = {"method": method, "scheme": quantization_lib.METHODS[method],
            "scale_dtype": jnp.dtype(quantization_lib.SCALE_DTYPE).name,
            "kernels": ["layers/" + "/".join(k) + "/kernel" for k in quantization_lib.DENSE_KERNELS]}
  paths.write_text_atomic(paths.as_path(path) / QUANTIZATION_FILE, json.dumps(record, indent=1))


def stored_config(path: str) -> GLMConfig:
  """The model shape of the params checkpoint at `path`, from its metadata (nothing is loaded).

  Lets finetuning size its model from `--config.init_from` before any array is read.
  """
  return infer_config(_stored_tree(ocp.StandardCheckpointer(), paths.as_path(path)),
                      quantization=read_quantization(path))


def cast_params(params, dtype):
  """Floating-point leaves to `dtype` (e.g. bfloat16 halves the file); others unchanged."""
  dtype = jnp.dtype(dtype)
  return jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
      else x, params)


def for_inference(params, dtype: str | None = None, quantize: str | None = None):
  """The params as inference reads them: unboxed, checked to be a GLM tree, then cast to `dtype`
  or, with quantize="int8", int8 dense kernels with per-output-channel scales and everything
  else bfloat16 (glm_jax.quantization)."""
  params = strip_boxes(params)
  infer_config(params)  # refuse to write something generate could not read back
  quantize = quantization_lib.check_method(quantize, dtype)
  if quantize:
    if quantization_lib.params_method(params):
      raise quantization_lib.QuantizationError(
          "these params are quantized already; quantize the float params they came from.")
    return quantization_lib.quantize_params(params, quantize)
  return cast_params(params, dtype) if dtype is not None else params


def write_for_inference(directory, params, quantize: str | None = None) -> None:
  """`write_params` of `for_inference` params into the new folder `directory`, with
  `quantization.json` recording how they were quantized (process 0 writes it; every process
  writes its shards)."""
  write_params(directory, params)
  if quantize and jax.process_index() == 0:
    _record_quantization(directory, quantize)


def save_for_inference(path: str, params, dtype: str | None = None,
                       quantize: str | None = None, **output) -> None:
  """Writes a params-only checkpoint, cast to `dtype` or quantized (`for_inference`; inference
  needs no optimizer) through `outputs.directory`; `output`: save_params' command / overwrite."""
  params = for_inference(params, dtype, quantize)
  command, overwrite = output.get("command", "save_params"), output.get("overwrite", False)
  with outputs.directory(path, command, overwrite) as tmp:
    write_for_inference(tmp, params, quantize)


def load_for_inference(path: str, dtype: str | None = None, mesh=None):
  """(GLMConfig, params) from a params-only checkpoint; `dtype` sets the compute dtype.

  The one way generate, evaluate and finetune read a model: the shape comes from the params, the
  quantization from what the checkpoint records (checked against the params).
  With a `mesh`, every leaf is read straight into the NamedSharding its logical axes give on that
  mesh (each process reads only the shards its devices hold; no whole copy anywhere). Without
  one, arrays come back as they were saved, on this process's default device.
  """
  quantization = read_quantization(path)
  if mesh is None:
    params = strip_boxes(load_params(path))
    return infer_config(params, dtype, quantization=quantization), params
  path = params_directory(path)
  stored = _stored_tree(ocp.StandardCheckpointer(), path)
  config = infer_config(stored, dtype, quantization=quantization)
  return config, restore_sharded(path, _shapes_of(stored), mesh, config)


def _shapes_of(stored):
  """ShapeDtypeStructs of a stored (metadata) tree."""
  return jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), stored)


def restore_sharded(path, shapes, mesh, config, subtree: str | None = None, dtype=None):
  """The params at `path` (or its `subtree`, e.g. the train state's 'params': nothing else is
  read) placed on `mesh` by their logical axes; floating leaves cast to `dtype` as they are read."""
  shardings = sharding.param_shardings(config, shapes, mesh)
  cast = jnp.dtype(dtype) if dtype is not None else None
  target = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(
          s.shape, cast if cast is not None and jnp.issubdtype(s.dtype, jnp.floating) else s.dtype,
          sharding=sh), shapes, shardings)
  if subtree is not None:
    target = {subtree: target}
  restore_args = ocp.checkpoint_utils.construct_restore_args(target)
  restored = ocp.PyTreeCheckpointer().restore(
      paths.as_path(path), args=ocp.args.PyTreeRestore(
          item=target, restore_args=restore_args, partial_restore=subtree is not None))
  return restored[subtree] if subtree is not None else restored


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
  _ignore_reads_finishing_after_a_failed_restore()
  failures = []
  for step in training_steps(workdir):
    try:
      value = read(step)
    except (CheckpointMismatchError, FileNotFoundError):
      raise
    except Exception as e:  # pylint: disable=broad-except
      failures.append((step, root_cause(e)))
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
    stored = _stored_tree(ocp.StandardCheckpointer(), path)
    stored = stored["params"] if isinstance(stored, dict) else stored.params
    config = infer_config(stored)
    return restore_sharded(path, _shapes_of(stored), mesh, config, subtree="params", dtype=dtype)
  if step is None:
    return read_newest(workdir, read)[1]
  training_steps(workdir)
  _ignore_reads_finishing_after_a_failed_restore()
  try:
    return read(int(step))
  except (CheckpointMismatchError, FileNotFoundError):
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise UnreadableCheckpointError(
        f"Checkpoint step {step} at {paths.as_path(workdir) / 'checkpoints' / str(step)} cannot "
        f"be read: {root_cause(e)}; pass another --step, or none for the newest that reads.") from None

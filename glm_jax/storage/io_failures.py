"""What a failed checkpoint read or write says: one line (the root cause, the write failure in a
few words, the free space), and the process-wide silencing of the echoes Orbax, TensorStore and
asyncio print for a failure that line already reports (their tracebacks from every thread).

Used by the train checkpointer (glm_jax.training.checkpoint) and the params-only I/O
(glm_jax.storage.params_io).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings

from glm_jax.errors import SaveError
from glm_jax.storage import paths


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


def quiet_failed_reads() -> None:
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


def write_failure(error: BaseException) -> str | None:
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
  """One line for a failed write: what, where, why, how much space is free, what to do.

  The write's abandoned async fragments would print "coroutine ... was never awaited" at exit,
  after that line; they are expected once a write failed, so that warning is off from here on."""
  warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited",
                          category=RuntimeWarning)
  free = free_space(where)
  return SaveError(f"could not write {what} to {where}: {write_failure(error)}"
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
    return write_failure(error) is None and not any(k in text for k in _WRITE_FAILURES)


def quiet_failed_writes() -> None:
  """Drops Orbax's per-thread echoes of a failed write (absl's and the root logger; once)."""
  for name in ("absl", ""):
    target = logging.getLogger(name)
    if not any(isinstance(f, _DropEchoesOfAFailedWrite) for f in target.filters):
      target.addFilter(_DropEchoesOfAFailedWrite())


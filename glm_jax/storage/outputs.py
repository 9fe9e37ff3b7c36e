"""Writing a command's `--output` without ever deleting or overwriting what the user owns.

Rules (README, "Outputs are never destructive"):
  * an output that exists and is not empty is refused in one line naming it, unless it holds a
    previous output of the same command (its `.glm_jax_output.json` says so) and `overwrite`
    is given; a file output needs `overwrite` too;
  * the new output is written to a temporary sibling and renamed into place, so an interrupted
    write leaves the old output as it was;
  * when a previous output is replaced, only the entries that command wrote (listed in its
    marker) are removed: anything else the user put there is moved into the new output.
"""

from __future__ import annotations

import contextlib
import json
import os

import jax
from jax.experimental import multihost_utils

from glm_jax.errors import OutputExistsError
from glm_jax.storage import paths

MARKER = ".glm_jax_output.json"
_PARTIAL = ".glm_jax-partial"
_OLD = ".glm_jax-old"


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"glm_jax outputs {name}")


def written_by(path) -> str | None:
  """The command recorded in a directory's marker (None: not written by a glm_jax command)."""
  marker = paths.as_path(path) / MARKER
  try:
    return json.loads(marker.read_text()).get("command")
  except (OSError, ValueError, AttributeError):
    return None


def _marked_files(path) -> set[str]:
  try:
    return set(json.loads((paths.as_path(path) / MARKER).read_text()).get("files", []))
  except (OSError, ValueError, AttributeError):
    return set()


def check_directory(path, command: str, overwrite: bool, flag: str = "--output") -> None:
  """Raises OutputExistsError unless `path` may receive a new output of `command`."""
  path = paths.as_path(path)
  if not path.exists():
    return
  if not path.is_dir():
    raise OutputExistsError(f"{flag}={path} is a file; {command} writes a directory there: "
                            "name a new directory.")
  if not any(path.iterdir()):
    return
  previous = written_by(path)
  if previous != command:
    owner = f"holds the output of `{previous}`" if previous else "is not empty"
    raise OutputExistsError(f"{flag}={path} {owner}; nothing was written: name a new or empty "
                            f"directory (--overwrite replaces only a previous `{command}` output).")
  if not overwrite:
    raise OutputExistsError(f"{flag}={path} holds a previous `{command}` output; pass "
                            "--overwrite to replace it, or name a new directory.")


def check_file(path, command: str, overwrite: bool, flag: str = "--output") -> None:
  """Raises OutputExistsError unless the file `path` may be (re)written."""
  path = paths.as_path(path)
  if path.is_dir():
    raise OutputExistsError(f"{flag}={path} is a directory; {command} writes one file: name the "
                            "file, e.g. DIR/model.safetensors.")
  if path.exists() and not overwrite:
    raise OutputExistsError(f"{flag}={path} exists; nothing was written: pass --overwrite to "
                            "replace it, or name a new file.")


def _remove_partial(path) -> None:
  """Removes a temporary sibling this module created (by its reserved name) and nothing else."""
  if path.exists() and path.name.endswith((_PARTIAL, _OLD)):
    path.rmtree() if path.is_dir() else path.unlink()


@contextlib.contextmanager
def directory(path, command: str, overwrite: bool = False, flag: str = "--output"):
  """Yields a temporary sibling path (not yet existing) to write the whole output into; on
  success it becomes `path`, replacing only a previous output of `command` (see the module)."""
  path = paths.as_path(path)
  check_directory(path, command, overwrite, flag)
  if paths.is_remote(path):   # buckets have no folder rename: written in place, marker last
    yield from _in_place(path, command)
    return
  tmp = path.parent / f".{path.name}{_PARTIAL}"
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_partial(tmp)
  _sync(f"start {path}")
  try:
    yield tmp
  except BaseException:
    if jax.process_index() == 0:
      _remove_partial(tmp)
    raise
  _sync(f"written {path}")
  if jax.process_index() == 0:
    tmp.mkdir(parents=True, exist_ok=True)
    files = sorted(p.name for p in tmp.iterdir())
    paths.write_text_atomic(tmp / MARKER, json.dumps({"command": command, "files": files}))
    _replace(path, tmp)
  _sync(f"renamed {path}")


def _in_place(path, command: str):
  """A Cloud Storage output, written into `path` (the marker last says it is complete); a
  previous output is removed first, and one with files of the user's is refused."""
  if path.exists() and any(e.name not in _marked_files(path) | {MARKER} for e in path.iterdir()):
    raise OutputExistsError(f"--output={path} holds files of yours besides the previous output; "
                            "on Cloud Storage an output is written in place: name a new one.")
  if jax.process_index() == 0 and path.exists():
    path.rmtree()   # only the previous output's own files are there (checked above)
  _sync(f"cleared {path}")
  yield path
  _sync(f"written {path}")
  if jax.process_index() == 0:
    files = sorted(p.name for p in path.iterdir())
    paths.write_text_atomic(path / MARKER, json.dumps({"command": command, "files": files}))
  _sync(f"marked {path}")


def _replace(path, tmp) -> None:
  if not path.exists():
    tmp.rename(path)
    return
  if not any(path.iterdir()):
    path.rmdir()
    tmp.rename(path)
    return
  ours = _marked_files(path) | {MARKER}
  old = path.parent / f".{path.name}{_OLD}"
  _remove_partial(old)
  path.rename(old)
  tmp.rename(path)
  for entry in list(old.iterdir()):   # the user's own files stay, in the new output
    if entry.name not in ours and not (path / entry.name).exists():
      entry.rename(path / entry.name)
  for entry in list(old.iterdir()):
    if entry.name in ours:
      entry.rmtree() if entry.is_dir() else entry.unlink()
  if any(old.iterdir()):   # a user file named like one of the new output's: kept, beside it
    kept, n = path.parent / f"{path.name}.kept", 0
    while kept.exists():
      n += 1
      kept = path.parent / f"{path.name}.kept.{n}"
    old.rename(kept)
  else:
    old.rmdir()


WORKDIR_KINDS = ("train", "finetune")
_FINETUNE_ONLY = ("best.json", "best_params", "predictions")


def claim_workdir(workdir, command: str) -> None:
  """Checks that `workdir` can hold a `command` run (train or finetune) and marks it so.

  A new or empty folder, or one a previous `command` run wrote, is fine (the run resumes there).
  A file, a folder that cannot be created, another command's workdir, or a non-empty folder that
  is no glm_jax workdir is refused in one line: a run never writes into what it did not make.
  """
  path = paths.as_path(workdir)
  if path.exists() and not path.is_dir():
    raise OutputExistsError(f"--workdir={path} is a file; pass a folder (new, or a previous "
                            f"{command} run's, to resume it).")
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise OutputExistsError(f"--workdir={path} cannot be created ({e.strerror or e}); pass a "
                            "folder you can write to.") from None
  names = _names(path)
  kind = written_by(path) or _legacy_kind(names)
  if kind is None and names:
    raise OutputExistsError(f"--workdir={path} is not empty and holds no glm_jax {command} run; "
                            "pass a new or empty folder (nothing was written).")
  if kind is not None and kind != command:
    raise OutputExistsError(f"--workdir={path} holds a `{kind}` run; {command} needs its own: "
                            "pass a new --workdir (nothing was written).")
  _sync(f"checked workdir {path}")   # every process has looked before process 0 marks it
  if written_by(path) is None and jax.process_index() == 0:
    paths.write_text_atomic(path / MARKER, json.dumps({"command": command}))
  _sync(f"claimed workdir {path}")


def _names(path) -> set[str]:
  """The entries of a folder; none for one that does not exist yet (a new bucket prefix)."""
  try:
    return {p.name for p in path.iterdir()}
  except FileNotFoundError:
    return set()


def _legacy_kind(names: set[str]) -> str | None:
  """The kind of a workdir written before workdirs were marked: checkpoints or metrics mean a
  run; the best-params files mean finetuning."""
  if not names & {"checkpoints", "metrics.jsonl", "data_state", *_FINETUNE_ONLY}:
    return None
  return "finetune" if names & set(_FINETUNE_ONLY) else "train"


def file_mode() -> int:
  """The mode an ordinary new file gets (0644 under the usual umask 022)."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


@contextlib.contextmanager
def file(path, command: str, overwrite: bool = False, flag: str = "--output"):
  """Yields a local temporary file name; on success it is renamed to `path` (mode 0644)."""
  path = paths.as_path(path)
  check_file(path, command, overwrite, flag)
  if paths.is_remote(path):
    with paths.local_staging(path) as local:
      yield local
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}{_PARTIAL}"
  try:
    yield os.fspath(tmp)
  except BaseException:
    _remove_partial(tmp)
    raise
  os.chmod(tmp, file_mode())
  os.replace(tmp, path)

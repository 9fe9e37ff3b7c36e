"""Every file the project reads or writes goes through `etils.epath`: local paths and gs:// alike.

A workdir on Cloud Storage (`--workdir=gs://bucket/run`) must never be treated as a local folder
named `gs:`, so no module opens, lists or joins a workdir path with `os.path` / `open` / `shutil`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from etils import epath


def is_remote(path) -> bool:
  """True for URLs (gs://, s3://, ...): they are used as they are, never made absolute."""
  return "://" in os.fspath(path)


def as_path(path) -> epath.Path:
  """An epath.Path; local paths are made absolute (Orbax wants absolute checkpoint paths)."""
  if isinstance(path, str) and not is_remote(path):
    path = os.path.abspath(os.path.expanduser(path))
  return epath.Path(path)


def write_text_atomic(path, text: str) -> None:
  """Writes `text` so that a reader sees all of it or none (a temporary sibling renamed in place;
  a Cloud Storage object appears whole when its upload ends, so it is written directly)."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(path):
    path.write_text(text)
    return
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)


def copy_file(source, target) -> None:
  """Copies one file, e.g. a local tokenizer model into a gs:// workdir."""
  target = as_path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  with as_path(source).open("rb") as src, target.open("wb") as dst:   # any pair of filesystems
    shutil.copyfileobj(src, dst)


def move_aside(path, suffix: str) -> epath.Path:
  """Renames `path` to `path<suffix>` (or `path<suffix>.1`, ... if taken); returns the new path."""
  path = as_path(path)
  target = path.parent / (path.name + suffix)
  n = 0
  while target.exists():
    n += 1
    target = path.parent / f"{path.name}{suffix}.{n}"
  path.rename(target)
  return target


@contextlib.contextmanager
def local_copy(path):
  """A local file name holding `path`'s bytes, for libraries that only read local files."""
  path = as_path(path)
  if not is_remote(path):
    yield os.fspath(path)
    return
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, path.name)
    with path.open("rb") as src, open(local, "wb") as dst:
      shutil.copyfileobj(src, dst)
    yield local


@contextlib.contextmanager
def local_staging(path):
  """A local file name to write to; its bytes go to `path` (local or remote) on exit."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if not is_remote(path):
    yield os.fspath(path)
    return
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, path.name)
    yield local
    with open(local, "rb") as src, path.open("wb") as dst:
      shutil.copyfileobj(src, dst)


def json_lines(text: str, where, error: type[Exception], hint: str):
  """(line number, record) for each non-blank line of JSON-lines `text`.

  A line that is not JSON raises `error("WHERE:N: not valid JSON (...); HINT")`, so every JSONL
  reader (evaluation files, SuperGLUE tasks) names the file and line the same way.
  """
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise error(f"{where}:{number}: not valid JSON ({e.msg} at column {e.colno}); "
                  f"{hint}") from None
    yield number, record

"""Every file the project reads or writes goes through `etils.epath`: local paths and gs:// alike.

A workdir on Cloud Storage (`--workdir=gs://bucket/run`) must never be treated as a local folder
named `gs:`, so no module opens, lists or joins a workdir path with `os.path` / `open` / `shutil`.
"""

from __future__ import annotations

import os

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
  """Writes `text` to a temporary sibling, then renames it: a reader sees all of it or none."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)


def copy_file(source, target) -> None:
  """Copies one file, e.g. a local tokenizer model into a gs:// workdir."""
  target = as_path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  as_path(source).copy(target, overwrite=True)


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


def glob(pattern: str) -> list[str]:
  """Sorted files matching a glob (`**` recurses), local or remote."""
  if not is_remote(pattern):
    import glob as glob_lib  # pylint: disable=g-import-not-at-top
    return sorted(p for p in glob_lib.glob(os.path.expanduser(pattern), recursive=True)
                  if os.path.isfile(p))
  parts = pattern.split("/")
  fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
  base = epath.Path("/".join(parts[:fixed]))
  if fixed == len(parts):
    return [os.fspath(base)] if base.is_file() else []
  return sorted(os.fspath(p) for p in base.glob("/".join(parts[fixed:])) if p.is_file())

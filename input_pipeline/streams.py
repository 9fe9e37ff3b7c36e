"""Seekable document streams: a shard's documents of one epoch, each with a location to resume at.

Resuming a run must not re-read the stream up to the saved position (hours on a real corpus).
So the train order is not a tf.data shuffle buffer, whose state is the whole buffer, but
windows: consecutive runs of `window` documents (raw lines of one file, examples of a TFDS
split, chapters of the embedded corpus), each permuted by `default_rng([seed, epoch, ...window])`,
with the files themselves in a seeded order per epoch. A document's location names its window
(for files: the file, the window's byte offset and first line number) and its rank inside the
permuted window, so a resume seeks straight there and reads at most one window again.

Every stream yields `Piece(docs, locs, end)`: raw documents (str or UTF-8 bytes), the location
of each, and the location of the document after the last one. Locations are short int tuples.
"""

from __future__ import annotations

import collections
from typing import Iterator

import numpy as np

from input_pipeline import sources
from input_pipeline.errors import DataSourceError


class Piece(collections.namedtuple('Piece', 'docs locs end')):
  """Raw documents, the location of each, and where the stream goes on after them."""


def _rank_order(n: int, permute: bool, key) -> np.ndarray:
  return np.random.default_rng(key).permutation(n) if permute and n > 1 else np.arange(n)


def _pieces(docs, locs, end, size: int) -> Iterator[Piece]:
  """A window's documents in tokenizer-sized pieces (the last one ends where the window ends)."""
  for i in range(0, len(docs), size):
    stop = i + size
    yield Piece(docs[i:stop], locs[i:stop], locs[stop] if stop < len(docs) else end)


def _window_docs(key_prefix, loc_prefix, kept, start_rank, permute, end, size):
  """The kept documents of one window from rank `start_rank` on, permuted when training."""
  order = _rank_order(len(kept), permute, key_prefix)
  docs = [kept[j] for j in order[start_rank:]]
  locs = [loc_prefix + (r,) for r in range(start_rank, len(kept))]
  yield from _pieces(docs, locs, end, size)


# ------------------------------------------------------------------------------ embedded corpus

def memory_stream(docs, *, permute: bool, seed: int, epoch: int, loc, size: int):
  """The in-memory corpus: a seeded permutation of the whole shard; location = (rank,)."""
  order = _rank_order(len(docs), permute, [seed, epoch])
  start = int(loc[0]) if loc else 0
  ranks = list(range(start, len(docs)))
  yield from _pieces([docs[j] for j in order[start:]], [(r,) for r in ranks], (len(docs),), size)


# ------------------------------------------------------------------------------------ files

def _shard_files(cfg, shard: int, num_shards: int):
  files = sources.list_files(cfg.files)
  if len(files) >= num_shards:
    return files[shard::num_shards], False  # each shard opens only its own files
  return files, True  # fewer files than shards: every shard reads all, keeps every n-th line


def _open(path: str):
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.GFile(path, 'rb')
  return open(path, 'rb')


def _keep_lines(cfg, split, lines, first_line, shard, num_shards, line_shard):
  """The documents of a window of raw lines: non-blank, in `split`, in this shard's lines."""
  texts = [(first_line + i, line.rstrip(b'\r\n')) for i, line in enumerate(lines)]
  texts = [(n, t) for n, t in texts if t.strip() and (not line_shard or n % num_shards == shard)]
  if not texts:
    return []
  return [t for t, keep in zip((t for _, t in texts), in_split(cfg, split, [t for _, t in texts]))
          if keep]


def in_split(cfg, split: str, texts) -> np.ndarray:
  """Whether each document belongs to `split` (the content-hash holdout of sources.py)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  held = sources._is_heldout(  # pylint: disable=protected-access
      tf.constant(list(texts), tf.string), float(cfg.eval_holdout_fraction)).numpy()
  return held if split == 'eval' else ~held


def file_stream(cfg, split: str, *, shard: int, num_shards: int, permute: bool, seed: int,
                epoch: int, loc, window: int, size: int) -> Iterator[Piece]:
  """One epoch of a `files` shard; location = (file rank, window byte offset, first line, rank)."""
  files, line_shard = _shard_files(cfg, shard, num_shards)
  order = _rank_order(len(files), permute, [seed, epoch])
  f0, offset, line, rank = (tuple(int(x) for x in loc) if loc else (0, 0, 0, 0))
  for f in range(f0, len(files)):
    with _open(files[order[f]]) as handle:
      if f != f0:
        offset, line, rank = 0, 0, 0
      elif offset:
        handle.seek(offset)
      while True:
        lines = []
        for _ in range(window):
          raw = handle.readline()
          if not raw:
            break
          lines.append(raw)
        if not lines:
          break
        next_offset = handle.tell()
        kept = _keep_lines(cfg, split, lines, line, shard, num_shards, line_shard)
        end = (f, next_offset, line + len(lines), 0)
        yield from _window_docs([seed, epoch, f, offset], (f, offset, line), kept, rank,
                                permute, end, size)
        offset, line, rank = next_offset, line + len(lines), 0


# ------------------------------------------------------------------------------------- TFDS

def _tfds_range(cfg, split: str, shard: int, num_shards: int):
  """(builder, split name, first and end example of this shard, whether to hold out)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, name, holdout = sources.tfds_builder_and_split(cfg, split)
  splits = builder.info.splits
  absolute = tfds.core.ReadInstruction.from_spec(name).to_absolute(dict(splits.items()))
  if len(absolute) != 1:
    raise DataSourceError(f'TFDS split {name!r} combines several splits; name one split or one '
                          'slice of it (e.g. train[:90%])')
  base, first, end = absolute[0].splitname, absolute[0].from_, absolute[0].to
  first, end = first or 0, splits[base].num_examples if end is None else end
  count = end - first
  return builder, base, first + shard * count // num_shards, \
      first + (shard + 1) * count // num_shards, holdout


def tfds_stream(cfg, split: str, *, shard: int, num_shards: int, permute: bool, seed: int,
                epoch: int, loc, window: int, size: int) -> Iterator[Piece]:
  """One epoch of a TFDS shard; location = (window start example, rank). TFDS's slicing seeks
  to the record files of the start, so a resume does not read what came before."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, base, lo, hi, holdout = _tfds_range(cfg, split, shard, num_shards)
  start, rank = (int(loc[0]), int(loc[1])) if loc else (0, 0)
  if lo + start >= hi:
    return
  ds = builder.as_dataset(split=f'{base}[{lo + start}:{hi}]', shuffle_files=False,
                          read_config=tfds.ReadConfig(interleave_cycle_length=1))
  key = cfg.text_key
  ds = ds.map(lambda ex: ex[key]).batch(window).prefetch(2)
  for texts in ds.as_numpy_iterator():
    texts = list(texts)
    kept = [t for t, k in zip(texts, in_split(cfg, split, texts)) if k] if holdout else texts
    end = (start + len(texts), 0)
    yield from _window_docs([seed, epoch, start], (start,), kept, rank, permute, end, size)
    start, rank = start + len(texts), 0

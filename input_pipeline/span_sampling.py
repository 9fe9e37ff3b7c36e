"""Where GLM's blanks go: span lengths, their split across documents, their placement, sentences.

Pure numpy (randomness comes in as drawn numbers), following THUDM/GLM `blocklm_utils.py`; the
sample maker (`blank_infilling.py`) draws, and `sample_layout.py` lays out what is chosen here.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from input_pipeline.sample_layout import exclusive_cumsum


def span_length_cdf(poisson_lambda: float, max_span_length: int) -> np.ndarray:
  """CDF of Poisson(lambda) restricted to 1 .. max_span_length - 1 (as the original)."""
  ks = np.arange(1, max_span_length)
  log_pmf = (ks * math.log(poisson_lambda) - poisson_lambda
             - np.array([math.lgamma(k + 1) for k in ks]))
  pmf = np.exp(log_pmf)
  cdf = np.cumsum(pmf / pmf.sum())
  cdf[-1] = 1.0
  return cdf


def content_segments(tokens: np.ndarray, cls_id: int, eos_id: int, exclude_last: bool,
                     boundaries: np.ndarray | None = None):
  """Runs of document tokens (no [CLS] / eos) as `(starts, lengths)` lists. Never the first token.

  Plain Python over the few document boundaries: cheaper than mask arithmetic on the window.
  `boundaries`, if given, is the precomputed mask of [CLS] / eos tokens.
  """
  n = tokens.shape[0]
  if boundaries is None:
    boundaries = (tokens == cls_id) | (tokens == eos_id)
  bounds = set(boundaries.nonzero()[0].tolist())
  bounds.add(0)
  if exclude_last:
    bounds.add(n - 1)
  bounds = sorted(bounds) + [n]
  starts, lengths = [], []
  for p, q in zip(bounds, bounds[1:]):
    if q - p > 1:
      starts.append(p + 1)
      lengths.append(q - p - 1)
  return starts, lengths


def allocate_lengths(lengths: Sequence[int], seg_lengths: Sequence[int], ratio: float):
  """Splits span lengths across documents as the original does; returns per-segment lists and drops.

  Shorter documents first, each up to `ratio` of its length; the longest takes what still fits
  (with a one-token gap between spans).
  """
  order = sorted(range(len(seg_lengths)), key=seg_lengths.__getitem__)
  alloc = [None] * len(seg_lengths)
  i, total = 0, len(lengths)
  for rank, seg in enumerate(order):
    seg_len = int(seg_lengths[seg])
    last = rank == len(order) - 1
    budget = seg_len if last else int(seg_len * ratio)
    taken, count = 0, 0
    while i + count < total:
      grown = taken + int(lengths[i + count])
      if grown + (count if last else 0) > budget:
        break
      taken, count = grown, count + 1
    alloc[seg] = list(lengths[i:i + count])
    i += count
  return alloc, total - i


def place_batch(placements: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, list[int]]:
  """Places the spans of many samples at once; returns `(starts, ends, counts)`: all samples'
  spans concatenated, each sample's in Part-B order, `counts` spans per sample.

  Each placement is `(segments, uniforms, order_keys)`: `segments` lists `(start, length, span
  lengths)` of the documents that got spans. In each segment the spans keep their order with gaps
  >= 1, uniformly placed: span j of the sample draws `floor(u_j * (free + 1))` among the segment's
  `free` spare tokens, the draws are sorted, and the i-th span is shifted by the i-th smallest draw.
  Part B follows `order_keys.argsort()`
  (`order_keys` None: text order). Vectorized over the batch: per-sample Python loops over ~20
  spans cost more than the work.
  """
  seg_start, seg_len, seg_count, lens, u, keys, sample_k = [], [], [], [], [], [], []
  for segments, uniforms, order_keys in placements:
    k = 0
    for start, length, span_lengths in segments:
      seg_start.append(start)
      seg_len.append(length)
      seg_count.append(len(span_lengths))
      lens += span_lengths
      k += len(span_lengths)
    sample_k.append(k)
    u.append(uniforms[:k])
    keys.append(order_keys[:k] if order_keys is not None else np.arange(k, dtype=np.float64))
  if not lens:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), sample_k
  lens = np.asarray(lens, np.int64)
  seg_count = np.asarray(seg_count, np.int64)
  seg = np.repeat(np.arange(seg_count.shape[0]), seg_count)
  seg_sum = np.bincount(seg, lens, seg_count.shape[0]).astype(np.int64)
  free = np.asarray(seg_len, np.int64) - seg_sum - seg_count + 1
  places = (np.concatenate(u) * (free[seg] + 1)).astype(np.int64)
  places = places[np.lexsort((places, seg))]  # sorted within each segment, segments in order
  before = exclusive_cumsum(lens + 1)  # tokens of the earlier spans + gaps, within the segment
  before -= np.repeat(before[exclusive_cumsum(seg_count)], seg_count)
  starts = np.asarray(seg_start, np.int64)[seg] + places + before
  ends = starts + lens
  row = np.repeat(np.arange(len(placements)), sample_k)
  order = np.lexsort((np.concatenate(keys), row))  # Part-B order within each sample
  return starts[order], ends[order], sample_k


def sentence_spans(tokens: np.ndarray, is_end: np.ndarray, cls_id: int, eos_id: int) -> np.ndarray:
  """Sentences as `[start, end)`, by the original's rule (`construct_blocks`, sentence branch).

  A sentence ends at a sentence-end token; an eos ends a fragment that is dropped (text after
  the last sentence end of a document); what follows an eos, the next document's [CLS]
  included, starts the next sentence; the text after the last end token is a sentence. A
  leading [CLS] is never part of one.
  """
  n = tokens.shape[0]
  bounds = np.flatnonzero(is_end | (tokens == eos_id))
  first = 1 if n and tokens[0] == cls_id else 0
  starts = np.concatenate([[first], bounds + 1])
  ends = np.concatenate([bounds + 1, [n]])
  keep = np.concatenate([is_end[bounds], [True]]) & (starts < ends)
  return np.stack([starts[keep], ends[keep]], axis=1).astype(np.int64)

"""GLM's sample layout: Part A (the text, each span replaced by one mask), then Part B (the spans).

Pure numpy. The layout is the GLM paper's (arXiv 2103.10360, section 2.1 "Autoregressive Blank
Infilling"), with the exact positions, block positions and targets of THUDM/GLM `blocklm_utils.py`
(tests/data holds its outputs); the code is ours. Which spans to blank is `span_sampling.py`'s job.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import numpy as np


class SpanPlan(NamedTuple):
  """A sample whose spans are known: `tokens` (the prefix used) and its spans, `[start, end)` in
  Part-B order, each replaced in Part A by `mask_id`."""
  tokens: np.ndarray
  starts: Sequence[int]
  ends: Sequence[int]
  mask_id: int
  division = 0  # not the suffix form


class UnplacedSpanPlan(NamedTuple):
  """A token-objective sample whose span lengths are drawn but not yet placed: `placement` is
  `(segments, uniforms, order_keys)` for `place_batch`, which places a whole batch at once."""
  tokens: np.ndarray
  mask_id: int
  placement: tuple
  division = 0  # not the suffix form


class SuffixPlan(NamedTuple):
  """The document objective's suffix form: `tokens[:division] [gMASK]`, then the rest as Part B."""
  tokens: np.ndarray
  mask_id: int
  division: int


Plan = Union[SpanPlan, UnplacedSpanPlan, SuffixPlan]  # one type per case


def build_sample(tokens, spans, *, mask_id: int, sop_id: int, eop_id: int) -> dict:
  """Lays out one sample: Part A (spans replaced by one mask each), then Part B (the spans).

  `spans` are `[start, end)` pairs in Part-B order. Part A's targets are its own inputs (loss 0).
  Output length is `len(tokens) + 2 * len(spans)`.
  """
  tokens = np.asarray(tokens, dtype=np.int32)
  n = tokens.shape[0]
  sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
  starts, ends = sp[:, 0], sp[:, 1]
  if sp.size and (starts.min() < 0 or ends.max() > n or (ends <= starts).any()):
    raise ValueError(f'spans must be non-empty [start, end) inside 0..{n}: {sp.tolist()}')
  order = starts.argsort()
  if sp.size and (starts[order][1:] < ends[order][:-1]).any():
    raise ValueError(f'spans must not overlap: {sp.tolist()}')
  rows = layout_batch([SpanPlan(tokens, starts, ends, mask_id)], n + 2 * len(starts),
                      sop_id=sop_id, eop_id=eop_id, pad_id=0)
  return {k: v[0] for k, v in rows.items()}


def layout_batch(plans: Sequence[Plan], seq_length: int, *, sop_id: int, eop_id: int, pad_id: int,
                 batch_size: int | None = None, rows: Sequence[int] | None = None,
                 spans: tuple | None = None) -> dict:
  """`[batch_size, seq_length]` arrays for span plans: Part A, Part B, then padding.

  The whole batch is laid out with one set of numpy calls on the concatenated plans (per-sample
  numpy calls cost more in call overhead than in work). Plan i fills row `rows[i]` (default i);
  other rows are padding. Spans must not overlap (callers guarantee it); suffix-form plans are
  not handled here. `spans`, if given, replaces the plans' own: `(starts, ends, counts)` with all
  plans' spans concatenated (as `place_batch` returns them).
  """
  seq_length, num_plans = int(seq_length), len(plans)
  batch_size = num_plans if batch_size is None else int(batch_size)
  out = {key: np.full((batch_size, seq_length), pad_id, np.int32)
         for key in ('input_ids', 'target_ids')}
  out.update({key: np.zeros((batch_size, seq_length), np.int32)
              for key in ('loss_mask', 'position_ids', 'block_position_ids')})
  out['sep'] = np.zeros(batch_size, np.int32)
  if num_plans == 0:
    return out
  row_of_plan = np.arange(num_plans) if rows is None else np.asarray(rows, np.int64)
  plan_lengths = np.array([p.tokens.shape[0] for p in plans], np.int64)
  tokens = np.concatenate([p.tokens for p in plans]).astype(np.int32, copy=False)
  plan_start = exclusive_cumsum(plan_lengths)  # where each plan starts in `tokens`
  if spans is None:
    empty = [np.zeros(0, np.int64)]
    spans = (np.concatenate([np.asarray(p.starts, np.int64) for p in plans] + empty),
             np.concatenate([np.asarray(p.ends, np.int64) for p in plans] + empty),
             [len(p.starts) for p in plans])
  span_starts, span_ends, spans_per_plan = spans
  plan_of_span = np.repeat(np.arange(num_plans), spans_per_plan)
  span_starts = span_starts + plan_start[plan_of_span]
  span_ends = span_ends + plan_start[plan_of_span]
  span_lengths = span_ends - span_starts

  # Part A: keep every token but the 2nd.. of each span; the span's first token becomes its mask.
  num_tokens = tokens.shape[0]
  inside_span_tail = (np.bincount(span_starts + 1, minlength=num_tokens + 1)
                      - np.bincount(span_ends, minlength=num_tokens + 1)).cumsum()
  kept_in_part_a = inside_span_tail[:num_tokens] == 0
  part_a_tokens = tokens.copy()
  part_a_tokens[span_starts] = np.repeat(np.array([p.mask_id for p in plans], np.int32),
                                         spans_per_plan)
  part_a_length = plan_lengths - np.bincount(plan_of_span, weights=span_lengths - 1,
                                             minlength=num_plans).astype(np.int64)
  if np.any(part_a_length + np.bincount(plan_of_span, span_lengths + 1, num_plans) > seq_length):
    raise ValueError(f'a sample exceeds seq_length {seq_length}')
  part_a_plan = np.repeat(np.arange(num_plans), part_a_length)
  part_a_position = ranges_within(part_a_length)
  part_a_slot = row_of_plan[part_a_plan] * seq_length + part_a_position
  kept_tokens = part_a_tokens[kept_in_part_a]
  flat = {key: out[key].reshape(-1) for key in ('input_ids', 'target_ids', 'loss_mask',
                                                 'position_ids', 'block_position_ids')}
  flat['input_ids'][part_a_slot] = kept_tokens
  flat['target_ids'][part_a_slot] = kept_tokens
  flat['position_ids'][part_a_slot] = part_a_position

  # Part B: [sop] s1..sk -> s1..sk [eop] at the mask's Part-A position, block positions 1..k+1.
  part_a_index = exclusive_cumsum(kept_in_part_a)  # Part-A index of each token (concatenated)
  mask_position = (part_a_index[span_starts]
                   - exclusive_cumsum(part_a_length)[plan_of_span])
  block_lengths = span_lengths + 1  # [sop] + the span
  block_first = exclusive_cumsum(block_lengths)
  within_block = ranges_within(block_lengths)
  source_index = np.repeat(span_starts - 1, block_lengths) + within_block  # sop slot: start - 1
  block_plan = np.repeat(plan_of_span, block_lengths)
  part_b_length = np.bincount(plan_of_span, block_lengths, num_plans).astype(np.int64)
  part_b_slot = (row_of_plan[block_plan] * seq_length + part_a_length[block_plan]
                 + ranges_within(part_b_length))
  part_b_inputs = tokens[np.maximum(source_index, 0)]
  part_b_inputs[block_first] = sop_id
  part_b_targets = tokens[np.minimum(source_index + 1, num_tokens - 1)]
  part_b_targets[block_first + block_lengths - 1] = eop_id
  flat['input_ids'][part_b_slot] = part_b_inputs
  flat['target_ids'][part_b_slot] = part_b_targets
  flat['position_ids'][part_b_slot] = np.repeat(mask_position, block_lengths)
  flat['block_position_ids'][part_b_slot] = within_block + 1
  flat['loss_mask'][part_b_slot] = 1
  out['sep'][row_of_plan] = part_a_length
  return out


def exclusive_cumsum(counts) -> np.ndarray:
  """Where each group starts when groups of `counts` items are laid end to end:
  [0, c0, c0+c1, ...)."""
  counts = np.asarray(counts)
  return counts.cumsum() - counts


def ranges_within(lengths) -> np.ndarray:
  """0..len-1 for each group, concatenated: the index of every item inside its own group."""
  lengths = np.asarray(lengths, np.int64)
  return np.arange(int(lengths.sum())) - np.repeat(exclusive_cumsum(lengths), lengths)


def build_suffix_sample(tokens, division: int, *, gmask_id: int, sop_id: int) -> dict:
  """Document-level suffix form: `src [gMASK] [sop] tgt[:-1]` -> targets `src [gMASK] tgt`, no eop.

  `src = tokens[:division]`, `tgt = tokens[division:]`. Output length is `len(tokens) + 1`.
  """
  tokens = np.asarray(tokens, dtype=np.int32)
  n = tokens.shape[0]
  if not 0 < division < n:
    raise ValueError(f'suffix division must be in 1..{n - 1}, got {division}')
  src, tgt = tokens[:division], tokens[division:]
  sep = division + 1
  return {
      'input_ids': np.concatenate([src, [gmask_id, sop_id], tgt[:-1]]).astype(np.int32),
      'target_ids': np.concatenate([src, [gmask_id], tgt]).astype(np.int32),
      'loss_mask': np.concatenate([np.zeros(sep, np.int32), np.ones(n - division, np.int32)]),
      'position_ids': np.concatenate([np.arange(sep),
                                      np.full(n - division, division)]).astype(np.int32),
      'block_position_ids': np.concatenate([np.zeros(division, np.int32),
                                            np.arange(n - division + 1)]).astype(np.int32),
      'sep': int(sep),
  }


def pad_sample(sample: dict, seq_length: int, pad_id: int) -> dict:
  """Pads every array after Part B to `seq_length` (pad id for tokens, 0 elsewhere)."""
  out = {'sep': sample['sep']}
  length = sample['input_ids'].shape[0]
  if length > seq_length:
    raise ValueError(f'sample of length {length} exceeds seq_length {seq_length}')
  for key in ('input_ids', 'target_ids', 'loss_mask', 'position_ids', 'block_position_ids'):
    fill = pad_id if key in ('input_ids', 'target_ids') else 0
    arr = np.full(seq_length, fill, np.int32)
    arr[:length] = sample[key]
    out[key] = arr
  return out

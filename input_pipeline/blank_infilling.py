"""GLM autoregressive blank infilling: span sampling and the Part A / Part B sample layout.

Pure numpy, deterministic given a `np.random.Generator`. The objective is the GLM paper's
(arXiv 2103.10360, section 2.1 "Autoregressive Blank Infilling" and 2.3 "Multi-Task Pretraining");
the exact semantics follow THUDM/GLM `blocklm_utils.py` (tests/data holds its outputs); the code
is ours.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence, Union

import numpy as np

OBJECTIVES = ('token', 'sentence', 'document')
SPECIAL_KEYS = ('CLS', 'MASK', 'sMASK', 'gMASK', 'sop', 'eop', 'eos')


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

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
  """Where each group starts when groups of `counts` items are laid end to end: [0, c0, c0+c1, ...)."""
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
      'position_ids': np.concatenate([np.arange(sep), np.full(n - division, division)]).astype(np.int32),
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


# ---------------------------------------------------------------------------------------------
# Span samplers
# ---------------------------------------------------------------------------------------------

def span_length_cdf(poisson_lambda: float, max_span_length: int) -> np.ndarray:
  """CDF of Poisson(lambda) restricted to 1 .. max_span_length - 1 (as the original)."""
  ks = np.arange(1, max_span_length)
  log_pmf = ks * math.log(poisson_lambda) - poisson_lambda - np.array([math.lgamma(k + 1) for k in ks])
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


# ---------------------------------------------------------------------------------------------
# The sample maker
# ---------------------------------------------------------------------------------------------

class BlankInfilling:
  """Turns a `[CLS] ...` token window into one fixed-length GLM sample for a given objective.

  `fit(window, rng, objective)` consumes the longest prefix of `window` whose sample fills
  `seq_length` (cutting at a sentence end when one lies within `sentence_cut_slack`), and returns
  `(sample, n_used)`; `__call__` returns only the sample. Counted skips live in `self.stats`.
  Batches (the fast path): `draw` once, `plan` each sample (the prefix it uses is known at once,
  so the next window can follow), then `layout` all plans in one vectorized pass.
  """

  def __init__(self, special_ids: dict, seq_length: int, *, bert_prob: float = 1.0,
               gap_sentence_prob: float = 0.0, gpt_infill_prob: float = 0.5,
               gpt_min_ratio: float = 0.5, mask_ratio: float = 0.15,
               gap_sentence_ratio: float = 0.15, poisson_lambda: float = 3.0,
               max_span_length: int = 40, shuffle_spans: bool = True,
               sentence_end_ids: Iterable[int] = (), sentence_cut_slack: float = 0.05,
               task_mask: bool = True, block_mask_prob: float = 0.0,
               context_mask_ratio: float = 0.0):
    missing = [k for k in SPECIAL_KEYS if k not in special_ids]
    if missing:
      raise ValueError(f'special_ids lacks {missing}; pass a dict with keys {SPECIAL_KEYS}')
    if seq_length < 8:
      raise ValueError(f'seq_length must be >= 8, got {seq_length}')
    if not (0 <= bert_prob <= 1 and 0 <= gap_sentence_prob <= 1 - bert_prob + 1e-9):
      raise ValueError(f'need 0 <= bert_prob, gap_sentence_prob and their sum <= 1; got '
                       f'{bert_prob}, {gap_sentence_prob}')
    self.ids = {k: int(special_ids[k]) for k in SPECIAL_KEYS}
    for name, value in (('block_mask_prob', block_mask_prob), ('context_mask_ratio', context_mask_ratio)):
      if not 0 <= value < 1:
        raise ValueError(f'{name} must be in [0, 1), got {value}')
      if value > 0 and 'dBLOCK' not in special_ids:
        raise ValueError(f'{name}={value} needs a [dBLOCK] token, which this tokenizer lacks; '
                         f'use a tokenizer with [dBLOCK] or set {name}=0')
    self.block_mask_prob = block_mask_prob
    self.context_mask_ratio = context_mask_ratio
    self.dblock_id = int(special_ids['dBLOCK']) if block_mask_prob or context_mask_ratio else None
    self.seq_length = int(seq_length)
    self.bert_prob = bert_prob
    self.gap_sentence_prob = gap_sentence_prob
    self.gpt_infill_prob = gpt_infill_prob
    self.gpt_min_ratio = gpt_min_ratio
    self.mask_ratio = mask_ratio
    self.gap_sentence_ratio = gap_sentence_ratio
    self.shuffle_spans = shuffle_spans
    # Without the original's --task-mask, sentence and document blanks are [MASK] too.
    self.sentence_mask = 'sMASK' if task_mask else 'MASK'
    self.generation_mask = 'gMASK' if task_mask else 'MASK'
    self.cdf = span_length_cdf(poisson_lambda, max_span_length)
    self.slack = max(0, int(sentence_cut_slack * seq_length))
    end_ids = sorted(set(int(i) for i in sentence_end_ids))
    self._end_table = self._id_table(end_ids)
    self._cut_table = self._id_table(end_ids + [self.ids['eos']])
    self._bound_table = self._id_table([self.ids['CLS'], self.ids['eos']])
    self.stats = {'dropped_spans': 0, 'too_short': 0}
    self._m = int(mask_ratio * seq_length) + 2  # enough span lengths to cover any budget
    self._caps = seq_length - 2 * np.arange(self._m + 1)
    self._cap_targets = (mask_ratio * self._caps).astype(np.int64)

  # -- helpers ----------------------------------------------------------------------------------
  def choose_objective(self, rng: np.random.Generator) -> str:
    """Per-batch objective: token with bert_prob, sentence with gap_sentence_prob, else document."""
    u = rng.random()
    if u < self.bert_prob:
      return 'token'
    if u < self.bert_prob + self.gap_sentence_prob:
      return 'sentence'
    return 'document'

  def _id_table(self, ids) -> np.ndarray:
    """Membership table for token ids: `table.take(tokens, mode='clip')` is one numpy call; ids
    past the table clip onto its last entry, which is always False."""
    table = np.zeros(max(list(ids) + list(self.ids.values())) + 2, bool)
    table[list(ids)] = True
    return table

  def is_sentence_end(self, tokens: np.ndarray) -> np.ndarray:
    """Per token, whether it ends a sentence (sentence spans and cuts need it)."""
    return self._end_table.take(tokens, mode='clip')

  def _cut(self, window: np.ndarray, n_cap: int) -> int:
    """Prefix length <= n_cap, ending at a sentence end or eos when one is within the slack."""
    if window.shape[0] <= n_cap:
      return int(window.shape[0])
    lo = max(1, n_cap - self.slack)
    tail = window[lo:n_cap]
    ends = self._cut_table.take(tail, mode='clip').nonzero()[0]
    return int(lo + ends[-1] + 1) if ends.size else int(n_cap)

  def _plan(self, tokens, starts, ends, mask_key) -> Plan:
    return SpanPlan(tokens, starts, ends, self.ids[mask_key])

  # -- objectives -------------------------------------------------------------------------------
  def draw(self, rng: np.random.Generator, objective: str, batch_size: int, single_span: bool = False):
    """Pre-draws a batch's randomness for the token objective (None for the others).

    One call per batch instead of several per sample: span lengths (`lengths`, `cum`), keys for
    the order spans are placed in and for the Part-B order, and uniforms for span placement.
    `single_span`: one span per sample (the original's `single_span_prob` batches). The document
    objective draws one uniform for the whole batch: the original draws one generation length
    per micro-batch.
    """
    if objective == 'document':
      return {'generation_u': float(rng.random())}
    if objective != 'token':
      return None
    u = rng.random((4, batch_size, self._m))
    lengths = self.cdf.searchsorted(u[0], side='right') + 1
    cum = np.zeros((batch_size, self._m + 1), np.int64)
    cum[:, 1:] = lengths.cumsum(axis=1)
    # Span count whose budget fixes how many raw tokens fit, for windows of >= seq_length tokens.
    k_full = (cum >= self._cap_targets).argmax(axis=1)
    return {'lengths': lengths, 'cum': cum, 'k_full': k_full, 'place_keys': u[1],
            'uniforms': u[2], 'order_keys': u[3], 'single_span': single_span}

  def _token(self, window, draws, b) -> Plan:
    cum = draws['cum'][b]
    if draws.get('single_span'):
      k_budget = 1
    elif window.shape[0] >= self.seq_length:
      k_budget = int(draws['k_full'][b])
    else:
      n_caps = np.minimum(window.shape[0], self._caps)
      k_budget = int((cum >= (self.mask_ratio * n_caps).astype(np.int64)).argmax())
    n = self._cut(window, min(window.shape[0], int(self._caps[k_budget])))
    tokens = window[:n]
    k = 1 if draws.get('single_span') else int(cum.searchsorted(int(self.mask_ratio * n)))
    seg_starts, seg_lens = content_segments(tokens, self.ids['CLS'], self.ids['eos'], exclude_last=True,
                                            boundaries=self._bound_table.take(tokens, mode='clip'))
    keys = draws['order_keys'][b] if self.shuffle_spans else None
    if k == 0 or not seg_lens:
      self.stats['too_short'] += int(k > 0)
      return UnplacedSpanPlan(tokens, self.ids['MASK'], ([], draws['uniforms'][b], keys))
    lengths = draws['lengths'][b, :k][draws['place_keys'][b, :k].argsort()].tolist()
    alloc, dropped = allocate_lengths(lengths, seg_lens, self.mask_ratio)
    self.stats['dropped_spans'] += dropped
    segments = [(st, ln, lens) for lens, st, ln in zip(alloc, seg_starts, seg_lens) if lens]
    return UnplacedSpanPlan(tokens, self.ids['MASK'], (segments, draws['uniforms'][b], keys))

  def _sentence(self, window, rng) -> Plan:
    S = self.seq_length
    guess = 2
    while True:
      n = self._cut(window, max(2, S - 2 * guess))
      tokens = window[:n]
      sents = sentence_spans(tokens, self.is_sentence_end(tokens), self.ids['CLS'], self.ids['eos'])
      sents = sents[rng.permutation(len(sents))]
      covered = np.cumsum(sents[:, 1] - sents[:, 0])
      target = int(self.gap_sentence_ratio * n)
      # As the original: sentences are taken until they cover the target, at least one.
      k = min(len(sents), int(np.searchsorted(covered, target, side='left')) + 1)
      if n + 2 * k <= S:
        break
      guess = k
    if k == 0:
      self.stats['too_short'] += 1
    chosen = sents[:k] if self.shuffle_spans else sents[:k][sents[:k, 0].argsort()]
    return self._plan(tokens, chosen[:, 0], chosen[:, 1], self.sentence_mask)

  def _document(self, window, rng, draws=None) -> Plan:
    S = self.seq_length
    suffix = rng.random() < self.gpt_infill_prob
    n = self._cut(window, S - 1 if suffix else S - 2)
    tokens = window[:n]
    eos_at = np.flatnonzero(tokens[:-1] == self.ids['eos'])
    suffix = suffix or eos_at.size > 0  # several documents: always the suffix form
    if n < 3:
      self.stats['too_short'] += 1
      return self._plan(tokens, (), (), self.generation_mask)
    low = max(1, int(self.gpt_min_ratio * n))
    high = max(low, n - 2)
    if draws is not None:  # shared by the micro-batch: equal lengths give equal generation lengths
      gen = low + min(int(draws['generation_u'] * (high - low + 1)), high - low)
    else:
      gen = int(rng.integers(low, high + 1))
    if suffix:
      return SuffixPlan(tokens, self.ids[self.generation_mask], division=n - gen)
    start = 1 + int(rng.integers(0, n - 2 - gen + 1))
    return self._plan(tokens, (start,), (start + gen,), self.generation_mask)

  # -- public -----------------------------------------------------------------------------------
  def plan(self, window, rng: np.random.Generator, objective: str, draws=None, b: int = 0) -> Plan:
    """Chooses the longest prefix of `window` that fits and its spans; `len(plan.tokens)` is used.

    `draws` (from `draw`) and row `b` supply the token objective's randomness, and the
    document objective's generation length shared by the batch.
    """
    window = np.asarray(window)
    if window.ndim != 1 or window.shape[0] == 0 or window[0] != self.ids['CLS']:
      raise ValueError('tokens must be a non-empty 1-D array starting with [CLS] '
                       f'(id {self.ids["CLS"]})')
    if objective == 'token':
      return self._token(window, draws if draws is not None else self.draw(rng, objective, 1), b)
    if objective == 'sentence':
      return self._sentence(window, rng)
    if objective == 'document':
      return self._document(window, rng, draws)
    raise ValueError(f'objective must be one of {OBJECTIVES}, got {objective!r}')

  def layout(self, plans: Sequence[Plan], batch_size: int | None = None) -> dict:
    """`[batch_size, seq_length]` arrays (and `sep`) for `plans`; missing rows are padding."""
    ids = self.ids
    batch_size = len(plans) if batch_size is None else batch_size
    pending = [p.placement for p in plans if isinstance(p, UnplacedSpanPlan)]
    if pending and len(pending) == len(plans):  # token objective: place the whole batch at once
      return layout_batch(plans, self.seq_length, sop_id=ids['sop'], eop_id=ids['eop'],
                          pad_id=ids['eos'], batch_size=batch_size, spans=place_batch(pending))
    if pending:  # objectives mixed within the batch: place all pending spans in one call
      starts, ends, counts = place_batch(pending)
      bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
      plans = list(plans)
      pending_rows = [i for i, p in enumerate(plans) if isinstance(p, UnplacedSpanPlan)]
      for i, lo, hi in zip(pending_rows, bounds[:-1], bounds[1:]):
        plans[i] = SpanPlan(plans[i].tokens, starts[lo:hi], ends[lo:hi], plans[i].mask_id)
    spans = [i for i, p in enumerate(plans) if not isinstance(p, SuffixPlan)]
    out = layout_batch([plans[i] for i in spans], self.seq_length, sop_id=ids['sop'],
                       eop_id=ids['eop'], pad_id=ids['eos'], batch_size=batch_size, rows=spans)
    for i, p in enumerate(plans):  # suffix-form rows (document objective), one by one
      if isinstance(p, SuffixPlan):
        sample = pad_sample(build_suffix_sample(p.tokens, p.division, gmask_id=p.mask_id,
                                                sop_id=ids['sop']), self.seq_length, ids['eos'])
        for key in out:
          out[key][i] = sample[key]
    return out

  def block_mask(self, out: dict, rows: Sequence[int], rng: np.random.Generator) -> None:
    """The original's `block_mask_prob` (token objective only): each Part-B input token but the
    sop becomes [dBLOCK] with that probability; targets stay. In place on `layout`'s arrays."""
    if not self.block_mask_prob or not len(rows):
      return
    rows = np.asarray(rows, np.int64)
    inputs = out['input_ids'][rows]
    span_tokens = (out['loss_mask'][rows] > 0) & (out['block_position_ids'][rows] > 1)
    hit = span_tokens & (rng.random(inputs.shape) < self.block_mask_prob)
    out['input_ids'][rows] = np.where(hit, self.dblock_id, inputs)

  def context_mask(self, out: dict, rows: Sequence[int], rng: np.random.Generator,
                   mask_range: int = 3) -> None:
    """The original's `context_mask_ratio` (token objective only): `int(ratio * n)` Part-A inputs,
    drawn among the first and last `mask_range` tokens of each text run between blanks (not the
    start of the first run), become [dBLOCK]; targets stay. In place on `layout`'s arrays."""
    if not self.context_mask_ratio:
      return
    mask_id = self.ids['MASK']
    for row in rows:
      sep = int(out['sep'][row])
      blanks = np.flatnonzero(out['input_ids'][row, :sep] == mask_id)
      n = sep + int(out['loss_mask'][row].sum()) - 2 * blanks.shape[0]  # the raw tokens
      edges = np.concatenate([[-1], blanks, [sep]])
      candidates = set()
      for start, end in zip(edges[:-1] + 1, edges[1:]):  # the text runs between blanks
        if start != 0:
          candidates.update(range(start, min(end, start + mask_range)))
        candidates.update(range(max(start, end - mask_range), end))
      count = min(len(candidates), int(self.context_mask_ratio * n))
      if count:
        picked = rng.choice(np.array(sorted(candidates)), count, replace=False)
        out['input_ids'][row, picked] = self.dblock_id

  def random_positions(self, out: dict, plans: Sequence[Plan], rng: np.random.Generator,
                       max_positions: int) -> None:
    """The original's `random_position`: each sample's positions (Part A and B) shift by a
    uniform bias in [0, max_positions - sep], so training reaches every position row. Not for
    the document objective's suffix form (the original shifts only `make_block_data` layouts)."""
    for row, plan in enumerate(plans):
      last = int(out['sep'][row]) - 1
      if isinstance(plan, SuffixPlan) or last >= max_positions - 1:
        continue
      length = int(out['sep'][row] + out['loss_mask'][row].sum())
      out['position_ids'][row, :length] += int(rng.integers(0, max_positions - last))

  def fit(self, window, rng: np.random.Generator, objective: str):
    """Builds a padded sample from the longest prefix of `window` that fits; returns (sample, n_used)."""
    plan = self.plan(window, rng, objective)
    out = self.layout([plan])
    if objective == 'token':
      self.block_mask(out, [0], rng)
      self.context_mask(out, [0], rng)
    sample = {k: v[0] for k, v in out.items()}
    sample['sep'] = int(sample['sep'])
    return sample, int(plan.tokens.shape[0])

  def __call__(self, tokens, rng: np.random.Generator, objective: str) -> dict:
    """One padded sample; tokens that do not fit in seq_length are cut (see `fit`)."""
    return self.fit(tokens, rng, objective)[0]

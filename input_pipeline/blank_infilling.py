"""GLM autoregressive blank infilling: span sampling and the Part A / Part B sample layout.

Pure numpy, deterministic given a `np.random.Generator`. See GLM_SPEC.md, "Autoregressive blank
infilling" and "Span sampling". Semantics follow THUDM/GLM `blocklm_utils.py`; the code is ours.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

OBJECTIVES = ('token', 'sentence', 'document')
SPECIAL_KEYS = ('CLS', 'MASK', 'sMASK', 'gMASK', 'sop', 'eop', 'eos')


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

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
  out = _layout(tokens, starts, ends, n + 2 * len(starts), mask_id, sop_id, eop_id, 0)
  return out


def _layout(tokens, starts, ends, out_len, mask_id, sop_id, eop_id, pad_id) -> dict:
  """Fills arrays of `out_len` with Part A, Part B, then padding. Spans: non-overlapping, B order."""
  n = tokens.shape[0]
  k = starts.shape[0]
  lens = ends - starts
  # Part A: drop every span token but the first, which becomes the mask.
  keep = np.ones(n + 1, bool)
  if k:
    depth = (np.bincount(starts + 1, minlength=n + 1) - np.bincount(ends, minlength=n + 1)).cumsum()
    keep = depth == 0  # depth counts span tokens after each span's first token
  keep = keep[:n]
  a_tok = tokens.copy()
  a_tok[starts] = mask_id
  part_a = a_tok[keep]
  sep = part_a.shape[0]
  # Position of each span's mask in Part A = start - tokens removed before it.
  order = starts.argsort()
  removed_before = np.empty(k, np.int64)
  removed_before[order] = (lens[order] - 1).cumsum() - (lens[order] - 1)
  mask_pos = starts - removed_before
  # Part B: [sop] s1..sk -> s1..sk [eop], position = mask position, block positions 1..k+1.
  blen = lens + 1
  total = int(blen.sum())
  first = blen.cumsum() - blen
  offset = np.arange(total) - np.repeat(first, blen)
  src = np.repeat(starts - 1, blen) + offset  # input token index (sop slot -> start - 1)
  input_ids = np.full(out_len, pad_id, np.int32)
  target_ids = np.full(out_len, pad_id, np.int32)
  position_ids = np.zeros(out_len, np.int32)
  block_ids = np.zeros(out_len, np.int32)
  loss_mask = np.zeros(out_len, np.int32)
  end = sep + total
  input_ids[:sep] = part_a
  target_ids[:sep] = part_a
  position_ids[:sep] = np.arange(sep)
  b_in = tokens[np.maximum(src, 0)]
  b_in[first] = sop_id
  b_tgt = tokens[np.minimum(src + 1, n - 1)]
  b_tgt[first + blen - 1] = eop_id
  input_ids[sep:end] = b_in
  target_ids[sep:end] = b_tgt
  position_ids[sep:end] = np.repeat(mask_pos, blen)
  block_ids[sep:end] = offset + 1
  loss_mask[sep:end] = 1
  return {'input_ids': input_ids, 'target_ids': target_ids, 'loss_mask': loss_mask,
          'position_ids': position_ids, 'block_position_ids': block_ids, 'sep': int(sep)}


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


def content_segments(tokens: np.ndarray, cls_id: int, eos_id: int, exclude_last: bool):
  """Runs of document tokens (no [CLS] / eos); `(start, length)` pairs. Never the first token."""
  content = (tokens != cls_id) & (tokens != eos_id)
  content[0] = False
  if exclude_last:
    content[-1] = False
  edges = np.diff(np.concatenate([[0], content.view(np.int8), [0]]))
  starts = np.flatnonzero(edges == 1)
  ends = np.flatnonzero(edges == -1)
  return starts, ends - starts


def place_spans(lengths: np.ndarray, offset: int, length: int, rng: np.random.Generator) -> np.ndarray:
  """Places spans of `lengths` (in that order) uniformly in `[offset, offset+length)`, gaps >= 1."""
  k = lengths.shape[0]
  free = length - int(lengths.sum()) - k + 1
  places = (rng.random(k) * (free + 1)).astype(np.int64)
  places.sort()
  starts = offset + places + (lengths + 1).cumsum() - (lengths + 1)
  return np.stack([starts, starts + lengths], axis=1)


def allocate_lengths(lengths: np.ndarray, seg_lengths: np.ndarray, ratio: float):
  """Splits span lengths across documents as the original does; returns per-segment lists and drops.

  Shorter documents first, each up to `ratio` of its length; the longest takes what still fits.
  """
  if len(seg_lengths) == 1:  # one document: take what fits with gaps
    fits = lengths.cumsum() + np.arange(len(lengths)) <= seg_lengths[0]
    count = int(fits.argmin()) if not fits.all() else len(lengths)
    return [lengths[:count]], len(lengths) - count
  order = np.argsort(seg_lengths, kind='stable')
  alloc = [None] * len(seg_lengths)
  i = 0
  for rank, seg in enumerate(order):
    seg_len = int(seg_lengths[seg])
    taken, count = 0, 0
    if rank < len(order) - 1:
      budget = int(seg_len * ratio)
      while i + count < len(lengths) and taken + lengths[i + count] <= budget:
        taken += lengths[i + count]
        count += 1
    else:
      while i + count < len(lengths) and taken + lengths[i + count] + count <= seg_len:
        taken += lengths[i + count]
        count += 1
    alloc[seg] = lengths[i:i + count]
    i += count
  return alloc, len(lengths) - i


def sentence_spans(tokens: np.ndarray, is_end: np.ndarray, cls_id: int, eos_id: int) -> np.ndarray:
  """Whole sentences inside documents as `[start, end)`; a sentence ends at an end token or the doc end."""
  content = (tokens != cls_id) & (tokens != eos_id)
  content[0] = False
  nxt = np.concatenate([content[1:], [False]])
  prev_end = np.concatenate([[True], ~content[:-1] | is_end[:-1]])
  starts = np.flatnonzero(content & prev_end)
  ends = np.flatnonzero(content & (is_end | ~nxt)) + 1
  return np.stack([starts, ends], axis=1)


# ---------------------------------------------------------------------------------------------
# The sample maker
# ---------------------------------------------------------------------------------------------

class BlankInfilling:
  """Turns a `[CLS] ...` token window into one fixed-length GLM sample for a given objective.

  `fit(window, rng, objective)` consumes the longest prefix of `window` whose sample fills
  `seq_length` (cutting at a sentence end when one lies within `sentence_cut_slack`), and returns
  `(sample, n_used)`; `__call__` returns only the sample. Counted skips live in `self.stats`.
  """

  def __init__(self, special_ids: dict, seq_length: int, *, bert_prob: float = 1.0,
               gap_sentence_prob: float = 0.0, gpt_infill_prob: float = 0.5,
               gpt_min_ratio: float = 0.5, mask_ratio: float = 0.15,
               gap_sentence_ratio: float = 0.15, poisson_lambda: float = 3.0,
               max_span_length: int = 40, shuffle_spans: bool = True,
               sentence_end_ids: Iterable[int] = (), sentence_cut_slack: float = 0.05,
               **unused_knobs):
    missing = [k for k in SPECIAL_KEYS if k not in special_ids]
    if missing:
      raise ValueError(f'special_ids lacks {missing}; pass a dict with keys {SPECIAL_KEYS}')
    if seq_length < 8:
      raise ValueError(f'seq_length must be >= 8, got {seq_length}')
    if not (0 <= bert_prob <= 1 and 0 <= gap_sentence_prob <= 1 - bert_prob + 1e-9):
      raise ValueError(f'need 0 <= bert_prob, gap_sentence_prob and their sum <= 1; got '
                       f'{bert_prob}, {gap_sentence_prob}')
    self.ids = {k: int(special_ids[k]) for k in SPECIAL_KEYS}
    self.seq_length = int(seq_length)
    self.bert_prob = bert_prob
    self.gap_sentence_prob = gap_sentence_prob
    self.gpt_infill_prob = gpt_infill_prob
    self.gpt_min_ratio = gpt_min_ratio
    self.mask_ratio = mask_ratio
    self.gap_sentence_ratio = gap_sentence_ratio
    self.shuffle_spans = shuffle_spans
    self.cdf = span_length_cdf(poisson_lambda, max_span_length)
    self.slack = max(0, int(sentence_cut_slack * seq_length))
    end_ids = np.asarray(sorted(set(int(i) for i in sentence_end_ids)), np.int64)
    self._end_table = np.zeros(int(end_ids.max()) + 1 if end_ids.size else 1, bool)
    self._end_table[end_ids] = True
    self._end_table_ids = end_ids
    self.stats = {'dropped_spans': 0, 'too_short': 0}
    self._m = int(mask_ratio * seq_length) + 2  # enough span lengths to cover any budget
    self._caps = seq_length - 2 * np.arange(self._m + 1)

  # -- helpers ----------------------------------------------------------------------------------
  def choose_objective(self, rng: np.random.Generator) -> str:
    """Per-batch objective: token with bert_prob, sentence with gap_sentence_prob, else document."""
    u = rng.random()
    if u < self.bert_prob:
      return 'token'
    if u < self.bert_prob + self.gap_sentence_prob:
      return 'sentence'
    return 'document'

  def is_sentence_end(self, tokens: np.ndarray) -> np.ndarray:
    table = self._end_table
    return table[np.minimum(tokens, table.shape[0] - 1)] & (tokens < table.shape[0])

  def _cut(self, window: np.ndarray, n_cap: int) -> int:
    """Prefix length <= n_cap, ending at a sentence end or eos when one is within the slack."""
    if window.shape[0] <= n_cap:
      return int(window.shape[0])
    lo = max(1, n_cap - self.slack)
    tail = window[lo:n_cap]
    ends = np.flatnonzero(self.is_sentence_end(tail) | (tail == self.ids['eos']))
    return int(lo + ends[-1] + 1) if ends.size else int(n_cap)

  def _blocks(self, tokens, spans, mask_key):
    """Padded layout of `tokens` with `spans` (Part-B order)."""
    spans = np.asarray(spans, np.int64).reshape(-1, 2)
    return _layout(tokens, spans[:, 0], spans[:, 1], self.seq_length, self.ids[mask_key],
                   self.ids['sop'], self.ids['eop'], self.ids['eos'])

  # -- objectives -------------------------------------------------------------------------------
  def _token(self, window, rng):
    S = self.seq_length
    # Draw enough span lengths up front; the budget fixes how many raw tokens fit in S.
    m = self._m
    lengths = self.cdf.searchsorted(rng.random(m), side='right') + 1
    cum = np.zeros(m + 1, np.int64)
    cum[1:] = lengths.cumsum()
    n_caps = np.minimum(window.shape[0], self._caps)
    k_budget = int((cum >= (self.mask_ratio * n_caps).astype(np.int64)).argmax())
    n = self._cut(window, int(n_caps[k_budget]))
    tokens = window[:n]
    k = int((cum >= int(self.mask_ratio * n)).argmax())
    lengths = rng.permutation(lengths[:k])
    seg_starts, seg_lens = content_segments(tokens, self.ids['CLS'], self.ids['eos'], exclude_last=True)
    if k == 0 or seg_lens.size == 0:
      self.stats['too_short'] += int(k > 0)
      return self._blocks(tokens, [], 'MASK'), n
    alloc, dropped = allocate_lengths(lengths, seg_lens, self.mask_ratio)
    self.stats['dropped_spans'] += dropped
    spans = [place_spans(a, int(s), int(l), rng) for a, s, l in zip(alloc, seg_starts, seg_lens) if len(a)]
    spans = np.concatenate(spans) if spans else np.zeros((0, 2), np.int64)
    if self.shuffle_spans:
      spans = spans[rng.permutation(len(spans))]
    return self._blocks(tokens, spans, 'MASK'), n

  def _sentence(self, window, rng):
    S = self.seq_length
    guess = 2
    while True:
      n = self._cut(window, max(2, S - 2 * guess))
      tokens = window[:n]
      sents = sentence_spans(tokens, self.is_sentence_end(tokens), self.ids['CLS'], self.ids['eos'])
      sents = sents[rng.permutation(len(sents))]
      covered = np.cumsum(sents[:, 1] - sents[:, 0])
      target = int(self.gap_sentence_ratio * n)
      k = min(len(sents), int(np.searchsorted(covered, target, side='left')) + 1) if target > 0 else 0
      if n + 2 * k <= S:
        break
      guess = k
    if k == 0:
      self.stats['too_short'] += 1
    return self._blocks(tokens, sents[:k], 'sMASK'), n

  def _document(self, window, rng):
    S = self.seq_length
    suffix = rng.random() < self.gpt_infill_prob
    n = self._cut(window, S - 1 if suffix else S - 2)
    tokens = window[:n]
    eos_at = np.flatnonzero(tokens[:-1] == self.ids['eos'])
    suffix = suffix or eos_at.size > 0  # several documents: always the suffix form
    if n < 3:
      self.stats['too_short'] += 1
      return self._blocks(tokens, [], 'gMASK'), n
    low = max(1, int(self.gpt_min_ratio * n))
    gen = int(rng.integers(low, max(low, n - 2) + 1))
    if suffix:
      sample = build_suffix_sample(tokens, n - gen, gmask_id=self.ids['gMASK'], sop_id=self.ids['sop'])
      return pad_sample(sample, S, self.ids['eos']), n
    start = 1 + int(rng.integers(0, n - 2 - gen + 1))
    return self._blocks(tokens, [(start, start + gen)], 'gMASK'), n

  # -- public -----------------------------------------------------------------------------------
  def fit(self, window, rng: np.random.Generator, objective: str):
    """Builds a padded sample from the longest prefix of `window` that fits; returns (sample, n_used)."""
    window = np.asarray(window)
    if window.ndim != 1 or window.shape[0] == 0 or window[0] != self.ids['CLS']:
      raise ValueError('tokens must be a non-empty 1-D array starting with [CLS] '
                       f'(id {self.ids["CLS"]})')
    if objective == 'token':
      sample, n = self._token(window, rng)
    elif objective == 'sentence':
      sample, n = self._sentence(window, rng)
    elif objective == 'document':
      sample, n = self._document(window, rng)
    else:
      raise ValueError(f'objective must be one of {OBJECTIVES}, got {objective!r}')
    return sample, n

  def __call__(self, tokens, rng: np.random.Generator, objective: str) -> dict:
    """One padded sample; tokens that do not fit in seq_length are cut (see `fit`)."""
    return self.fit(tokens, rng, objective)[0]

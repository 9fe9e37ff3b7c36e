"""GLM autoregressive blank infilling: the sample maker that turns token windows into samples.

Pure numpy, deterministic given a `np.random.Generator`. The objective is the GLM paper's
(arXiv 2103.10360, section 2.1 "Autoregressive Blank Infilling" and 2.3 "Multi-Task Pretraining");
the exact semantics follow THUDM/GLM `blocklm_utils.py` (tests/data holds its outputs); the code
is ours. The spans come from `span_sampling.py`, the Part A / Part B layout from `sample_layout.py`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from input_pipeline.sample_layout import (Plan, SpanPlan, SuffixPlan, UnplacedSpanPlan,
                                          build_suffix_sample, layout_batch, pad_sample)
from input_pipeline.span_sampling import (allocate_lengths, content_segments, place_batch,
                                          sentence_spans, span_length_cdf)

OBJECTIVES = ('token', 'sentence', 'document')
SPECIAL_KEYS = ('CLS', 'MASK', 'sMASK', 'gMASK', 'sop', 'eop', 'eos')


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
    for name, value in (('block_mask_prob', block_mask_prob),
                        ('context_mask_ratio', context_mask_ratio)):
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
  def draw(self, rng: np.random.Generator, objective: str, batch_size: int,
           single_span: bool = False):
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
    seg_starts, seg_lens = content_segments(tokens, self.ids['CLS'], self.ids['eos'],
                                            exclude_last=True,
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
    """Builds a padded sample from the longest prefix of `window` that fits; returns
    (sample, n_used)."""
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

"""The token objective and `block_mask_prob` against THUDM/GLM's ConstructBlockStrategy
(4f61ed7): statistics over 10,000 windows (the random streams cannot be aligned). Fixture:
tests/data/original_token_stats.json, see tests/data/README.md."""

import json
import os

import numpy as np
import pytest

from input_pipeline import blank_infilling as bi_lib
from tests import original_windows as w

DATA = os.path.join(os.path.dirname(__file__), 'data', 'original_token_stats.json')


@pytest.fixture(scope='module')
def ours_and_original():
  with open(DATA) as f:
    stats = json.load(f)
  bi = bi_lib.BlankInfilling(w.IDS, 1024 + 16, block_mask_prob=stats['block_mask_prob'],
                             mask_ratio=stats['mask_ratio'],
                             poisson_lambda=float(stats['average_block_length']))
  rng = np.random.default_rng(0)
  counts, lengths, fractions, dblock, span_tokens = [], [], [], 0, 0
  for seed in range(20000, 20000 + stats['samples'] + len(stats['dropped_seeds'])):
    if seed in stats['dropped_seeds']:  # the original dropped these samples (spans did not fit)
      continue
    tokens = w.window(seed, max_length=500)
    sample, used = bi.fit(tokens, rng, 'token')
    assert used == len(tokens)
    sep, block = sample['sep'], sample['block_position_ids']
    part_b = np.arange(block.shape[0]) >= sep
    starts = np.flatnonzero(part_b & (block == 1))
    span_len = np.diff(np.append(starts, sep + int(sample['loss_mask'].sum()))) - 1
    counts.append(len(starts))
    lengths += span_len.tolist()
    fractions.append(span_len.sum() / len(tokens))
    inner = sample['input_ids'][part_b & (block > 1) & (sample['loss_mask'] > 0)]
    dblock += int((inner == w.IDS['dBLOCK']).sum())
    span_tokens += inner.size
  ours = dict(mean_spans=np.mean(counts), mean_span_length=np.mean(lengths),
              mean_masked_fraction=np.mean(fractions), dblock_fraction=dblock / span_tokens)
  return ours, stats


@pytest.mark.slow
@pytest.mark.parametrize('key', ['mean_spans', 'mean_span_length', 'mean_masked_fraction'])
def test_token_span_statistics_match_the_original_over_10000_windows(ours_and_original, key):
  ours, original = ours_and_original
  assert abs(ours[key] / original[key] - 1) < 0.01, (ours[key], original[key])


def test_dblock_fraction_matches_the_original_over_10000_windows(ours_and_original):
  ours, original = ours_and_original
  assert abs(ours['dblock_fraction'] - original['dblock_fraction']) < 0.01 * original['dblock_fraction'] + 0.001


def test_block_masking_leaves_targets_sop_and_part_a_alone():
  bi = bi_lib.BlankInfilling(w.IDS, 256, block_mask_prob=0.5)
  plain = bi_lib.BlankInfilling(w.IDS, 256)
  tokens = w.window(3, max_length=200)
  masked, _ = bi.fit(tokens, np.random.default_rng(1), 'token')
  clean, _ = plain.fit(tokens, np.random.default_rng(1), 'token')
  changed = masked['input_ids'] != clean['input_ids']
  assert changed.any()
  assert (masked['input_ids'][changed] == w.IDS['dBLOCK']).all()
  assert (masked['block_position_ids'][changed] > 1).all() and (np.flatnonzero(changed) >= clean['sep']).all()
  for key in ('target_ids', 'loss_mask', 'position_ids', 'block_position_ids'):
    np.testing.assert_array_equal(masked[key], clean[key])
  for objective in ('sentence', 'document'):  # the original masks blocks of the token objective only
    s, _ = bi.fit(tokens, np.random.default_rng(2), objective)
    assert w.IDS['dBLOCK'] not in s['input_ids']


def test_block_mask_prob_without_a_dblock_token_is_named():
  ids = {k: v for k, v in w.IDS.items() if k != 'dBLOCK'}
  with pytest.raises(ValueError, match=r'block_mask_prob=0.1 needs a \[dBLOCK\]'):
    bi_lib.BlankInfilling(ids, 64, block_mask_prob=0.1)


def test_single_span_batches_match_the_original_over_10000_windows():
  with open(os.path.join(os.path.dirname(__file__), 'data', 'original_single_span_stats.json')) as f:
    stats = json.load(f)
  bi = bi_lib.BlankInfilling(w.IDS, 512)
  rng = np.random.default_rng(0)
  counts, lengths = [], []
  for seed in range(40000, 50000):
    tokens = w.window(seed, max_length=200)
    draws = bi.draw(rng, 'token', 1, single_span=True)
    out = bi.layout([bi.plan(tokens, rng, 'token', draws, 0)])
    sep = int(out['sep'][0])
    counts.append(int((out['block_position_ids'][0, sep:] == 1).sum()))
    if counts[-1]:
      lengths.append(int(out['loss_mask'][0].sum()) - 1)
  counts = np.array(counts)
  assert set(counts.tolist()) <= {0, 1} and stats['span_counts'] == [1]
  # Where the drawn span does not fit, the original returns no sample and we one without spans.
  lost = np.mean(counts == 0)
  assert abs(lost - len(stats['dropped_seeds']) / 10000) < 0.005, lost
  assert abs(np.mean(lengths) / stats['mean_span_length'] - 1) < 0.01, (np.mean(lengths), stats)


def test_context_mask_hits_part_a_tokens_at_the_edges_of_text_runs_only():
  bi = bi_lib.BlankInfilling(w.IDS, 600, context_mask_ratio=0.05)
  plain = bi_lib.BlankInfilling(w.IDS, 600)
  for seed in range(20):
    tokens = w.window(100 + seed, max_length=500)
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    clean = plain.layout([plain.plan(tokens, rng_a, 'token')])
    out = bi.layout([bi.plan(tokens, rng_b, 'token')])
    bi.context_mask(out, [0], rng_b)
    changed = np.flatnonzero(out['input_ids'][0] != clean['input_ids'][0])
    sep = int(clean['sep'][0])
    blanks = np.flatnonzero(clean['input_ids'][0, :sep] == w.IDS['MASK'])
    n = sep + int(clean['loss_mask'][0].sum()) - 2 * len(blanks)
    assert len(changed) == int(0.05 * n)
    assert (out['input_ids'][0, changed] == w.IDS['dBLOCK']).all() and (changed < sep).all()
    # next to a blank, or among Part A's last 3 tokens (the original's last text run counts too)
    assert all(np.abs(blanks - c).min() <= 3 or c >= sep - 3 for c in changed)
    np.testing.assert_array_equal(out['target_ids'], clean['target_ids'])


def test_document_objective_without_task_mask_matches_the_original_over_10000_windows():
  with open(os.path.join(os.path.dirname(__file__), 'data', 'original_document_stats.json')) as f:
    stats = json.load(f)
  ids = {k: v for k, v in w.IDS.items() if k != 'dBLOCK'}
  bi = bi_lib.BlankInfilling(ids, 512, bert_prob=0.0, gpt_min_ratio=stats['gpt_min_ratio'],
                             gpt_infill_prob=stats['gpt_infill_prob'], task_mask=stats['task_mask'])
  rng = np.random.default_rng(0)
  suffix, fractions, masks = [], [], set()
  for seed in range(60000, 70000):
    tokens = w.window(seed, max_length=200)
    if len(tokens) < 4:
      continue
    sample, used = bi.fit(tokens, rng, 'document')
    assert used == len(tokens)
    sep, loss = sample['sep'], int(sample['loss_mask'].sum())
    is_suffix = sample['target_ids'][sep + loss - 1] != w.IDS['eop']
    suffix.append(is_suffix)
    fractions.append((loss if is_suffix else loss - 1) / len(tokens))
    part_a = sample['input_ids'][:sep]
    masks.update(part_a[np.isin(part_a, [ids['MASK'], ids['sMASK'], ids['gMASK']])].tolist())
  assert len(suffix) == stats['samples']
  assert sorted(masks) == stats['part_a_mask_ids'] == [ids['MASK']]
  assert abs(np.mean(suffix) - stats['suffix_fraction']) < 0.01
  assert abs(np.mean(fractions) / stats['mean_generated_fraction'] - 1) < 0.01


def test_random_position_bias_matches_the_original_over_10000_windows():
  with open(os.path.join(os.path.dirname(__file__), 'data', 'original_random_position_stats.json')) as f:
    stats = json.load(f)
  bi = bi_lib.BlankInfilling(w.IDS, 512)
  rng = np.random.default_rng(0)
  dropped = set(stats['dropped_seeds'])
  biases, top = [], 0
  for seed in range(80000, 90000):
    if seed in dropped:
      continue
    tokens = w.window(seed, max_length=200)
    plan = bi.plan(tokens, rng, 'token')
    out = bi.layout([plan])
    bi.random_positions(out, [plan], rng, stats['max_seq_length'])
    biases.append(int(out['position_ids'][0, 0]))  # [CLS] sits at position 0 before the shift
    top = max(top, int(out['position_ids'][0].max()))
  assert len(biases) == stats['samples']
  assert abs(np.mean(biases) / stats['mean_bias'] - 1) < 0.01, (np.mean(biases), stats['mean_bias'])
  assert top == stats['max_position'] == stats['max_seq_length'] - 1

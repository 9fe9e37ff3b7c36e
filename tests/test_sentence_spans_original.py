"""The sentence objective equals THUDM/GLM's ConstructBlockStrategy (4f61ed7): exact layouts when
every sentence is masked in text order, and the span statistics over 10,000 windows at the
released ratio (the two random streams cannot be aligned). Fixture: tests/data/README.md."""

import json
import os

import numpy as np
import pytest

from input_pipeline import blank_infilling as bi_lib
from input_pipeline import span_sampling
from tests import original_windows as w

DATA = os.path.join(os.path.dirname(__file__), 'data', 'original_sentence_blocks.json')
OURS = {k: v for k, v in w.IDS.items() if k != 'dBLOCK'}


def _fixture():
  with open(DATA) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def fixture():
  return _fixture()


def test_sentence_layouts_equal_the_original_with_every_sentence_masked(fixture):
  for case in fixture['exact']:
    tokens = w.window(case['seed'])
    bi = bi_lib.BlankInfilling(OURS, 3 * len(tokens) + 8, bert_prob=0.0, gap_sentence_ratio=1.0,
                               shuffle_spans=False, task_mask=case['task_mask'],
                               sentence_end_ids=w.SENTENCE_END_IDS)
    sample, used = bi.fit(tokens, np.random.default_rng(case['seed']), 'sentence')
    assert used == len(tokens)
    length = len(case['input_ids'])
    assert sample['sep'] == case['sep'], case['seed']
    for key in ('input_ids', 'target_ids', 'loss_mask', 'position_ids', 'block_position_ids'):
      np.testing.assert_array_equal(sample[key][:length], case[key], err_msg=f"{key} seed {case['seed']}")
      assert not sample['loss_mask'][length:].any()


def test_sentence_rules_drop_fragments_before_eos_and_keep_the_next_cls():
  eos, cls, end = w.IDS['eos'], w.IDS['CLS'], 8
  #              0    1   2   3    4   5   6    7   8   9   10   11  12
  tokens = np.array([cls, 20, 21, end, 22, 23, eos, cls, 24, end, 25, eos, cls, 26])
  spans = span_sampling.sentence_spans(tokens, np.isin(tokens, [end]), cls, eos)
  # [22 23] ends at eos without an end token: dropped; the sentence after eos starts at its [CLS];
  # the unterminated text at the window's end is a sentence.
  assert spans.tolist() == [[1, 4], [7, 10], [12, 14]]


def test_a_short_window_still_masks_one_sentence():
  bi = bi_lib.BlankInfilling(OURS, 64, bert_prob=0.0, sentence_end_ids=w.SENTENCE_END_IDS)
  plan = bi.plan(np.array([w.IDS['CLS'], 20, 8, 21, 8]), np.random.default_rng(0), 'sentence')
  assert len(plan.starts) == 1  # int(0.15 * 5) == 0, yet the original takes one sentence


def test_sentence_span_statistics_match_the_original_over_10000_windows(fixture):
  stats = fixture['stats']
  bi = bi_lib.BlankInfilling(OURS, 1024, bert_prob=0.0, gap_sentence_ratio=stats['gap_sentence_ratio'],
                             sentence_end_ids=w.SENTENCE_END_IDS)
  rng = np.random.default_rng(0)
  counts, fractions = [], []
  for seed in range(1000, 1000 + stats['samples']):
    tokens = w.window(seed)
    plan = bi.plan(tokens, rng, 'sentence')
    assert len(plan.tokens) == len(tokens)
    counts.append(len(plan.starts))
    fractions.append(float(np.sum(np.asarray(plan.ends) - np.asarray(plan.starts))) / len(tokens))
  counts = np.array(counts)
  assert abs(counts.mean() / stats['mean_spans'] - 1) < 0.01
  assert abs(np.mean(fractions) / stats['mean_masked_fraction'] - 1) < 0.01
  assert abs(np.mean(counts == 1) - stats['single_span_fraction']) < 0.01
  assert np.mean(counts == 0) == stats['no_span_fraction']

"""Blank infilling: fixture-exact layouts and the statistics of the three span samplers."""

import json
import os

import numpy as np
import pytest

from input_pipeline import blank_infilling as bi_lib
from input_pipeline import sample_layout, span_sampling

DATA = os.path.join(os.path.dirname(__file__), 'data', 'block_layouts.json')
IDS = dict(CLS=1, MASK=2, sop=3, eop=4, gMASK=5, sMASK=6, eos=0)


def _fixture():
  with open(DATA) as f:
    return json.load(f)


def reconstruct(sample, n_spans_hint=None):
  """Original tokens from Part A + Part B (each mask replaced by its span)."""
  sep = sample['sep']
  inputs, targets = sample['input_ids'], sample['target_ids']
  length = sep + int(sample['loss_mask'].sum())
  block = sample['block_position_ids'][:length]
  pos = sample['position_ids'][:length]
  starts = [i for i in range(sep, length) if block[i] == 1]
  spans = {}
  for j, s in enumerate(starts):
    e = starts[j + 1] if j + 1 < len(starts) else length
    spans[int(pos[s])] = list(targets[s:e - 1])  # drop eop
  out = []
  for p in range(sep):
    out.extend(spans[p] if p in spans else [int(inputs[p])])
  return out, spans


@pytest.mark.parametrize('case', range(len(_fixture()['cases'])))
def test_build_sample_reproduces_fixture_layout(case):
  fx = _fixture()
  ids, c = fx['special_ids'], fx['cases'][case]
  got = sample_layout.build_sample(c['tokens'], c['spans_in_part_b_order'], mask_id=ids[c['mask_token']],
                            sop_id=ids['sop'], eop_id=ids['eop'])
  for key, want in c['expected'].items():
    if key == 'sep':
      assert got['sep'] == want
    else:
      np.testing.assert_array_equal(got[key], want, err_msg=key)


def test_suffix_form_has_no_eop_and_shares_the_gmask_position():
  tokens = np.arange(10, 20)
  tokens[0] = IDS['CLS']
  s = sample_layout.build_suffix_sample(tokens, 4, gmask_id=IDS['gMASK'], sop_id=IDS['sop'])
  assert s['sep'] == 5
  assert list(s['input_ids']) == [1, 11, 12, 13, 5, 3, 14, 15, 16, 17, 18]
  assert list(s['target_ids']) == [1, 11, 12, 13, 5, 14, 15, 16, 17, 18, 19]
  assert list(s['position_ids']) == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
  assert list(s['block_position_ids']) == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
  assert list(s['loss_mask']) == [0] * 5 + [1] * 6
  assert IDS['eop'] not in s['target_ids']


def test_overlapping_spans_are_rejected_with_a_clear_error():
  with pytest.raises(ValueError, match='overlap'):
    sample_layout.build_sample(np.arange(10), [(2, 5), (4, 6)], mask_id=2, sop_id=3, eop_id=4)


def _doc(rng, n):
  return np.concatenate([[IDS['CLS']], rng.integers(10, 1000, n - 1)]).astype(np.int32)


def test_token_objective_statistics_match_glm():
  seq, n = 512, 400
  bi = bi_lib.BlankInfilling(IDS, seq)
  rng = np.random.default_rng(0)
  lengths, masked, total, unsorted = [], 0, 0, 0
  samples = 1500
  for _ in range(samples):
    tokens = _doc(rng, n)
    s = bi(tokens, rng, 'token')
    out, spans = reconstruct(s)
    assert out == list(tokens)  # Part A + Part B give back the original text
    # Spans from Part B in Part-B order, back to original coordinates.
    sep = s['sep']
    starts_b = np.flatnonzero(s['block_position_ids'][sep:] == 1) + sep
    mask_pos = s['position_ids'][starts_b]
    unsorted += int(np.any(np.diff(mask_pos) < 0))
    part_a = s['input_ids'][:sep]
    assert part_a[0] == IDS['CLS'] and part_a[-1] != IDS['MASK']  # never first or last token
    assert not np.any((part_a[1:] == IDS['MASK']) & (part_a[:-1] == IDS['MASK']))  # never adjacent
    span_lengths = [len(v) for v in spans.values()]
    lengths += span_lengths
    masked += sum(span_lengths)
    total += n
  lengths = np.array(lengths)
  assert abs(masked / total - 0.15) <= 0.015
  assert lengths.min() >= 1 and lengths.max() <= 39
  assert abs(lengths.mean() - 3.16) < 0.1
  assert abs(lengths.std() - 1.63) < 0.1
  # Distribution: compare with Poisson(3) restricted to 1..39.
  pmf = np.diff(np.concatenate([[0], span_sampling.span_length_cdf(3.0, 40)]))
  freq = np.bincount(lengths, minlength=40)[1:40] / len(lengths)
  assert np.abs(freq - pmf).max() < 0.02
  assert unsorted / samples > 0.9  # Part B is shuffled, not in text order


def test_token_objective_fills_seq_length_from_a_long_window():
  bi = bi_lib.BlankInfilling(IDS, 256)
  rng = np.random.default_rng(1)
  window = _doc(rng, 2000)
  for _ in range(50):
    s, n = bi.fit(window, rng, 'token')
    length = s['sep'] + int(s['loss_mask'].sum())
    assert length <= 256 and length >= 250
    assert reconstruct(s)[0] == list(window[:n])


def test_token_spans_never_cover_document_boundaries():
  bi = bi_lib.BlankInfilling(IDS, 300)
  rng = np.random.default_rng(2)
  docs = [np.concatenate([_doc(rng, int(k)), [IDS['eos']]]) for k in (40, 90, 12, 120)]
  window = np.concatenate(docs)
  for _ in range(200):
    s, n = bi.fit(window, rng, 'token')
    _, spans = reconstruct(s)
    for tokens in spans.values():
      assert IDS['CLS'] not in tokens and IDS['eos'] not in tokens


def test_sentence_objective_masks_whole_sentences_up_to_ratio():
  end = 999
  bi = bi_lib.BlankInfilling(IDS, 512, sentence_end_ids=[end])
  rng = np.random.default_rng(3)
  for _ in range(100):
    tokens = _doc(rng, 300)
    tokens[rng.random(300) < 0.1] = end
    tokens[0] = IDS['CLS']
    s = bi(tokens, rng, 'sentence')
    out, spans = reconstruct(s)
    assert out == list(tokens)
    assert IDS['sMASK'] in s['input_ids'][:s['sep']]
    covered = sum(len(v) for v in spans.values())
    assert covered >= int(0.15 * 300)
    for p, span in spans.items():
      assert span[-1] == end or p == s['sep'] - 1  # a sentence ends at an end token or the doc end
      assert end not in span[:-1]


def test_document_objective_suffix_and_infill_forms():
  rng = np.random.default_rng(4)
  tokens = _doc(rng, 200)
  suffix = bi_lib.BlankInfilling(IDS, 256, gpt_infill_prob=1.0, bert_prob=0.0)
  infill = bi_lib.BlankInfilling(IDS, 256, gpt_infill_prob=0.0, bert_prob=0.0)
  for _ in range(50):
    s = suffix(tokens, rng, 'document')
    gen = int(s['loss_mask'].sum())
    assert 0.5 * 200 <= gen <= 198
    assert s['input_ids'][s['sep'] - 1] == IDS['gMASK'] and s['input_ids'][s['sep']] == IDS['sop']
    assert IDS['eop'] not in s['target_ids'] and s['sep'] + gen == 201
    s = infill(tokens, rng, 'document')
    out, spans = reconstruct(s)
    assert out == list(tokens) and len(spans) == 1
    assert 100 <= len(next(iter(spans.values()))) <= 198
    assert IDS['eop'] in s['target_ids']


def test_objective_is_chosen_with_configured_probabilities():
  bi = bi_lib.BlankInfilling(IDS, 64, bert_prob=0.5, gap_sentence_prob=0.3)
  rng = np.random.default_rng(5)
  picks = [bi.choose_objective(rng) for _ in range(20000)]
  assert abs(picks.count('token') / 20000 - 0.5) < 0.02
  assert abs(picks.count('sentence') / 20000 - 0.3) < 0.02
  assert abs(picks.count('document') / 20000 - 0.2) < 0.02


def test_same_seed_gives_the_same_sample():
  bi = bi_lib.BlankInfilling(IDS, 128)
  tokens = _doc(np.random.default_rng(6), 100)
  a = bi(tokens, np.random.default_rng(7), 'token')
  b = bi(tokens, np.random.default_rng(7), 'token')
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_documents_shorter_than_any_span_give_a_loss_free_sample_not_an_error():
  bi = bi_lib.BlankInfilling(IDS, 32)
  rng = np.random.default_rng(8)
  for objective in ('token', 'sentence', 'document'):
    s = bi(np.array([IDS['CLS'], 50]), rng, objective)
    assert s['input_ids'].shape == (32,)
    assert reconstruct(s)[0] == [IDS['CLS'], 50]


def test_bad_input_raises_clear_errors():
  bi = bi_lib.BlankInfilling(IDS, 32)
  rng = np.random.default_rng(9)
  with pytest.raises(ValueError, match='CLS'):
    bi(np.array([5, 6, 7]), rng, 'token')
  with pytest.raises(ValueError, match='objective'):
    bi(np.array([1, 6, 7]), rng, 'bert')
  with pytest.raises(ValueError, match='special_ids'):
    bi_lib.BlankInfilling({'CLS': 1}, 32)


@pytest.mark.parametrize('objective', ['token', 'sentence', 'document'])
def test_batch_layout_equals_laying_out_each_sample_alone(objective):
  bi = bi_lib.BlankInfilling(IDS, 128, sentence_end_ids=[999])
  rng = np.random.default_rng(10)
  docs = [np.concatenate([_doc(rng, int(k)), [IDS['eos']]]) for k in rng.integers(2, 150, 40)]
  stream = np.concatenate(docs)
  stream[rng.random(stream.shape[0]) < 0.05] = 999
  stream[0] = IDS['CLS']
  for _ in range(5):
    draws = bi.draw(rng, objective, 8)
    plans, pos = [], 0
    for b in range(8):
      window = stream[pos:pos + 128]
      if window[0] != IDS['CLS']:
        window = np.concatenate([[IDS['CLS']], window[:-1]])
      plans.append(bi.plan(window, rng, objective, draws, b))
      pos += int(rng.integers(1, 100))
    batch = bi.layout(plans, batch_size=10)
    for b, plan in enumerate(plans):
      alone = bi.layout([plan])
      for key in alone:
        np.testing.assert_array_equal(batch[key][b], alone[key][0], err_msg=key)
      if not plan.division:  # (the suffix form has no [eop] for `reconstruct` to drop)
        assert reconstruct({k: batch[k][b] for k in batch})[0] == list(plan.tokens)
    assert np.all(batch['input_ids'][8:] == IDS['eos']) and np.all(batch['sep'][8:] == 0)

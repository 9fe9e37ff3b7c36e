"""Objective mixing as the original: one objective per data-parallel micro-batch (so one step
mixes objectives), and [MASK]-only sentence/document blanks without the task mask."""

import jax
import numpy as np
import pytest

from configs import tiny
from glm_jax.training import train_data
from input_pipeline import pipeline
from input_pipeline.errors import DataSourceError

from tests.test_blank_infilling import reconstruct
from tests.test_pipeline import setup  # pylint: disable=unused-import  (the shared corpus fixture)

SEQ = 128


def _mixed(cfg, task_mask):
  cfg = cfg.copy_and_resolve_references()
  cfg.bert_prob, cfg.gap_sentence_prob, cfg.task_mask = 0.4, 0.3, task_mask
  return cfg


def _blank_ids(batch, row):
  """The mask tokens in the row's Part A."""
  return batch['input_ids'][row, :batch['sep'][row]]


def _batches(cfg, tok, steps, **kw):
  it = pipeline.make_iterator(cfg, tok, split='train', seq_length=SEQ, per_host_batch=8, seed=3, **kw)
  out = []
  for _ in range(steps):
    batch = next(it)
    out.append((batch, list(it.last_objectives)))
  it.close()
  return out


def test_each_micro_batch_draws_its_own_objective_so_a_step_mixes_them(setup):
  cfg, tok, _ = setup
  special = tok.special_ids
  mask_of = {'token': special['MASK'], 'sentence': special['sMASK'], 'document': special['gMASK']}
  mixed_steps = 0
  for batch, objectives in _batches(_mixed(cfg, True), tok, 12, objective_batch_size=2):
    assert len(objectives) == 8
    for g in range(0, 8, 2):
      assert objectives[g] == objectives[g + 1]
    mixed_steps += len(set(objectives)) > 1
    for row, objective in enumerate(objectives):
      part_a = _blank_ids(batch, row)
      others = set(mask_of.values()) - {mask_of[objective]}
      assert not np.isin(part_a, list(others)).any(), (row, objective)
      if batch['loss_mask'][row].sum():
        assert (part_a == mask_of[objective]).any()
  assert mixed_steps >= 6  # P(all 4 groups agree) = 0.4^4 + 0.3^4 + 0.3^4 ~ 4%


def test_accumulation_micro_batches_take_every_interleave_th_row(setup):
  cfg, tok, _ = setup
  for _, objectives in _batches(_mixed(cfg, True), tok, 6, objective_batch_size=2,
                                objective_interleave=2):
    for first in (0, 1, 4, 5):  # block of 4 rows per device: micro-batch i = rows i, i + 2
      assert objectives[first] == objectives[first + 2]


def test_without_task_mask_sentence_and_document_blanks_are_mask(setup):
  cfg, tok, _ = setup
  special = tok.special_ids
  seen = set()
  for batch, objectives in _batches(_mixed(cfg, False), tok, 12, objective_batch_size=2):
    assert not np.isin(batch['input_ids'], [special['sMASK'], special['gMASK']]).any()
    assert not np.isin(batch['target_ids'], [special['sMASK'], special['gMASK']]).any()
    for row, objective in enumerate(objectives):
      if batch['loss_mask'][row].sum():
        assert (_blank_ids(batch, row) == special['MASK']).any()
        seen.add(objective)
  assert seen == {'token', 'sentence', 'document'}


def test_objective_draw_defaults_to_the_per_device_micro_batch():
  config = tiny.get_config()
  config.global_batch_size, config.grad_accum_steps = 16, 2
  config.mesh.data, config.mesh.fsdp = -1, 1
  assert train_data.objective_batch_size(config) == 16 // (2 * jax.device_count())
  config.data.objective_batch_size = 3
  assert train_data.objective_batch_size(config) == 3


def test_bad_objective_batch_size_is_named(setup):
  cfg, tok, _ = setup
  with pytest.raises(ValueError, match='objective_batch_size'):
    pipeline.make_iterator(cfg, tok, split='train', seq_length=SEQ, per_host_batch=8,
                           objective_batch_size=-1)


def test_raw_length_mode_takes_raw_length_tokens_and_grows_by_two_per_span(setup):
  """The original's sample length: raw_length raw tokens become n + 2k in a longer row."""
  cfg, tok, _ = setup
  cfg = cfg.copy_and_resolve_references()
  cfg.length_mode, cfg.raw_length = 'raw', 64
  it = pipeline.make_iterator(cfg, tok, split='train', seq_length=96, per_host_batch=8, seed=0)
  lengths, grown = [], []
  for _ in range(4):
    batch = next(it)
    for row in range(8):
      sample = {k: v[row] for k, v in batch.items() if k != 'position_ids'}
      sample['position_ids'], sample['block_position_ids'] = batch['position_ids'][row]
      tokens, spans = reconstruct(sample)
      lengths.append(len(tokens))
      grown.append(sample['sep'] + int(sample['loss_mask'].sum()) - len(tokens) == 2 * len(spans))
  it.close()
  assert all(grown)
  assert np.mean(np.array(lengths) == 64) > 0.9  # only a stream's end or a too-long sample is shorter
  assert max(lengths) <= 64


def test_raw_length_must_leave_room_in_the_row(setup):
  cfg, tok, _ = setup
  cfg = cfg.copy_and_resolve_references()
  cfg.length_mode, cfg.raw_length = 'raw', 128
  with pytest.raises(ValueError, match='raw_length'):
    pipeline.make_iterator(cfg, tok, split='train', seq_length=128, per_host_batch=2)


def test_single_span_prob_makes_whole_micro_batches_of_one_span(setup):
  cfg, tok, _ = setup
  cfg = _mixed(cfg, True)
  cfg.single_span_prob = 0.5
  single = 0
  for batch, objectives in _batches(cfg, tok, 8, objective_batch_size=2):
    for g in range(0, 8, 2):
      spans = [int((batch['position_ids'][r, 1, batch['sep'][r]:] == 1).sum()) for r in (g, g + 1)]
      if objectives[g] == 'token' and spans == [1, 1]:
        single += 1
  assert single >= 8  # about half of the 32 micro-batches (a 15% budget is never one span here)


def test_short_seq_prob_makes_micro_batches_of_short_sentence_aligned_pieces(setup):
  cfg, tok, _ = setup
  cfg = cfg.copy_and_resolve_references()
  cfg.short_seq_prob = 0.5
  ends = set(tok.sentence_end_ids) | {tok.special_ids['eos']}
  it = pipeline.make_iterator(cfg, tok, split='train', seq_length=SEQ, per_host_batch=8, seed=0,
                              objective_batch_size=4)
  targets, short_rows, aligned = [], 0, 0
  for _ in range(10):
    batch = next(it)
    for g in (0, 4):
      assert len(set(it.last_short_targets[g:g + 4])) == 1  # one draw per micro-batch
      targets.append(it.last_short_targets[g])
    for r, target in enumerate(it.last_short_targets):
      if not target:
        continue
      sample = {k: v[r] for k, v in batch.items() if k != 'position_ids'}
      sample['position_ids'], sample['block_position_ids'] = batch['position_ids'][r]
      tokens = reconstruct(sample)[0]
      assert len(tokens) <= target + 1 and 32 <= target < SEQ - 1
      short_rows += 1
      aligned += tokens[-1] in ends
  it.close()
  assert 5 <= sum(t > 0 for t in targets) <= 15  # of 20 micro-batches, P = 0.5
  assert aligned >= 0.7 * short_rows


def test_random_position_shifts_whole_samples_within_the_position_range(setup):
  cfg, tok, _ = setup
  plain_cfg = _mixed(cfg, True)
  shifted_cfg = _mixed(cfg, True)
  shifted_cfg.random_position = True
  plain = _batches(plain_cfg, tok, 4, objective_batch_size=2)
  shifted = _batches(shifted_cfg, tok, 4, objective_batch_size=2)
  biases = []
  for (a, _), (b, _) in zip(plain, shifted):
    for key in ('input_ids', 'target_ids', 'loss_mask', 'sep'):
      np.testing.assert_array_equal(a[key], b[key])
    for row in range(8):
      length = int(a['sep'][row] + a['loss_mask'][row].sum())
      delta = b['position_ids'][row, 0, :length] - a['position_ids'][row, 0, :length]
      assert (delta == delta[0]).all() and (b['position_ids'][row, 0, length:] == 0).all()
      np.testing.assert_array_equal(b['position_ids'][row, 1], a['position_ids'][row, 1])
      assert b['position_ids'][row, 0].max() <= SEQ - 1
      if a['loss_mask'][row].sum() and a['target_ids'][row, length - 1] != tok.special_ids['eop']:
        assert delta[0] == 0  # the document objective's suffix form (no eop) keeps its positions
      biases.append(int(delta[0]))
  assert len(set(biases)) > 5


def test_block_masking_with_a_tokenizer_without_dblock_is_one_data_error(setup):
  cfg, tok, _ = setup
  cfg = cfg.copy_and_resolve_references()
  cfg.block_mask_prob = 0.1
  with pytest.raises(DataSourceError, match=r'config.data: block_mask_prob=0.1 needs a \[dBLOCK\]'):
    pipeline.make_iterator(cfg, tok, split='train', seq_length=SEQ, per_host_batch=2)


def test_a_document_micro_batch_shares_one_generation_length_draw(setup):
  """The original draws one generation length per collate call (per micro-batch)."""
  cfg, tok, _ = setup
  cfg = cfg.copy_and_resolve_references()
  cfg.bert_prob, cfg.gap_sentence_prob = 0.0, 0.0
  eop = tok.special_ids['eop']
  spreads, means = [], []
  for batch, _ in _batches(cfg, tok, 6, objective_batch_size=4):
    for g in (0, 4):
      gen = []
      for r in range(g, g + 4):
        loss = int(batch['loss_mask'][r].sum())
        last = batch['target_ids'][r, batch['sep'][r] + loss - 1]
        gen.append(loss - 1 if last == eop else loss)  # span tokens (the suffix form has no eop)
      spreads.append(max(gen) - min(gen))
      means.append(np.mean(gen))
  assert np.median(spreads) <= 0.1 * SEQ  # rows differ only by their window's length
  assert np.ptp(means) > 0.2 * SEQ  # while micro-batches differ by their draw

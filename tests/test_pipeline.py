"""The tf.data pipeline: contract shapes, resume equality, sharding, determinism, bad input."""

import json
import re

import numpy as np
import pytest

from input_pipeline import config as config_lib
from input_pipeline import pipeline
from input_pipeline import sources
from input_pipeline import tokenizer as tokenizer_lib

from tests.test_blank_infilling import reconstruct

SEQ, BATCH = 128, 4


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """Four files of KJV chapters, one per line, each tagged with a unique 'docidN' word."""
  root = tmp_path_factory.mktemp('corpus')
  chapters = sources.kjv_chapters()[:160]
  lines = [f'docid{i} {c[:1500]}' for i, c in enumerate(chapters)]
  for f in range(4):
    (root / f'part{f}.txt').write_text('\n'.join(lines[f::4]) + '\n')
  cfg = config_lib.default_data_config()
  cfg.source, cfg.files, cfg.vocab_size = 'files', str(root / '*.txt'), 400
  cfg.eval_holdout_fraction = 0.1
  tok = tokenizer_lib.load_or_train(cfg, str(tmp_path_factory.mktemp('tok')))
  return cfg, tok, root


def _iter(cfg, tok, **kw):
  args = dict(split='train', seq_length=SEQ, per_host_batch=BATCH, seed=0)
  args.update(kw)
  return pipeline.make_iterator(cfg, tok, **args)


def _equal(a, b):
  return all(np.array_equal(a[k], b[k]) for k in a)


def test_batches_have_the_contracted_shapes_and_dtypes(setup):
  cfg, tok, _ = setup
  batch = next(_iter(cfg, tok))
  assert batch['input_ids'].shape == (BATCH, SEQ) and batch['input_ids'].dtype == np.int32
  assert batch['target_ids'].shape == (BATCH, SEQ) and batch['target_ids'].dtype == np.int32
  assert batch['loss_mask'].shape == (BATCH, SEQ) and batch['loss_mask'].dtype == np.float32
  assert batch['position_ids'].shape == (BATCH, 2, SEQ) and batch['position_ids'].dtype == np.int32
  assert batch['sep'].shape == (BATCH,) and batch['sep'].dtype == np.int32
  assert np.all(batch['input_ids'][:, 0] == tok.special_ids['CLS'])
  for b in range(BATCH):  # no loss on Part A
    assert batch['loss_mask'][b, :batch['sep'][b]].sum() == 0


def test_restored_iterator_yields_identical_batches(setup):
  cfg, tok, _ = setup
  it = _iter(cfg, tok)
  for _ in range(7):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  assert len(json.dumps(state)) < 1_000_000
  expected = [next(it) for _ in range(30)]  # crosses an epoch boundary on this small corpus
  restored = _iter(cfg, tok)
  restored.set_state(state)
  for want in expected:
    assert _equal(want, next(restored))


def test_state_of_another_iterator_is_refused(setup):
  cfg, tok, _ = setup
  state = _iter(cfg, tok).get_state()
  with pytest.raises(ValueError, match='does not belong'):
    _iter(cfg, tok, seed=1).set_state(state)


def test_same_seed_same_batches_and_other_seed_other_batches(setup):
  cfg, tok, _ = setup
  a, b, c = _iter(cfg, tok), _iter(cfg, tok), _iter(cfg, tok, seed=1)
  for _ in range(3):
    x, y, z = next(a), next(b), next(c)
    assert _equal(x, y)
  assert not _equal(x, z)


def _doc_ids(tok, it, n_batches):
  seen = set()
  for _ in range(n_batches):
    batch = next(it)
    for row in batch['input_ids']:
      seen.update(int(m) for m in re.findall(r'docid(\d+)', tok.decode(row)))
  return seen


def test_two_processes_read_disjoint_documents(setup):
  cfg, tok, _ = setup
  p0 = _doc_ids(tok, _iter(cfg, tok, process_index=0, process_count=2), 25)
  p1 = _doc_ids(tok, _iter(cfg, tok, process_index=1, process_count=2), 25)
  assert p0 and p1 and not p0 & p1


def test_eval_split_is_finite_deterministic_and_loses_no_text(setup):
  cfg, tok, _ = setup
  first = list(_iter(cfg, tok, split='eval'))
  second = list(_iter(cfg, tok, split='eval'))
  assert 0 < len(first) == len(second)
  assert all(_equal(a, b) for a, b in zip(first, second))
  # Part A + Part B of every sample, in order, give back the whole held-out stream.
  cls_id, eos_id = tok.special_ids['CLS'], tok.special_ids['eos']
  stream = []
  for text in sources.iterate_texts(cfg, 'eval'):
    stream += tok.encode(text) + [eos_id]
  got = []
  for batch in first:
    for b in range(BATCH):
      row = {k: batch[k][b] for k in ('input_ids', 'target_ids', 'loss_mask')}
      row['position_ids'], row['block_position_ids'] = batch['position_ids'][b]
      row['sep'] = int(batch['sep'][b])
      if row['sep'] == 0:
        continue
      got += [t for t in reconstruct(row)[0] if t != cls_id]
  assert got == stream


def test_padding_fraction_is_small(setup):
  cfg, tok, _ = setup
  it = _iter(cfg, tok, seq_length=256)
  for _ in range(20):
    next(it)
  assert 0 <= it.padding_fraction < 0.05


def test_corpus_smaller_than_one_batch_repeats(tmp_path, setup):
  cfg, tok, _ = setup
  (tmp_path / 'tiny.txt').write_text('In the beginning. God created.\n')
  small = cfg.copy_and_resolve_references()
  small.files, small.eval_holdout_fraction = str(tmp_path / '*.txt'), 0.0
  batch = next(_iter(small, tok))
  assert batch['input_ids'].shape == (BATCH, SEQ)
  assert np.all(batch['sep'] > 0)


def test_invalid_utf8_is_counted_and_skipped(tmp_path, setup):
  cfg, tok, _ = setup
  (tmp_path / 'mixed.txt').write_bytes(b'good line one.\n\xff\xfe broken \xc3\x28\ngood line two.\n')
  mixed = cfg.copy_and_resolve_references()
  mixed.files, mixed.eval_holdout_fraction = str(tmp_path / '*.txt'), 0.0
  it = _iter(mixed, tok)
  next(it)
  assert it.stats['invalid_utf8'] >= 1


def test_corpus_without_text_is_a_clear_error_not_a_hang(tmp_path, setup):
  cfg, tok, _ = setup
  (tmp_path / 'empty.txt').write_text('')
  (tmp_path / 'blank.txt').write_text('\n\n  \n')
  empty = cfg.copy_and_resolve_references()
  empty.files, empty.eval_holdout_fraction = str(tmp_path / '*.txt'), 0.0
  with pytest.raises(sources.DataSourceError, match='no usable documents'):
    next(_iter(empty, tok))
  with pytest.raises(StopIteration):
    next(_iter(empty, tok, split='eval'))


def test_embedded_corpus_resumes_exactly_across_an_epoch(setup):
  """The default corpus is read without tf.data; a shard of ~12 chapters makes epochs short."""
  _, tok, _ = setup
  cfg = config_lib.default_data_config()
  shard = dict(process_index=3, process_count=100, seq_length=512)
  it = _iter(cfg, tok, **shard)
  for _ in range(3):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(12)]
  assert it.get_state()['epoch'] >= 1  # crossed an epoch boundary
  restored = _iter(cfg, tok, **shard)
  restored.set_state(state)
  for want in expected:
    assert _equal(want, next(restored))


def test_resume_inside_small_shuffle_windows_across_files_and_epochs(setup):
  """Windows of 8 lines over 4 files: states taken mid-window, mid-file and after an epoch
  boundary all resume to the batches of the uninterrupted iterator."""
  cfg, tok, _ = setup
  small = cfg.copy_and_resolve_references()
  small.shuffle_buffer, small.read_batch_documents = 8, 4
  it = _iter(small, tok, seq_length=512, per_host_batch=8)
  states, batches = [], []
  for _ in range(44):
    states.append(json.loads(json.dumps(it.get_state())))
    batches.append(next(it))
  assert states[-1]['epoch'] >= 1 and len({tuple(s['loc'] or ()) for s in states}) > 10
  for start in (1, 7, 23, len(states) - 3):
    restored = _iter(small, tok, seq_length=512, per_host_batch=8)
    restored.set_state(states[start])
    for want in batches[start:start + 3]:
      assert _equal(want, next(restored))

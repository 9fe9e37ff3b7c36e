"""Released tokenizers in use: configs, input pipeline, pretraining, convert import, generate CLI."""

import importlib
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from glm_jax import convert
from glm_jax.modeling import model
from input_pipeline import config as config_lib
from input_pipeline import pipeline, released_tokenizers
from input_pipeline import tokenizer as tokenizer_lib
from input_pipeline.errors import DataSourceError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'tests', 'data', 'released_tokenizers')
KINDS = ('bert-uncased', 'bert-cased', 'gpt2', 'roberta', 'chinese-sp')
SIZE_CONFIGS = ('base', 'large', 'glm_410m', 'glm_515m', 'glm_roberta', 'glm_2b', 'glm_10b',
                'glm_large_chinese')
ENV = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)


def _run(*args):
  result = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


@pytest.mark.parametrize('name', SIZE_CONFIGS)
def test_each_size_config_names_a_released_tokenizer_read_from_tokenizer_path(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  kind = config.data.tokenizer_kind
  assert kind in released_tokenizers.KINDS
  with pytest.raises(released_tokenizers.TokenizerError, match='--config.data.tokenizer_path=DIR'):
    tokenizer_lib.load_or_train(config.data)
  config.data.tokenizer_path = os.path.join(DATA, kind)
  tok = tokenizer_lib.load_or_train(config.data)
  assert (tok.kind, tok.task_mask) == (kind, config.data.task_mask)
  assert ('gMASK' in tok.special_ids) == config.data.task_mask


@pytest.mark.parametrize('task_mask', [False, True])
@pytest.mark.parametrize('kind', KINDS)
def test_sentence_objective_finds_sentence_ends_and_documents_end_in_eos_for_every_kind(kind, task_mask):
  cfg = config_lib.default_data_config()
  cfg.tokenizer_kind, cfg.tokenizer_path, cfg.task_mask = kind, os.path.join(DATA, kind), task_mask
  cfg.bert_prob, cfg.gap_sentence_prob = 0.0, 1.0  # every batch: whole sentences blanked
  tok = tokenizer_lib.load_or_train(cfg)
  it = pipeline.make_iterator(cfg, tok, seq_length=96, per_host_batch=4, seed=0)
  batch = next(it)
  it.close()
  ids = tok.special_ids
  blank = ids['sMASK'] if task_mask else ids['MASK']
  assert (batch['input_ids'] < tok.vocab_size).all()
  assert (batch['input_ids'] == blank).sum() >= 4  # sentences found in every row
  assert (batch['input_ids'][:, 0] == ids['CLS']).all()
  # Part B opens each span with sop and its targets close with eop.
  assert (batch['input_ids'] == ids['sop']).sum() == (batch['target_ids'] == ids['eop']).sum() > 0
  # Spans are whole sentences: their last tokens (before eop) are sentence ends, except where a
  # sample cuts a sentence off.
  targets = batch['target_ids']
  rows, cols = np.nonzero(targets == ids['eop'])
  last_tokens = targets[rows, cols - 1]
  ends = set(tok.sentence_end_ids) | {ids['eos']}
  assert sum(int(t) in ends for t in last_tokens) >= len(last_tokens) / 2, (last_tokens, kind)


@pytest.mark.slow
def test_tiny_pretraining_on_a_bert_vocabulary_then_the_generate_cli_fills_a_blank(tmp_path):
  workdir, exported = tmp_path / 'run', tmp_path / 'export'
  result = _run('glm_jax.train', '--config=configs/tiny.py', f'--workdir={workdir}',
                '--config.data.tokenizer_kind=bert-uncased',
                f'--config.data.tokenizer_path={os.path.join(DATA, "bert-uncased")}',
                '--config.vocab_from_tokenizer=True', '--config.model.hidden_size=64',
                '--config.model.num_layers=1', '--config.model.max_sequence_length=32',
                '--config.seq_length=32', '--config.global_batch_size=8', '--config.total_steps=6',
                '--config.log_every_steps=2', '--config.eval_every_steps=0',
                '--config.checkpoint_every_steps=1000', '--config.tensorboard=False',
                '--config.sample_tokens=3')
  with open(workdir / 'metrics.jsonl') as f:
    losses = [r['loss'] for r in map(json.loads, f) if 'loss' in r]
  assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
  assert losses[0] < math.log(1212) + 1  # about ln(vocab): the 1212-id BERT vocabulary was used
  assert 'Sample:' in result.stdout
  with open(workdir / 'tokenizer' / 'tokenizer_config.json') as f:
    assert json.load(f)['kind'] == 'bert-uncased'
  _run('glm_jax.extract_params', f'--workdir={workdir}', f'--output={exported}')
  result = _run('glm_jax.generate', f'--checkpoint={exported}', '--max_new_tokens=3',
                '--prompt=In the beginning God [MASK] the heaven.')
  (line,) = result.stdout.strip().splitlines()
  assert line.startswith('in the beginning god ') and line.endswith(' the heaven .')
  assert '[MASK]' not in line


def _thudm_file(tmp_path, vocab):
  cfg = model.GLMConfig(vocab_size=vocab, num_layers=1, hidden_size=64, num_heads=2,
                        max_sequence_length=32, dtype='float32', init_std=0.2)
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  path = str(tmp_path / f'glm_{vocab}.npz')
  np.savez(path, **convert.to_thudm(jax.tree_util.tree_map(np.asarray, params)))
  return path


@pytest.mark.slow
def test_convert_import_stores_the_tokenizer_so_generate_needs_no_tokenizer_flag(tmp_path):
  out = tmp_path / 'converted'
  result = _run('glm_jax.convert', 'import', f'--input={_thudm_file(tmp_path, 1024)}',
                '--num_heads=2', f'--output={out}', f'--tokenizer={os.path.join(DATA, "gpt2")}',
                '--tokenizer_kind=gpt2', '--task_mask')
  assert 'Tokenizer (gpt2, task_mask=True, 1009 ids)' in result.stdout
  assert sorted(os.listdir(out / 'tokenizer')) == ['merges.txt', 'tokenizer_config.json', 'vocab.json']
  result = _run('glm_jax.generate', f'--checkpoint={out}', '--max_new_tokens=2',
                '--prompt=In the beginning [MASK] created the heaven.',
                '--prompt=And God said, Let there be [gMASK]')
  first, second = result.stdout.strip().splitlines()
  assert first.startswith('In the beginning') and first.endswith(' created the heaven.')
  assert second.startswith('And God said, Let there be')


@pytest.mark.slow
def test_import_refuses_a_model_whose_embedding_is_smaller_than_the_tokenizer(tmp_path):
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'gpt2'), 'gpt2', task_mask=True)
  with pytest.raises(convert.ConversionError, match='1009 ids but .* has only 256 word embeddings'):
    convert.import_checkpoint(_thudm_file(tmp_path, 256), 2, str(tmp_path / 'out'), tokenizer=tok)
  assert not os.path.exists(tmp_path / 'out')


def test_training_refuses_a_model_embedding_smaller_than_the_released_tokenizer():
  from glm_jax import run_checks  # pylint: disable=g-import-not-at-top
  from glm_jax.training import train_loop
  config = importlib.import_module('configs.large').get_config()
  config.data.tokenizer_path = os.path.join(DATA, 'bert-uncased')
  config.global_batch_size = 8
  assert train_loop.prepare_config(config).model.vocab_size == 30592  # GLM-Large's embedding holds the 1212 ids
  config.model.vocab_size = 1024
  with pytest.raises(run_checks.ConfigError, match='tokenizer has 1212 tokens but model.vocab_size=1024'):
    train_loop.prepare_config(config)


@pytest.mark.slow
def test_generate_cli_refuses_a_tokenizer_larger_than_the_model_embedding(tmp_path):
  from glm_jax.storage import params_io  # pylint: disable=g-import-not-at-top
  cfg = model.GLMConfig(vocab_size=256, num_layers=1, hidden_size=64, num_heads=2,
                        max_sequence_length=32)
  params_io.save_params(str(tmp_path / 'ckpt'), model.init_params(cfg, jax.random.PRNGKey(0)))
  tokenizer_lib.load_pretrained(os.path.join(DATA, 'roberta'), 'roberta').save(tmp_path / 'ckpt' / 'tokenizer')
  result = subprocess.run([sys.executable, '-m', 'glm_jax.generate', f'--checkpoint={tmp_path / "ckpt"}',
                           '--prompt=A [MASK] b.'], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode != 0
  assert 'has 1007 pieces but the model only 256 embeddings' in result.stderr
  assert 'Traceback' not in result.stderr


# ---------------------------------------------------------------- [dBLOCK] (block_mask_prob > 0)


@pytest.mark.parametrize('name', SIZE_CONFIGS)
def test_released_tokenizer_has_dblock_exactly_when_the_config_masks_with_it(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  config.data.tokenizer_path = os.path.join(DATA, config.data.tokenizer_kind)
  tok = tokenizer_lib.load_or_train(config.data)
  masks = config.data.block_mask_prob > 0 or config.data.context_mask_ratio > 0
  assert tok.decoder_mask == masks and ('dBLOCK' in tok.special_ids) == masks
  if masks:  # the original's add_decoder_mask: [dBLOCK] is the last command id
    assert tok.special_ids['dBLOCK'] == tok.vocab_size - 1
  config.data.block_mask_prob, config.data.context_mask_ratio = 0.0, 0.2
  assert 'dBLOCK' in tokenizer_lib.load_or_train(config.data).special_ids


def test_glm_10b_config_builds_training_batches_with_dblock_from_the_gpt2_tokenizer():
  """What `python -m glm_jax.train --config=configs/glm_10b.py` does before building the model."""
  from glm_jax.training import train_data, train_loop  # pylint: disable=g-import-not-at-top
  config = importlib.import_module('configs.glm_10b').get_config()
  assert config.data.block_mask_prob == 0.1
  config.data.tokenizer_path = os.path.join(DATA, 'gpt2')
  config.seq_length, config.global_batch_size = 64, 8
  config = train_loop.prepare_config(config)
  data = train_data.build(config, 0, 1)
  want = _released_expected('gpt2')
  assert data.special_ids['dBLOCK'] == want['special_ids']['dBLOCK'] == 1009
  assert data.vocab_size == want['vocab_size'] == 1010
  dblock, dblocks = data.special_ids['dBLOCK'], 0
  for _ in range(12):
    batch = next(data.train)
    assert batch['input_ids'].shape == (8, 64) and (batch['input_ids'] < data.vocab_size).all()
    rows, cols = np.nonzero(batch['input_ids'] == dblock)
    assert (cols >= batch['sep'][rows]).all()  # block_mask_prob masks Part-B inputs only
    dblocks += len(rows)
  data.train.close()
  assert dblocks > 0


def _released_expected(kind):
  with open(os.path.join(DATA, kind, 'decoder_mask.json'), encoding='utf-8') as f:
    return json.load(f)['task_mask']['true']


def test_our_sentencepiece_tokenizer_with_block_mask_prob_is_one_error_before_training(tmp_path):
  cfg = config_lib.default_data_config()
  cfg.block_mask_prob = 0.1
  with pytest.raises(DataSourceError, match=r'^config.data: block_mask_prob=0.1 needs a \[dBLOCK\] '
                     r'token, which our sentencepiece tokenizer lacks; set --config.data.block_mask_prob=0'):
    tokenizer_lib.load_or_train(cfg, str(tmp_path / 'cache'))
  assert not os.path.exists(tmp_path / 'cache')  # no tokenizer was trained
  cfg.block_mask_prob, cfg.context_mask_ratio = 0.0, 0.3
  with pytest.raises(DataSourceError, match=r'context_mask_ratio=0.3 needs a \[dBLOCK\]'):
    tokenizer_lib.load_or_train(cfg, str(tmp_path / 'cache'))


@pytest.mark.slow
def test_train_cli_with_block_mask_prob_and_our_tokenizer_prints_one_line(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'glm_jax.train', '--config=configs/tiny.py',
                           f'--workdir={tmp_path / "run"}', '--config.data.block_mask_prob=0.1'],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
  assert result.returncode == 2
  assert 'Traceback' not in result.stderr
  (line,) = [l for l in result.stderr.splitlines() if 'dBLOCK' in l]
  assert line.startswith('glm_jax.train: bad data: config.data: block_mask_prob=0.1 needs a [dBLOCK]')


@pytest.mark.slow
def test_glm_10b_recipe_trains_two_steps_with_dblock_and_stores_its_tokenizer(tmp_path):
  """`python -m glm_jax.train --config=configs/glm_10b.py` (block_mask_prob 0.1), model shrunk."""
  workdir = tmp_path / 'run'
  _run('glm_jax.train', '--config=configs/glm_10b.py', f'--workdir={workdir}',
       f'--config.data.tokenizer_path={os.path.join(DATA, "gpt2")}',
       '--config.vocab_from_tokenizer=True', '--config.model.num_layers=1',
       '--config.model.hidden_size=64', '--config.model.num_heads=2',
       '--config.model.max_sequence_length=32', '--config.seq_length=32',
       '--config.global_batch_size=8', '--config.total_steps=2', '--config.log_every_steps=1',
       '--config.eval_every_steps=0', '--config.checkpoint_every_steps=1000',
       '--config.tensorboard=False', '--config.sample_tokens=0')
  with open(workdir / 'metrics.jsonl') as f:
    losses = [r['loss'] for r in map(json.loads, f) if 'loss' in r]
  assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
  stored = tokenizer_lib.load_tokenizer(workdir)
  assert stored.decoder_mask and stored.special_ids['dBLOCK'] == 1009 and stored.vocab_size == 1010

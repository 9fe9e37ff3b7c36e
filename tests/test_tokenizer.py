"""Tokenizer: command tokens, round trips, cache reuse, vocabulary padding."""

import os

import pytest

from input_pipeline import config as config_lib
from input_pipeline import sources
from input_pipeline import tokenizer as tokenizer_lib


@pytest.fixture(scope='module')
def corpus_cfg(tmp_path_factory):
  root = tmp_path_factory.mktemp('corpus')
  chapters = sources.kjv_chapters()[:120]
  (root / 'a.txt').write_text('\n'.join(chapters[:60]) + '\n')
  (root / 'b.txt').write_text('\n'.join(chapters[60:]) + '\n')
  cfg = config_lib.default_data_config()
  cfg.source = 'files'
  cfg.files = str(root / '*.txt')
  cfg.vocab_size = 400
  return cfg, str(tmp_path_factory.mktemp('tok_cache'))


def test_trained_tokenizer_has_distinct_command_tokens_and_round_trips(corpus_cfg):
  cfg, cache = corpus_cfg
  tok = tokenizer_lib.load_or_train(cfg, cache)
  ids = tok.special_ids
  assert set(ids) >= {'CLS', 'MASK', 'sMASK', 'gMASK', 'sop', 'eop', 'eos'}
  # 'pad' aliases eos (as the original's GPT-2 and Chinese SP tokenizers pad with eos); every
  # other command token has its own id.
  assert ids['pad'] == ids['eos']
  commands = {k: v for k, v in ids.items() if k != 'pad'}
  assert len(set(commands.values())) == len(commands)
  assert tok.vocab_size == 400
  text = 'And God said, Let there be light: and there was light.'
  assert tok.decode(tok.encode(text)) == text
  assert tok.encode('[MASK]') == [ids['MASK']] or ids['MASK'] in tok.encode('[MASK]')
  assert tok.encode_batch([text, text]) == [tok.encode(text)] * 2
  assert tok.sentence_end_ids  # '.', ':' ... pieces exist
  assert all(any(c in tok.sp.id_to_piece(i) for c in '.?!;:\n') for i in tok.sentence_end_ids)


def test_tokenizer_is_trained_once_and_reused_from_cache(corpus_cfg):
  cfg, cache = corpus_cfg
  first = tokenizer_lib.load_or_train(cfg, cache)
  mtime = os.path.getmtime(first.model_path)
  second = tokenizer_lib.load_or_train(cfg, cache)
  assert second.model_path == first.model_path
  assert os.path.getmtime(second.model_path) == mtime
  assert os.listdir(cache) == [os.path.basename(first.model_path)]


def test_explicit_model_path_is_loaded(corpus_cfg):
  cfg, cache = corpus_cfg
  path = tokenizer_lib.load_or_train(cfg, cache).model_path
  cfg2 = config_lib.default_data_config()
  cfg2.tokenizer_model_path = path
  assert tokenizer_lib.load_or_train(cfg2).model_path == path


def test_missing_model_path_is_a_clear_error(tmp_path):
  cfg = config_lib.default_data_config()
  cfg.tokenizer_model_path = str(tmp_path / 'nope.model')
  with pytest.raises(FileNotFoundError, match='tokenizer_model_path'):
    tokenizer_lib.load_or_train(cfg)


def test_padded_vocab_size_rounds_up_to_a_multiple_of_128():
  assert tokenizer_lib.padded_vocab_size(4000) == 4096
  assert tokenizer_lib.padded_vocab_size(30592) == 30592
  assert tokenizer_lib.padded_vocab_size(1, multiple=64) == 64

"""The released GLM tokenizers against ids made by the original THUDM/GLM tokenizer classes."""

import json
import os
import shutil

import numpy as np
import pytest

from input_pipeline import released_tokenizers
from input_pipeline import tokenizer as tokenizer_lib

DATA = os.path.join(os.path.dirname(__file__), 'data', 'released_tokenizers')
KINDS = ('bert-uncased', 'bert-cased', 'gpt2', 'roberta', 'chinese-sp')


def _expected(kind):
  with open(os.path.join(DATA, kind, 'expected.json'), encoding='utf-8') as f:
    return json.load(f)


@pytest.mark.parametrize('task_mask', [False, True])
@pytest.mark.parametrize('kind', KINDS)
def test_encode_equals_original_ids_special_ids_and_vocab_size(kind, task_mask):
  expected = _expected(kind)
  want = expected['task_mask'][str(task_mask).lower()]
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, kind), kind, task_mask=task_mask)
  assert tok.special_ids == want['special_ids']
  assert tok.vocab_size == want['vocab_size']
  texts = expected['texts']
  assert len(texts) >= 50
  got = [tok.encode(t) for t in texts]
  mismatches = [(t, g, w) for t, g, w in zip(texts, got, want['ids']) if g != w]
  assert not mismatches, mismatches[:3]
  assert tok.encode_batch(texts) == want['ids']
  assert [a.tolist() for a in tok.encode_batch_numpy(texts)] == want['ids']
  assert all(a.dtype == np.int32 for a in tok.encode_batch_numpy(texts[:5]))


@pytest.mark.parametrize('kind', KINDS)
def test_decode_equals_original_decode_ids(kind):
  expected = _expected(kind)
  want = expected['task_mask']['true']
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, kind), kind, task_mask=True)
  assert [tok.decode(ids) for ids in want['ids']] == want['decoded']


@pytest.mark.parametrize('task_mask', [False, True])
def test_chinese_fix_command_token_layout_equals_original(task_mask):
  want = _expected('chinese-sp')['fix_command_token'][str(task_mask).lower()]
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'chinese-sp'), 'chinese-sp',
                                      task_mask=task_mask, fix_command_token=True)
  assert tok.special_ids == want['special_ids']
  assert tok.vocab_size == want['vocab_size']
  assert tok.encode_batch(_expected('chinese-sp')['texts']) == want['ids']


def test_gpt2_command_ids_follow_the_text_vocabulary_in_the_original_order():
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'gpt2'), 'gpt2', task_mask=True)
  with open(os.path.join(DATA, 'gpt2', 'vocab.json')) as f:
    n = len(json.load(f))
  ids = tok.special_ids
  assert [ids[k] for k in ('sop', 'eop', 'CLS', 'MASK', 'SEP', 'unk', 'gMASK', 'sMASK')] == \
      list(range(n, n + 8))
  assert ids['eos'] == ids['pad'] == n - 1  # <|endoftext|>, the last text piece
  assert tok.vocab_size == n + 8


def test_mask_swallows_the_space_on_its_left_for_bpe_but_not_on_its_right():
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'gpt2'), 'gpt2', task_mask=True)
  mask = tok.special_ids['MASK']
  assert tok.encode('a [MASK] b') == tok.encode('a') + [mask] + tok.encode(' b')
  assert tok.encode('a    [gMASK]') == tok.encode('a') + [tok.special_ids['gMASK']]
  assert tok.encode('   ') == [] and tok.encode('') == []


def test_sentence_end_ids_are_pieces_holding_sentence_end_characters():
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'bert-uncased'), 'bert-uncased')
  ends = set(tok.sentence_end_ids)
  assert tok.encode('.')[0] in ends and tok.encode('?')[0] in ends and tok.encode(';')[0] in ends
  assert tok.encode('the')[0] not in ends
  assert not ends & set(tok.special_ids.values())


# ------------------------------------------------------------------------------- loading, errors


def test_load_tokenizer_reads_kind_and_task_mask_from_the_saved_config(tmp_path):
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'roberta'), 'roberta', task_mask=True)
  tok.save(tmp_path / 'tok')
  assert sorted(os.listdir(tmp_path / 'tok')) == ['merges.txt', 'tokenizer_config.json', 'vocab.json']
  again = tokenizer_lib.load_tokenizer(tmp_path / 'tok')
  assert (again.kind, again.task_mask) == ('roberta', True)
  assert again.special_ids == tok.special_ids
  assert tokenizer_lib.load_tokenizer(tmp_path / 'tok', task_mask=False).vocab_size == tok.vocab_size - 2


def test_load_tokenizer_without_kind_or_config_names_the_kinds(tmp_path):
  shutil.copy(os.path.join(DATA, 'bert-uncased', 'vocab.txt'), tmp_path)
  with pytest.raises(released_tokenizers.TokenizerError, match='bert-uncased, bert-cased, gpt2'):
    tokenizer_lib.load_tokenizer(tmp_path)
  assert tokenizer_lib.load_tokenizer(tmp_path, 'bert-uncased').kind == 'bert-uncased'


def test_load_tokenizer_treats_a_model_file_as_our_sentencepiece_tokenizer():
  # cog-pretrain.model has no GLM command pieces: our sentencepiece loader says so.
  path = os.path.join(DATA, 'chinese-sp', 'cog-pretrain.model')
  with pytest.raises(ValueError, match='lacks the GLM command token'):
    tokenizer_lib.load_tokenizer(path)
  assert tokenizer_lib.load_tokenizer(path, 'chinese-sp').kind == 'chinese-sp'


def test_unknown_kind_lists_the_kinds():
  with pytest.raises(released_tokenizers.TokenizerError,
                     match="unknown tokenizer kind 'bert'.*bert-uncased, bert-cased, gpt2, roberta, chinese-sp"):
    tokenizer_lib.load_pretrained(os.path.join(DATA, 'bert-uncased'), 'bert')


@pytest.mark.parametrize('kind,missing', [('gpt2', 'merges.txt'), ('bert-cased', 'vocab.txt'),
                                          ('chinese-sp', 'cog-pretrain.model')])
def test_missing_file_error_names_the_file_and_the_kind(tmp_path, kind, missing):
  shutil.copy(os.path.join(DATA, 'gpt2', 'vocab.json'), tmp_path)
  with pytest.raises(released_tokenizers.TokenizerError, match=f'{missing}.*{kind!r}'):
    tokenizer_lib.load_pretrained(tmp_path, kind)


def test_vocabulary_without_command_pieces_is_rejected(tmp_path):
  with open(os.path.join(DATA, 'bert-uncased', 'vocab.txt')) as f:
    lines = [l for l in f.read().split('\n') if l != '[MASK]']
  (tmp_path / 'vocab.txt').write_text('\n'.join(lines))
  with pytest.raises(released_tokenizers.TokenizerError, match=r"vocab.txt lacks \['\[MASK\]'\]"):
    tokenizer_lib.load_pretrained(tmp_path, 'bert-uncased')
  with open(os.path.join(DATA, 'roberta', 'vocab.json')) as f:
    vocab = json.load(f)
  del vocab['<mask>']
  (tmp_path / 'vocab.json').write_text(json.dumps(vocab))
  shutil.copy(os.path.join(DATA, 'roberta', 'merges.txt'), tmp_path)
  with pytest.raises(released_tokenizers.TokenizerError, match=r"vocab.json lacks \['<mask>'\]"):
    tokenizer_lib.load_pretrained(tmp_path, 'roberta')
  with pytest.raises(released_tokenizers.TokenizerError, match=r"lacks \['<\|endoftext\|>'\]"):
    tokenizer_lib.load_pretrained(os.path.join(DATA, 'roberta'), 'gpt2')


def test_merges_that_do_not_match_the_vocabulary_are_rejected(tmp_path):
  shutil.copy(os.path.join(DATA, 'gpt2', 'vocab.json'), tmp_path)
  (tmp_path / 'merges.txt').write_text('#version: 0.2\nq z\n')
  with pytest.raises(released_tokenizers.TokenizerError, match='do not belong together'):
    tokenizer_lib.load_pretrained(tmp_path, 'gpt2')


def test_blank_fallbacks_use_mask_without_task_masks():
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'bert-uncased'), 'bert-uncased')
  assert 'gMASK' not in tok.special_ids
  ids = tokenizer_lib.with_blank_fallbacks(tok.special_ids)
  assert ids['gMASK'] == ids['sMASK'] == ids['MASK'] == tok.special_ids['MASK']


def test_load_tokenizer_finds_the_tokenizer_stored_in_a_checkpoint_directory(tmp_path):
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'chinese-sp'), 'chinese-sp', task_mask=True,
                                      fix_command_token=True)
  tok.save(tmp_path / 'ckpt' / 'tokenizer')
  assert tokenizer_lib.tokenizer_beside(tmp_path / 'ckpt') == str(tmp_path / 'ckpt' / 'tokenizer')
  again = tokenizer_lib.load_tokenizer(tmp_path / 'ckpt')
  assert (again.kind, again.task_mask, again.fix_command_token) == ('chinese-sp', True, True)
  assert again.special_ids == tok.special_ids


@pytest.mark.parametrize('kind', KINDS)
def test_decode_skips_ids_past_the_vocabulary(kind):
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, kind), kind, task_mask=True)
  ids = tok.encode('In the beginning')
  assert tok.decode(ids + [tok.vocab_size, tok.vocab_size + 50]) == tok.decode(ids)


# ------------------------------------------------------------- [dBLOCK] (add_decoder_mask=True)


def _decoder_mask_expected(kind):
  with open(os.path.join(DATA, kind, 'decoder_mask.json'), encoding='utf-8') as f:
    return json.load(f)


@pytest.mark.parametrize('task_mask', [False, True])
@pytest.mark.parametrize('kind', KINDS)
def test_decoder_mask_ids_special_ids_vocab_size_and_decode_equal_original(kind, task_mask):
  expected = _decoder_mask_expected(kind)
  want = expected['task_mask'][str(task_mask).lower()]
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, kind), kind, task_mask=task_mask,
                                      decoder_mask=True)
  assert tok.special_ids == want['special_ids']
  assert tok.vocab_size == want['vocab_size']
  texts = expected['texts']
  assert sum('[dBLOCK]' in t for t in texts) >= 30
  got = tok.encode_batch(texts)
  mismatches = [(t, g, w) for t, g, w in zip(texts, got, want['ids']) if g != w]
  assert not mismatches, mismatches[:3]
  assert [a.tolist() for a in tok.encode_batch_numpy(texts)] == want['ids']
  assert [tok.decode(ids) for ids in want['ids']] == want['decoded']


@pytest.mark.parametrize('task_mask', [False, True])
def test_chinese_fix_command_token_with_decoder_mask_equals_original(task_mask):
  expected = _decoder_mask_expected('chinese-sp')
  want = expected['fix_command_token'][str(task_mask).lower()]
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'chinese-sp'), 'chinese-sp',
                                      task_mask=task_mask, fix_command_token=True, decoder_mask=True)
  assert tok.special_ids == want['special_ids']
  assert tok.vocab_size == want['vocab_size']
  assert tok.encode_batch(expected['texts']) == want['ids']
  assert [tok.decode(ids) for ids in want['ids']] == want['decoded']


@pytest.mark.parametrize('kind', KINDS)
def test_dblock_is_the_last_command_id_and_keeps_the_space_on_its_left(kind):
  plain = tokenizer_lib.load_pretrained(os.path.join(DATA, kind), kind, task_mask=True)
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, kind), kind, task_mask=True,
                                      decoder_mask=True)
  assert 'dBLOCK' not in plain.special_ids
  assert tok.special_ids == {**plain.special_ids, 'dBLOCK': plain.vocab_size}
  assert tok.vocab_size == plain.vocab_size + 1
  assert _decoder_mask_expected(kind)['task_mask']['true']['dblock_lstrip'] is False
  dblock = tok.special_ids['dBLOCK']
  # No lstrip (unlike [MASK] for BPE): 'a [dBLOCK]' keeps the space before [dBLOCK] in the text.
  assert tok.encode('a [dBLOCK] b') == tok.encode('a ') + [dblock] + tok.encode(' b')
  assert plain.encode('a [dBLOCK] b') != tok.encode('a [dBLOCK] b')


def test_load_tokenizer_restores_decoder_mask_from_the_saved_config(tmp_path):
  tok = tokenizer_lib.load_pretrained(os.path.join(DATA, 'gpt2'), 'gpt2', task_mask=True,
                                      decoder_mask=True)
  tok.save(tmp_path / 'ckpt' / 'tokenizer')
  with open(tmp_path / 'ckpt' / 'tokenizer' / 'tokenizer_config.json') as f:
    assert json.load(f)['decoder_mask'] is True
  for path in (tmp_path / 'ckpt' / 'tokenizer', tmp_path / 'ckpt'):
    again = tokenizer_lib.load_tokenizer(path)
    assert again.decoder_mask and again.special_ids == tok.special_ids
    assert again.vocab_size == tok.vocab_size
  assert 'dBLOCK' not in tokenizer_lib.load_tokenizer(tmp_path / 'ckpt', decoder_mask=False).special_ids
  # A config written before decoder_mask existed loads without [dBLOCK].
  tokenizer_lib.load_pretrained(os.path.join(DATA, 'gpt2'), 'gpt2').save(tmp_path / 'old')
  config = json.loads((tmp_path / 'old' / 'tokenizer_config.json').read_text())
  del config['decoder_mask']
  (tmp_path / 'old' / 'tokenizer_config.json').write_text(json.dumps(config))
  assert not tokenizer_lib.load_tokenizer(tmp_path / 'old').decoder_mask

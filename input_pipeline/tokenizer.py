"""Tokenizers: our sentencepiece one (train once on a corpus, cache, reload) and the loaders of
the released GLM tokenizers (`load_pretrained`, `load_tokenizer`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Iterable, Sequence

import sentencepiece as spm
from etils import epath

from input_pipeline import released_tokenizers

from input_pipeline.errors import DataSourceError

# GLM command tokens, as user-defined pieces (ids follow <unk>=0 in this order).
COMMAND_TOKENS = {
    'eos': '<|endoftext|>',  # end of document; also the padding id
    'CLS': '[CLS]',
    'MASK': '[MASK]',
    'sMASK': '[sMASK]',
    'gMASK': '[gMASK]',
    'sop': '<|startofpiece|>',
    'eop': '<|endofpiece|>',
    'SEP': '[SEP]',
}
SENTENCE_END_CHARS = released_tokenizers.SENTENCE_END_CHARS


def padded_vocab_size(n: int, multiple: int = 128) -> int:
  """Vocabulary rounded up to a multiple (the model pads its embedding table to this)."""
  return -(-int(n) // multiple) * multiple


class Tokenizer:
  """A loaded sentencepiece model plus GLM command-token ids."""

  def __init__(self, model_path: str, num_threads: int = 2):
    from etils import epath  # local or gs:// (a tokenizer kept in a bucket workdir)
    path = epath.Path(model_path)
    if not path.exists():
      raise FileNotFoundError(f'sentencepiece model {model_path!r} does not exist; set '
                              'tokenizer_model_path to a .model file or leave it empty to '
                              'train one')
    self.model_path = str(model_path)
    self.num_threads = int(num_threads)
    self.sp = spm.SentencePieceProcessor(model_proto=path.read_bytes())
    self.vocab_size = int(self.sp.get_piece_size())
    self.special_ids = {}
    for key, piece in COMMAND_TOKENS.items():
      idx = self.sp.piece_to_id(piece)
      if self.sp.id_to_piece(idx) != piece:
        raise ValueError(f'{model_path} lacks the GLM command token {piece!r}; retrain it with '
                         'tokenizer_lib.train() so command tokens are user-defined symbols')
      self.special_ids[key] = int(idx)
    self.pad_id = self.special_ids['eos']
    self.special_ids['pad'] = self.pad_id  # as the released GPT-2 style tokenizers: pad = eos
    # Pieces that end a sentence (used by the sentence objective and by packing).
    self.sentence_end_ids = [i for i in range(self.vocab_size)
                             if not self.sp.is_control(i) and i not in self.special_ids.values()
                             and any(c in self.sp.id_to_piece(i) for c in SENTENCE_END_CHARS)]

  def encode(self, text: str) -> list[int]:
    """Token ids of one text."""
    return self.sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many texts at once on `num_threads` threads (the fast path)."""
    return self.sp.encode(list(texts), num_threads=self.num_threads)

  def encode_batch_numpy(self, texts: Sequence[str]) -> list:
    """Like `encode_batch`, but int32 numpy arrays: no Python int objects per token."""
    return self.sp.encode(list(texts), num_threads=self.num_threads, out_type='numpy')

  def decode(self, ids: Iterable[int]) -> str:
    """Text of token ids (special tokens as written)."""
    return self.sp.decode([int(i) for i in ids])


def train(sentences: Iterable[str], model_path: str, *, vocab_size: int,
          model_type: str = 'unigram', input_sentence_size: int = 200_000,
          num_threads: int = 2) -> str:
  """Trains a sentencepiece model with the GLM command tokens; writes `model_path` atomically."""
  directory = os.path.dirname(os.path.abspath(model_path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    prefix = os.path.join(tmp, 'spm')
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(sentences), model_prefix=prefix, vocab_size=vocab_size,
          model_type=model_type, character_coverage=1.0, byte_fallback=True,
          input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
          num_threads=num_threads, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
          user_defined_symbols=list(COMMAND_TOKENS.values()), minloglevel=2)
    except RuntimeError as e:
      if 'sentences_.empty()' in str(e):
        raise DataSourceError('the corpus holds no text to train the tokenizer on; check the '
                              'source / files in the data config') from None
      raise DataSourceError(_vocab_size_advice(str(e), vocab_size)) from None
    os.replace(prefix + '.model', model_path)
  return model_path


def _vocab_size_advice(error: str, vocab_size: int) -> str:
  """sentencepiece's refusal as a fix: its own bound on vocab_size, in the data config's key."""
  import re  # pylint: disable=g-import-not-at-top
  low = re.search(r'smaller than required_chars\. \d+ vs (\d+)', error)
  high = re.search(r'Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)', error)
  if low:
    return (f'data.vocab_size={vocab_size} is too small for the characters of this corpus '
            f'(sentencepiece needs at least {low.group(1)}); raise --config.data.vocab_size')
  if high:
    return (f'data.vocab_size={vocab_size} is more than this corpus can fill (at most '
            f'{high.group(1)}); lower --config.data.vocab_size or use more text')
  return f'sentencepiece training failed ({error.strip().splitlines()[-1]}); check data.vocab_size'


def _training_sentences(docs: Iterable[str], max_chars: int):
  """Lines of the corpus (up to max_chars) for tokenizer training."""
  seen = 0
  for doc in docs:
    for line in doc.splitlines():
      line = line.strip()
      if line:
        yield line
        seen += len(line)
    if seen >= max_chars:
      return


def load_or_train(cfg, cache_dir: str | None = None):
  """The configured tokenizer: a released one (cfg.tokenizer_kind), cfg.tokenizer_model_path, or
  a sentencepiece model trained on the configured corpus once and cached."""
  from input_pipeline import sources  # local: keeps `tokenizer` importable without TF
  threads = cfg.get('tokenizer_threads', 2)
  if cfg.get('tokenizer_kind', ''):
    return load_configured_pretrained(cfg)
  check_no_decoder_mask(cfg)  # before training a tokenizer that could not be used
  if cfg.tokenizer_model_path:
    return Tokenizer(cfg.tokenizer_model_path, threads)
  cache_dir = (cache_dir or cfg.tokenizer_cache_dir
               or os.path.expanduser('~/.cache/glm_jax/tokenizers'))
  key = json.dumps({'corpus': sources.corpus_fingerprint(cfg), 'vocab': cfg.vocab_size,
                    'type': cfg.tokenizer_model_type, 'n': cfg.tokenizer_train_sentences,
                    'chars': cfg.tokenizer_train_max_chars, 'commands': COMMAND_TOKENS},
                   sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  path = os.path.join(cache_dir, f'spm_{cfg.vocab_size}_{digest}.model')
  if not os.path.exists(path):
    docs = sources.iterate_texts(cfg, split='train')
    train(_training_sentences(docs, cfg.tokenizer_train_max_chars), path,
          vocab_size=cfg.vocab_size, model_type=cfg.tokenizer_model_type,
          input_sentence_size=cfg.tokenizer_train_sentences, num_threads=threads)
  return Tokenizer(path, threads)


# ------------------------------------------------------------------- released GLM tokenizers

TOKENIZER_KINDS = released_tokenizers.KINDS


def load_pretrained(path, kind: str, *, task_mask: bool = False, fix_command_token: bool = False,
                    decoder_mask: bool = False,
                    num_threads: int = 2) -> released_tokenizers.ReleasedTokenizer:
  """A released GLM tokenizer with exactly the original's ids, from the directory of its files.

  `kind`: 'bert-uncased' | 'bert-cased' (vocab.txt), 'gpt2' | 'roberta' (vocab.json, merges.txt),
  'chinese-sp' (cog-pretrain.model). `task_mask` adds [gMASK] / [sMASK] (GLM-10B, GLM-2B,
  GLM-RoBERTa, the Chinese models); `fix_command_token` is GLM-Large-Chinese's id layout;
  `decoder_mask` adds [dBLOCK] after them (the original's add_decoder_mask, which pretraining
  with block_mask_prob or context_mask_ratio > 0 needs).
  """
  return released_tokenizers.load(path, kind, task_mask=task_mask,
                                  fix_command_token=fix_command_token, decoder_mask=decoder_mask,
                                  num_threads=num_threads)


def read_tokenizer_config(directory) -> dict | None:
  """The `tokenizer_config.json` beside released tokenizer files (None when there is none)."""
  path = epath.Path(directory) / released_tokenizers.CONFIG_NAME
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise released_tokenizers.TokenizerError(f'{path} is not JSON ({e}); rewrite it as '
                                             '{"kind": ..., "task_mask": ...}') from None


def load_tokenizer(path, kind: str | None = None, *, task_mask: bool | None = None,
                   fix_command_token: bool | None = None, decoder_mask: bool | None = None,
                   num_threads: int = 2):
  """Any tokenizer glm_jax uses, from one path, so every command line takes the same flag.

  A `.model` file is our sentencepiece tokenizer (unless kind='chinese-sp'); a directory holds a
  released tokenizer whose kind / task_mask / fix_command_token / decoder_mask come from the
  arguments, else from its `tokenizer_config.json` (written by `convert import --tokenizer` and
  by training); a checkpoint
  or workdir directory holding `tokenizer/` or `tokenizer.model` gives the tokenizer stored there.
  """
  path = str(path)
  target = epath.Path(path)
  if kind is None and path.endswith('.model'):
    return Tokenizer(path, num_threads)
  saved = read_tokenizer_config(path) if target.is_dir() else None
  if kind is None and saved is None:
    beside = tokenizer_beside(path) if target.is_dir() else None
    if beside is not None:  # a checkpoint directory with its tokenizer stored inside
      return load_tokenizer(beside, task_mask=task_mask, fix_command_token=fix_command_token,
                            decoder_mask=decoder_mask, num_threads=num_threads)
    raise released_tokenizers.TokenizerError(
        f'{path} is neither a sentencepiece .model file nor a directory with '
        f'{released_tokenizers.CONFIG_NAME}; pass the tokenizer kind (one of '
        f'{", ".join(TOKENIZER_KINDS)})')
  saved = saved or {}
  kind = kind if kind is not None else saved.get('kind')
  task_mask = task_mask if task_mask is not None else bool(saved.get('task_mask', False))
  if fix_command_token is None:
    fix_command_token = bool(saved.get('fix_command_token', False))
  if decoder_mask is None:
    decoder_mask = bool(saved.get('decoder_mask', False))
  return load_pretrained(path, kind, task_mask=task_mask, fix_command_token=fix_command_token,
                         decoder_mask=decoder_mask, num_threads=num_threads)


def load_configured_pretrained(cfg) -> released_tokenizers.ReleasedTokenizer:
  """The released tokenizer a data config names (tokenizer_kind, tokenizer_path, task_mask).

  [dBLOCK] is added exactly when the original's configure_data adds it: block_mask_prob > 0 or
  context_mask_ratio > 0 (its ids then follow the other command tokens, as there).
  """
  kind = released_tokenizers.check_kind(cfg.tokenizer_kind)
  if not cfg.get('tokenizer_path', ''):
    needs = ' and '.join(released_tokenizers.KIND_FILES[kind])
    raise released_tokenizers.TokenizerError(
        f'this config uses the released {kind!r} tokenizer: pass --config.data.tokenizer_path=DIR '
        f"(a directory with {needs}), or --config.data.tokenizer_kind='' to train a "
        'sentencepiece tokenizer on the corpus')
  return load_pretrained(cfg.tokenizer_path, kind, task_mask=bool(cfg.get('task_mask', False)),
                         fix_command_token=bool(cfg.get('fix_command_token', False)),
                         decoder_mask=needs_decoder_mask(cfg),
                         num_threads=cfg.get('tokenizer_threads', 2))


def check_no_decoder_mask(cfg) -> None:
  """One clear error where a config masks with [dBLOCK] but uses our sentencepiece tokenizer,
  which has no [dBLOCK] (adding one to COMMAND_TOKENS would change every trained model's ids)."""
  for name in ('block_mask_prob', 'context_mask_ratio'):
    value = cfg.get(name, 0.0) or 0.0
    if float(value) > 0.0:
      raise DataSourceError(
          f'config.data: {name}={value} needs a [dBLOCK] token, which our sentencepiece tokenizer '
          f'lacks; set --config.data.{name}=0, or use a released tokenizer '
          '(--config.data.tokenizer_kind=KIND --config.data.tokenizer_path=DIR), which then has '
          '[dBLOCK]')


def needs_decoder_mask(cfg) -> bool:
  """Whether a data config masks with [dBLOCK] (the original's add_decoder_mask condition)."""
  return (float(cfg.get('block_mask_prob', 0.0) or 0.0) > 0.0
          or float(cfg.get('context_mask_ratio', 0.0) or 0.0) > 0.0)


def tokenizer_beside(checkpoint_dir) -> str | None:
  """The tokenizer stored with a checkpoint (`convert import --tokenizer`, training), or None."""
  base = epath.Path(checkpoint_dir)
  for candidate in (base / 'tokenizer', base / 'tokenizer.model'):
    if candidate.exists():
      return str(candidate)
  return None


def store_beside(tokenizer_path, checkpoint_dir) -> str:
  """Copies a tokenizer (our .model file, or a released tokenizer's directory with its
  tokenizer_config.json) into a checkpoint directory, where `tokenizer_beside` finds it."""
  source, target = epath.Path(tokenizer_path), epath.Path(checkpoint_dir)
  target.mkdir(parents=True, exist_ok=True)
  if source.is_dir():
    (target / 'tokenizer').mkdir(exist_ok=True)
    for f in source.iterdir():
      if f.is_file():
        (target / 'tokenizer' / f.name).write_bytes(f.read_bytes())
    return str(target / 'tokenizer')
  (target / 'tokenizer.model').write_bytes(source.read_bytes())
  return str(target / 'tokenizer.model')


def with_blank_fallbacks(special_ids: dict) -> dict:
  """special_ids with [sMASK] / [gMASK] set to [MASK] where the tokenizer has no task masks:
  without --task-mask the original uses [MASK] for the sentence and document objectives too."""
  ids = dict(special_ids)
  ids.setdefault('sMASK', ids['MASK'])
  ids.setdefault('gMASK', ids['MASK'])
  return ids

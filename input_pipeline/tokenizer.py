"""SentencePiece tokenizer with GLM's command tokens: train once on a corpus, cache, reload."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Iterable, Sequence

import sentencepiece as spm

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
SENTENCE_END_CHARS = '.?!;:\n'


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
                              'tokenizer_model_path to a .model file or leave it empty to train one')
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
    # Pieces that end a sentence (used by the sentence objective and by packing).
    self.sentence_end_ids = [i for i in range(self.vocab_size)
                             if not self.sp.is_control(i) and i not in self.special_ids.values()
                             and any(c in self.sp.id_to_piece(i) for c in SENTENCE_END_CHARS)]

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many texts at once on `num_threads` threads (the fast path)."""
    return self.sp.encode(list(texts), num_threads=self.num_threads)

  def encode_batch_numpy(self, texts: Sequence[str]) -> list:
    """Like `encode_batch`, but int32 numpy arrays: no Python int objects per token."""
    return self.sp.encode(list(texts), num_threads=self.num_threads, out_type='numpy')

  def decode(self, ids: Iterable[int]) -> str:
    return self.sp.decode([int(i) for i in ids])


def train(sentences: Iterable[str], model_path: str, *, vocab_size: int, model_type: str = 'unigram',
          input_sentence_size: int = 200_000, num_threads: int = 2) -> str:
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
      raise DataSourceError(f'sentencepiece training failed ({e}); with a small corpus lower '
                            'vocab_size in the data config') from None
    os.replace(prefix + '.model', model_path)
  return model_path


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


def load_or_train(cfg, cache_dir: str | None = None) -> Tokenizer:
  """Loads cfg.tokenizer_model_path, or trains on the configured corpus once and caches it."""
  from input_pipeline import sources  # local: keeps `tokenizer` importable without TF
  threads = cfg.get('tokenizer_threads', 2)
  if cfg.tokenizer_model_path:
    return Tokenizer(cfg.tokenizer_model_path, threads)
  cache_dir = cache_dir or cfg.tokenizer_cache_dir or os.path.expanduser('~/.cache/glm_jax/tokenizers')
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

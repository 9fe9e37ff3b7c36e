"""The released GLM tokenizers (BERT WordPiece, GPT-2 / RoBERTa byte-level BPE, the Chinese
`cog-pretrain` SentencePiece) with the original's command tokens, ids and whitespace rules.

The text algorithms run in Hugging Face `tokenizers` (Rust) or sentencepiece (C++) behind a
backend per kind (`wordpiece.py`, `byte_bpe.py`, `sentencepiece_backend.py`); the command tokens
and their ids are in `command_tokens.py`. This module adds what GLM puts around them: command
tokens written in the text are cut out first, one command token after another in the original's
order (`[MASK]` and the task masks drop the whitespace on their left for the BPE and
SentencePiece kinds), blank text encodes to nothing, and the command tokens get ids after the
text vocabulary; and it loads a kind from the directory of its files (`load`).
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Sequence

import numpy as np
from etils import epath

from input_pipeline import command_tokens
from input_pipeline.byte_bpe import ByteBPEBackend, byte_decoder
from input_pipeline.command_tokens import CommandToken
from input_pipeline.errors import TokenizerError
from input_pipeline.sentencepiece_backend import SentencePieceBackend
from input_pipeline.wordpiece import WordPieceBackend

KINDS = ('bert-uncased', 'bert-cased', 'gpt2', 'roberta', 'chinese-sp')
# The files each kind reads from its directory (as the published GLM repositories ship them).
KIND_FILES = {
    'bert-uncased': ('vocab.txt',),
    'bert-cased': ('vocab.txt',),
    'gpt2': ('vocab.json', 'merges.txt'),
    'roberta': ('vocab.json', 'merges.txt'),
    'chinese-sp': ('cog-pretrain.model',),
}
SENTENCE_END_CHARS = '.?!;:\n。？！；…'  # as the original's contains_sentence_end
CONFIG_NAME = 'tokenizer_config.json'  # {"kind", "task_mask", "fix_command_token", "decoder_mask"}


def check_kind(kind) -> str:
  """The kind, or an error listing the kinds."""
  if kind not in KINDS:
    raise TokenizerError(f'unknown tokenizer kind {kind!r}; use one of {", ".join(KINDS)}')
  return kind


def _read_file(directory: epath.Path, name: str, kind: str) -> bytes:
  path = directory / name
  if not path.exists():
    raise TokenizerError(
        f'{path} does not exist: the {kind!r} tokenizer needs {" and ".join(KIND_FILES[kind])} '
        f'in {directory}; pass the directory holding the files of the released model')
  return path.read_bytes()


def _lines_like_readline(data: bytes) -> list[str]:
  """Lines as Python's text-mode readline gives them (\\n, \\r\\n and \\r end a line)."""
  lines = re.split(r'\r\n|\r|\n', data.decode('utf-8'))
  if lines and lines[-1] == '':
    lines.pop()
  return lines


# ----------------------------------------------------------------------------------- tokenizer


class ReleasedTokenizer:
  """A released GLM tokenizer; `encode` gives the original's `EncodeAsIds(text).tokenization`."""

  def __init__(self, kind: str, path, backend, commands: list[CommandToken], vocab_size: int,
               id_to_text: list[str | None], *, task_mask: bool, fix_command_token: bool = False,
               decoder_mask: bool = False):
    self.kind, self.path = kind, str(path)
    self.task_mask, self.fix_command_token = bool(task_mask), bool(fix_command_token)
    self.decoder_mask = bool(decoder_mask)
    self.backend = backend
    self.commands = list(commands)
    self.vocab_size = int(vocab_size)
    self.special_ids = {c.key: c.id for c in commands}
    self.pad_id = self.special_ids['eos']
    self._command_ids = {c.text: c.id for c in commands}
    self._command_re = re.compile('|'.join(re.escape(t) for t in sorted(self._command_ids, key=len,
                                                                          reverse=True)))
    # What the original prints for an id (the last command token of an id wins, as there).
    self._id_to_text = list(id_to_text) + [None] * max(0, self.vocab_size - len(id_to_text))
    self._id_to_command = {c.id: c.text for c in commands}
    self._sentence_end_ids = None

  # -- encoding -------------------------------------------------------------------------------
  def split_commands(self, text: str) -> list:
    """Text pieces (str) and command-token ids (int), cut as the original cuts them."""
    if not text.strip():
      return []
    if self._command_re.search(text) is None:
      return [text]
    parts = [text]
    for command in self.commands:
      out = []
      for part in parts:
        if isinstance(part, int):
          out.append(part)
          continue
        pieces = part.split(command.text)
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
          if i < last:
            if command.lstrip:
              piece = piece.rstrip()
            if piece:
              out.append(piece)
            out.append(command.id)
          elif piece:
            out.append(piece)
      parts = out
    return parts

  def _encode(self, texts: Sequence[str], numpy: bool) -> list:
    splits = [self.split_commands(t) for t in texts]
    if all(len(s) == 1 and isinstance(s[0], str) for s in splits):  # no command tokens, none blank
      return self.backend.encode_many(texts, numpy)
    pieces = [p for s in splits for p in s if isinstance(p, str)]
    encoded = iter(self.backend.encode_many(pieces) if pieces else ())
    out = []
    for s in splits:
      ids = []
      for p in s:
        if isinstance(p, int):
          ids.append(p)
        else:
          ids.extend(next(encoded))
      out.append(np.asarray(ids, np.int32) if numpy else ids)
    return out

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many texts with one call into the Rust / C++ encoder (the fast path)."""
    return [list(ids) for ids in self._encode(texts, numpy=False)]

  def encode(self, text: str) -> list[int]:
    """Token ids of one text, as the original tokenizer gives them."""
    return self.encode_batch([text])[0]

  def encode_batch_numpy(self, texts: Sequence[str]) -> list:
    """Like `encode_batch`, but int32 numpy arrays (what the input pipeline packs)."""
    return self._encode(texts, numpy=True)

  # -- decoding -------------------------------------------------------------------------------
  def id_to_token(self, token_id: int) -> str | None:
    """The piece (or command token) the original prints for an id; None past the vocabulary."""
    token_id = int(token_id)
    if token_id in self._id_to_command:
      return self._id_to_command[token_id]
    if 0 <= token_id < len(self._id_to_text):
      return self._id_to_text[token_id]
    return None

  def decode(self, ids: Iterable[int]) -> str:
    """Readable text, as the original's `DecodeIds`: WordPiece `##` joined, BPE bytes decoded."""
    ids = [int(i) for i in ids]
    if self.kind.startswith('bert'):
      words = []
      for token in (self.id_to_token(i) for i in ids):
        if token is None:
          continue
        if token.startswith('##') and words:
          words[-1] += token[2:]
        else:
          words.append(token)
      return ' '.join(words)
    if self.kind in ('gpt2', 'roberta'):
      decoder = byte_decoder()
      data = bytearray()
      for token in (self.id_to_token(i) for i in ids):
        if token is not None:  # ids past the vocabulary (embedding padding) print nothing
          data.extend(decoder.get(c, ord('?')) for c in token)
      return data.decode('utf-8', errors='replace')
    text, run = [], []
    pieces = len(self._id_to_text)
    ids = [i for i in ids if i in self._id_to_command or 0 <= i < pieces]
    for i in ids + [None]:
      if i is None or i in self._id_to_command:
        if run:
          text.append(self.backend.sp.decode(run))
          run = []
        if i is not None:
          text.append(self._id_to_command[i])
      else:
        run.append(i)
    return ''.join(text)

  # -- pipeline helpers -----------------------------------------------------------------------
  @property
  def sentence_end_ids(self) -> list[int]:
    """Text pieces whose printed form holds a sentence-end character (the original's test)."""
    if self._sentence_end_ids is None:
      ends = set(SENTENCE_END_CHARS)
      commands = set(self._id_to_command)
      self._sentence_end_ids = [i for i, t in enumerate(self._id_to_text)
                                if t is not None and i not in commands and not ends.isdisjoint(t)]
    return self._sentence_end_ids

  @property
  def files(self) -> tuple[str, ...]:
    """The file names this kind of tokenizer is made of (copied with a checkpoint)."""
    return KIND_FILES[self.kind]

  def config(self) -> dict:
    """What `tokenizer_config.json` records, so loading needs no flags."""
    return {'kind': self.kind, 'task_mask': self.task_mask,
            'fix_command_token': self.fix_command_token, 'decoder_mask': self.decoder_mask,
            'vocab_size': self.vocab_size}

  def save(self, directory) -> str:
    """Copies the tokenizer files to `directory` and writes `tokenizer_config.json` there."""
    target = epath.Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    source = epath.Path(self.path)
    for name in self.files:
      if source / name != target / name:
        (target / name).write_bytes((source / name).read_bytes())
    (target / CONFIG_NAME).write_text(json.dumps(self.config(), indent=1) + '\n')
    return str(target)


# -------------------------------------------------------------------------------------- loading


def _load_bert(directory, kind, task_mask, decoder_mask):
  vocab = {}
  for index, line in enumerate(_lines_like_readline(_read_file(directory, 'vocab.txt', kind))):
    vocab[line.strip()] = index  # a repeated line keeps its last index, as in the original
  commands, n = command_tokens.bert_commands(vocab, task_mask, kind, decoder_mask=decoder_mask)
  id_to_text = [None] * (max(vocab.values()) + 1 if vocab else 0)
  for token, index in vocab.items():
    id_to_text[index] = token
  backend = WordPieceBackend(vocab, lowercase=kind == 'bert-uncased')
  return ReleasedTokenizer(kind, directory, backend, commands, n, id_to_text, task_mask=task_mask,
                           decoder_mask=decoder_mask)


def _load_bpe(directory, kind, task_mask, decoder_mask):
  try:
    encoder = json.loads(_read_file(directory, 'vocab.json', kind).decode('utf-8'))
  except json.JSONDecodeError as e:
    raise TokenizerError(f'{directory / "vocab.json"} is not JSON ({e}); the {kind!r} tokenizer '
                         'needs the vocab.json of the released model') from None
  text = (_read_file(directory, 'merges.txt', kind).decode('utf-8')
          .replace('\r\n', '\n').replace('\r', '\n'))
  ranks = {}
  for rank, line in enumerate(text.split('\n')[1:-1]):  # skips the '#version' line, as the original
    pair = tuple(line.split())
    if len(pair) == 2:
      ranks[pair] = rank  # a repeated merge keeps its last rank, as in the original
  merges = sorted(ranks, key=ranks.get)
  for a, b in merges:
    if a + b not in encoder or a not in encoder or b not in encoder:
      raise TokenizerError(f'merges.txt merges {a!r} + {b!r} but vocab.json lacks '
                           f'{[t for t in (a, b, a + b) if t not in encoder]}; vocab.json and '
                           f'merges.txt of {directory} do not belong together')
  make_commands = (command_tokens.gpt2_commands if kind == 'gpt2'
                   else command_tokens.roberta_commands)
  commands, n = make_commands(encoder, task_mask, decoder_mask=decoder_mask)
  id_to_text = [None] * (max(encoder.values()) + 1 if encoder else 0)
  for token, index in encoder.items():
    id_to_text[index] = token
  backend = ByteBPEBackend(encoder, merges)
  return ReleasedTokenizer(kind, directory, backend, commands, n, id_to_text, task_mask=task_mask,
                           decoder_mask=decoder_mask)


def _load_sentencepiece(directory, kind, task_mask, fix_command_token, decoder_mask, num_threads):
  proto = _read_file(directory, 'cog-pretrain.model', kind)
  try:
    backend = SentencePieceBackend(proto, num_threads)
  except RuntimeError as e:
    raise TokenizerError(f'{directory / "cog-pretrain.model"} is not a sentencepiece model '
                         f'({e})') from None
  v = int(backend.sp.vocab_size())
  commands, n = command_tokens.chinese_commands(v, task_mask, fix_command_token,
                                                decoder_mask=decoder_mask)
  id_to_text = [backend.sp.id_to_piece(i) for i in range(v)]
  return ReleasedTokenizer(kind, directory, backend, commands, n, id_to_text, task_mask=task_mask,
                           fix_command_token=fix_command_token, decoder_mask=decoder_mask)


def load(path, kind: str, *, task_mask: bool = False, fix_command_token: bool = False,
         decoder_mask: bool = False, num_threads: int = 2) -> ReleasedTokenizer:
  """The released tokenizer of `kind` from the directory `path` (local or gs://).

  `decoder_mask` adds [dBLOCK] (the original's add_decoder_mask, for block_mask_prob /
  context_mask_ratio > 0).
  """
  check_kind(kind)
  directory = epath.Path(path)
  if kind == 'chinese-sp' and directory.name.endswith('.model') and directory.is_file():
    directory = directory.parent
  if not directory.exists():
    raise TokenizerError(f'tokenizer directory {directory} does not exist; the {kind!r} tokenizer '
                         f'needs {" and ".join(KIND_FILES[kind])} there')
  if kind.startswith('bert'):
    return _load_bert(directory, kind, bool(task_mask), bool(decoder_mask))
  if kind in ('gpt2', 'roberta'):
    return _load_bpe(directory, kind, bool(task_mask), bool(decoder_mask))
  return _load_sentencepiece(directory, kind, bool(task_mask), bool(fix_command_token),
                             bool(decoder_mask), num_threads)

"""The released GLM tokenizers (BERT WordPiece, GPT-2 / RoBERTa byte-level BPE, the Chinese
`cog-pretrain` SentencePiece) with the original's command tokens, ids and whitespace rules.

The text algorithms run in Hugging Face `tokenizers` (Rust) or sentencepiece (C++); this module
adds what GLM puts around them: command tokens written in the text are cut out first, one command
token after another in the original's order (`[MASK]` and the task masks drop the whitespace on
their left for the BPE and SentencePiece kinds), blank text encodes to nothing, and the command
tokens get ids after the text vocabulary. Where `tokenizers` would differ from the original's
Python (Greek capital sigma's final form, one CJK extension block), the text is prepared in Python.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from typing import Iterable, Sequence

import numpy as np
from etils import epath

from input_pipeline.errors import DataSourceError

KINDS = ('bert-uncased', 'bert-cased', 'gpt2', 'roberta', 'chinese-sp')
# The files each kind reads from its directory (as the published GLM repositories ship them).
KIND_FILES = {
    'bert-uncased': ('vocab.txt',),
    'bert-cased': ('vocab.txt',),
    'gpt2': ('vocab.json', 'merges.txt'),
    'roberta': ('vocab.json', 'merges.txt'),
    'chinese-sp': ('cog-pretrain.model',),
}
CONFIG_NAME = 'tokenizer_config.json'  # {"kind": ..., "task_mask": ..., "fix_command_token": ...}
SPECIAL_KEYS = ('pad', 'eos', 'CLS', 'MASK', 'SEP', 'unk', 'sop', 'eop')
TASK_MASK_KEYS = ('gMASK', 'sMASK')


class TokenizerError(DataSourceError):
  """Tokenizer files or options that cannot be used; the message names the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class CommandToken:
  key: str            # key in `special_ids`
  text: str           # how it is written in text
  id: int
  lstrip: bool = False  # swallows the whitespace on its left (GPT-2, RoBERTa, Chinese masks)


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


def _require(pieces: Iterable[str], vocab, kind: str, file_name: str):
  missing = [p for p in pieces if p not in vocab]
  if missing:
    raise TokenizerError(f'{file_name} lacks {missing}, which the {kind!r} tokenizer needs as '
                         'command tokens; use the vocabulary file of the released model')


# ------------------------------------------------------------------------------- command tokens


def _with_block_and_task(commands, n, task_mask, *, lstrip_task):
  """Appends sop/eop at n, n+1 and (task_mask) gMASK/sMASK after them; returns (commands, n)."""
  commands += [CommandToken('sop', '<|startofpiece|>', n), CommandToken('eop', '<|endofpiece|>', n + 1)]
  n += 2
  if task_mask:
    commands += [CommandToken('gMASK', '[gMASK]', n, lstrip_task),
                 CommandToken('sMASK', '[sMASK]', n + 1, lstrip_task)]
    n += 2
  return commands, n


def bert_commands(vocab: dict, task_mask: bool, kind: str = 'bert-uncased'):
  """WordPiece: the vocabulary's own [PAD] [CLS] [MASK] [UNK] [SEP]; eos is [PAD]."""
  _require(('[PAD]', '[CLS]', '[MASK]', '[UNK]', '[SEP]'), vocab, kind, 'vocab.txt')
  commands = [CommandToken('pad', '[PAD]', vocab['[PAD]']), CommandToken('CLS', '[CLS]', vocab['[CLS]']),
              CommandToken('MASK', '[MASK]', vocab['[MASK]']), CommandToken('unk', '[UNK]', vocab['[UNK]']),
              CommandToken('SEP', '[SEP]', vocab['[SEP]']), CommandToken('eos', '[PAD]', vocab['[PAD]'])]
  return _with_block_and_task(commands, len(vocab), task_mask, lstrip_task=False)


def gpt2_commands(encoder: dict, task_mask: bool):
  """GPT-2: eos/pad is <|endoftext|>; sop, eop, [CLS], [MASK], [SEP], [UNK] follow the vocabulary."""
  _require(('<|endoftext|>',), encoder, 'gpt2', 'vocab.json')
  eos, n = encoder['<|endoftext|>'], len(encoder)
  commands = [CommandToken('pad', '<|endoftext|>', eos), CommandToken('eos', '<|endoftext|>', eos),
              CommandToken('sop', '<|startofpiece|>', n), CommandToken('eop', '<|endofpiece|>', n + 1),
              CommandToken('CLS', '[CLS]', n + 2), CommandToken('MASK', '[MASK]', n + 3, True),
              CommandToken('SEP', '[SEP]', n + 4), CommandToken('unk', '[UNK]', n + 5)]
  n += 6
  if task_mask:
    commands += [CommandToken('gMASK', '[gMASK]', n, True), CommandToken('sMASK', '[sMASK]', n + 1, True)]
    n += 2
  return commands, n


def roberta_commands(encoder: dict, task_mask: bool):
  """RoBERTa: eos/pad/[SEP] are </s>, [CLS] is <s>, [MASK] is <mask>, [UNK] is <unk>."""
  _require(('<s>', '</s>', '<mask>', '<unk>'), encoder, 'roberta', 'vocab.json')
  end = encoder['</s>']
  commands = [CommandToken('pad', '<|endoftext|>', end), CommandToken('eos', '<|endoftext|>', end),
              CommandToken('SEP', '[SEP]', end), CommandToken('CLS', '[CLS]', encoder['<s>']),
              CommandToken('MASK', '[MASK]', encoder['<mask>'], True),
              CommandToken('unk', '[UNK]', encoder['<unk>'])]
  return _with_block_and_task(commands, len(encoder), task_mask, lstrip_task=True)


def chinese_commands(num_pieces: int, task_mask: bool, fix_command_token: bool):
  """cog-pretrain: eos, [SEP], [CLS], [MASK], [UNK] after the pieces; sop/eop skip one id.

  Without `fix_command_token` (GLM-10B-Chinese) [gMASK] shares eop's id, as in the original;
  GLM-Large-Chinese was trained with the fix ([sMASK], [gMASK] after eop).
  """
  v = num_pieces
  commands = [CommandToken('pad', '<|endoftext|>', v), CommandToken('eos', '<|endoftext|>', v),
              CommandToken('SEP', '[SEP]', v + 1), CommandToken('CLS', '[CLS]', v + 2),
              CommandToken('MASK', '[MASK]', v + 3, True), CommandToken('unk', '[UNK]', v + 4)]
  n = v + 5
  commands += [CommandToken('sop', '<|startofpiece|>', n + 1), CommandToken('eop', '<|endofpiece|>', n + 2)]
  n += 3 if fix_command_token else 2
  if task_mask:
    order = (('sMASK', '[sMASK]'), ('gMASK', '[gMASK]')) if fix_command_token else \
            (('gMASK', '[gMASK]'), ('sMASK', '[sMASK]'))
    commands += [CommandToken(k, t, n + i, True) for i, (k, t) in enumerate(order)]
    n += 2
  return commands, n


# ------------------------------------------------------------------------------------ backends


def byte_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character table (printable Latin-1 bytes stay)."""
  keep = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
  table, extra = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


class _HFBackend:
  """A `tokenizers.Tokenizer` without added tokens; batches go through the Rust encoder."""

  def __init__(self, hf):
    self.hf = hf

  def prepare(self, text: str) -> str:
    return text

  def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
    texts = [self.prepare(t) for t in texts]
    return [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]


# Greek capital sigma lowercases to the final form by context in Python (Rust's per-character
# lowercase never does); the original spaces out 0x2B820-0x2B91F as CJK, `tokenizers` does not.
_SIGMA = '\u03a3'
_CJK_GAP = re.compile('([\U0002B820-\U0002B91F])')
_ORIGINAL_CJK = re.compile('([\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f'
                           '\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f])')


def _bert_clean(text: str) -> str:
  """The original BasicTokenizer's cleaning: drop NUL, U+FFFD and controls; whitespace -> space."""
  out = []
  for ch in text:
    if ch in ' \t\n\r':
      out.append(' ')
    elif ord(ch) == 0 or ord(ch) == 0xFFFD or unicodedata.category(ch).startswith('C'):
      continue
    elif unicodedata.category(ch) == 'Zs':
      out.append(' ')
    else:
      out.append(ch)
  return ''.join(out)


class WordPieceBackend(_HFBackend):
  """BERT: clean, space out CJK, (lowercase + strip accents), split punctuation, WordPiece."""

  def __init__(self, vocab: dict[str, int], lowercase: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    hf = Tokenizer(models.WordPiece(vocab=vocab, unk_token='[UNK]', max_input_chars_per_word=100))
    hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=lowercase, lowercase=lowercase)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    super().__init__(hf)
    self.lowercase = lowercase

  def prepare(self, text: str) -> str:
    if _CJK_GAP.search(text):
      text = _CJK_GAP.sub(r' \1 ', text)
    if self.lowercase and _SIGMA in text:
      # Lowercase each whitespace-separated word in Python, as the original does.
      spaced = _ORIGINAL_CJK.sub(r' \1 ', _bert_clean(text))
      text = ' '.join(word.lower() for word in spaced.split())
    return text


class ByteBPEBackend(_HFBackend):
  """GPT-2 / RoBERTa: GPT-2's split regex, bytes -> printable characters, ranked merges."""

  def __init__(self, encoder: dict[str, int], merges: list[tuple[str, str]]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = dict(encoder)
    unk = None
    if any(ch not in vocab for ch in byte_to_unicode().values()):
      # The original maps a piece missing from vocab.json to id 0; route unknown bytes there.
      unk = '\u0000<glm-missing-byte>'
      vocab[unk] = 0
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=False))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    super().__init__(hf)


class SentencePieceBackend:
  """cog-pretrain: plain `EncodeAsIds` per piece of text."""

  def __init__(self, model_proto: bytes, num_threads: int = 2):
    import sentencepiece as spm
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.num_threads = num_threads

  def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
    return self.sp.encode(list(texts), num_threads=self.num_threads)


# ----------------------------------------------------------------------------------- tokenizer


class ReleasedTokenizer:
  """A released GLM tokenizer; `encode` gives the original's `EncodeAsIds(text).tokenization`."""

  def __init__(self, kind: str, path, backend, commands: list[CommandToken], vocab_size: int,
               id_to_text: list[str | None], *, task_mask: bool, fix_command_token: bool = False):
    self.kind, self.path = kind, str(path)
    self.task_mask, self.fix_command_token = bool(task_mask), bool(fix_command_token)
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

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Encodes many texts with one call into the Rust / C++ encoder (the fast path)."""
    splits = [self.split_commands(t) for t in texts]
    pieces = [p for s in splits for p in s if isinstance(p, str)]
    encoded = iter(self.backend.encode_many(pieces) if pieces else ())
    out = []
    for s in splits:
      if len(s) == 1 and isinstance(s[0], str):
        out.append(list(next(encoded)))
        continue
      ids = []
      for p in s:
        if isinstance(p, int):
          ids.append(p)
        else:
          ids.extend(next(encoded))
      out.append(ids)
    return out

  def encode(self, text: str) -> list[int]:
    return self.encode_batch([text])[0]

  def encode_batch_numpy(self, texts: Sequence[str]) -> list:
    """Like `encode_batch`, but int32 numpy arrays (what the input pipeline packs)."""
    return [np.asarray(ids, np.int32) for ids in self.encode_batch(texts)]

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
      decoder = _byte_decoder()
      data = bytearray()
      for i in ids:
        token = self.id_to_token(i)
        if token is None:
          raise KeyError(f'id {i} is outside the {self.kind!r} vocabulary of {self.vocab_size}')
        data.extend(decoder.get(c, ord('?')) for c in token)
      return data.decode('utf-8', errors='replace')
    text, run = [], []
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
      from input_pipeline.tokenizer import SENTENCE_END_CHARS  # pylint: disable=g-import-not-at-top
      ends = set(SENTENCE_END_CHARS)
      commands = set(self._id_to_command)
      self._sentence_end_ids = [i for i, t in enumerate(self._id_to_text)
                                if t is not None and i not in commands and not ends.isdisjoint(t)]
    return self._sentence_end_ids

  @property
  def files(self) -> tuple[str, ...]:
    return KIND_FILES[self.kind]

  def config(self) -> dict:
    """What `tokenizer_config.json` records, so loading needs no flags."""
    return {'kind': self.kind, 'task_mask': self.task_mask,
            'fix_command_token': self.fix_command_token, 'vocab_size': self.vocab_size}

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


_BYTE_DECODER = None


def _byte_decoder() -> dict[str, int]:
  global _BYTE_DECODER
  if _BYTE_DECODER is None:
    _BYTE_DECODER = {c: b for b, c in byte_to_unicode().items()}
  return _BYTE_DECODER


# -------------------------------------------------------------------------------------- loading


def _load_bert(directory, kind, task_mask):
  vocab = {}
  for index, line in enumerate(_lines_like_readline(_read_file(directory, 'vocab.txt', kind))):
    vocab[line.strip()] = index  # a repeated line keeps its last index, as in the original
  commands, n = bert_commands(vocab, task_mask, kind)
  id_to_text = [None] * (max(vocab.values()) + 1 if vocab else 0)
  for token, index in vocab.items():
    id_to_text[index] = token
  backend = WordPieceBackend(vocab, lowercase=kind == 'bert-uncased')
  return ReleasedTokenizer(kind, directory, backend, commands, n, id_to_text, task_mask=task_mask)


def _load_bpe(directory, kind, task_mask):
  try:
    encoder = json.loads(_read_file(directory, 'vocab.json', kind).decode('utf-8'))
  except json.JSONDecodeError as e:
    raise TokenizerError(f'{directory / "vocab.json"} is not JSON ({e}); the {kind!r} tokenizer '
                         'needs the vocab.json of the released model') from None
  text = _read_file(directory, 'merges.txt', kind).decode('utf-8').replace('\r\n', '\n').replace('\r', '\n')
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
  commands, n = (gpt2_commands if kind == 'gpt2' else roberta_commands)(encoder, task_mask)
  id_to_text = [None] * (max(encoder.values()) + 1 if encoder else 0)
  for token, index in encoder.items():
    id_to_text[index] = token
  backend = ByteBPEBackend(encoder, merges)
  return ReleasedTokenizer(kind, directory, backend, commands, n, id_to_text, task_mask=task_mask)


def _load_sentencepiece(directory, kind, task_mask, fix_command_token, num_threads):
  proto = _read_file(directory, 'cog-pretrain.model', kind)
  try:
    backend = SentencePieceBackend(proto, num_threads)
  except RuntimeError as e:
    raise TokenizerError(f'{directory / "cog-pretrain.model"} is not a sentencepiece model ({e})') from None
  v = int(backend.sp.vocab_size())
  commands, n = chinese_commands(v, task_mask, fix_command_token)
  id_to_text = [backend.sp.id_to_piece(i) for i in range(v)]
  return ReleasedTokenizer(kind, directory, backend, commands, n, id_to_text, task_mask=task_mask,
                           fix_command_token=fix_command_token)


def load(path, kind: str, *, task_mask: bool = False, fix_command_token: bool = False,
         num_threads: int = 2) -> ReleasedTokenizer:
  """The released tokenizer of `kind` from the directory `path` (local or gs://)."""
  check_kind(kind)
  directory = epath.Path(path)
  if kind == 'chinese-sp' and directory.name.endswith('.model') and directory.is_file():
    directory = directory.parent
  if not directory.exists():
    raise TokenizerError(f'tokenizer directory {directory} does not exist; the {kind!r} tokenizer '
                         f'needs {" and ".join(KIND_FILES[kind])} there')
  if kind.startswith('bert'):
    return _load_bert(directory, kind, bool(task_mask))
  if kind in ('gpt2', 'roberta'):
    return _load_bpe(directory, kind, bool(task_mask))
  return _load_sentencepiece(directory, kind, bool(task_mask), bool(fix_command_token), num_threads)

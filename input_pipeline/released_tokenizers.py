"""The released GLM tokenizers (BERT WordPiece, GPT-2 / RoBERTa byte-level BPE, the Chinese
`cog-pretrain` SentencePiece) with the original's command tokens, ids and whitespace rules.

The text algorithms run in Hugging Face `tokenizers` (Rust) or sentencepiece (C++); this module
adds what GLM puts around them: command tokens written in the text are cut out first, one command
token after another in the original's order (`[MASK]` and the task masks drop the whitespace on
their left for the BPE and SentencePiece kinds), blank text encodes to nothing, and the command
tokens get ids after the text vocabulary. Where `tokenizers` would differ from the original's
Python (see `WordPieceBackend`), that text is split into words in Python.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import unicodedata
from typing import Iterable, Sequence

import numpy as np
from etils import epath

from input_pipeline.errors import DataSourceError, TokenizerError

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


@dataclasses.dataclass(frozen=True)
class CommandToken:
  """A special token of a released tokenizer: its key, its text and its id."""
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


def with_decoder_mask(commands, n, decoder_mask):
  """Appends [dBLOCK] at n when `decoder_mask` (the original's add_decoder_mask: last, after the
  block symbols and task masks, no whitespace stripping); returns (commands, n)."""
  if decoder_mask:
    return commands + [CommandToken('dBLOCK', '[dBLOCK]', n)], n + 1
  return commands, n


def bert_commands(vocab: dict, task_mask: bool, kind: str = 'bert-uncased', *,
                  decoder_mask: bool = False):
  """WordPiece: the vocabulary's own [PAD] [CLS] [MASK] [UNK] [SEP]; eos is [PAD]."""
  _require(('[PAD]', '[CLS]', '[MASK]', '[UNK]', '[SEP]'), vocab, kind, 'vocab.txt')
  commands = [CommandToken('pad', '[PAD]', vocab['[PAD]']), CommandToken('CLS', '[CLS]', vocab['[CLS]']),
              CommandToken('MASK', '[MASK]', vocab['[MASK]']), CommandToken('unk', '[UNK]', vocab['[UNK]']),
              CommandToken('SEP', '[SEP]', vocab['[SEP]']), CommandToken('eos', '[PAD]', vocab['[PAD]'])]
  return with_decoder_mask(*_with_block_and_task(commands, len(vocab), task_mask, lstrip_task=False),
                           decoder_mask)


def gpt2_commands(encoder: dict, task_mask: bool, *, decoder_mask: bool = False):
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
  return with_decoder_mask(commands, n, decoder_mask)


def roberta_commands(encoder: dict, task_mask: bool, *, decoder_mask: bool = False):
  """RoBERTa: eos/pad/[SEP] are </s>, [CLS] is <s>, [MASK] is <mask>, [UNK] is <unk>."""
  _require(('<s>', '</s>', '<mask>', '<unk>'), encoder, 'roberta', 'vocab.json')
  end = encoder['</s>']
  commands = [CommandToken('pad', '<|endoftext|>', end), CommandToken('eos', '<|endoftext|>', end),
              CommandToken('SEP', '[SEP]', end), CommandToken('CLS', '[CLS]', encoder['<s>']),
              CommandToken('MASK', '[MASK]', encoder['<mask>'], True),
              CommandToken('unk', '[UNK]', encoder['<unk>'])]
  return with_decoder_mask(*_with_block_and_task(commands, len(encoder), task_mask, lstrip_task=True),
                           decoder_mask)


def chinese_commands(num_pieces: int, task_mask: bool, fix_command_token: bool, *,
                     decoder_mask: bool = False):
  """cog-pretrain: eos, [SEP], [CLS], [MASK], [UNK] after the pieces; sop/eop skip one id.

  Without `fix_command_token` (GLM-10B-Chinese) [gMASK] shares eop's id, as in the original
  (and so does [dBLOCK] when there are no task masks); GLM-Large-Chinese was trained with the
  fix ([sMASK], [gMASK] after eop).
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
  return with_decoder_mask(commands, n, decoder_mask)


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

  def encode_many(self, texts: Sequence[str], numpy: bool = False) -> list:
    ids = [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]
    return [np.asarray(i, np.int32) for i in ids] if numpy else ids


_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
  return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(ch: str) -> bool:
  cp = ord(ch)
  return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
          or unicodedata.category(ch).startswith('P'))


def bert_words(text: str, lowercase: bool) -> list[str]:
  """The original BERT basic tokenization in Python: drop controls, whitespace to spaces, space
  out CJK, split on whitespace, lowercase and strip accents per word, cut out punctuation."""
  chars = []
  for ch in text:
    cp = ord(ch)
    if ch in ' \t\n\r' or unicodedata.category(ch) == 'Zs':
      chars.append(' ')
    elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith('C'):
      continue
    elif _is_cjk(cp):
      chars += (' ', ch, ' ')
    else:
      chars.append(ch)
  words = []
  for word in ''.join(chars).split():
    if lowercase:
      word = ''.join(c for c in unicodedata.normalize('NFD', word.lower())
                     if unicodedata.category(c) != 'Mn')
    current = ''
    for ch in word:
      if _is_punctuation(ch):
        if current:
          words.append(current)
          current = ''
        words.append(ch)
      else:
        current += ch
    if current:
      words.append(current)
  return ' '.join(words).split()


# ASCII text: controls (but \t \n \r) vanish, every other non-alphanumeric character is punctuation.
_ASCII_CONTROL = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_DROP_ASCII_CONTROL = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}
_ASCII_WORD = re.compile('[A-Za-z0-9]+|[!-/:-@\\[-`{-~]')


class WordCache:
  """Pre-split words -> ids, each distinct word encoded once by `tokenizers` (the fast path:
  a corpus has few distinct words, so almost every word is one dict lookup)."""

  def __init__(self, hf, max_words: int = 1 << 18):
    self.hf, self.max_words, self.ids = hf, max_words, {}

  def _learn(self, word_lists):
    ids = self.ids
    missing = {w for words in word_lists for w in words if w not in ids}
    if len(ids) + len(missing) > self.max_words:
      ids.clear()
      missing = {w for words in word_lists for w in words}
    missing = list(missing)
    for word, enc in zip(missing, self.hf.encode_batch_fast([[w] for w in missing],
                                                            is_pretokenized=True,
                                                            add_special_tokens=False)):
      ids[word] = enc.ids

  def encode(self, word_lists: Sequence[Sequence[str]], numpy: bool = False) -> list:
    """Ids of each list of words (int32 arrays when `numpy`)."""
    for attempt in range(2):
      get = self.ids.__getitem__
      chain = itertools.chain.from_iterable
      try:
        if numpy:
          return [np.fromiter(chain(map(get, words)), np.int32) for words in word_lists]
        return [list(chain(map(get, words))) for words in word_lists]
      except KeyError:
        if attempt:
          raise
        self._learn(word_lists)


class WordPieceBackend(_HFBackend):
  """BERT: clean, space out CJK, (lowercase + strip accents), split punctuation, WordPiece.

  `tokenizers` runs all of it in Rust, but its Unicode tables are newer than Python's (the
  original's), its CJK table has one block shifted, and it lowercases Greek capital sigma
  without Python's final-form rule. Each non-ASCII character is therefore probed once (both
  ways on `a<c>a`); a text holding a character on which they disagree is split into words in
  Python (`bert_words`) and only the WordPiece step runs in Rust.
  """

  def __init__(self, vocab: dict[str, int], lowercase: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    def wordpiece():
      return models.WordPiece(vocab=vocab, unk_token='[UNK]', max_input_chars_per_word=100)
    hf = Tokenizer(wordpiece())
    hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=lowercase, lowercase=lowercase)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    super().__init__(hf)
    self.words_hf = Tokenizer(wordpiece())  # WordPiece alone, on words split in Python
    self.cache = WordCache(self.words_hf)
    self.lowercase = lowercase
    self._agree: set[str] = set()
    self._disagree: set[str] = {'\u03a3'} if lowercase else set()  # sigma: context-dependent

  def _probe(self, chars):
    """Sorts new characters into agree / disagree (Rust vs the original's Python rules)."""
    for ch in chars:
      probe = f'a{ch}a'
      rust = [w for w, _ in self.hf.pre_tokenizer.pre_tokenize_str(self.hf.normalizer.normalize_str(probe))]
      (self._agree if rust == bert_words(probe, self.lowercase) else self._disagree).add(ch)

  def _needs_python(self, text: str) -> bool:
    if text.isascii():
      return False
    chars = set(text)
    chars -= self._agree
    if not chars:
      return False
    new = chars - self._disagree
    if new:
      self._probe(new)
    return not chars.isdisjoint(self._disagree)

  def _ascii_words(self, text: str) -> list[str]:
    """`bert_words` for ASCII text, in C: controls dropped, lowercased, alnum runs / punctuation."""
    if _ASCII_CONTROL.search(text):
      text = text.translate(_DROP_ASCII_CONTROL)
    if self.lowercase:
      text = text.lower()
    return _ASCII_WORD.findall(text)

  def encode_many(self, texts: Sequence[str], numpy: bool = False) -> list:
    """Encodes many texts in one call (the pipeline tokenizes documents in batches)."""
    ascii_texts = [i for i, t in enumerate(texts) if t.isascii()]
    if len(ascii_texts) == len(texts):
      return self.cache.encode([self._ascii_words(t) for t in texts], numpy)
    out = list(texts)
    other = [i for i, t in enumerate(texts) if not t.isascii()]
    for i, ids in zip(ascii_texts, self.cache.encode([self._ascii_words(texts[i]) for i in ascii_texts],
                                                     numpy)):
      out[i] = ids
    slow = [i for i in other if self._needs_python(texts[i])]
    slow_set = set(slow)
    fast = [i for i in other if i not in slow_set]
    for i, ids in zip(fast, super().encode_many([texts[i] for i in fast], numpy)):
      out[i] = ids
    words = [bert_words(texts[i], self.lowercase) for i in slow]
    nonempty = [w for w in words if w]
    encoded = iter(self.words_hf.encode_batch_fast(nonempty, is_pretokenized=True,
                                                   add_special_tokens=False) if nonempty else ())
    for i, w in zip(slow, words):
      ids = next(encoded).ids if w else []
      out[i] = np.asarray(ids, np.int32) if numpy else ids
    return out


GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


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
    # Pieces come split by GPT-2's regex (the `regex` module, as in the original); Rust maps
    # their bytes to characters and applies the merges, once per distinct piece.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    super().__init__(hf)
    import regex  # pylint: disable=g-import-not-at-top
    self._split = regex.compile(GPT2_SPLIT).findall
    self._split_ascii = _ascii_gpt2_split(regex)
    self.cache = WordCache(hf)

  def encode_many(self, texts: Sequence[str], numpy: bool = False) -> list:
    """Encodes many texts in one call (the pipeline tokenizes documents in batches)."""
    split, split_ascii = self._split, self._split_ascii
    return self.cache.encode([split_ascii(t) if t.isascii() else split(t) for t in texts], numpy)


def _ascii_gpt2_split(regex):
  """GPT-2's split for ASCII text in the faster `re`, its classes read from `regex` itself."""
  ascii_chars = [chr(c) for c in range(128)]
  def cls(pattern):
    return re.escape(''.join(c for c in ascii_chars if regex.match(pattern, c)))
  space, letter, number = cls(r'\s'), cls(r'\p{L}'), cls(r'\p{N}')
  return re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letter}]+| ?[{number}]+| ?[^{space}{letter}{number}]+"
                    rf"|[{space}]+(?![^{space}])|[{space}]+").findall


class SentencePieceBackend:
  """cog-pretrain: plain `EncodeAsIds` per piece of text."""

  def __init__(self, model_proto: bytes, num_threads: int = 2):
    import sentencepiece as spm
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.num_threads = num_threads

  def encode_many(self, texts: Sequence[str], numpy: bool = False) -> list:
    """Encodes many texts in one call (the pipeline tokenizes documents in batches)."""
    if numpy:
      return self.sp.encode(list(texts), num_threads=self.num_threads, out_type='numpy')
    return self.sp.encode(list(texts), num_threads=self.num_threads)


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
      decoder = _byte_decoder()
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


_BYTE_DECODER = None


def _byte_decoder() -> dict[str, int]:
  global _BYTE_DECODER
  if _BYTE_DECODER is None:
    _BYTE_DECODER = {c: b for b, c in byte_to_unicode().items()}
  return _BYTE_DECODER


# -------------------------------------------------------------------------------------- loading


def _load_bert(directory, kind, task_mask, decoder_mask):
  vocab = {}
  for index, line in enumerate(_lines_like_readline(_read_file(directory, 'vocab.txt', kind))):
    vocab[line.strip()] = index  # a repeated line keeps its last index, as in the original
  commands, n = bert_commands(vocab, task_mask, kind, decoder_mask=decoder_mask)
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
  commands, n = (gpt2_commands if kind == 'gpt2' else roberta_commands)(encoder, task_mask,
                                                                          decoder_mask=decoder_mask)
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
    raise TokenizerError(f'{directory / "cog-pretrain.model"} is not a sentencepiece model ({e})') from None
  v = int(backend.sp.vocab_size())
  commands, n = chinese_commands(v, task_mask, fix_command_token, decoder_mask=decoder_mask)
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

"""BERT's WordPiece tokenization as the original runs it (Python's Unicode rules), fast.

The `bert-uncased` / `bert-cased` backend: `tokenizers` in Rust where it agrees with the original's
Python, the original's word splitting in Python (`bert_words`) where it does not.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import numpy as np

from input_pipeline.word_cache import HFBackend, WordCache


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


class WordPieceBackend(HFBackend):
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
      rust = [w for w, _ in self.hf.pre_tokenizer.pre_tokenize_str(
          self.hf.normalizer.normalize_str(probe))]
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
    for i, ids in zip(ascii_texts,
                      self.cache.encode([self._ascii_words(texts[i]) for i in ascii_texts], numpy)):
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

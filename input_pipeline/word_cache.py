"""What the WordPiece and byte-level BPE backends share: the Rust encoder of `tokenizers`, and a
cache of pre-split words so that each distinct word is encoded once."""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np


class HFBackend:
  """A `tokenizers.Tokenizer` without added tokens; batches go through the Rust encoder."""

  def __init__(self, hf):
    self.hf = hf

  def encode_many(self, texts: Sequence[str], numpy: bool = False) -> list:
    ids = [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]
    return [np.asarray(i, np.int32) for i in ids] if numpy else ids


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

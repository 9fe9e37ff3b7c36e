"""GPT-2's byte-level BPE (the `gpt2` and `roberta` kinds): split regex, byte table, merges.

The merges run in `tokenizers` (Rust); the pieces are split by GPT-2's regex, as in the original.
"""

from __future__ import annotations

import re
from typing import Sequence

from input_pipeline.word_cache import HFBackend, WordCache


def byte_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character table (printable Latin-1 bytes stay)."""
  keep = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1),
          *range(ord('®'), ord('ÿ') + 1)]
  table, extra = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


_BYTE_DECODER = None


def byte_decoder() -> dict[str, int]:
  """Printable character -> byte (the inverse of `byte_to_unicode`), built once."""
  global _BYTE_DECODER
  if _BYTE_DECODER is None:
    _BYTE_DECODER = {c: b for b, c in byte_to_unicode().items()}
  return _BYTE_DECODER


GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class ByteBPEBackend(HFBackend):
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
  return re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letter}]+| ?[{number}]+"
                    rf"| ?[^{space}{letter}{number}]+|[{space}]+(?![^{space}])|[{space}]+").findall

"""The backend of the Chinese `cog-pretrain` tokenizer (`chinese-sp`): sentencepiece's own
encoder."""

from __future__ import annotations

from typing import Sequence


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

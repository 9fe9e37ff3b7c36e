"""The random-weight GLM that the speed benchmarks time: named shapes, size flags, one builder.

Speed does not depend on the weights, so every benchmark draws them with `PRNGKey(0)`.
"""

from __future__ import annotations

import argparse

import jax

from glm_jax.modeling import model


def tiny_shape(max_sequence_length: int) -> dict:
  """configs/tiny.py's model (fp32, for CPUs) with a sentencepiece-sized vocabulary."""
  return dict(vocab_size=4096, num_layers=2, hidden_size=128, num_heads=2,
              max_sequence_length=max_sequence_length, dtype="float32")


def glm_large_shape(max_sequence_length: int) -> dict:
  """GLM-Large's size (configs/large.py) in bf16, the accelerator shape."""
  return dict(vocab_size=30592, num_layers=24, hidden_size=1024, num_heads=16,
              max_sequence_length=max_sequence_length, dtype="bfloat16")


def build_without_dropout(shape: dict, **overrides):
  """(GLMConfig, random params) of `shape` with every dropout off, as decoding runs."""
  cfg = model.GLMConfig(**shape, embedding_dropout=0.0, attention_dropout=0.0,
                        hidden_dropout=0.0, **overrides)
  return cfg, model.init_params(cfg, jax.random.PRNGKey(0))


def add_size_flags(parser: argparse.ArgumentParser, *, vocab: int) -> None:
  """--layers/--hidden/--heads/--vocab/--dtype: a small fp32 model unless told otherwise."""
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=vocab)
  parser.add_argument("--dtype", default="float32")


def size_from_flags(args: argparse.Namespace) -> dict:
  """GLMConfig fields from `add_size_flags`' flags; position tables cover --seq_length (>= 64)."""
  return dict(vocab_size=args.vocab, num_layers=args.layers, hidden_size=args.hidden,
              num_heads=args.heads, max_sequence_length=max(args.seq_length, 64),
              dtype=args.dtype)

"""The GLM attention mask and the attention backends.

GLM's one architectural idea lives here: Part A (the first `sep` tokens of a sample) is read
bidirectionally, Part B (the blanks being filled) causally, and Part B sees all of Part A.
Query i may attend key j iff `j < sep or j <= i`. `sep = 0` is a plain causal LM.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# The original masks scores with the fp16 minimum, not -inf; a fully masked row never occurs
# because every query sees itself.
MASK_VALUE = -65504.0

BACKENDS = ("auto", "xla", "cudnn")


def glm_mask(sep: jax.Array, q_len: int, k_len: int | None = None, q_offset=0,
             key_valid: jax.Array | None = None) -> jax.Array:
  """Boolean mask `[batch, 1, q_len, k_len]`: True where query i may attend key j.

  `sep` is `[batch]` (Part-A length per example). Query i sits at absolute position
  `q_offset + i`. `key_valid` (`[batch, k_len]`, optional) masks out padding keys.
  """
  k_len = q_len if k_len is None else k_len
  sep = jnp.asarray(sep, jnp.int32)
  query = jnp.arange(q_len, dtype=jnp.int32)[:, None] + q_offset
  key = jnp.arange(k_len, dtype=jnp.int32)[None, :]
  causal = key <= query                                     # [q, k]
  prefix = key[None] < sep[:, None, None]                   # [b, 1, k]
  mask = causal[None] | prefix                              # [b, q, k]
  if key_valid is not None:
    mask = mask & key_valid[:, None, :].astype(bool)
  return mask[:, None]


def resolve_backend(name: str, *, dtype, training_with_dropout: bool) -> str:
  """Turns a configured backend name into the one that runs here, or says why it cannot."""
  if name not in BACKENDS:
    raise ValueError(f"attention_backend={name!r} is not one of {BACKENDS}.")
  on_gpu = jax.default_backend() == "gpu"
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if name == "auto":
    return "cudnn" if (on_gpu and half and not training_with_dropout) else "xla"
  if name == "cudnn":
    if not on_gpu:
      raise ValueError(
          f"attention_backend='cudnn' needs an NVIDIA GPU, but JAX runs on "
          f"'{jax.default_backend()}'. Set attention_backend='xla' (or 'auto').")
    if not half:
      raise ValueError(
          f"attention_backend='cudnn' needs dtype bfloat16 or float16, got {jnp.dtype(dtype)}. "
          "Set dtype='bfloat16' or attention_backend='xla'.")
    if training_with_dropout:
      raise ValueError(
          "attention_backend='cudnn' has no attention-probability dropout. Set "
          "attention_dropout=0.0 for training, or use attention_backend='xla'.")
  return name


def xla_attention(query, key, value, mask, *, dropout_fn=None):
  """Reference attention: scores and softmax in fp32, masked scores set to -65504.

  query `[b, q, h, d]`, key/value `[b, k, h, d]`, mask `[b, 1, q, k]` bool.
  """
  scale = 1.0 / math.sqrt(query.shape[-1])
  scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
  scores = jnp.where(mask, scores * scale, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1)
  if dropout_fn is not None:
    probs = dropout_fn(probs)
  return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(value.dtype), value)


def cudnn_attention(query, key, value, mask):
  """Fused cuDNN attention (GPU, bf16/fp16) with the same boolean mask."""
  return jax.nn.dot_product_attention(
      query, key, value, mask=mask, scale=1.0 / math.sqrt(query.shape[-1]),
      implementation="cudnn")


def attend(backend: str, query, key, value, mask, *, dropout_fn=None):
  """Dispatches to a resolved backend (see `resolve_backend`)."""
  if backend == "cudnn":
    return cudnn_attention(query, key, value, mask)
  return xla_attention(query, key, value, mask, dropout_fn=dropout_fn)

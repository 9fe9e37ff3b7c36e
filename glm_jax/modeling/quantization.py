"""Weight-only int8 for inference: symmetric per-output-channel scales, and an int8 KV cache.

Why our own (about 100 lines) rather than Google's qwix or aqtp (both install from PyPI): qwix
quantizes by intercepting `jax.lax.dot_general` and `Module.param` while a model is traced (ambient
state) and stores its own `WithAux`/`QArray` pytrees, and aqtp swaps in its own dot_general
through module attributes; ours keeps a plain dict of arrays in the Orbax checkpoint, with a
logical axis name on every int8 kernel and scale, so sharded loading and `nn.scan` work as for
any other parameter, and needs no new dependency.

Scheme (METHODS["int8"]): every dense kernel of a block (QKV, attention output, both MLP matrices)
`W [..., in..., out...]` is stored as int8 `q = round(W / s)` with `s = max|W| / 127` over its input
axes (one scale per output channel, stored bfloat16); `x . W ~= x . (q * s)`, dequantized in the
compute dtype inside the dot's fusion (`int8_dot`). Embeddings, position tables, LayerNorms and
biases stay bfloat16. The model (`model.Dense`) does this inside the scanned block, so one layer's
kernels at a time are ever widened.

KV cache: `int8` stores keys and values as int8 with one bfloat16 scale per (layer, row, position,
head), over the head dimension.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glm_jax.errors import UserError

SCALE_DTYPE = jnp.bfloat16
# Recorded in the checkpoint (`quantization.json`); a reader refuses a scheme it does not know.
METHODS = {"int8": "int8 weights, symmetric, one bfloat16 scale per output channel"}
# The dense kernels that are quantized: path under params["layers"] -> number of input axes.
DENSE_KERNELS = {("attention", "query_key_value"): 1, ("attention", "dense"): 2,
                 ("mlp", "dense_h_to_4h"): 1, ("mlp", "dense_4h_to_h"): 1}


KV_CACHE_DTYPES = ("bfloat16", "int8")  # --kv_cache_dtype (int8: one scale per head and position)


class QuantizationError(UserError, ValueError):
  """A --quantize / --kv_cache_dtype value we cannot do."""


def check_kv_cache_dtype(kv_cache_dtype: str | None) -> str:
  """'' (the compute dtype) or one of KV_CACHE_DTYPES; anything else is one line."""
  kv_cache_dtype = kv_cache_dtype or ""
  if kv_cache_dtype and kv_cache_dtype not in KV_CACHE_DTYPES:
    raise QuantizationError(f"--kv_cache_dtype={kv_cache_dtype} is not supported; use one of "
                            f"{', '.join(KV_CACHE_DTYPES)}.")
  return kv_cache_dtype


def check_method(method: str | None, dtype: str | None = None) -> str:
  """'' (none) or a known method name; anything else is one line naming the choices. A `dtype`
  for the other params other than bfloat16 is refused with a method (they stay bfloat16)."""
  method = method or ""
  if method and method not in METHODS:
    raise QuantizationError(f"--quantize={method} is not supported; use --quantize=int8 "
                            f"({METHODS['int8']}) or leave it out.")
  if method and dtype is not None and jnp.dtype(dtype) != SCALE_DTYPE:
    raise QuantizationError(
        f"--quantize={method} keeps the unquantized params in bfloat16; drop --dtype={dtype}.")
  return method


def quantize(x, axes):
  """(int8 values, bfloat16 scales): symmetric, one scale per index of the axes not in `axes`.

  The scale is rounded to bfloat16 before dividing, so `q * s` is exactly what the model computes.
  """
  x = jnp.asarray(x, jnp.float32)
  amax = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
  scale = jnp.where(amax > 0, amax / 127.0, 1.0).astype(SCALE_DTYPE)
  q = jnp.clip(jnp.round(x / scale.astype(jnp.float32)), -127, 127).astype(jnp.int8)
  return q, jnp.squeeze(scale, axis=axes)


def int8_dot(x, kernel, scale, contract, dtype):
  """`x . (kernel * scale)`, dequantized in `dtype` right at the dot: XLA:TPU fuses the convert
  and the scale into the dot's operand, so the int8 kernel is read once from HBM and no widened
  copy is written (benchmarks/int8_matmul.py: libtpu's cost model reads 4.5 MB for this form of
  a 1024x4096 kernel, 21 MB for `(x . q) * s`; CPU times are within noise of each other)."""
  w = kernel.astype(dtype) * scale.astype(dtype)  # scale [out...] broadcasts over the in axes
  return jax.lax.dot_general(x.astype(dtype), w, (contract, ((), ())))


def quantize_params(params, method: str = "int8"):
  """A float params tree -> the same tree with each block's dense kernels int8 plus a `scale`
  beside each; every other float leaf cast to bfloat16."""
  check_method(method)
  def cast(tree):
    if isinstance(tree, dict):
      return {k: cast(v) for k, v in tree.items()}
    return jnp.asarray(tree, SCALE_DTYPE) if jnp.issubdtype(tree.dtype, jnp.floating) else tree
  out = cast(dict(params))
  layers = dict(out["layers"])
  for (group, name), in_ndim in DENSE_KERNELS.items():
    dense = dict(params["layers"][group][name])
    kernel = dense["kernel"]                      # [layers, *in, *out]
    q, scale = jax.jit(quantize, static_argnums=1)(kernel, tuple(range(1, 1 + in_ndim)))
    layers[group] = {**layers[group], name: {"kernel": q, "scale": scale,
                                             "bias": jnp.asarray(dense["bias"], SCALE_DTYPE)}}
  out["layers"] = layers
  return out


def params_method(params) -> str:
  """The method a params tree (arrays or Orbax metadata) is quantized with: 'int8' or ''."""
  dense = params["layers"]["attention"]["query_key_value"]
  return "int8" if jnp.dtype(dense["kernel"].dtype) == jnp.int8 and "scale" in dense else ""


# ----------------------------------------------------------------------------- int8 KV cache


def quantize_kv(x):
  """`[b, s, h, d]` keys or values -> (int8 `[b, s, h, d]`, bfloat16 scales `[b, s, h]`)."""
  return quantize(x, (x.ndim - 1,))


def dequantize_kv(q, scale, dtype):
  """The inverse of `quantize_kv`, in the compute dtype."""
  return q.astype(dtype) * scale.astype(dtype)[..., None]

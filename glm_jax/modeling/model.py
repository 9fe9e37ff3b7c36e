"""GLM in Flax linen, exact to the original THUDM code (model/modeling_glm.py, mpu/transformer.py).

Embeddings: word + position + block position (the 2D positions), dropout after the sum.
Blocks: pre-LayerNorm, fused QKV attention under the GLM mask, tanh-GELU MLP of width 4h.
Output: final LayerNorm, then logits against the tied word embedding. Layers run under
`nn.scan` (one compiled block, a leading `layers` axis on every block parameter).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from glm_jax.modeling import attention as attention_lib
from glm_jax.modeling import quantization as quantization_lib

REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
KV_CACHE_DTYPES = ("", "float32", "bfloat16", "float16", "int8")


@dataclasses.dataclass(frozen=True)
class GLMConfig:
  """The model's shape and numerics. Run configs hold these keys under `config.model`."""
  vocab_size: int                  # rows of the word embedding (padded to a multiple of 128)
  num_layers: int                  # transformer blocks
  hidden_size: int                 # model width h
  num_heads: int                   # attention heads (head dim = h / heads)
  max_sequence_length: int         # position tables have max_sequence_length + 1 rows
  mlp_ratio: int = 4               # FFN width = mlp_ratio * h
  embedding_dropout: float = 0.1   # after word + position + block-position sum
  attention_dropout: float = 0.1   # on attention probabilities
  hidden_dropout: float = 0.1      # after each residual projection
  layernorm_epsilon: float = 1e-5
  init_std: float = 0.02           # N(0, std); residual projections use std / sqrt(2 L)
  dtype: str = "bfloat16"          # compute dtype
  param_dtype: str = "float32"     # parameter storage dtype
  remat_policy: str = "none"       # none | full | dots | dots_no_batch
  attention_backend: str = "auto"  # auto | xla | cudnn | pallas
  attention_block_q: int = 512     # Pallas kernel blocks: forward queries, keys,
  attention_block_k: int = 512
  attention_block_q_backward: int = 512   # and both backward passes'
  attention_block_k_backward: int = 512
  quantization: str = ""           # "" (float kernels) | int8 (weight-only,
                                   # glm_jax.modeling.quantization)
  kv_cache_dtype: str = ""         # decode KV cache: "" = the compute dtype | bfloat16 | int8

  def __post_init__(self):
    for name in ("vocab_size", "num_layers", "hidden_size", "num_heads", "max_sequence_length",
                 "mlp_ratio", "attention_block_q", "attention_block_k",
                 "attention_block_q_backward", "attention_block_k_backward"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"model.{name} must be a positive integer, got {value!r}.")
      object.__setattr__(self, name, int(value))  # numpy integers hash and print as plain ints
    if self.hidden_size % self.num_heads:
      raise ValueError(
          f"model.num_heads={self.num_heads} does not divide model.hidden_size="
          f"{self.hidden_size}; pick a head count that does (GLM releases use head dim 64).")
    for name in ("embedding_dropout", "attention_dropout", "hidden_dropout"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)!r}.")
    for name in ("dtype", "param_dtype"):
      try:
        object.__setattr__(self, name, jnp.dtype(getattr(self, name)).name)
      except TypeError as e:
        raise ValueError(f"model.{name}={getattr(self, name)!r} is not a dtype name "
                         "(use 'float32', 'bfloat16' or 'float16').") from e
    if self.quantization not in ("",) + tuple(quantization_lib.METHODS):
      raise ValueError(f"model.quantization={self.quantization!r} is not one of "
                       f"{('',) + tuple(quantization_lib.METHODS)}.")
    if self.kv_cache_dtype not in KV_CACHE_DTYPES:
      raise ValueError(f"model.kv_cache_dtype={self.kv_cache_dtype!r} is not one of "
                       f"{KV_CACHE_DTYPES} ('' = the compute dtype).")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"model.remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}.")
    if self.attention_backend not in attention_lib.BACKENDS:
      raise ValueError(f"model.attention_backend={self.attention_backend!r} is not one of "
                       f"{attention_lib.BACKENDS}.")

  @property
  def head_dim(self) -> int:
    """Width of one attention head (hidden_size / num_heads)."""
    return self.hidden_size // self.num_heads

  @property
  def attention_blocks(self) -> dict:
    """The Pallas kernel's block sizes, as `pallas_attention` keywords."""
    return {"block_q": self.attention_block_q, "block_k": self.attention_block_k,
            "block_q_backward": self.attention_block_q_backward,
            "block_k_backward": self.attention_block_k_backward}

  def replace(self, **changes) -> "GLMConfig":
    """A copy with some fields changed (the config is frozen so jit can hash it)."""
    return dataclasses.replace(self, **changes)


def as_glm_config(config: Any) -> GLMConfig:
  """Accepts a GLMConfig, a run config with a `model` field, or a mapping of model keys."""
  if isinstance(config, GLMConfig):
    return config
  if hasattr(config, "model"):
    config = config.model
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise TypeError(f"Expected a GLMConfig or a config with model keys, got {type(config)}.")
  fields = {f.name for f in dataclasses.fields(GLMConfig)}
  unknown = sorted(set(config) - fields)
  if unknown:
    raise ValueError(f"Unknown model config keys {unknown}; known keys: {sorted(fields)}.")
  return GLMConfig(**config)


def _normal(std):
  return nn.initializers.normal(stddev=std)


class Dense(nn.Module):
  """y = x . W + b contracting the trailing `in_ndim` axes of x; W is `in_shape + features`.

  Our own rather than nn.DenseGeneral so the kernel is created at its full multi-axis shape and
  carries one logical axis name per dimension. With `quantization="int8"` the kernel is int8 and a
  per-output-channel `scale` (logical axes of the output) sits beside it
  (glm_jax.modeling.quantization).
  """
  features: tuple
  in_ndim: int
  names: tuple
  std: float
  cfg: GLMConfig

  @nn.compact
  def __call__(self, x):
    dtype, param_dtype = jnp.dtype(self.cfg.dtype), jnp.dtype(self.cfg.param_dtype)
    in_shape = x.shape[-self.in_ndim:]
    out_names = self.names[self.in_ndim:]
    contract = (tuple(range(x.ndim - self.in_ndim, x.ndim)), tuple(range(self.in_ndim)))
    bias_init = nn.with_logical_partitioning(nn.initializers.zeros_init(), out_names)
    if self.cfg.quantization:
      kernel = self.param("kernel", nn.with_logical_partitioning(
          nn.initializers.zeros_init(), self.names), in_shape + self.features, jnp.int8)
      scale = self.param("scale", nn.with_logical_partitioning(
          nn.initializers.ones_init(), out_names), self.features, quantization_lib.SCALE_DTYPE)
      bias = self.param("bias", bias_init, self.features, param_dtype)
      y = quantization_lib.int8_dot(x, kernel, scale, contract, dtype)
      return y + bias.astype(dtype)
    kernel = self.param("kernel", nn.with_logical_partitioning(_normal(self.std), self.names),
                        in_shape + self.features, param_dtype)
    bias = self.param("bias", bias_init, self.features, param_dtype)
    y = jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype), (contract, ((), ())))
    return y + bias.astype(dtype)


def _dense(features, in_ndim, names, std, cfg: GLMConfig, name: str):
  features = tuple(features) if isinstance(features, (tuple, list)) else (features,)
  return Dense(features, in_ndim, tuple(names), std, cfg, name=name)


def _layernorm(cfg: GLMConfig, name: str):
  # fp32 statistics and output; callers cast back to the compute dtype.
  return nn.LayerNorm(
      epsilon=cfg.layernorm_epsilon, dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype),
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)),
      name=name)


class SelfAttention(nn.Module):
  """Fused QKV projection laid out [Q; K; V] x heads, the GLM-masked attention, output dense."""
  cfg: GLMConfig
  backend: str
  deterministic: bool

  @nn.compact
  def __call__(self, x, mask, kv_cache=None, cache_index=None, layer_index=None):
    cfg = self.cfg
    qkv = _dense((3, cfg.num_heads, cfg.head_dim), 1, ("embed", "qkv", "heads", "kv"),
                 cfg.init_std, cfg, "query_key_value")(x)
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if kv_cache is not None:
      # Decode: write only the new keys/values into this layer's rows of the whole-model cache
      # (in place inside the decode loop), then attend over this layer's cached keys/values.
      kv_cache = _update_cache(kv_cache, {"k": key, "v": value}, layer_index, cache_index)
      key, value = (_read_cache(kv_cache, n, layer_index, query.dtype) for n in ("k", "v"))
    rate, seed = 0.0, 0
    if not self.deterministic and cfg.attention_dropout > 0:
      # Counter-based dropout (the same hash mask on the kernel and on XLA): one seed per
      # layer and step, from this layer's dropout stream.
      rate, seed = cfg.attention_dropout, _dropout_seed(self)
    out = attention_lib.attend(self.backend, query, key, value, mask, dropout_rate=rate,
                               dropout_seed=seed, blocks=cfg.attention_blocks)
    out = _dense(cfg.hidden_size, 2, ("heads", "kv", "embed"),
                 cfg.init_std / math.sqrt(2.0 * cfg.num_layers), cfg, "dense")(out)
    return out, kv_cache


def _dropout_seed(module):
  """An int32 seed for the counter-based dropouts, from the module's dropout stream."""
  return jax.lax.bitcast_convert_type(
      jax.random.bits(module.make_rng("dropout"), (), jnp.uint32), jnp.int32)


def _keep_scale(seed, shape, rate: float, dtype):
  """`[b, s, h]` factors of the hidden dropout: 1 / (1 - rate) where the hash keeps, else 0."""
  b, s, h = (jax.lax.broadcasted_iota(jnp.int32, shape, axis) for axis in range(3))
  keep = attention_lib.dropout_keep(seed, b, -1, s, h, rate)
  return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def counter_dropout(x, seed, rate: float):
  """Dropout of `[b, s, h]` activations by the attention kernel's hash (`dropout_keep`, head
  index -1): the backward pass regenerates the mask from `seed`, so no `[b, s, h]` mask is
  kept for it (under `nn.scan`, one per layer)."""
  return x * _keep_scale(seed, x.shape, rate, x.dtype)


def _counter_dropout_fwd(x, seed, rate):
  return counter_dropout(x, seed, rate), seed


def _counter_dropout_bwd(rate, seed, d_y):
  return d_y * _keep_scale(seed, d_y.shape, rate, d_y.dtype), None


counter_dropout.defvjp(_counter_dropout_fwd, _counter_dropout_bwd)


def _write_cache(cache, new, layer_index, cache_index):
  """cache `[layers, b, T, ...]` with `new` `[b, s, ...]` written at (layer, :, cache_index)."""
  zero = jnp.zeros((), jnp.int32)
  start = (jnp.asarray(layer_index, jnp.int32), zero, jnp.asarray(cache_index, jnp.int32)) + \
      (zero,) * (cache.ndim - 3)
  return jax.lax.dynamic_update_slice(cache, new[None].astype(cache.dtype), start)


def _update_cache(cache, new, layer_index, cache_index):
  """Writes the new keys/values (`new`: {'k', 'v'} `[b, s, h, d]`); an int8 cache (one with
  '<name>_scale' entries) gets them quantized per (row, position, head)."""
  out = dict(cache)
  for name, value in new.items():
    if name + "_scale" in cache:
      value, scale = quantization_lib.quantize_kv(value)
      out[name + "_scale"] = _write_cache(cache[name + "_scale"], scale, layer_index, cache_index)
    out[name] = _write_cache(cache[name], value, layer_index, cache_index)
  return out


def _read_cache(cache, name, layer_index, dtype):
  """This layer's cached keys or values `[b, T, h, d]` in the compute dtype."""
  layer = lambda a: jax.lax.dynamic_index_in_dim(a, layer_index, keepdims=False)
  if name + "_scale" in cache:
    return quantization_lib.dequantize_kv(layer(cache[name]), layer(cache[name + "_scale"]), dtype)
  return layer(cache[name]).astype(dtype)


class MLP(nn.Module):
  """h -> 4h -> tanh-GELU -> h."""
  cfg: GLMConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    hidden = _dense(cfg.mlp_ratio * cfg.hidden_size, 1, ("embed", "mlp"), cfg.init_std, cfg,
                    "dense_h_to_4h")(x)
    hidden = nn.with_logical_constraint(hidden, ("act_batch", "act_length", "act_mlp"))
    hidden = jax.nn.gelu(hidden, approximate=True)
    return _dense(cfg.hidden_size, 1, ("mlp", "embed"),
                  cfg.init_std / math.sqrt(2.0 * cfg.num_layers), cfg, "dense_4h_to_h")(hidden)


class Block(nn.Module):
  """One pre-LayerNorm transformer layer; scanned, so it maps (x, cache) -> (x, cache)."""
  cfg: GLMConfig
  backend: str
  deterministic: bool

  @nn.compact
  def __call__(self, carry, mask, cache_index, layer_index):
    x, kv_cache = carry
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    drop = lambda h: h   # noqa: E731
    if not self.deterministic and cfg.hidden_dropout > 0:
      drop = lambda h: counter_dropout(h, _dropout_seed(self), cfg.hidden_dropout)  # noqa: E731
    h = _layernorm(cfg, "input_layernorm")(x).astype(dtype)
    h, kv_cache = SelfAttention(cfg, self.backend, self.deterministic, name="attention")(
        h, mask, kv_cache, cache_index, layer_index)
    x = x + drop(h)
    h = _layernorm(cfg, "post_attention_layernorm")(x).astype(dtype)
    x = x + drop(MLP(cfg, name="mlp")(h))
    x = nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))
    return (x, kv_cache), None


def _remat_policy(name: str):
  return {
      "full": None,
      "dots": jax.checkpoint_policies.checkpoint_dots,
      "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
  }[name]


class GLM(nn.Module):
  """`GLM(config).apply({"params": p}, input_ids, position_ids, sep)` -> logits `[b, s, vocab]`.

  input_ids `[b, s]`; position_ids `[b, 2, s]` (row 0 position, row 1 block position);
  sep `[b]` Part-A length per example (0 = causal LM).

  Decoding with a KV cache: pass `kv_cache` (from `init_kv_cache`), `cache_index` (the slot of
  the first new token) and an explicit boolean `attention_mask` `[b, s, cache_len]`; returns
  `(logits, new_kv_cache)`.

  `return_hidden=True`: the final hidden states `[b, s, h]` (final LayerNorm, compute dtype)
  instead of logits, for `head` to project only the positions a loss or score needs.
  """
  config: Any

  @nn.compact
  def __call__(self, input_ids, position_ids, sep=None, *, deterministic: bool = True,
               attention_mask=None, kv_cache=None, cache_index=None, return_hidden: bool = False):
    cfg = as_glm_config(self.config)
    dtype = jnp.dtype(cfg.dtype)
    param_dtype = jnp.dtype(cfg.param_dtype)
    input_ids, position_ids = jnp.asarray(input_ids), jnp.asarray(position_ids)
    batch, length = input_ids.shape
    if position_ids.shape != (batch, 2, length):
      raise ValueError(f"position_ids must have shape {(batch, 2, length)} (row 0 position, "
                       f"row 1 block position), got {position_ids.shape}.")
    training_with_dropout = not deterministic and cfg.attention_dropout > 0
    backend = attention_lib.resolve_backend(
        cfg.attention_backend, dtype=dtype, training_with_dropout=training_with_dropout)
    if backend == "pallas" and (attention_mask is not None or kv_cache is not None):
      backend = "xla"  # explicit masks (the KV-cached decode path) keep XLA attention

    def table(name, rows):
      return nn.Embed(rows, cfg.hidden_size, dtype=jnp.float32, param_dtype=param_dtype,
                      embedding_init=nn.with_logical_partitioning(
                          _normal(cfg.init_std), ("vocab" if name == "word_embeddings"
                                                  else "position", "embed")),
                      name=name)

    word = table("word_embeddings", cfg.vocab_size)
    x = (word(input_ids)
         + table("position_embeddings", cfg.max_sequence_length + 1)(position_ids[:, 0])
         + table("block_position_embeddings", cfg.max_sequence_length + 1)(position_ids[:, 1]))
    x = nn.Dropout(cfg.embedding_dropout, deterministic=deterministic)(x).astype(dtype)
    x = nn.with_logical_constraint(x, ("act_batch", "act_length", "act_embed"))

    if attention_mask is None:
      if kv_cache is not None:
        raise ValueError("Decoding with kv_cache needs an explicit attention_mask.")
      if sep is None:
        raise ValueError("Pass sep (Part-A length per example; 0 for a causal LM).")
      # The Pallas kernel builds the mask itself from sep, block by block.
      mask = (jnp.asarray(sep, jnp.int32) if backend == "pallas"
              else attention_lib.glm_mask(sep, length))
    else:
      mask = attention_mask[:, None].astype(bool)

    block = Block
    if cfg.remat_policy != "none":
      block = nn.remat(Block, policy=_remat_policy(cfg.remat_policy), prevent_cse=False)
    layers = nn.scan(
        block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast, 0), length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"})(
            cfg, backend, deterministic, name="layers")
    (x, new_cache), _ = layers((x, kv_cache), mask, cache_index,
                               jnp.arange(cfg.num_layers, dtype=jnp.int32))

    x = _layernorm(cfg, "final_layernorm")(x).astype(dtype)
    if return_hidden:
      return x
    logits = _project(x, word.embedding, dtype)
    if kv_cache is not None:
      return logits, new_cache
    return logits


def _project(hidden, embedding, dtype):
  """fp32 logits `[..., vocab]`: hidden states times the tied word embedding (compute dtype
  operands, fp32 accumulation)."""
  logits = jnp.einsum("...h,vh->...v", hidden.astype(dtype), embedding.astype(dtype),
                      preferred_element_type=jnp.float32)
  names = ("act_batch",) + ("act_length",) * (logits.ndim - 2) + ("act_vocab",)
  return nn.with_logical_constraint(logits, names)


def head(config, params, hidden):
  """The model's output head on chosen hidden states: `hidden` `[b, ..., h]` (from
  `GLM(...).apply(..., return_hidden=True)`, e.g. gathered at scored positions) -> fp32 logits
  `[b, ..., vocab]`, exactly the positions' logits of the full forward pass."""
  cfg = as_glm_config(config)
  return _project(hidden, params["word_embeddings"]["embedding"], jnp.dtype(cfg.dtype))


def init_kv_cache(config, batch: int, length: int, dtype=None):
  """Zeroed per-layer K/V cache `{'k','v'}: [layers, batch, length, heads, head_dim]`.

  dtype: default `cfg.kv_cache_dtype`, else the compute dtype; int8 adds `{'k_scale','v_scale'}:
  [layers, batch, length, heads]` (bfloat16), one scale per cached key / value vector.
  """
  cfg = as_glm_config(config)
  shape = (cfg.num_layers, batch, length, cfg.num_heads, cfg.head_dim)
  dtype = jnp.dtype(dtype or cfg.kv_cache_dtype or cfg.dtype)
  cache = {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
  if dtype == jnp.int8:
    cache.update({f"{n}_scale": jnp.ones(shape[:-1], quantization_lib.SCALE_DTYPE)
                  for n in ("k", "v")})
  return constrain_kv_cache(cache)


def constrain_kv_cache(cache):
  """The cache laid out by its logical axes (after it is made, or repeated for beams); an int8
  cache's scales (one per head) lack the last axis."""
  return {name: nn.with_logical_constraint(c, KV_CACHE_AXES[:c.ndim]) for name, c in cache.items()}


# Logical axes of each K/V cache array (sharding.py maps them: rows over data, heads over tensor).
KV_CACHE_AXES = ("cache_layers", "cache_batch", "cache_length", "cache_heads", "cache_kv")


def dummy_inputs(batch: int = 1, length: int = 8):
  """Shape-only inputs for init / eval_shape."""
  ids = jnp.zeros((batch, length), jnp.int32)
  return ids, jnp.zeros((batch, 2, length), jnp.int32), jnp.zeros((batch,), jnp.int32)


def init_boxed_params(config, rng):
  """Parameters wrapped in flax `Partitioned` boxes that carry their logical axis names."""
  cfg = as_glm_config(config)
  return GLM(cfg).init(rng, *dummy_inputs())["params"]


def init_params(config, rng):
  """Plain parameter tree (no sharding metadata), e.g. for a single-device notebook."""
  cfg = as_glm_config(config)
  return jax.jit(lambda key: nn.unbox(init_boxed_params(cfg, key)))(rng)


def strip_boxes(tree):
  """Drops flax `Partitioned` boxes without adding sharding constraints (safe under a mesh)."""
  return nn.meta.map_axis_meta(lambda box: strip_boxes(box.unbox(apply_constraint=False)), tree)


def param_shapes(config):
  """`jax.ShapeDtypeStruct` tree of the parameters, computed without allocating them."""
  return strip_boxes(jax.eval_shape(lambda: init_boxed_params(config, jax.random.PRNGKey(0))))


def logical_axes(config):
  """Tree of logical axis-name tuples, one per parameter, for `sharding.py`."""
  boxed = jax.eval_shape(lambda: init_boxed_params(config, jax.random.PRNGKey(0)))
  return nn.get_partition_spec(boxed)


def count_params(config) -> int:
  """Parameter count of a config, without allocating the parameters."""
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(param_shapes(config)))

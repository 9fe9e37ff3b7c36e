"""The GLM attention mask and the attention backends.

GLM's one architectural idea lives here: Part A (the first `sep` tokens of a sample) is read
bidirectionally, Part B (the blanks being filled) causally, and Part B sees all of Part A.
Query i may attend key j iff `j < sep or j <= i`. `sep = 0` is a plain causal LM.
Backends: `xla` (dense, every platform), `cudnn` (GPU) and `pallas` (the TPU flash kernel of
pallas_attention.py, sharded over batch and heads; the KV-cached decode path keeps XLA).
Attention dropout is the kernel's counter-based hash on both `pallas` and `xla`.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from glm_jax.modeling.pallas_attention import dropout_keep
# re-exported: attention.pallas_attention
from glm_jax.modeling.pallas_attention import pallas_attention

# The original masks scores with the fp16 minimum, not -inf; a fully masked row never occurs
# because every query sees itself.
MASK_VALUE = -65504.0

BACKENDS = ("auto", "xla", "cudnn", "pallas")


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


def target_platform() -> str:
  """The platform the model compiles for: the ambient mesh's devices (AOT for a TPU topology
  from a CPU host says 'tpu'), else JAX's default backend."""
  mesh = jax.sharding.get_abstract_mesh()
  device = None if mesh.empty else getattr(mesh, "abstract_device", None)
  return getattr(device, "platform", None) or jax.default_backend()


def resolve_backend(name: str, *, dtype, training_with_dropout: bool) -> str:
  """Turns a configured backend name (one of BACKENDS: GLMConfig checks that) into the one that
  runs here, or says why it cannot: the platform rules, once, for run_checks and the model."""
  platform = target_platform()
  on_gpu = platform == "gpu"
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if name == "auto":
    if platform == "tpu":
      return "pallas"
    return "cudnn" if (on_gpu and half and not training_with_dropout) else "xla"
  if name == "cudnn":
    if not on_gpu:
      raise ValueError(
          f"attention_backend='cudnn' needs an NVIDIA GPU, but JAX runs on "
          f"'{platform}'. Set attention_backend='xla' (or 'auto').")
    if not half:
      raise ValueError(
          f"attention_backend='cudnn' needs dtype bfloat16 or float16, got {jnp.dtype(dtype)}. "
          "Set dtype='bfloat16' or attention_backend='xla'.")
    if training_with_dropout:
      raise ValueError(
          "attention_backend='cudnn' has no attention-probability dropout. Set "
          "attention_dropout=0.0 for training, or use attention_backend='xla'.")
  if name == "pallas":
    if on_gpu:
      raise ValueError(
          "attention_backend='pallas' is a TPU kernel, but JAX runs on 'gpu'. Set "
          "attention_backend='cudnn' (or 'auto').")
  return name


def hash_dropout(probs, rate: float, seed, batch_offset=0, head_offset=0):
  """`probs` `[b, h, q, k]` with the kernel's counter-based dropout (`dropout_keep`): the same
  entries dropped as `pallas_attention` with this seed and rate, the kept ones scaled by
  1 / (1 - rate)."""
  b, h, q, k = (jax.lax.broadcasted_iota(jnp.int32, probs.shape, axis) for axis in range(4))
  keep = dropout_keep(seed, b + batch_offset, h + head_offset, q, k, rate)
  return jnp.where(keep, probs * (1.0 / (1.0 - rate)), 0.0).astype(probs.dtype)


def xla_attention(query, key, value, mask, *, dropout_rate: float = 0.0, dropout_seed=0):
  """Reference attention: scores and softmax in fp32, masked scores set to -65504.

  query `[b, q, h, d]`, key/value `[b, k, h, d]`, mask `[b, 1, q, k]` bool. With
  `dropout_rate` > 0 the probabilities get the kernel's hash dropout (`hash_dropout`) of
  `dropout_seed`.
  """
  scale = 1.0 / math.sqrt(query.shape[-1])
  scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
  scores = jnp.where(mask, scores * scale, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1)
  if dropout_rate > 0:
    probs = hash_dropout(probs, dropout_rate, dropout_seed)
  return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(value.dtype), value)


def cudnn_attention(query, key, value, mask):
  """Fused cuDNN attention (GPU, bf16/fp16) with the same boolean mask."""
  return jax.nn.dot_product_attention(
      query, key, value, mask=mask, scale=1.0 / math.sqrt(query.shape[-1]),
      implementation="cudnn")


def sharded_pallas_attention(query, key, value, sep, *, dropout_rate: float = 0.0,
                             dropout_seed=0, blocks=None):
  """`pallas_attention` on each device's batch rows and heads (shard_map over the ambient mesh).

  A Pallas kernel is opaque to XLA's partitioner, which would gather its operands onto every
  device; here batch goes over the mesh axes of `act_batch` and heads over those of `act_heads`
  (the logical-axis rules in force), each where it divides evenly. Each shard hashes its
  dropout mask at its global (batch, head) indices, so the mask is the unsharded one. Off TPU
  (CPU tests) the kernel runs in interpret mode. `blocks`: pallas_attention's block keywords.
  """
  interpret = target_platform() != "tpu"
  kernel = functools.partial(pallas_attention, interpret=interpret, dropout_rate=dropout_rate,
                             **(blocks or {}))
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return kernel(query, key, value, sep, dropout_seed=dropout_seed)
  batch_axes, _, head_axes, _ = nn.logical_to_mesh_axes(("act_batch", None, "act_heads", None))

  def usable(axes, size):
    axes = tuple(a for a in ((axes,) if isinstance(axes, str) else (axes or ()))
                 if a in mesh.axis_names)
    return axes if axes and size % math.prod(mesh.shape[a] for a in axes) == 0 else None

  batch_axes = usable(batch_axes, query.shape[0])
  head_axes = usable(head_axes, query.shape[2])
  qkv_spec = jax.sharding.PartitionSpec(batch_axes, None, head_axes, None)

  def offset(axes, local_size):
    return 0 if axes is None else jax.lax.axis_index(axes) * local_size

  def local(q, k, v, s, seed):
    return kernel(q, k, v, s, dropout_seed=seed, batch_offset=offset(batch_axes, q.shape[0]),
                  head_offset=offset(head_axes, q.shape[2]))

  return jax.shard_map(
      local, mesh=mesh,
      in_specs=(qkv_spec, qkv_spec, qkv_spec, jax.sharding.PartitionSpec(batch_axes),
                jax.sharding.PartitionSpec()),
      out_specs=qkv_spec, check_vma=False)(
          query, key, value, jnp.asarray(sep, jnp.int32), jnp.asarray(dropout_seed, jnp.int32))


def attend(backend: str, query, key, value, mask, *, dropout_rate: float = 0.0, dropout_seed=0,
           blocks=None):
  """Dispatches to a resolved backend (see `resolve_backend`).

  `mask` is the boolean `[b, 1, q, k]` mask for 'xla' / 'cudnn', and `sep` `[b]` for 'pallas'
  (the kernel builds the GLM mask itself, block by block). `dropout_rate` / `dropout_seed`: the
  counter-based attention dropout, identical on 'pallas' and 'xla'; `blocks`: the kernel's
  block sizes.
  """
  if backend == "pallas":
    return sharded_pallas_attention(query, key, value, mask, dropout_rate=dropout_rate,
                                    dropout_seed=dropout_seed, blocks=blocks)
  if backend == "cudnn":
    return cudnn_attention(query, key, value, mask)
  return xla_attention(query, key, value, mask, dropout_rate=dropout_rate,
                       dropout_seed=dropout_seed)

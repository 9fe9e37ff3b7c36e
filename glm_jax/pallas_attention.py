"""GLM-mask flash attention as a Pallas TPU kernel: forward and backward in O(S) memory.

Query i sees key j iff `j < sep or j <= i`, with `sep` (per example) delivered to the kernels by
scalar prefetch, so one compiled kernel serves every Part-A length. The visible keys of a query
block are a prefix of the key blocks (up to the query block's diagonal, or up to `sep`, whichever
is further), so later key blocks are skipped: no DMA (their block index is clamped to the last
visible one, which the pipeline does not fetch again) and no compute. Softmax statistics are
fp32 (online softmax); the backward pass recomputes probabilities from the saved log-sum-exp
(FlashAttention-2): one kernel accumulates dK/dV over query blocks, one dQ over key blocks.

`interpret=True` runs the same kernels in Pallas' TPU interpreter (CPU tests).
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

LANES = 128      # TPU vector lane width: row statistics are kept lane-replicated
SUBLANES = 8     # TPU sublanes: the dK/dV kernel reads row statistics sublane-replicated
# Masked scores become this before the softmax. Every query sees key 0, so every row has a
# visible score and masked entries contribute exactly zero (as xla_attention's -65504 does).
_MASK_VALUE = -1e30
_NT = (((1,), (1,)), ((), ()))   # a @ b.T
_NN = (((1,), (0,)), ((), ()))   # a @ b


def _last_key_block(sep, q_block, block_q: int, block_k: int):
  """Index of the last key block any query of `q_block` may see (the visible ones are 0..it)."""
  causal_last = lax.div((q_block + 1) * block_q - 1, block_k)
  prefix_last = lax.div(jnp.maximum(sep - 1, 0), block_k)
  return jnp.maximum(causal_last, prefix_last)


def _first_query_block(sep, k_block, block_q: int, block_k: int):
  """Index of the first query block that sees any key of `k_block` (the rest see it too)."""
  return jnp.where(k_block * block_k < sep, 0, lax.div(k_block * block_k, block_q))


def _visible(sep, query_start, key_start, shape, keys_on_rows: bool):
  """Boolean `shape` tile: True where the query may see the key (GLM rule)."""
  rows = lax.broadcasted_iota(jnp.int32, shape, 0)
  cols = lax.broadcasted_iota(jnp.int32, shape, 1)
  if keys_on_rows:
    key, query = key_start + rows, query_start + cols
  else:
    query, key = query_start + rows, key_start + cols
  return (key < sep) | (key <= query)


def _lanes(x, width: int):
  """Lane-replicated `[rows, LANES]` statistics -> `[rows, width]`."""
  if width == LANES:
    return x
  if width < LANES:
    return x[:, :width]
  return jnp.tile(x, (1, width // LANES))


def _grid_step(sep_ref):
  """(this example's `sep`, outer block index, inner block index) of the running grid step:
  every kernel's grid is (batch, heads, outer blocks, inner blocks)."""
  return sep_ref[pl.program_id(0)], pl.program_id(2), pl.program_id(3)


def _tile_scores(rows, cols, sep, q_block, k_block, *, scale: float, block_q: int, block_k: int,
                 keys_on_rows: bool = False):
  """Scaled fp32 scores `rows @ cols.T` of one tile and the GLM mask of that tile (True =
  visible); the tile holds keys on its rows when `keys_on_rows` (the dK/dV kernel's layout)."""
  scores = lax.dot_general(rows, cols, _NT, preferred_element_type=jnp.float32) * scale
  visible = _visible(sep, q_block * block_q, k_block * block_k, scores.shape, keys_on_rows)
  return scores, visible


def _forward_kernel(sep_ref, q_ref, k_ref, v_ref, out_ref, lse_ref, m_ref, l_ref, acc_ref, *,
                    scale: float, block_q: int, block_k: int):
  sep, q_block, k_block = _grid_step(sep_ref)

  @pl.when(k_block == 0)
  def _init():
    m_ref[...] = jnp.full(m_ref.shape, -jnp.inf, jnp.float32)
    l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when(k_block <= _last_key_block(sep, q_block, block_q, block_k))
  def _accumulate():
    value = v_ref[...]
    scores, visible = _tile_scores(q_ref[...], k_ref[...], sep, q_block, k_block, scale=scale,
                                   block_q=block_q, block_k=block_k)
    scores = jnp.where(visible, scores, _MASK_VALUE)
    m_prev = m_ref[...]
    m_next = jnp.maximum(m_prev, jnp.max(scores, axis=1, keepdims=True))
    correction = jnp.exp(m_prev - m_next)
    probs = jnp.exp(scores - _lanes(m_next, block_k))
    l_ref[...] = correction * l_ref[...] + jnp.sum(probs, axis=1, keepdims=True)
    m_ref[...] = m_next
    acc_ref[...] = (acc_ref[...] * _lanes(correction, acc_ref.shape[1])
                    + lax.dot_general(probs.astype(value.dtype), value, _NN,
                                      preferred_element_type=jnp.float32))

  @pl.when(k_block == pl.num_programs(3) - 1)
  def _finish():
    total = l_ref[...]
    out_ref[...] = (acc_ref[...] / _lanes(total, acc_ref.shape[1])).astype(out_ref.dtype)
    lse_ref[...] = m_ref[...] + jnp.log(total)


def _dkv_kernel(sep_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, dk_ref, dv_ref,
                dk_acc, dv_acc, *, scale: float, block_q: int, block_k: int):
  sep, k_block, q_block = _grid_step(sep_ref)

  @pl.when(q_block == 0)
  def _init():
    dk_acc[...] = jnp.zeros(dk_acc.shape, jnp.float32)
    dv_acc[...] = jnp.zeros(dv_acc.shape, jnp.float32)

  @pl.when(q_block >= _first_query_block(sep, k_block, block_q, block_k))
  def _accumulate():
    query, key, value, d_out = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
    # Transposed tiles [block_k, block_q]: the row statistics then broadcast over sublanes.
    scores_t, visible = _tile_scores(key, query, sep, q_block, k_block, scale=scale,
                                     block_q=block_q, block_k=block_k, keys_on_rows=True)
    probs_t = jnp.where(visible, jnp.exp(scores_t - lse_ref[:1, :]), 0.0)
    dv_acc[...] += lax.dot_general(probs_t.astype(d_out.dtype), d_out, _NN,
                                   preferred_element_type=jnp.float32)
    dprobs_t = lax.dot_general(value, d_out, _NT, preferred_element_type=jnp.float32)
    dscores_t = probs_t * (dprobs_t - di_ref[:1, :])
    dk_acc[...] += lax.dot_general(dscores_t.astype(query.dtype), query, _NN,
                                   preferred_element_type=jnp.float32) * scale

  @pl.when(q_block == pl.num_programs(3) - 1)
  def _finish():
    dk_ref[...] = dk_acc[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_acc[...].astype(dv_ref.dtype)


def _dq_kernel(sep_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, dq_ref, dq_acc, *,
               scale: float, block_q: int, block_k: int):
  sep, q_block, k_block = _grid_step(sep_ref)

  @pl.when(k_block == 0)
  def _init():
    dq_acc[...] = jnp.zeros(dq_acc.shape, jnp.float32)

  @pl.when(k_block <= _last_key_block(sep, q_block, block_q, block_k))
  def _accumulate():
    key, value, d_out = k_ref[...], v_ref[...], do_ref[...]
    lse = jnp.expand_dims(lse_ref[0], -1)
    di = jnp.expand_dims(di_ref[0], -1)
    scores, visible = _tile_scores(q_ref[...], key, sep, q_block, k_block, scale=scale,
                                   block_q=block_q, block_k=block_k)
    probs = jnp.where(visible, jnp.exp(scores - lse), 0.0)
    dprobs = lax.dot_general(d_out, value, _NT, preferred_element_type=jnp.float32)
    dscores = probs * (dprobs - di)
    dq_acc[...] += lax.dot_general(dscores.astype(key.dtype), key, _NN,
                                   preferred_element_type=jnp.float32) * scale

  @pl.when(k_block == pl.num_programs(3) - 1)
  def _finish():
    dq_ref[...] = dq_acc[...].astype(dq_ref.dtype)


def _tile(rows: int, cols: int, index_map):
  """A `[rows, cols]` block of one (example, head) of a `[b, h, ...]` operand."""
  return pl.BlockSpec((None, None, rows, cols), index_map)


def _fp32_scratch(rows: int, cols: int):
  return pltpu.VMEM((rows, cols), jnp.float32)


def _sep_prefetch_call(kernel, name: str, interpret: bool, *, grid, in_specs, out_specs,
                       scratch_shapes, out_shape):
  """`pl.pallas_call` of one of the three kernels: `sep` goes first, by scalar prefetch; the
  last grid axis accumulates into scratch, so it runs in order ("arbitrary"), the rest in
  parallel."""
  return pl.pallas_call(
      kernel,
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=1, grid=grid, in_specs=in_specs, out_specs=out_specs,
          scratch_shapes=scratch_shapes),
      out_shape=out_shape,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")),
      # Plain interpret mode: the kernels become ordinary JAX ops. The TPU interpreter
      # (pltpu.InterpretParams) runs them through effectful callbacks, which jax 0.10's remat
      # cannot partially evaluate ("Effects not supported in partial-eval of checkpoint/remat").
      interpret=bool(interpret),
      name=name,
  )


def _forward(q, k, v, sep, block_q, block_k, interpret):
  """q/k/v `[b, h, S, d]` (S a multiple of both blocks) -> (out, lse `[b, h, S]` fp32)."""
  batch, heads, length, head_dim = q.shape

  def q_map(b, h, i, j, sep_ref):
    return b, h, i, 0

  def kv_map(b, h, i, j, sep_ref):
    return b, h, jnp.minimum(j, _last_key_block(sep_ref[b], i, block_q, block_k)), 0

  q_tile, kv_tile = _tile(block_q, head_dim, q_map), _tile(block_k, head_dim, kv_map)
  kernel = functools.partial(_forward_kernel, scale=1.0 / math.sqrt(head_dim),
                             block_q=block_q, block_k=block_k)
  out, lse = _sep_prefetch_call(
      kernel, "glm_flash_attention_fwd", interpret,
      grid=(batch, heads, length // block_q, length // block_k),
      in_specs=[q_tile, kv_tile, kv_tile],                    # q, k, v
      out_specs=[q_tile, _tile(block_q, LANES, q_map)],       # out, lse (lane-replicated)
      scratch_shapes=[_fp32_scratch(block_q, LANES), _fp32_scratch(block_q, LANES),  # m, l
                      _fp32_scratch(block_q, head_dim)],      # output accumulator
      out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((batch, heads, length, LANES), jnp.float32)],
  )(sep, q, k, v)
  return out, lse[..., 0]


def _backward(q, k, v, sep, out, lse, d_out, block_q, block_k, interpret):
  """Gradients (dq, dk, dv) of `[b, h, S, d]` attention from the saved output and lse."""
  batch, heads, length, head_dim = q.shape
  scale = 1.0 / math.sqrt(head_dim)
  di = jnp.sum(out.astype(jnp.float32) * d_out.astype(jnp.float32), axis=-1)   # [b, h, S]

  # dK/dV: key blocks outer, query blocks inner; query blocks before the first one that sees
  # this key block are skipped (their index is clamped forward to it).
  def q_map_kv(b, h, j, i, sep_ref):
    return b, h, jnp.maximum(i, _first_query_block(sep_ref[b], j, block_q, block_k)), 0

  def row_map_kv(b, h, j, i, sep_ref):
    return b, h, 0, jnp.maximum(i, _first_query_block(sep_ref[b], j, block_q, block_k))

  def k_map_kv(b, h, j, i, sep_ref):
    return b, h, j, 0

  q_tile, k_tile = _tile(block_q, head_dim, q_map_kv), _tile(block_k, head_dim, k_map_kv)
  rows_tile = _tile(SUBLANES, block_q, row_map_kv)   # sublane-replicated row statistics
  rows_sub = (batch, heads, SUBLANES, length)
  dk, dv = _sep_prefetch_call(
      functools.partial(_dkv_kernel, scale=scale, block_q=block_q, block_k=block_k),
      "glm_flash_attention_dkv", interpret,
      grid=(batch, heads, length // block_k, length // block_q),
      in_specs=[q_tile, k_tile, k_tile, q_tile, rows_tile, rows_tile],  # q, k, v, dout, lse, di
      out_specs=[k_tile, k_tile],                                      # dk, dv
      scratch_shapes=[_fp32_scratch(block_k, head_dim), _fp32_scratch(block_k, head_dim)],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
  )(sep, q, k, v, d_out, jnp.broadcast_to(lse[:, :, None], rows_sub),
    jnp.broadcast_to(di[:, :, None], rows_sub))

  # dQ: query blocks outer, key blocks inner, the same key-block skipping as the forward pass.
  def q_map(b, h, i, j, sep_ref):
    return b, h, i, 0

  def row_map(b, h, i, j, sep_ref):
    return b, h, 0, i

  def kv_map(b, h, i, j, sep_ref):
    return b, h, jnp.minimum(j, _last_key_block(sep_ref[b], i, block_q, block_k)), 0

  q_tile, kv_tile, row_tile = (_tile(block_q, head_dim, q_map), _tile(block_k, head_dim, kv_map),
                               _tile(1, block_q, row_map))
  dq = _sep_prefetch_call(
      functools.partial(_dq_kernel, scale=scale, block_q=block_q, block_k=block_k),
      "glm_flash_attention_dq", interpret,
      grid=(batch, heads, length // block_q, length // block_k),
      in_specs=[q_tile, kv_tile, kv_tile, q_tile, row_tile, row_tile],  # q, k, v, dout, lse, di
      out_specs=q_tile,                                                 # dq
      scratch_shapes=[_fp32_scratch(block_q, head_dim)],
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
  )(sep, q, k, v, d_out, lse[:, :, None], di[:, :, None])
  return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _flash(q, k, v, sep, block_q, block_k, interpret):
  return _forward(q, k, v, sep, block_q, block_k, interpret)[0]


def _flash_fwd(q, k, v, sep, block_q, block_k, interpret):
  out, lse = _forward(q, k, v, sep, block_q, block_k, interpret)
  return out, (q, k, v, sep, out, lse)


def _flash_bwd(block_q, block_k, interpret, residuals, d_out):
  q, k, v, sep, out, lse = residuals
  dq, dk, dv = _backward(q, k, v, sep, out, lse, d_out, block_q, block_k, interpret)
  return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def pallas_attention(query, key, value, sep, *, block_q: int = 512, block_k: int = 512,
                     interpret: bool = False):
  """GLM-masked attention without materialising `[S, S]` scores (TPU; differentiable).

  query/key/value `[batch, seq, heads, head_dim]`, `sep` `[batch]` int (Part-A length; 0 =
  causal, >= seq = bidirectional). Same scale (1/sqrt(head_dim)) and mask as `xla_attention`
  with `glm_mask(sep, seq)`; returns `[batch, seq, heads, head_dim]` in query's dtype. Lengths
  that are not block multiples are padded inside (padded keys are never visible to real
  queries). Blocks larger than the sequence shrink to it. On TPU the blocks must be multiples
  of 128; `interpret=True` (CPU tests) accepts any size.
  """
  if query.ndim != 4 or key.shape != query.shape or value.shape != query.shape:
    raise ValueError(
        "pallas_attention takes query, key and value of one shape [batch, seq, heads, head_dim] "
        f"(self-attention); got {query.shape}, {key.shape}, {value.shape}.")
  batch, length = query.shape[:2]
  if jnp.shape(sep) != (batch,):
    raise ValueError(f"sep must have shape [batch] = ({batch},), got {jnp.shape(sep)}.")
  granule = 1 if interpret else LANES
  for name, block in (("block_q", block_q), ("block_k", block_k)):
    if (not isinstance(block, numbers.Integral) or isinstance(block, bool) or block <= 0
        or block % granule):
      raise ValueError(f"{name}={block!r} must be a positive integer" + (
          "" if interpret else f" multiple of {LANES} on TPU (the vector lane width)") + ".")
  block_q = min(int(block_q), _round_up(length, granule))
  block_k = min(int(block_k), _round_up(length, granule))
  padded = _round_up(length, math.lcm(block_q, block_k))
  sep = jnp.minimum(jnp.asarray(sep, jnp.int32), length)   # padding keys stay invisible

  def to_kernel_layout(x):   # [b, s, h, d] -> [b, h, S_padded, d]
    x = jnp.swapaxes(x, 1, 2)
    return jnp.pad(x, ((0, 0), (0, 0), (0, padded - length), (0, 0)))

  out = _flash(to_kernel_layout(query), to_kernel_layout(key), to_kernel_layout(value), sep,
               block_q, block_k, bool(interpret))
  return jnp.swapaxes(out[:, :, :length], 1, 2)

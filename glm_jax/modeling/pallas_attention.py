"""GLM-mask flash attention as a Pallas TPU kernel: forward and backward in O(S) memory.

Query i sees key j iff `j < sep or j <= i`, with `sep` (per example) delivered to the kernels by
scalar prefetch, so one compiled kernel serves every Part-A length. Each (query block, key block)
is empty, partial or full under the mask (`block_kinds`): empty ones are skipped (no DMA, their
block index is clamped to the last visible one, which the pipeline does not fetch again; no
compute), full ones run without mask arithmetic, only partial ones build the mask. Softmax
statistics are fp32 (online softmax); the backward pass recomputes probabilities from the saved
log-sum-exp (FlashAttention-2): one kernel accumulates dK/dV over query blocks, one dQ over key
blocks.

Attention-probability dropout is counter-based: whether (batch, head, query, key) is dropped is
`dropout_keep(seed, b, h, q, k, rate)`, a hash of the step's seed and the four indices, so the
forward and both backward kernels regenerate the same mask tile by tile (nothing `[S, S]` is
stored) and `attention.xla_attention` applies the identical mask as the reference.

`interpret=True` runs the same kernels in Pallas' interpreter (CPU tests), at any length.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

LANES = 128      # TPU vector lane width: row statistics are kept lane-replicated
SUBLANES = 8     # TPU sublanes: the dK/dV kernel reads row statistics sublane-replicated
# Masked scores become this before the softmax. Every query sees key 0, so every row has a
# visible score and masked entries contribute exactly zero (as xla_attention's -65504 does).
_MASK_VALUE = -1e30
_NT = (((1,), (1,)), ((), ()))   # a @ b.T
_NN = (((1,), (0,)), ((), ()))   # a @ b
EMPTY, PARTIAL, FULL = 0, 1, 2   # what the GLM mask leaves of a (query block, key block)
# Names of the kernel's residuals, for remat policies
# (jax.checkpoint_policies.save_only_these_names).
RESIDUAL_NAMES = ("glm_attention_out", "glm_attention_lse")


def _i32(c: int) -> int:
  """A uint32 constant as the int32 with the same bits (the hash runs in wrapping int32)."""
  return c - (1 << 32) if c >= 1 << 31 else c


def _mix32(x):
  """A 32-bit avalanche finaliser (lowbias32) on int32 arrays; multiplies wrap."""
  x = x ^ lax.shift_right_logical(x, jnp.int32(16))
  x = x * jnp.int32(_i32(0x7FEB352D))
  x = x ^ lax.shift_right_logical(x, jnp.int32(15))
  x = x * jnp.int32(_i32(0x846CA68B))
  return x ^ lax.shift_right_logical(x, jnp.int32(16))


def dropout_keep(seed, batch, head, query, key, rate: float):
  """True where attention probability (batch, head, query, key) survives dropout of `rate`.

  A pure function of an int32 `seed` and int32 indices (broadcastable arrays); the kernels and
  the XLA reference call this same function, so their masks are identical. Keeps with
  probability 1 - rate (to 2^-24).
  """
  stream = _mix32(jnp.asarray(seed, jnp.int32) ^ (batch * jnp.int32(_i32(0x9E3779B1))
                                                  + head * jnp.int32(_i32(0x85EBCA77))))
  bits = _mix32(stream + query * jnp.int32(_i32(0xC2B2AE3D)) + key * jnp.int32(0x27D4EB2F))
  return lax.shift_right_logical(bits, jnp.int32(8)) >= jnp.int32(round(rate * (1 << 24)))


def _last_key_block(sep, q_block, block_q: int, block_k: int):
  """Index of the last key block any query of `q_block` may see (the visible ones are 0..it)."""
  causal_last = lax.div((q_block + 1) * block_q - 1, block_k)
  prefix_last = lax.div(jnp.maximum(sep - 1, 0), block_k)
  return jnp.maximum(causal_last, prefix_last)


def _first_query_block(sep, k_block, block_q: int, block_k: int):
  """Index of the first query block that sees any key of `k_block` (the rest see it too)."""
  return jnp.where(k_block * block_k < sep, 0, lax.div(k_block * block_k, block_q))


def _is_full(sep, q_block, k_block, block_q: int, block_k: int):
  """True when every query of `q_block` sees every key of `k_block`: the key block lies in
  Part A, or wholly at or before the query block's first query."""
  last_key = (k_block + 1) * block_k - 1
  return (last_key < sep) | (last_key <= q_block * block_q)


def block_kinds(sep: int, length: int, block_q: int, block_k: int):
  """`[length / block_q, length / block_k]` int array of EMPTY / PARTIAL / FULL for one `sep`,
  from the same rules the kernels branch on."""
  q_block = jnp.arange(length // block_q)[:, None]
  k_block = jnp.arange(length // block_k)[None, :]
  sep = jnp.int32(sep)
  visible = k_block <= _last_key_block(sep, q_block, block_q, block_k)
  return jnp.where(visible, jnp.where(_is_full(sep, q_block, k_block, block_q, block_k),
                                      FULL, PARTIAL), EMPTY)


def _tile_positions(query_start, key_start, shape, keys_on_rows: bool):
  """(query, key) int32 `shape` tiles of the global positions of this grid step's tile."""
  rows = lax.broadcasted_iota(jnp.int32, shape, 0)
  cols = lax.broadcasted_iota(jnp.int32, shape, 1)
  if keys_on_rows:
    return query_start + cols, key_start + rows
  return query_start + rows, key_start + cols


def _visible(sep, query_start, key_start, shape, keys_on_rows: bool):
  """Boolean `shape` tile: True where the query may see the key (GLM rule)."""
  query, key = _tile_positions(query_start, key_start, shape, keys_on_rows)
  return (key < sep) | (key <= query)


def _dropout_scale(drop, query_start, key_start, shape, rate: float, keys_on_rows: bool):
  """fp32 `shape` tile of this grid step's dropout factors: 1 / (1 - rate) kept, 0 dropped;
  `drop` = (seed, global batch index, global head index)."""
  seed, batch, head = drop
  query, key = _tile_positions(query_start, key_start, shape, keys_on_rows)
  keep = dropout_keep(seed, batch, head, query, key, rate)
  return jnp.where(keep, jnp.float32(1.0 / (1.0 - rate)), jnp.float32(0.0))


def _lanes(x, width: int):
  """Lane-replicated `[rows, LANES]` statistics -> `[rows, width]` (or `[rows, 1]`, which
  broadcasts, when `width` is no multiple of the lanes: interpret mode's odd lengths)."""
  if width == LANES:
    return x
  if width < LANES:
    return x[:, :width]
  if width % LANES:
    return x[:, :1]
  return jnp.tile(x, (1, width // LANES))


def _grid_step(sep_ref, drop_ref):
  """(this example's `sep`, outer block index, inner block index, (dropout seed, global batch
  index, global head index)) of the running grid step: every kernel's grid is (batch, heads,
  outer blocks, inner blocks)."""
  batch, head = pl.program_id(0), pl.program_id(1)
  drop = (drop_ref[0], batch + drop_ref[1], head + drop_ref[2])
  return sep_ref[batch], pl.program_id(2), pl.program_id(3), drop


def _when_visible(visible, full, body):
  """Runs `body(masked)` for a visible block: without mask arithmetic when the block is full."""
  pl.when(visible & full)(lambda: body(False))
  pl.when(visible & jnp.logical_not(full))(lambda: body(True))


def _forward_kernel(sep_ref, drop_ref, q_ref, k_ref, v_ref, out_ref, lse_ref, m_ref, l_ref,
                    acc_ref, *, rate: float, block_q: int, block_k: int):
  sep, q_block, k_block, drop = _grid_step(sep_ref, drop_ref)

  @pl.when(k_block == 0)
  def _init():
    m_ref[...] = jnp.full(m_ref.shape, -jnp.inf, jnp.float32)
    l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  def accumulate(masked: bool):
    value = v_ref[...]
    scores = lax.dot_general(q_ref[...], k_ref[...], _NT, preferred_element_type=jnp.float32)
    if masked:
      visible = _visible(sep, q_block * block_q, k_block * block_k, scores.shape, False)
      scores = jnp.where(visible, scores, _MASK_VALUE)
    m_prev = m_ref[...]
    m_next = jnp.maximum(m_prev, jnp.max(scores, axis=1, keepdims=True))
    correction = jnp.exp(m_prev - m_next)
    probs = jnp.exp(scores - _lanes(m_next, block_k))
    l_ref[...] = correction * l_ref[...] + jnp.sum(probs, axis=1, keepdims=True)
    m_ref[...] = m_next
    if rate:
      probs = probs * _dropout_scale(drop, q_block * block_q, k_block * block_k,
                                     probs.shape, rate, False)
    acc_ref[...] = (acc_ref[...] * _lanes(correction, acc_ref.shape[1])
                    + lax.dot_general(probs.astype(value.dtype), value, _NN,
                                      preferred_element_type=jnp.float32))

  _when_visible(k_block <= _last_key_block(sep, q_block, block_q, block_k),
                _is_full(sep, q_block, k_block, block_q, block_k), accumulate)

  @pl.when(k_block == pl.num_programs(3) - 1)
  def _finish():
    total = l_ref[...]
    out_ref[...] = (acc_ref[...] / _lanes(total, acc_ref.shape[1])).astype(out_ref.dtype)
    # Stored as a row [1, block_q] (the lanes' copies dropped), the layout the backward reads.
    lse_ref[...] = jnp.transpose(m_ref[...] + jnp.log(total))[:1, :]


def _dkv_kernel(sep_ref, drop_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, dk_ref, dv_ref,
                dk_acc, dv_acc, *, rate: float, block_q: int, block_k: int):
  sep, k_block, q_block, drop = _grid_step(sep_ref, drop_ref)

  @pl.when(q_block == 0)
  def _init():
    dk_acc[...] = jnp.zeros(dk_acc.shape, jnp.float32)
    dv_acc[...] = jnp.zeros(dv_acc.shape, jnp.float32)

  def accumulate(masked: bool):
    query, key, value, d_out = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
    # Transposed tiles [block_k, block_q]: the row statistics then broadcast over sublanes.
    scores_t = lax.dot_general(key, query, _NT, preferred_element_type=jnp.float32)
    probs_t = jnp.exp(scores_t - lse_ref[:1, :])
    if masked:
      visible = _visible(sep, q_block * block_q, k_block * block_k, scores_t.shape, True)
      probs_t = jnp.where(visible, probs_t, 0.0)
    dprobs_t = lax.dot_general(value, d_out, _NT, preferred_element_type=jnp.float32)
    dropped_t = probs_t
    if rate:
      scale_t = _dropout_scale(drop, q_block * block_q, k_block * block_k, probs_t.shape,
                               rate, True)
      dropped_t = probs_t * scale_t
      dprobs_t = dprobs_t * scale_t
    dv_acc[...] += lax.dot_general(dropped_t.astype(d_out.dtype), d_out, _NN,
                                   preferred_element_type=jnp.float32)
    dscores_t = probs_t * (dprobs_t - di_ref[:1, :])
    dk_acc[...] += lax.dot_general(dscores_t.astype(query.dtype), query, _NN,
                                   preferred_element_type=jnp.float32)

  _when_visible(q_block >= _first_query_block(sep, k_block, block_q, block_k),
                _is_full(sep, q_block, k_block, block_q, block_k), accumulate)

  @pl.when(q_block == pl.num_programs(3) - 1)
  def _finish():
    dk_ref[...] = dk_acc[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_acc[...].astype(dv_ref.dtype)


def _dq_kernel(sep_ref, drop_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, dq_ref, dq_acc, *,
               rate: float, block_q: int, block_k: int):
  sep, q_block, k_block, drop = _grid_step(sep_ref, drop_ref)

  @pl.when(k_block == 0)
  def _init():
    dq_acc[...] = jnp.zeros(dq_acc.shape, jnp.float32)

  def accumulate(masked: bool):
    key, value, d_out = k_ref[...], v_ref[...], do_ref[...]
    lse = jnp.expand_dims(lse_ref[0], -1)
    di = jnp.expand_dims(di_ref[0], -1)
    scores = lax.dot_general(q_ref[...], key, _NT, preferred_element_type=jnp.float32)
    probs = jnp.exp(scores - lse)
    if masked:
      visible = _visible(sep, q_block * block_q, k_block * block_k, scores.shape, False)
      probs = jnp.where(visible, probs, 0.0)
    dprobs = lax.dot_general(d_out, value, _NT, preferred_element_type=jnp.float32)
    if rate:
      dprobs = dprobs * _dropout_scale(drop, q_block * block_q, k_block * block_k,
                                       dprobs.shape, rate, False)
    dscores = probs * (dprobs - di)
    dq_acc[...] += lax.dot_general(dscores.astype(key.dtype), key, _NN,
                                   preferred_element_type=jnp.float32)

  _when_visible(k_block <= _last_key_block(sep, q_block, block_q, block_k),
                _is_full(sep, q_block, k_block, block_q, block_k), accumulate)

  @pl.when(k_block == pl.num_programs(3) - 1)
  def _finish():
    dq_ref[...] = dq_acc[...].astype(dq_ref.dtype)


def _tile(rows: int, cols: int, index_map):
  """A `[rows, cols]` block of one (example, head) of a `[b, h, ...]` operand."""
  return pl.BlockSpec((None, None, rows, cols), index_map)


def _fp32_scratch(rows: int, cols: int):
  return pltpu.VMEM((rows, cols), jnp.float32)


def _prefetch_call(kernel, name: str, interpret: bool, *, grid, in_specs, out_specs,
                   scratch_shapes, out_shape):
  """`pl.pallas_call` of one of the three kernels: `sep` `[b]` and the dropout scalars (seed,
  batch offset, head offset) go first, by scalar prefetch; the last grid axis accumulates into
  scratch, so it runs in order ("arbitrary"), the rest in parallel."""
  return pl.pallas_call(
      kernel,
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=2, grid=grid, in_specs=in_specs, out_specs=out_specs,
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


def _query_major_maps(block_q, block_k):
  """Index maps of a query-major grid `(b, h, query block i, key block j)` (the forward pass and
  dQ): q / output tiles, one-row statistics, and k / v tiles with the key blocks past the last
  one this query block sees clamped back to it (skipped)."""
  def q_map(b, h, i, j, sep_ref, drop_ref):
    return b, h, i, 0

  def row_map(b, h, i, j, sep_ref, drop_ref):
    return b, h, 0, i

  def kv_map(b, h, i, j, sep_ref, drop_ref):
    return b, h, jnp.minimum(j, _last_key_block(sep_ref[b], i, block_q, block_k)), 0

  return q_map, row_map, kv_map


def _forward(q, k, v, sep, drop, blocks, rate, interpret):
  """q (pre-scaled) / k / v `[b, h, S, d]` (S a multiple of the blocks) -> (out,
  lse `[b, h, S]`)."""
  batch, heads, length, head_dim = q.shape
  block_q, block_k = blocks[:2]

  q_map, row_map, kv_map = _query_major_maps(block_q, block_k)

  q_tile, kv_tile = _tile(block_q, head_dim, q_map), _tile(block_k, head_dim, kv_map)
  kernel = functools.partial(_forward_kernel, rate=rate, block_q=block_q, block_k=block_k)
  out, lse = _prefetch_call(
      kernel, "glm_flash_attention_fwd", interpret,
      grid=(batch, heads, length // block_q, length // block_k),
      in_specs=[q_tile, kv_tile, kv_tile],                    # q, k, v
      out_specs=[q_tile, _tile(1, block_q, row_map)],         # out, lse (a row per block)
      scratch_shapes=[_fp32_scratch(block_q, LANES), _fp32_scratch(block_q, LANES),  # m, l
                      _fp32_scratch(block_q, head_dim)],      # output accumulator
      out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((batch, heads, 1, length), jnp.float32)],
  )(sep, drop, q, k, v)
  return out, lse[:, :, 0]


def _backward(q, k, v, sep, drop, out, lse, d_out, blocks, rate, interpret):
  """Gradients (dq, dk, dv) of `[b, h, S, d]` attention (q pre-scaled) from the saved output
  and lse."""
  batch, heads, length, head_dim = q.shape
  block_q, block_k = blocks[2:]
  di = jnp.sum(out.astype(jnp.float32) * d_out.astype(jnp.float32), axis=-1)   # [b, h, S]

  # dK/dV: key blocks outer, query blocks inner; query blocks before the first one that sees
  # this key block are skipped (their index is clamped forward to it).
  def q_map_kv(b, h, j, i, sep_ref, drop_ref):
    return b, h, jnp.maximum(i, _first_query_block(sep_ref[b], j, block_q, block_k)), 0

  def row_map_kv(b, h, j, i, sep_ref, drop_ref):
    return b, h, 0, jnp.maximum(i, _first_query_block(sep_ref[b], j, block_q, block_k))

  def k_map_kv(b, h, j, i, sep_ref, drop_ref):
    return b, h, j, 0

  q_tile, k_tile = _tile(block_q, head_dim, q_map_kv), _tile(block_k, head_dim, k_map_kv)
  rows_tile = _tile(SUBLANES, block_q, row_map_kv)   # sublane-replicated row statistics
  rows_sub = (batch, heads, SUBLANES, length)
  dk, dv = _prefetch_call(
      functools.partial(_dkv_kernel, rate=rate, block_q=block_q, block_k=block_k),
      "glm_flash_attention_dkv", interpret,
      grid=(batch, heads, length // block_k, length // block_q),
      in_specs=[q_tile, k_tile, k_tile, q_tile, rows_tile, rows_tile],  # q, k, v, dout, lse, di
      out_specs=[k_tile, k_tile],                                      # dk, dv
      scratch_shapes=[_fp32_scratch(block_k, head_dim), _fp32_scratch(block_k, head_dim)],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
  )(sep, drop, q, k, v, d_out, jnp.broadcast_to(lse[:, :, None], rows_sub),
    jnp.broadcast_to(di[:, :, None], rows_sub))

  # dQ: query blocks outer, key blocks inner, the same key-block skipping as the forward pass.
  q_map, row_map, kv_map = _query_major_maps(block_q, block_k)

  q_tile, kv_tile, row_tile = (_tile(block_q, head_dim, q_map), _tile(block_k, head_dim, kv_map),
                               _tile(1, block_q, row_map))
  dq = _prefetch_call(
      functools.partial(_dq_kernel, rate=rate, block_q=block_q, block_k=block_k),
      "glm_flash_attention_dq", interpret,
      grid=(batch, heads, length // block_q, length // block_k),
      in_specs=[q_tile, kv_tile, kv_tile, q_tile, row_tile, row_tile],  # q, k, v, dout, lse, di
      out_specs=q_tile,                                                 # dq
      scratch_shapes=[_fp32_scratch(block_q, head_dim)],
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
  )(sep, drop, q, k, v, d_out, lse[:, :, None], di[:, :, None])
  return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _flash(q, k, v, sep, drop, blocks, rate, interpret):
  return _forward(q, k, v, sep, drop, blocks, rate, interpret)[0]


def _flash_fwd(q, k, v, sep, drop, blocks, rate, interpret):
  out, lse = _forward(q, k, v, sep, drop, blocks, rate, interpret)
  out, lse = (checkpoint_name(x, n) for x, n in zip((out, lse), RESIDUAL_NAMES))
  return out, (q, k, v, sep, drop, out, lse)


def _flash_bwd(blocks, rate, interpret, residuals, d_out):
  q, k, v, sep, drop, out, lse = residuals
  dq, dk, dv = _backward(q, k, v, sep, drop, out, lse, d_out, blocks, rate, interpret)
  return dq, dk, dv, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def kernel_layout(length: int, blocks, interpret: bool):
  """(padded length, blocks that divide it) for a sequence of `length`.

  On TPU the length is padded to a multiple of the lane width only (640 stays 640) and each
  requested block shrinks to the largest multiple of 128 that divides the padded length. In
  interpret mode (CPU tests, any length and block) blocks larger than the sequence shrink to
  it and the length is padded to a multiple of every block.
  """
  if interpret:
    blocks = tuple(min(b, length) for b in blocks)
    return _round_up(length, math.lcm(*blocks)), blocks
  padded = _round_up(length, LANES)
  return padded, tuple(
      max(c for c in range(LANES, min(b, padded) + 1, LANES) if padded % c == 0) for b in blocks)


def pallas_attention(query, key, value, sep, *, block_q: int = 512, block_k: int = 512,
                     block_q_backward: int | None = None, block_k_backward: int | None = None,
                     dropout_rate: float = 0.0, dropout_seed=0, batch_offset=0, head_offset=0,
                     interpret: bool = False):
  """GLM-masked attention without materialising `[S, S]` scores (TPU; differentiable).

  query/key/value `[batch, seq, heads, head_dim]`, `sep` `[batch]` int (Part-A length; 0 =
  causal, >= seq = bidirectional). Same scale (1/sqrt(head_dim)) and mask as `xla_attention`
  with `glm_mask(sep, seq)`; returns `[batch, seq, heads, head_dim]` in query's dtype. Lengths
  are padded inside (see `kernel_layout`; padded keys are never visible to real queries).
  `block_q`/`block_k` tile the forward pass, `block_*_backward` (default: the forward's) both
  backward passes; on TPU they must be multiples of 128, `interpret=True` (CPU tests) accepts
  any size. `dropout_rate` > 0 drops probabilities by `dropout_keep(dropout_seed, batch_offset +
  b, head_offset + h, q, k)` (the offsets place a shard's rows and heads in the global arrays).
  """
  if query.ndim != 4 or key.shape != query.shape or value.shape != query.shape:
    raise ValueError(
        "pallas_attention takes query, key and value of one shape [batch, seq, heads, head_dim] "
        f"(self-attention); got {query.shape}, {key.shape}, {value.shape}.")
  batch, length, _, head_dim = query.shape
  if jnp.shape(sep) != (batch,):
    raise ValueError(f"sep must have shape [batch] = ({batch},), got {jnp.shape(sep)}.")
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate={dropout_rate!r} must be in [0, 1).")
  granule = 1 if interpret else LANES
  blocks = (block_q, block_k, block_q_backward or block_q, block_k_backward or block_k)
  for name, block in zip(("block_q", "block_k", "block_q_backward", "block_k_backward"), blocks):
    if (not isinstance(block, numbers.Integral) or isinstance(block, bool) or block <= 0
        or block % granule):
      raise ValueError(f"{name}={block!r} must be a positive integer" + (
          "" if interpret else f" multiple of {LANES} on TPU (the vector lane width)") + ".")
  padded, blocks = kernel_layout(length, tuple(int(b) for b in blocks), bool(interpret))
  sep = jnp.minimum(jnp.asarray(sep, jnp.int32), length)   # padding keys stay invisible
  drop = jnp.stack([jnp.asarray(x, jnp.int32).reshape(())
                    for x in (dropout_seed, batch_offset, head_offset)])
  # The softmax scale is applied once, to q, outside the kernels (exact for head_dim 4^n).
  query = query * jnp.asarray(1.0 / math.sqrt(head_dim), query.dtype)

  def to_kernel_layout(x):   # [b, s, h, d] -> [b, h, S_padded, d]
    x = jnp.swapaxes(x, 1, 2)
    return x if padded == length else jnp.pad(
        x, ((0, 0), (0, 0), (0, padded - length), (0, 0)))

  out = _flash(to_kernel_layout(query), to_kernel_layout(key), to_kernel_layout(value), sep, drop,
               blocks, float(dropout_rate), bool(interpret))
  return jnp.swapaxes(out if padded == length else out[:, :, :length], 1, 2)

"""The kernel's counter-based attention dropout, block classification and layout (interpret mode
on CPU): the kernel equals `xla_attention` under the identical hash mask, forward and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax.modeling import attention
from glm_jax.modeling import pallas_attention as kernel_lib

SEED = 1234567


@functools.partial(jax.jit, static_argnames=("blocks", "rate"))
def _both(q, k, v, d_out, sep, blocks, rate):
  def kernel(q, k, v):
    return attention.pallas_attention(
        q, k, v, sep, block_q=blocks[0], block_k=blocks[1], block_q_backward=blocks[2],
        block_k_backward=blocks[3], dropout_rate=rate, dropout_seed=SEED, interpret=True)

  def reference(q, k, v):
    return attention.xla_attention(q, k, v, attention.glm_mask(sep, q.shape[1]),
                                   dropout_rate=rate, dropout_seed=SEED)

  results = []
  for fn in (kernel, reference):
    out, vjp = jax.vjp(fn, q, k, v)
    results.append((out, *vjp(d_out)))
  return results


def _assert_kernel_equals_reference(length, seps, blocks, rate=0.1, heads=2, head_dim=16):
  keys = jax.random.split(jax.random.PRNGKey(length), 4)
  q, k, v, d_out = (jax.random.normal(key, (len(seps), length, heads, head_dim), jnp.float32)
                    for key in keys)
  got, want = _both(q, k, v, d_out, jnp.asarray(seps, jnp.int32), blocks, rate)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("length,seps,blocks", [
    # forward and backward blocks differ; seps: causal, inside a block, a block boundary, full
    (200, (0, 77, 128, 200), (64, 128, 128, 64)),
    (512, (0, 300, 512), (256, 128, 128, 256)),
    # 640 and 1000: not multiples of the 256 blocks
    (640, (0, 1, 333), (256, 256, 128, 128)),
    (1000, (0, 999, 450), (256, 256, 256, 256)),
])
@pytest.mark.slow
def test_kernel_dropout_equals_xla_reference_with_the_same_hash_mask_fp32(length, seps, blocks):
  _assert_kernel_equals_reference(length, seps, blocks)


@pytest.mark.slow
def test_kernel_dropout_equals_xla_reference_short_and_odd():
  """Quick tier: an odd length and odd blocks (interpret mode takes any), heavy dropout."""
  _assert_kernel_equals_reference(45, (0, 7, 45), (16, 8, 8, 16), rate=0.5)


@pytest.mark.slow
def test_length_200_runs_in_interpret_mode_with_the_default_blocks():
  q = jax.random.normal(jax.random.PRNGKey(0), (1, 200, 1, 8), jnp.float32)
  sep = jnp.asarray([50], jnp.int32)
  out = attention.pallas_attention(q, q, q, sep, interpret=True)
  expected = attention.xla_attention(q, q, q, attention.glm_mask(sep, 200))
  np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


def test_hash_keeps_the_expected_fraction_and_depends_on_every_index():
  shape = (2, 3, 64, 256)
  b, h, q, k = (jax.lax.broadcasted_iota(jnp.int32, shape, axis) for axis in range(4))
  keep = np.asarray(kernel_lib.dropout_keep(SEED, b, h, q, k, 0.1))
  assert abs(keep.mean() - 0.9) < 0.005
  for axis in range(4):   # no index is ignored: neighbours along each axis differ
    first, second = np.take(keep, 0, axis=axis), np.take(keep, 1, axis=axis)
    assert 0.1 < (first != second).mean() < 0.3, axis
  other = np.asarray(kernel_lib.dropout_keep(SEED + 1, b, h, q, k, 0.1))
  assert 0.1 < (keep != other).mean() < 0.3
  assert np.asarray(kernel_lib.dropout_keep(SEED, b, h, q, k, 0.0)).all()


@pytest.mark.parametrize("block_q,block_k", [(16, 8), (8, 16), (16, 16), (24, 8)])
def test_block_classification_is_exactly_the_masks(block_q, block_k):
  """EMPTY: no visible (query, key) pair in the block; FULL: all visible; PARTIAL: the rest."""
  length = 48
  query, key = np.arange(length)[:, None], np.arange(length)[None, :]
  for sep in range(length + 1):
    visible = (key < sep) | (key <= query)
    tiles = visible.reshape(length // block_q, block_q, length // block_k, block_k)
    expected = np.where(tiles.all(axis=(1, 3)), kernel_lib.FULL,
                        np.where(tiles.any(axis=(1, 3)), kernel_lib.PARTIAL, kernel_lib.EMPTY))
    got = np.asarray(kernel_lib.block_kinds(sep, length, block_q, block_k))
    np.testing.assert_array_equal(got, expected, err_msg=f"sep={sep}")


@pytest.mark.parametrize("length,blocks,expected", [
    (640, (512, 512, 512, 512), (640, (128, 128, 128, 128))),   # 640 stays 640
    (200, (512, 512, 256, 128), (256, (256, 256, 256, 128))),
    (1000, (512, 256, 512, 512), (1024, (512, 256, 512, 512))),
    (4096, (512, 1024, 256, 512), (4096, (512, 1024, 256, 512))),
])
def test_tpu_layout_pads_to_a_multiple_of_128_only(length, blocks, expected):
  assert kernel_lib.kernel_layout(length, blocks, interpret=False) == expected


@pytest.mark.slow
def test_residuals_carry_checkpoint_names_for_remat_policies():
  q = jax.random.normal(jax.random.PRNGKey(0), (1, 32, 1, 8), jnp.float32)
  sep = jnp.asarray([5], jnp.int32)
  attend = lambda q: attention.pallas_attention(q, q, q, sep, block_q=16, block_k=16,
                                                interpret=True).sum()
  jaxpr = str(jax.make_jaxpr(jax.grad(attend))(q))
  for name in kernel_lib.RESIDUAL_NAMES:
    assert f"name={name}" in jaxpr
  policy = jax.checkpoint_policies.save_only_these_names(*kernel_lib.RESIDUAL_NAMES)
  np.testing.assert_allclose(jax.grad(jax.checkpoint(attend, policy=policy))(q),
                             jax.grad(attend)(q), atol=1e-6)

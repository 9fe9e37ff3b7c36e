"""The Pallas GLM flash-attention kernel (interpret mode on CPU) equals xla_attention + glm_mask."""

import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from glm_jax.modeling import attention, model
from glm_jax import run_checks
from glm_jax.modeling import pallas_attention as kernel_lib
from tests import fresh_interpreter


def _qkv_and_cotangent(batch, length, heads, head_dim, dtype, seed):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  return [jax.random.normal(k, (batch, length, heads, head_dim), jnp.float32).astype(dtype)
          for k in keys]


@functools.partial(jax.jit, static_argnames=("block_q", "block_k"))
def _pallas_value_and_grads(q, k, v, d_out, sep, block_q, block_k):
  attend = lambda q, k, v: attention.pallas_attention(
      q, k, v, sep, block_q=block_q, block_k=block_k, interpret=True)
  out, vjp = jax.vjp(attend, q, k, v)
  return out, vjp(d_out)


@jax.jit
def _xla_value_and_grads(q, k, v, d_out, sep):
  mask = attention.glm_mask(sep, q.shape[1])
  out, vjp = jax.vjp(lambda q, k, v: attention.xla_attention(q, k, v, mask), q, k, v)
  return out, vjp(d_out)


def _assert_matches_xla(length, heads, seps, block_q, block_k, dtype, atol, seed=0):
  q, k, v, d_out = _qkv_and_cotangent(len(seps), length, heads, 16, dtype, seed)
  sep = jnp.asarray(seps, jnp.int32)
  out, grads = _pallas_value_and_grads(q, k, v, d_out, sep, block_q=block_q, block_k=block_k)
  expected_out, expected_grads = _xla_value_and_grads(q, k, v, d_out, sep)
  assert out.dtype == expected_out.dtype and out.shape == expected_out.shape
  for name, got, want in zip(("out", "dq", "dk", "dv"), (out, *grads),
                             (expected_out, *expected_grads)):
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               atol=atol, rtol=0, err_msg=name)


@pytest.mark.parametrize("length,heads,block_q,block_k,seps", [
    # length a multiple of both blocks; sep 0 (causal), 1, a block boundary (16), full length
    (32, 2, 16, 8, (0, 1, 16, 32)),
    # length not a multiple of the blocks (padded inside); sep beyond the length is bidirectional
    (37, 3, 16, 8, (0, 1, 8, 37, 50)),
    # query blocks smaller than key blocks
    (40, 2, 8, 16, (0, 24, 39, 40)),
    # odd block sizes (interpret mode only) and blocks that do not divide each other
    (23, 1, 5, 3, (0, 1, 6, 23)),
])
@pytest.mark.slow
def test_pallas_forward_and_grads_equal_xla_glm_mask_fp32(length, heads, block_q, block_k, seps):
  _assert_matches_xla(length, heads, seps, block_q, block_k, jnp.float32, atol=1e-5)


def test_pallas_forward_and_grads_equal_xla_for_random_seps_fp32():
  rng = np.random.default_rng(7)
  length = 45
  seps = tuple(int(s) for s in rng.integers(0, length + 1, size=4))
  _assert_matches_xla(length, 2, seps, 16, 16, jnp.float32, atol=1e-5, seed=3)


def test_pallas_forward_and_grads_equal_xla_bf16():
  _assert_matches_xla(40, 2, (0, 1, 16, 40), 16, 8, jnp.bfloat16, atol=2e-2, seed=1)


@pytest.mark.parametrize("block_q,block_k", [(16, 8), (8, 16), (16, 16), (24, 8)])
def test_skipped_key_blocks_are_exactly_the_invisible_ones(block_q, block_k):
  """Forward/dQ run key blocks 0.._last_key_block and dK/dV query blocks _first_query_block..:
  exactly the block pairs holding at least one visible (query, key) pair."""
  length = 48
  query = np.arange(length)[:, None]
  key = np.arange(length)[None, :]
  for sep in range(length + 1):
    visible = (key < sep) | (key <= query)
    for q_block in range(length // block_q):
      rows = visible[q_block * block_q:(q_block + 1) * block_q]
      needed = [rows[:, j * block_k:(j + 1) * block_k].any() for j in range(length // block_k)]
      last = int(kernel_lib._last_key_block(jnp.int32(sep), q_block, block_q, block_k))
      assert needed == [j <= last for j in range(len(needed))], (sep, q_block)
    for k_block in range(length // block_k):
      cols = visible[:, k_block * block_k:(k_block + 1) * block_k]
      needed = [cols[i * block_q:(i + 1) * block_q].any() for i in range(length // block_q)]
      first = int(kernel_lib._first_query_block(jnp.int32(sep), k_block, block_q, block_k))
      assert needed == [i >= first for i in range(len(needed))], (sep, k_block)


@pytest.mark.parametrize("kwargs,message", [
    (dict(block_q=100), "block_q=100 must be a positive integer multiple of 128 on TPU"),
    (dict(block_k=0, interpret=True), "block_k=0 must be a positive integer."),
])
def test_bad_block_sizes_get_a_clear_error(kwargs, message):
  q = jnp.zeros((1, 16, 2, 8))
  with pytest.raises(ValueError, match=message):
    attention.pallas_attention(q, q, q, jnp.zeros((1,), jnp.int32), **kwargs)


def test_pallas_accepts_training_with_attention_dropout():
  assert attention.resolve_backend("pallas", dtype=jnp.bfloat16,
                                   training_with_dropout=True) == "pallas"


def _tiny_glm(backend, remat):
  return model.GLMConfig(vocab_size=64, num_layers=2, hidden_size=32, num_heads=2,
                         max_sequence_length=24, dtype="float32", attention_dropout=0.1,
                         remat_policy=remat, attention_backend=backend)


@pytest.mark.slow
@pytest.mark.parametrize("remat", [pytest.param("none", marks=pytest.mark.slow), "full"])
def test_glm_with_pallas_backend_equals_xla_backend_logits_and_grads(remat):
  """The whole model (nn.scan over layers, remat) with the kernel equals the XLA backend."""
  cfg = _tiny_glm("xla", remat)
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(0, 64, (3, 20)), jnp.int32)
  pos = jnp.stack([jnp.broadcast_to(jnp.arange(20), (3, 20)), jnp.zeros((3, 20), jnp.int32)], 1)
  sep = jnp.asarray([0, 7, 20], jnp.int32)

  def loss_and_grads(backend):
    def loss(p):
      logits = model.GLM(_tiny_glm(backend, remat)).apply(
          {"params": p}, ids, pos, sep, deterministic=False,
          rngs={"dropout": jax.random.PRNGKey(1)})
      return jnp.mean(jax.nn.log_softmax(logits)[..., 3]), logits
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

  (_, logits), grads = loss_and_grads("pallas")
  (_, expected_logits), expected_grads = loss_and_grads("xla")
  np.testing.assert_allclose(logits, expected_logits, atol=1e-5, rtol=0)
  jax.tree_util.tree_map(
      lambda g, e: np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-4), grads, expected_grads)


@pytest.mark.slow
def test_pallas_backend_under_fsdp_and_tensor_parallel_mesh_equals_unsharded_xla():
  """Loss and gradients on a (fsdp=2, tensor=2) mesh of 4 CPU devices, kernel under shard_map."""
  result = fresh_interpreter.run("sharded_pallas_grads", devices=4, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "OK" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu (the TPU compiler) is not installed: pip install jax[tpu]")
def test_real_kernel_compiles_for_tpu_with_mosaic_in_a_fraction_of_xla_memory():
  """Non-interpret: libtpu compiles forward + backward with attention dropout for a v5p chip
  (Mosaic accepts the three kernels), the step needs under a tenth of the dense XLA attention's
  temporaries, and `auto` picks the kernel when compiling for a TPU mesh, with or without
  attention dropout."""
  result = fresh_interpreter.run("pallas_tpu_compile", devices=None, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  report = fresh_interpreter.last_json(result)
  assert report["mosaic_calls"] >= 3, report        # forward, dK/dV and dQ kernels
  assert report["pallas_temp"] * 10 < report["xla_temp"], report
  assert report["auto"] == ["pallas", "pallas"], report   # auto: the kernel on TPU, dropout or not


@pytest.mark.slow
def test_kv_cached_decode_with_pallas_backend_runs_xla_attention():
  """The decode path passes explicit masks over a cache; it keeps XLA attention (same logits)."""
  cfg = _tiny_glm("pallas", "none")
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  ids = jnp.asarray([[5, 9, 2, 7, 1, 3]], jnp.int32)
  pos = jnp.stack([jnp.arange(6)[None], jnp.zeros((1, 6), jnp.int32)], 1)
  mask = attention.glm_mask(jnp.asarray([4]), 6, 10)[:, 0]

  def decode(backend):
    return model.GLM(cfg.replace(attention_backend=backend)).apply(
        {"params": params}, ids, pos, attention_mask=mask,
        kv_cache=model.init_kv_cache(cfg, 1, 10), cache_index=0)

  logits, cache = decode("pallas")
  expected_logits, expected_cache = decode("xla")
  np.testing.assert_array_equal(logits, expected_logits)
  np.testing.assert_array_equal(cache["k"], expected_cache["k"])


def test_training_config_with_pallas_and_attention_dropout_is_accepted():
  config = tiny.get_config()
  config.model.attention_backend = "pallas"
  config.model.attention_dropout = 0.1
  run_checks.validate(config, 1, 1)

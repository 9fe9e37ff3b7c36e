"""The Flax GLM against the original's outputs, and the GLM mask's semantics."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax.modeling import attention, model
from glm_jax import convert
from tests import original_fixtures, reference_glm

DATA = os.path.join(os.path.dirname(__file__), "data")


def _fixture():
  data = original_fixtures.load("forward_small.npz")
  return data, original_fixtures.thudm_state_dict(data)


@functools.partial(jax.jit, static_argnums=0)
def _forward(cfg, params, ids, pos, sep):
  return model.GLM(cfg).apply({"params": params}, ids, pos, sep)


def _apply(cfg, params, ids, pos, sep):
  return np.asarray(_forward(cfg, params, jnp.asarray(ids), jnp.asarray(pos), jnp.asarray(sep)))


def test_fp32_logits_match_original_glm_fixture():
  data, sd = _fixture()
  cfg, params = convert.from_thudm(sd, int(data["num_attention_heads"]))
  logits = _apply(cfg, params, data["input_ids"], data["position_ids"], data["sep"])
  assert logits.shape == data["logits"].shape
  np.testing.assert_allclose(logits, data["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers,hidden,heads,vocab,positions,seps", [
    (1, 32, 2, 37, 20, (0, 5, 19)),
    (3, 48, 3, 128, 40, (7, 0, 1)),
    (2, 96, 6, 250, 64, (24, 24, 12)),
])
def test_fp32_logits_match_independent_reference_on_other_shapes(
    layers, hidden, heads, vocab, positions, seps):
  rng = np.random.default_rng(layers * 1000 + hidden)
  sd = reference_glm.random_state_dict(rng, num_layers=layers, hidden=hidden, vocab=vocab,
                                       positions=positions)
  length = min(positions - 1, 24)
  seps = np.minimum(np.asarray(seps), length)
  ids = rng.integers(0, vocab, (len(seps), length))
  pos = reference_glm.glm_position_ids(rng, len(seps), length, seps, positions)
  expected = reference_glm.glm_forward(sd, ids, pos, seps, heads)
  cfg, params = convert.from_thudm(sd, heads)
  np.testing.assert_allclose(_apply(cfg, params, ids, pos, seps), expected, atol=1e-4, rtol=1e-5)


def test_hugging_face_prefix_is_accepted():
  data, sd = _fixture()
  _, plain = convert.from_thudm(sd, 4)
  _, prefixed = convert.from_thudm({"glm." + k: v for k, v in sd.items()}, 4)
  jax.tree_util.tree_map(np.testing.assert_array_equal, plain, prefixed)


def _tiny(**kw):
  kw = {"dtype": "float32", **kw}
  cfg = model.GLMConfig(vocab_size=64, num_layers=2, hidden_size=32, num_heads=2,
                        max_sequence_length=16, **kw)
  return cfg, model.init_params(cfg.replace(attention_backend="xla"), jax.random.PRNGKey(0))


def _inputs(batch=2, length=12, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, 64, (batch, length))
  pos = np.stack([np.broadcast_to(np.arange(length), (batch, length)),
                  np.zeros((batch, length), int)], axis=1)
  return ids, pos


@pytest.mark.slow
def test_part_b_token_never_changes_earlier_logits():
  cfg, params = _tiny()
  ids, pos = _inputs()
  sep = np.array([5, 5])
  base = _apply(cfg, params, ids, pos, sep)
  changed = ids.copy()
  changed[:, 8] = (changed[:, 8] + 1) % 64
  out = _apply(cfg, params, changed, pos, sep)
  np.testing.assert_array_equal(out[:, :8], base[:, :8])
  assert np.abs(out[:, 8:] - base[:, 8:]).max(axis=-1).min() > 0


def test_part_a_token_changes_every_logit():
  cfg, params = _tiny()
  ids, pos = _inputs()
  sep = np.array([5, 5])
  base = _apply(cfg, params, ids, pos, sep)
  changed = ids.copy()
  changed[:, 3] = (changed[:, 3] + 1) % 64
  out = _apply(cfg, params, changed, pos, sep)
  assert np.abs(out - base).max(axis=-1).min() > 0  # every position, Part A before 3 included


@pytest.mark.slow
def test_sep_zero_equals_causal_lm():
  cfg, params = _tiny()
  ids, pos = _inputs()
  glm = _apply(cfg, params, ids, pos, np.array([0, 0]))
  causal = np.tril(np.ones((12, 12), bool))
  explicit = np.asarray(model.GLM(cfg).apply(
      {"params": params}, jnp.asarray(ids), jnp.asarray(pos),
      attention_mask=jnp.broadcast_to(causal, (2, 12, 12))))
  np.testing.assert_allclose(glm, explicit, atol=1e-6)
  # Causal: the prefix of a longer input gives the same logits as the input cut there.
  short = _apply(cfg, params, ids[:, :7], pos[:, :, :7], np.array([0, 0]))
  np.testing.assert_allclose(glm[:, :7], short, atol=1e-6)


def test_glm_mask_is_prefix_bidirectional_and_causal_after():
  mask = np.asarray(attention.glm_mask(jnp.array([2, 0]), 4))[:, 0]
  np.testing.assert_array_equal(mask[0], [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
  np.testing.assert_array_equal(mask[1], np.tril(np.ones((4, 4))))


@pytest.mark.slow
def test_kv_cache_decoding_matches_full_forward():
  cfg, params = _tiny()
  ids, pos = _inputs(batch=2, length=10)
  sep = np.array([6, 6])
  full = _apply(cfg, params, ids, pos, sep)
  cache = model.init_kv_cache(cfg, 2, 10)
  mask = np.asarray(attention.glm_mask(jnp.asarray(sep), 10))[:, 0]
  logits, cache = model.GLM(cfg).apply(
      {"params": params}, jnp.asarray(ids[:, :6]), jnp.asarray(pos[:, :, :6]), kv_cache=cache,
      cache_index=0, attention_mask=jnp.asarray(mask[:, :6]))
  steps = [np.asarray(logits)]
  for t in range(6, 10):
    logits, cache = model.GLM(cfg).apply(
        {"params": params}, jnp.asarray(ids[:, t:t + 1]), jnp.asarray(pos[:, :, t:t + 1]),
        kv_cache=cache, cache_index=t, attention_mask=jnp.asarray(mask[:, t:t + 1]))
    steps.append(np.asarray(logits))
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.slow
def test_dropout_is_active_only_when_not_deterministic():
  cfg, params = _tiny(hidden_dropout=0.5)
  ids, pos = _inputs()
  args = (jnp.asarray(ids), jnp.asarray(pos), jnp.array([3, 3]))
  a = model.GLM(cfg).apply({"params": params}, *args, deterministic=False,
                           rngs={"dropout": jax.random.PRNGKey(1)})
  b = model.GLM(cfg).apply({"params": params}, *args, deterministic=False,
                           rngs={"dropout": jax.random.PRNGKey(2)})
  c = model.GLM(cfg).apply({"params": params}, *args)
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
  np.testing.assert_allclose(np.asarray(c), _apply(cfg, params, ids, pos, np.array([3, 3])),
                             atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_policies_do_not_change_logits_or_gradients(policy):
  cfg, params = _tiny()
  ids, pos = _inputs()

  def loss(p, c):
    return model.GLM(c).apply({"params": p}, jnp.asarray(ids), jnp.asarray(pos),
                              jnp.array([4, 4])).sum()

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  g_ref = grad(params, cfg)
  g = grad(params, cfg.replace(remat_policy=policy))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g_ref, g)


def test_init_follows_released_scheme():
  cfg = model.GLMConfig(vocab_size=512, num_layers=8, hidden_size=256, num_heads=4,
                        max_sequence_length=64)
  p = model.init_params(cfg, jax.random.PRNGKey(0))
  layers = p["layers"]
  assert abs(float(jnp.std(p["word_embeddings"]["embedding"])) - 0.02) < 2e-3
  assert abs(float(jnp.std(layers["attention"]["query_key_value"]["kernel"])) - 0.02) < 2e-3
  scaled = 0.02 / np.sqrt(2 * 8)
  assert abs(float(jnp.std(layers["attention"]["dense"]["kernel"])) - scaled) < 5e-4
  assert abs(float(jnp.std(layers["mlp"]["dense_4h_to_h"]["kernel"])) - scaled) < 5e-4
  assert float(jnp.abs(layers["mlp"]["dense_h_to_4h"]["bias"]).max()) == 0.0
  np.testing.assert_array_equal(layers["input_layernorm"]["scale"], 1.0)


@pytest.mark.slow
def test_bf16_compute_keeps_fp32_params_and_logits():
  cfg, params = _tiny()
  ids, pos = _inputs()
  bf16 = cfg.replace(dtype="bfloat16")
  out = model.GLM(bf16).apply({"params": params}, jnp.asarray(ids), jnp.asarray(pos),
                              jnp.array([3, 3]))
  assert out.dtype == jnp.float32
  ref = _apply(cfg, params, ids, pos, np.array([3, 3]))
  assert np.abs(np.asarray(out) - ref).max() < 0.1 * np.abs(ref).max() + 0.05


@pytest.mark.parametrize("bad,message", [
    (dict(num_heads=5), "does not divide"),
    (dict(hidden_dropout=1.5), "hidden_dropout"),
    (dict(dtype="float33"), "not a dtype"),
    (dict(remat_policy="some"), "remat_policy"),
    (dict(attention_backend="flash"), "attention_backend"),
    (dict(num_layers=0), "positive integer"),
])
def test_bad_model_config_gets_a_clear_error(bad, message):
  kw = dict(vocab_size=64, num_layers=2, hidden_size=32, num_heads=2, max_sequence_length=16)
  kw.update(bad)
  with pytest.raises(ValueError, match=message):
    model.GLMConfig(**kw)


def test_cudnn_backend_fails_clearly_off_gpu_and_matches_xla_on_gpu():
  cfg, params = _tiny(attention_backend="cudnn", dtype="bfloat16")
  ids, pos = _inputs()
  sep = np.array([3, 3])
  if jax.default_backend() != "gpu":
    with pytest.raises(ValueError, match="needs an NVIDIA GPU"):
      _apply(cfg, params, ids, pos, sep)
    return
  xla = _apply(cfg.replace(attention_backend="xla"), params, ids, pos, sep)
  np.testing.assert_allclose(_apply(cfg, params, ids, pos, sep), xla, atol=5e-2)


def test_auto_backend_runs_xla_on_cpu():
  assert attention.resolve_backend("auto", dtype=jnp.bfloat16, training_with_dropout=False) == (
      "cudnn" if jax.default_backend() == "gpu" else "xla")

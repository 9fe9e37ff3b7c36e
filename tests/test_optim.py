"""The optimizer recipe: warmup + cosine schedule, decay mask, clipping."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import base, glm_10b, large
from glm_jax.training import optim


def _config(**overrides):
  c = ml_collections.ConfigDict(dict(
      total_steps=1000, warmup_ratio=0.1, learning_rate=1e-3, min_learning_rate_ratio=0.1,
      adam_b1=0.9, adam_b2=0.98, adam_eps=1e-6, weight_decay=0.1, grad_clip_norm=1.0))
  c.update(overrides)
  return c


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
  schedule = optim.learning_rate_schedule(_config())
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(50)), 5e-4, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(100)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(550)), (1e-3 + 1e-4) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(1000)), 1e-4, rtol=1e-6)


def test_weight_decay_touches_kernels_and_embeddings_only():
  params = {"word_embeddings": {"embedding": 1.0},
            "layers": {"mlp": {"dense_h_to_4h": {"kernel": 1.0, "bias": 1.0}},
                       "input_layernorm": {"scale": 1.0, "bias": 1.0}}}
  mask = optim.weight_decay_mask(params)
  assert mask == {"word_embeddings": {"embedding": True},
                  "layers": {"mlp": {"dense_h_to_4h": {"kernel": True, "bias": False}},
                             "input_layernorm": {"scale": False, "bias": False}}}


def test_zero_gradient_step_decays_kernels_but_not_biases_or_layernorm():
  config = _config(warmup_ratio=0.0)
  params = {"kernel": jnp.ones(3), "bias": jnp.ones(3), "scale": jnp.ones(3)}
  tx = optim.make_optimizer(config)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -1e-3 * 0.1 * np.ones(3), rtol=1e-5)
  np.testing.assert_array_equal(updates["bias"], 0.0)
  np.testing.assert_array_equal(updates["scale"], 0.0)


def test_clipping_comes_first_and_bounds_what_adam_sees():
  config = _config(weight_decay=0.0, warmup_ratio=0.0, adam_b1=0.0, adam_b2=0.0, adam_eps=0.0)
  tx = optim.make_optimizer(config)
  params = {"kernel": jnp.zeros(4)}
  _, state = tx.update({"kernel": jnp.full(4, 100.0)}, tx.init(params), params)
  # b2 = 0: Adam's second moment is the squared (clipped) gradient: (1 / 2)^2 per entry.
  np.testing.assert_allclose(state[1][0].nu["kernel"], np.full(4, 0.25), rtol=1e-6)


def test_size_configs_carry_the_released_recipes():
  assert (base.get_config().learning_rate, base.get_config().adam_b2) == (4e-4, 0.98)
  assert large.get_config().learning_rate == 2e-4
  c10 = glm_10b.get_config()
  assert (c10.learning_rate, c10.adam_b2, c10.adam_eps, c10.warmup_ratio) == (1e-4, 0.95, 1e-8, 0.04)
  for c in (base.get_config(), large.get_config(), c10):
    assert (c.weight_decay, c.grad_clip_norm) == (0.1, 1.0)

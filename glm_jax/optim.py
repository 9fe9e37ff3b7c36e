"""The GLM optimizer: AdamW with linear warmup then cosine decay, global-norm clipping.

Weight decay applies to matrices only (kernels and embedding tables), never to biases or
LayerNorm scales/offsets, as in the original (`get_params_for_weight_decay_optimization`).
"""

from __future__ import annotations

import jax
import optax

DECAYED_LEAF_NAMES = ("kernel", "embedding")


def learning_rate_schedule(config) -> optax.Schedule:
  """0 -> peak over warmup_ratio * total_steps, then cosine down to min_learning_rate_ratio * peak."""
  total = int(config.total_steps)
  warmup = int(config.warmup_ratio * total)
  peak = float(config.learning_rate)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total, warmup + 1), end_value=peak * float(config.min_learning_rate_ratio))


def _path_names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def weight_decay_mask(params):
  """True for leaves that decay: any leaf whose path names a kernel or an embedding table.

  Works on plain trees and on flax `Partitioned`-boxed trees (whose paths end in `.value`).
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any(n in DECAYED_LEAF_NAMES for n in _path_names(path)), params)


def make_optimizer(config) -> optax.GradientTransformation:
  """Clip by global norm (if grad_clip_norm > 0), then AdamW with the schedule above."""
  adamw = optax.adamw(
      learning_rate=learning_rate_schedule(config), b1=float(config.adam_b1),
      b2=float(config.adam_b2), eps=float(config.adam_eps),
      weight_decay=float(config.weight_decay), mask=weight_decay_mask)
  if config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(float(config.grad_clip_norm)), adamw)
  return adamw

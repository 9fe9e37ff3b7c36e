"""The GLM optimizer: AdamW with the original's warmup-then-decay schedule, global-norm clipping.

Weight decay applies to matrices only (kernels and embedding tables), never to biases or
LayerNorm scales/offsets, as in the original (`get_params_for_weight_decay_optimization`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

DECAYED_LEAF_NAMES = ("kernel", "embedding")


DECAY_STYLES = ("cosine", "linear", "constant")


def learning_rate_schedule(config) -> optax.Schedule:
  """The original's `AnnealingLR` (learning_rates.py, built by train_utils.py), step by step.

  Linear warmup 0 -> peak over `warmup_ratio * lr_decay_steps` steps (a float, as the original),
  then `decay_style` down to `min_learning_rate_ratio * peak` at `lr_decay_steps` (0 means
  `total_steps`), then that floor until the run ends. The original's linear decay keeps falling
  past `lr_decay_iters`; we hold the floor there instead (no released recipe reaches that point).
  Step t is the learning rate of optimizer update t (the original steps its scheduler once per
  completed update, so skipped fp16 updates do not advance it).
  """
  total = int(config.total_steps)
  decay_steps = int(config.get("lr_decay_steps", 0) or total)
  style = str(config.get("decay_style", "cosine"))
  if style not in DECAY_STYLES:
    raise ValueError(f"decay_style={style!r} is not one of {DECAY_STYLES}; set "
                     "--config.decay_style to one of them")
  warmup = float(config.warmup_ratio) * decay_steps
  if not 0 <= warmup <= decay_steps - warmup:
    raise ValueError(f"warmup_ratio={config.warmup_ratio} must lie in [0, 0.5]: the warmup "
                     f"({warmup:g} steps) may not be longer than the decay after it (as in the original)")
  peak = float(config.learning_rate)
  floor = peak * float(config.min_learning_rate_ratio)
  decay_span = max(decay_steps - warmup, 1e-9)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    warm = peak * t / max(warmup, 1e-9)
    frac = jnp.clip((t - warmup) / decay_span, 0.0, 1.0)
    if style == "cosine":
      decayed = floor + (peak - floor) * 0.5 * (jnp.cos(jnp.pi * frac) + 1.0)
    elif style == "linear":
      decayed = peak - (peak - floor) * frac
    else:
      decayed = jnp.full_like(t, peak)
    return jnp.where((warmup > 0) & (t <= warmup), warm, decayed)

  return schedule


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

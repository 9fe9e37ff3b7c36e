"""The GLM optimizer: AdamW with the original's warmup-then-decay schedule, global-norm clipping.

Weight decay applies to matrices only (kernels and embedding tables), never to biases or
LayerNorm scales/offsets, as in the original (`get_params_for_weight_decay_optimization`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from glm_jax.errors import ConfigError

DECAYED_LEAF_NAMES = ("kernel", "embedding")


DECAY_STYLES = ("cosine", "linear", "constant")


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def check_schedule(config) -> None:
  """The schedule's keys, each rule once: `run_checks.validate` runs it before anything compiles,
  and `learning_rate_schedule` too (a notebook may build the optimizer straight from a config)."""
  _require(config.learning_rate > 0, f"learning_rate must be > 0, got {config.learning_rate}.")
  _require(0 <= config.warmup_ratio, f"warmup_ratio must be >= 0, got {config.warmup_ratio}.")
  _require(config.warmup_ratio <= 0.5,
           f"warmup_ratio={config.warmup_ratio} exceeds 0.5: the original's schedule (AnnealingLR) "
           "needs the warmup no longer than the decay after it; lower warmup_ratio.")
  decay_steps = config.get("lr_decay_steps", 0)
  _require(isinstance(decay_steps, int) and decay_steps >= 0,
           f"lr_decay_steps must be an integer >= 0 (0 = total_steps), got {decay_steps!r}.")
  style = config.get("decay_style", "cosine")
  _require(style in DECAY_STYLES, f"decay_style must be one of {DECAY_STYLES}, got "
           f"decay_style={style!r}; set --config.decay_style to one of them.")
  _require(0 <= config.min_learning_rate_ratio <= 1,
           f"min_learning_rate_ratio must be in [0, 1], got {config.min_learning_rate_ratio}.")


def learning_rate_schedule(config) -> optax.Schedule:
  """The original's `AnnealingLR` (learning_rates.py, built by train_utils.py), step by step.

  Linear warmup 0 -> peak over `warmup_ratio * lr_decay_steps` steps (a float, as the original),
  then `decay_style` down to `min_learning_rate_ratio * peak` at `lr_decay_steps` (0 means
  `total_steps`), then that floor until the run ends. The original's linear decay keeps falling
  past `lr_decay_iters`; we hold the floor there instead (no released recipe reaches that point).
  Step t is the learning rate of optimizer update t (the original steps its scheduler once per
  completed update, so skipped fp16 updates do not advance it).
  """
  check_schedule(config)
  total = int(config.total_steps)
  decay_steps = int(config.get("lr_decay_steps", 0) or total)
  style = str(config.get("decay_style", "cosine"))
  warmup = float(config.warmup_ratio) * decay_steps
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

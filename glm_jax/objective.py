"""The GLM pretraining objective: token cross-entropy on Part B, summed, over the loss tokens.

Everything is returned as sums plus the number of loss tokens so that micro-batches (gradient
accumulation) and evaluation batches combine exactly: the mean is taken once, at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_sums(logits, target_ids, loss_mask):
  """fp32 `{loss_sum, correct_sum, tokens}` over the positions where loss_mask is 1.

  logits `[b, s, vocab]`, target_ids `[b, s]` int, loss_mask `[b, s]` (1 on Part-B targets).
  """
  logits = logits.astype(jnp.float32)
  mask = loss_mask.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, target_ids)
  correct = (jnp.argmax(logits, axis=-1) == target_ids).astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * mask), "correct_sum": jnp.sum(correct * mask),
          "tokens": jnp.sum(mask)}


def group_sums(logits, target_ids, loss_mask, groups):
  """fp32 `{loss_sum, tokens}` per row group: `groups` `[b, g]` is 1 where row b is in group g
  (e.g. its pretraining objective), so each objective's loss can be reported on its own."""
  mask = loss_mask.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), target_ids)
  groups = groups.astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * mask, axis=-1) @ groups, "tokens": jnp.sum(mask, axis=-1) @ groups}


def mean_metrics(sums):
  """Loss and Part-B accuracy from summed counts (a batch with no loss token gives 0, not NaN)."""
  tokens = jnp.maximum(sums["tokens"], 1.0)
  return {"loss": sums["loss_sum"] / tokens, "accuracy": sums["correct_sum"] / tokens,
          "loss_tokens": sums["tokens"]}


def add_sums(a, b):
  """Adds two trees of running sums (loss, correct, tokens) leaf by leaf."""
  return jax.tree_util.tree_map(jnp.add, a, b)

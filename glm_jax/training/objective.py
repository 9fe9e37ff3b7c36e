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


# Sequence positions per block of the blocked loss: a [b, LOSS_BLOCK, vocab] fp32 block at a time.
LOSS_BLOCK = 128


def blocked_token_sums(project, hidden, target_ids, loss_mask, block_length: int = LOSS_BLOCK):
  """`token_sums` of `project(hidden)` without ever holding `[b, s, vocab]` logits.

  hidden `[b, s, h]` (the model's `return_hidden=True` output), `project` maps `[b, n, h]` ->
  fp32 logits `[b, n, vocab]` (the model's `head`). The sequence is taken `block_length`
  positions at a time in a scan whose body is rematerialised, so forward and backward hold one
  block of logits; the sums equal `token_sums` on the full logits.
  """
  batch, length = target_ids.shape
  block = min(block_length, length)
  padded = -(-length // block) * block
  mask = loss_mask.astype(jnp.float32)
  if padded != length:   # padded positions carry no loss
    pad = ((0, 0), (0, padded - length))
    hidden = jnp.pad(hidden, pad + ((0, 0),))
    target_ids, mask = jnp.pad(target_ids, pad), jnp.pad(mask, pad)

  def blocks(x):   # [b, padded, ...] -> [padded / block, b, block, ...]
    return jnp.swapaxes(x.reshape((batch, padded // block, block) + x.shape[2:]), 0, 1)

  @jax.checkpoint
  def one_block(carry, xs):
    h, targets, m = xs
    return add_sums(carry, token_sums(project(h), targets, m)), None

  zero = {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct_sum", "tokens")}
  sums, _ = jax.lax.scan(one_block, zero, (blocks(hidden), blocks(target_ids), blocks(mask)))
  return sums


def group_sums(logits, target_ids, loss_mask, groups):
  """fp32 `{loss_sum, tokens}` per row group: `groups` `[b, g]` is 1 where row b is in group g
  (e.g. its pretraining objective), so each objective's loss can be reported on its own."""
  mask = loss_mask.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), target_ids)
  groups = groups.astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * mask, axis=-1) @ groups,
          "tokens": jnp.sum(mask, axis=-1) @ groups}


def mean_metrics(sums):
  """Loss and Part-B accuracy from summed counts (a batch with no loss token gives 0, not NaN)."""
  tokens = jnp.maximum(sums["tokens"], 1.0)
  return {"loss": sums["loss_sum"] / tokens, "accuracy": sums["correct_sum"] / tokens,
          "loss_tokens": sums["tokens"]}


def add_sums(a, b):
  """Adds two trees of running sums (loss, correct, tokens) leaf by leaf."""
  return jax.tree_util.tree_map(jnp.add, a, b)

"""Turning next-token logits into choices: greedy, temperature / top-k / top-p sampling, the
vocabulary limit and the no-repeat-ngram ban. Pure jnp functions of fixed shapes, so they run
inside the jitted decode loop and beam search.

Kept apart from the decoders because they know nothing about GLM: they see `[batch, vocab]`
logits and the tokens generated so far, nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Filtered-out logits. Finite (not -inf) so a row that filters everything still has a softmax.
NEG_INF = -1e30


def limit_vocab(logits: jax.Array, vocab_limit: int | None, fill=NEG_INF) -> jax.Array:
  """Never choose ids >= vocab_limit (the embedding rows padded past the tokenizer's pieces):
  their logits become `fill`. None keeps the whole vocabulary."""
  if vocab_limit is None or vocab_limit >= logits.shape[-1]:
    return logits
  return jnp.where(jnp.arange(logits.shape[-1]) < vocab_limit, logits, fill)


def filter_top_k(logits: jax.Array, top_k: int) -> jax.Array:
  """Keeps the `top_k` largest logits of each row (ties with the k-th kept too); 0 keeps all.

  `top_k` is static: `lax.top_k` needs a fixed k, and a changed k is a different program anyway.
  """
  if top_k <= 0 or top_k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
  return jnp.where(logits < kth, NEG_INF, logits)


def filter_top_p(logits: jax.Array, top_p) -> jax.Array:
  """Nucleus filter: keeps the smallest set of most likely tokens whose probability reaches
  `top_p` (always at least the most likely one). `top_p` >= 1 (or <= 0) keeps all.

  As in the original: a token is dropped when the cumulative probability *before* it already
  exceeds `top_p`.
  """
  top_p = jnp.asarray(top_p, jnp.float32)
  order = jnp.argsort(-logits, axis=-1)
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
  before = cum - jax.nn.softmax(sorted_logits, axis=-1)  # mass of strictly more likely tokens
  drop_sorted = before > top_p
  drop_sorted = drop_sorted.at[..., 0].set(False)
  drop = jnp.zeros_like(drop_sorted).at[
      jnp.arange(logits.shape[0])[:, None], order].set(drop_sorted)
  enabled = (top_p > 0.0) & (top_p < 1.0)
  return jnp.where(enabled & drop, NEG_INF, logits)


def no_repeat_ngram_mask(generated: jax.Array, count: jax.Array, ngram: int, vocab: int):
  """`[batch, vocab]` bool: True for tokens that would repeat an n-gram already in `generated`.

  generated `[batch, max_len]` (first `count[b]` entries valid); the candidate's n-gram is the
  last `ngram - 1` generated tokens plus the candidate. `ngram` is static; 0 disables.
  """
  batch, max_len = generated.shape
  banned = jnp.zeros((batch, vocab), bool)
  if ngram <= 0 or max_len < ngram:
    return banned
  rows = jnp.arange(batch)
  # The current prefix: generated[count - ngram + 1 .. count - 1].
  prefix = [generated[rows, jnp.clip(count - ngram + 1 + k, 0, max_len - 1)]
            for k in range(ngram - 1)]
  starts = jnp.arange(max_len - ngram + 1)                       # candidate earlier n-grams
  match = (starts[None, :] + ngram - 1) < count[:, None]         # the n-gram is complete
  match &= (count >= ngram - 1)[:, None]                          # a full prefix exists
  for k in range(ngram - 1):
    match &= generated[:, starts + k] == prefix[k][:, None]
  next_tokens = generated[:, starts + ngram - 1]                  # [batch, starts]
  return banned.at[rows[:, None], next_tokens].max(match)


def choose(logits: jax.Array, rng, *, greedy: bool, temperature, top_k: int, top_p):
  """Next token per row: argmax, or a draw after temperature, top-k then top-p (the original's
  order)."""
  if greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / jnp.asarray(temperature, logits.dtype)
  logits = filter_top_p(filter_top_k(logits, top_k), top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)

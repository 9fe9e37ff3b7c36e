"""The decode loop by full recomputation: the reference the KV cache is tested and benchmarked
against (`tests/test_generate.py`, `benchmarks/generate.py`). Not part of the package.

Same `glm_jax.decode.loop.run_loop`, but every step runs the model over the whole fixed-size buffer
(prompt slots + every decode slot) under the GLM mask, instead of feeding one token to a cache.
"""

import functools

import jax
import jax.numpy as jnp

from glm_jax import generate
from glm_jax.modeling import sharding
from glm_jax.decode import loop as decode_loop
from glm_jax.decode.cache import prompt_positions
from glm_jax.modeling.model import GLM


def recompute_mask(lengths, prompt_slots: int, last_slot, total: int):
  """`[B, total, total]`: the mask over a buffer whose slots up to `last_slot` are filled. The
  prompt is bidirectional, decode slots causal (the GLM mask with `sep = len`), padding and
  unfilled slots invisible."""
  i = jnp.arange(total, dtype=jnp.int32)[None, :, None]
  j = jnp.arange(total, dtype=jnp.int32)[None, None, :]
  sep = jnp.asarray(lengths, jnp.int32)[:, None, None]
  valid = (j < sep) | ((j >= prompt_slots) & (j <= last_slot))
  return valid & ((j < sep) | (j <= i))


def init_buffers(cfg, params, ids, lengths, total):
  """The memory is the whole (ids, position ids) buffer, the prompt first."""
  del cfg, params
  steps = total - ids.shape[1]
  positions = jnp.pad(prompt_positions(lengths, ids.shape[1]), ((0, 0), (0, steps)))
  return jnp.pad(ids, ((0, 0), (0, steps))), jnp.stack([positions, jnp.zeros_like(positions)], 1)


def recomputed_logits(cfg, params, memory, tokens, position_ids, lengths, prompt_slots, slot,
                      total):
  """Writes the token into the buffer, runs the whole buffer, reads the logits at its slot."""
  buf_ids, buf_pos = memory
  buf_ids = jax.lax.dynamic_update_slice_in_dim(buf_ids, tokens[:, None], slot, axis=1)
  buf_pos = jax.lax.dynamic_update_slice_in_dim(buf_pos, position_ids[:, :, None], slot, axis=2)
  mask = recompute_mask(lengths, prompt_slots, slot, total)
  logits = GLM(cfg).apply({"params": params}, buf_ids, buf_pos, attention_mask=mask)
  return jax.lax.dynamic_index_in_dim(logits, slot, axis=1, keepdims=False), (buf_ids, buf_pos)


@functools.partial(jax.jit, static_argnames=decode_loop.STATIC_ARGS)
@sharding.with_rules
def fill(params, ids, lengths, blank_pos, num_blanks, rng, temperature, top_p, **static):
  """`decode_loop.fill`'s arguments and result, by full recomputation."""
  return decode_loop.run_loop(params, ids, lengths, blank_pos, num_blanks, rng, temperature,
                              top_p, init_memory=init_buffers, logits_at=recomputed_logits,
                              **static)


def greedy_fill_blanks(cfg, params, prompts, *, special_ids, max_new_tokens):
  """`generate.fill_blanks(..., strategy="greedy")` for a batch of prompts, by recomputation."""
  batch = generate.make_batch(cfg, prompts, dict(special_ids), max_new_tokens)
  ends = tuple(special_ids[k] for k in generate.END_KEYS)
  out = fill(params, jnp.asarray(batch.ids), jnp.asarray(batch.lengths),
             jnp.asarray(batch.blank_pos), jnp.asarray(batch.num_blanks), jax.random.PRNGKey(0),
             jnp.float32(1.0), jnp.float32(0.0), cfg=cfg, max_new_tokens=max_new_tokens,
             greedy=True, top_k=0, no_repeat_ngram_size=0, sop=special_ids["sop"], ends=ends,
             vocab_limit=cfg.vocab_size)
  return decode_loop.to_lists(sharding.to_host(out), batch.num_blanks)

"""The KV cache of decoding: the prompt run once (`prefill`), tokens fed after it (`feed`,
`step`), and the beams' copies of it (`repeat_beams`, `reorder_beams`).

Every decoder (the greedy / sampling loop, beam search over blanks, seq2seq beams) runs the model
through these, so decoding's masks and cache slots are written once. A cache holds `total` slots:
the prompt's (`prompt_slots`, padding included) first, then one per fed token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glm_jax.modeling import attention as attention_lib
from glm_jax.modeling.model import GLM, constrain_kv_cache, init_kv_cache

PAD_TO = 16  # prompt slots are rounded up to a multiple of this, so nearby lengths share a compile


def padded_length(length: int) -> int:
  """The cache slots a prompt of `length` tokens takes: `length` rounded up to PAD_TO."""
  return -(-int(length) // PAD_TO) * PAD_TO


def prompt_positions(lengths, slots: int):
  """`[B, slots]` positions 0..len-1, then 0 on padding (which may lie past the position table)."""
  positions = jnp.arange(slots, dtype=jnp.int32)[None, :]
  return jnp.where(positions < jnp.asarray(lengths)[:, None], positions, 0)


def decode_mask(lengths, prompt_slots: int, query_slots, total: int):
  """`[B, q, total]` bool: a token at cache slot `query_slots[i]` sees its row's prompt
  (`j < lengths[b]`; padding slots never) and every decode slot up to its own."""
  j = jnp.arange(total, dtype=jnp.int32)[None, None, :]
  q = jnp.asarray(query_slots, jnp.int32).reshape(1, -1, 1)
  prompt = j < jnp.asarray(lengths, jnp.int32)[:, None, None]
  decoded = (j >= prompt_slots) & (j <= q)
  return prompt | decoded


def prefill(cfg, params, ids, position_ids, sep, total):
  """Runs `ids [B, P]` once under the GLM mask with `sep [B]` (the bidirectional part) into a
  fresh cache of `total` slots; keys past slot P are never visible (j <= i < P).
  Returns (logits `[B, P, V]`, cache)."""
  mask = attention_lib.glm_mask(sep, ids.shape[1], total)[:, 0]
  return GLM(cfg).apply({"params": params}, ids, position_ids,
                        kv_cache=init_kv_cache(cfg, ids.shape[0], total), cache_index=0,
                        attention_mask=mask)


def prefill_prompt(cfg, params, ids, lengths, total):
  """A blank-filling prompt (generate_samples.py's): positions 0..len-1, block positions 0,
  sep = its length. Returns the cache."""
  positions = prompt_positions(lengths, ids.shape[1])
  position_ids = jnp.stack([positions, jnp.zeros_like(positions)], axis=1)
  return prefill(cfg, params, ids, position_ids, lengths, total)[1]


def feed(cfg, params, cache, tokens, position_ids, lengths, prompt_slots, start, total):
  """Feeds `tokens [B, q]` at `position_ids [B, 2, q]` into slots start..start+q-1, each seeing
  its row's prompt and the decode slots up to its own (`decode_mask`).
  Returns (logits `[B, q, V]`, cache)."""
  slots = start + jnp.arange(tokens.shape[1], dtype=jnp.int32)
  mask = decode_mask(lengths, prompt_slots, slots, total)
  return GLM(cfg).apply({"params": params}, tokens, position_ids, kv_cache=cache,
                        cache_index=start, attention_mask=mask)


def step(cfg, params, cache, tokens, position_ids, lengths, prompt_slots, slot, total):
  """The decode step: one token per row, `tokens [B]` at `position_ids [B, 2]` into slot
  `slot`. Returns (logits `[B, V]`, cache)."""
  logits, cache = feed(cfg, params, cache, tokens[:, None], position_ids[:, :, None], lengths,
                       prompt_slots, slot, total)
  return logits[:, 0], cache


def repeat_beams(cache, num_beams: int):
  """Each row's cache `num_beams` times (rows `b * K + k`), kept in the cache's sharding."""
  return constrain_kv_cache(
      jax.tree_util.tree_map(lambda c: jnp.repeat(c, num_beams, axis=1), cache))


def reorder_beams(cache, flat_parents, first_slot: int = 0):
  """Gathers every cache leaf's batch axis (axis 1, `[layers, batch * beams, slots, ...]`) by
  parent, from slot `first_slot` on: slots before it (an example's shared prompt, the same in
  all of its beams) need no copy."""
  if first_slot == 0:
    return jax.tree_util.tree_map(lambda c: jnp.take(c, flat_parents, axis=1), cache)
  return jax.tree_util.tree_map(
      lambda c: c.at[:, :, first_slot:].set(jnp.take(c[:, :, first_slot:], flat_parents, axis=1)),
      cache)

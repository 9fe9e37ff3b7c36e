"""Beam search over the blanks of one prompt, on the KV cache (`beam.search` per blank).

Blanks are filled left to right as the greedy loop does (sop at (blank position, block 1), then
block 2, 3, ...). Each blank keeps `num_beams` hypotheses; the winner is written back into the
cache as the greedy loop would have fed it, so later blanks see it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from glm_jax.decode import beam
from glm_jax.decode import cache as cache_lib
from glm_jax.modeling import sharding


def beam_blank(cfg, params, cache, start, prompt_len, blank_position, *, prompt_slots,
               max_new_tokens, num_beams, length_penalty, no_repeat_ngram_size, sop, ends,
               vocab_limit, beam_rule="bound"):
  """Beam search for one blank by `beam_rule` (`beam.RULES`; `original` counts the [sop] in a
  hypothesis' length, as generate_samples.py does); returns (best tokens [max_new] -1 padded,
  cache with the winner's fed tokens written from slot `start`, the next free slot)."""
  k, total = num_beams, cache["k"].shape[2]
  lengths = jnp.full((k,), prompt_len, jnp.int32)

  def feed(c, tokens, block, slot):
    position_ids = jnp.stack([jnp.full((k,), blank_position, jnp.int32),
                              jnp.full((k,), block, jnp.int32)], axis=1)
    return cache_lib.step(cfg, params, c, tokens, position_ids, lengths, prompt_slots, slot,
                          total)

  first, cache = feed(cache, jnp.full((k,), sop, jnp.int32), 1, start)
  tokens, _, _ = beam.search(
      lambda c, fed, index: feed(c, fed, index + 2, start + 1 + index), cache, first[:1],
      rule=beam_rule, num_beams=k, max_length=max_new_tokens, end_ids=ends,
      length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size, length_offset=1,
      vocab_limit=vocab_limit)
  best_seq = tokens[0]
  best_n = jnp.sum(best_seq >= 0).astype(jnp.int32)

  # Write the winner into the cache as the greedy loop would have: sop, then its tokens
  # (a blank cut at the budget does not feed its last token).
  fed = jnp.concatenate([jnp.array([sop], jnp.int32), jnp.maximum(best_seq[:-1], 0)])
  position_ids = jnp.stack([jnp.full((max_new_tokens,), blank_position, jnp.int32),
                            jnp.arange(1, max_new_tokens + 1, dtype=jnp.int32)])
  _, cache = cache_lib.feed(cfg, params, cache, jnp.broadcast_to(fed, (k, max_new_tokens)),
                            jnp.broadcast_to(position_ids, (k, 2, max_new_tokens)), lengths,
                            prompt_slots, start, total)
  return best_seq, cache, start + jnp.minimum(best_n + 1, max_new_tokens)


def _beam_fill(params, ids, length, blank_pos, length_penalty, *, cfg, max_new_tokens, num_beams,
               no_repeat_ngram_size, sop, ends, vocab_limit, beam_rule="bound"):
  """Beam search over every blank of one prompt (ids `[1, P]`); `[NB, max_new]` tokens."""
  prompt_slots, nb = ids.shape[1], blank_pos.shape[0]
  total = prompt_slots + nb * max_new_tokens
  cache = cache_lib.repeat_beams(
      cache_lib.prefill_prompt(cfg, params, ids, length[None], total), num_beams)
  blank_fn = functools.partial(
      beam_blank, cfg, params, prompt_slots=prompt_slots, max_new_tokens=max_new_tokens,
      num_beams=num_beams, length_penalty=length_penalty,
      no_repeat_ngram_size=no_repeat_ngram_size, sop=sop, ends=ends, vocab_limit=vocab_limit,
      beam_rule=beam_rule)

  def over_blanks(carry, position):
    cache, start = carry
    best, cache, start = blank_fn(cache, start, length, position)
    return (cache, start), best

  _, out = jax.lax.scan(over_blanks, (cache, jnp.int32(prompt_slots)), blank_pos)
  return out


beam_fill = sharding.mesh_jit(
    _beam_fill, ("cfg", "max_new_tokens", "num_beams", "no_repeat_ngram_size", "sop", "ends",
                 "vocab_limit", "beam_rule"), rows=lambda inputs, static: static["num_beams"])
beam_fill.__doc__ = """Beam search over every blank of one prompt: `(params, ids [1, P], length,
blank_pos [NB], length_penalty, **static, mesh=None)` -> `[NB, max_new_tokens]` tokens, -1 past
each blank's end."""

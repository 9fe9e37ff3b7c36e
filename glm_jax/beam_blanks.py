"""Beam search over the blanks of one prompt, on the decode loop's KV cache.

Each blank keeps `num_beams` hypotheses; the winner is written back into the cache as the greedy
loop would have fed it, so later blanks see it. Two stopping rules: `bound` (stop when no live
beam can still beat the best finished one) and `original` (generate_samples.py's Hugging Face
scorer, through `glm_jax.beam_search`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp

from glm_jax import beam_search
from glm_jax import decode_loop
from glm_jax import sampling
from glm_jax import sharding
from glm_jax.model import GLM, constrain_kv_cache


@flax.struct.dataclass
class BeamState:
  """What one blank's beam search carries from step to step (`[k]` = one entry per beam)."""
  step: jax.Array           # scalar: tokens chosen so far in this blank
  cache: Any                # the KV cache, one row per beam
  token: jax.Array          # [k] the token each beam feeds next
  sequences: jax.Array      # [k, max_new_tokens] each live beam's tokens, -1 past its end
  scores: jax.Array         # [k] each live beam's summed log-probability
  best_sequence: jax.Array  # [max_new_tokens] the best finished hypothesis so far
  best_score: jax.Array     # scalar: its length-normalised score


def _original_rule_blank(cfg, params, cache, start, lengths, blank_position, total, *,
                         prompt_slots, max_new_tokens, num_beams, length_penalty,
                         no_repeat_ngram_size, sop, ends, vocab_limit):
  """One blank by generate_samples.py's beam search (the HF scorer of `beam_search.search`, the
  hypothesis length counting [sop]), candidates by top-k; the best tokens `[max_new]`."""
  k = num_beams

  def feed(c, tokens, block, slot):
    position_ids = jnp.stack([jnp.full((k,), blank_position, jnp.int32),
                              jnp.full((k,), block, jnp.int32)], axis=1)
    return decode_loop.cached_logits(cfg, params, c, tokens, position_ids, lengths, prompt_slots, slot, total)

  first, cache = feed(cache, jnp.full((k,), sop, jnp.int32), 1, start)
  tokens, _, _ = beam_search.search(
      lambda c, fed, index: feed(c, fed, index + 2, start + 1 + index), cache, first[:1],
      num_beams=k, max_length=max_new_tokens, end_ids=ends, length_penalty=length_penalty,
      no_repeat_ngram_size=no_repeat_ngram_size, length_offset=1, vocab_limit=vocab_limit)
  return tokens[0]


def beam_blank(cfg, params, cache, start, prompt_len, blank_position, *, prompt_slots,
                max_new_tokens, num_beams, length_penalty, no_repeat_ngram_size, sop, ends,
                vocab_limit, beam_rule="bound"):
  """Beam search for one blank; returns (best tokens [max_new] -1 padded, their count, cache
  with the winner's fed tokens written from slot `start`, the next free slot).

  The score of a hypothesis is the sum of its log-probabilities (its end token included when it
  has one) / (number of scored tokens) ** length_penalty. The search stops when no live beam can
  still beat the best finished hypothesis (a bound, not a heuristic), or at `max_new_tokens`.
  """
  k, total = num_beams, cache["k"].shape[2]
  lengths = jnp.full((k,), prompt_len, jnp.int32)
  end_ids = jnp.asarray(ends, jnp.int32)
  neg = sampling.NEG_INF
  max_len = jnp.float32(max_new_tokens)

  def norm(score, n_scored):
    return score / jnp.maximum(n_scored, 1).astype(jnp.float32) ** length_penalty

  def body(state: BeamState) -> BeamState:
    n, beam_cache, token, seq, logp, best_seq, best_score = (
        state.step, state.cache, state.token, state.sequences, state.scores, state.best_sequence,
        state.best_score)
    position_ids = jnp.stack([jnp.full((k,), blank_position, jnp.int32),
                              jnp.full((k,), n + 1, jnp.int32)], axis=1)
    logits, beam_cache = decode_loop.cached_logits(cfg, params, beam_cache, token, position_ids, lengths,
                                        prompt_slots, start + n, total)
    step_logp = jax.nn.log_softmax(decode_loop.limit_vocab(logits, vocab_limit), axis=-1)
    vocab = step_logp.shape[-1]
    if no_repeat_ngram_size > 0:
      banned = sampling.no_repeat_ngram_mask(seq, jnp.full((k,), n), no_repeat_ngram_size, vocab)
      step_logp = jnp.where(banned, neg, step_logp)
    scores, parent, tok = (x[0] for x in beam_search.top_candidates(step_logp[None], logp[None],
                                                                    2 * k))
    is_end = jnp.isin(tok, end_ids) & (scores > neg / 2)
    # Finished: an end token after n tokens (n + 1 scored).
    fin_scores = jnp.where(is_end, norm(scores, n + 1), neg)
    i = jnp.argmax(fin_scores)
    better = fin_scores[i] > best_score
    best_seq = jnp.where(better, seq[parent[i]], best_seq)
    best_score = jnp.where(better, fin_scores[i], best_score)
    # Live: the k best continuations that are not end tokens.
    live_scores, pick = jax.lax.top_k(jnp.where(is_end, neg, scores), k)
    parent, tok = parent[pick], tok[pick]
    seq = seq[parent].at[:, n].set(tok)
    beam_cache = beam_search.reorder_beams(beam_cache, parent)
    n = n + 1
    # Truncated at the budget: the live beams are hypotheses of max_new_tokens scored tokens.
    trunc = jnp.where(n >= max_new_tokens, norm(live_scores, n), neg)
    j = jnp.argmax(trunc)
    better = trunc[j] > best_score
    best_seq = jnp.where(better, seq[j], best_seq)
    best_score = jnp.where(better, trunc[j], best_score)
    return BeamState(step=n, cache=beam_cache, token=tok, sequences=seq, scores=live_scores,
                     best_sequence=best_seq, best_score=best_score)

  def cond(state: BeamState):
    n, logp, best_score = state.step, state.scores, state.best_score
    # Scores only fall as tokens are added; the normalized best any live beam can reach:
    reach_len = jnp.where(length_penalty >= 0, max_len, (n + 1).astype(jnp.float32))
    bound = jnp.max(logp) / reach_len ** length_penalty
    return (n < max_new_tokens) & (bound > best_score)

  logp0 = jnp.full((k,), neg).at[0].set(0.0)   # all beams start equal: keep one
  state = BeamState(step=jnp.int32(0), cache=cache, token=jnp.full((k,), sop, jnp.int32),
                    sequences=jnp.full((k, max_new_tokens), -1, jnp.int32), scores=logp0,
                    best_sequence=jnp.full((max_new_tokens,), -1, jnp.int32),
                    best_score=jnp.float32(neg))
  if beam_rule == "original":
    best_seq = _original_rule_blank(
        cfg, params, cache, start, lengths, blank_position, total, prompt_slots=prompt_slots,
        max_new_tokens=max_new_tokens, num_beams=k, length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size, sop=sop, ends=ends, vocab_limit=vocab_limit)
  else:
    best_seq = jax.lax.while_loop(cond, body, state).best_sequence
  best_n = jnp.sum(best_seq >= 0).astype(jnp.int32)

  # Write the winner into the cache as the greedy loop would have: sop, then its tokens
  # (a blank cut at the budget does not feed its last token).
  fed = jnp.concatenate([jnp.array([sop], jnp.int32), jnp.maximum(best_seq[:-1], 0)])
  slots = start + jnp.arange(max_new_tokens)
  position_ids = jnp.stack([jnp.full((max_new_tokens,), blank_position, jnp.int32),
                            jnp.arange(1, max_new_tokens + 1, dtype=jnp.int32)])
  mask = decode_loop.decode_mask(lengths, prompt_slots, slots, total)
  _, cache = GLM(cfg).apply({"params": params}, jnp.broadcast_to(fed, (k, max_new_tokens)),
                            jnp.broadcast_to(position_ids, (k, 2, max_new_tokens)),
                            kv_cache=cache, cache_index=start, attention_mask=mask)
  return best_seq, cache, start + jnp.minimum(best_n + 1, max_new_tokens)


def _beam_fill(params, ids, length, blank_pos, length_penalty, *, cfg, max_new_tokens, num_beams,
               no_repeat_ngram_size, sop, ends, vocab_limit, beam_rule="bound"):
  """Beam search over every blank of one prompt (ids `[1, P]`); `[NB, max_new]` tokens."""
  prompt_slots, nb = ids.shape[1], blank_pos.shape[0]
  total = prompt_slots + nb * max_new_tokens
  cache = decode_loop.prefill(cfg, params, ids, length[None], total)
  cache = constrain_kv_cache(
      jax.tree_util.tree_map(lambda c: jnp.repeat(c, num_beams, axis=1), cache))
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

"""Batched, jitted beam search with the original GLM's rule (its Hugging Face `BeamSearchScorer`).

The rule is the one THUDM/GLM's seq2seq `DecoderEvaluater` runs with `--select-topk`
(tasks/seq2seq/evaluate.py, generation_utils.py), for every example of a batch in lockstep:
  * each step scores `log_softmax(logits)` (after the min-length and no-repeat-n-gram bans) plus the
    beam's running sum, over `num_beams * vocab` candidates, and keeps the best `2 * num_beams`;
  * walking those in rank order, an end token ranked within the first `num_beams` closes a
    hypothesis (score = sum / length ** length_penalty, length = the hypothesis' tokens, end
    excluded, plus `length_offset`); an end token ranked lower is dropped; the first `num_beams`
    other candidates are the next beams;
  * at most `num_beams` finished hypotheses are kept (a new one replaces the worst when better);
  * an example is done once it holds `num_beams` hypotheses and the worst of them is at least
    the best candidate's sum / current length ** length_penalty (the Hugging Face stopping rule);
  * at the budget the live beams join the finished ones the same way; the best score wins.
`decode_seq2seq` runs it on a GLM with the KV cache in the original's seq2seq layout.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from glm_jax import attention as attention_lib
from glm_jax import sampling
from glm_jax import sharding
from glm_jax.model import GLM, as_glm_config, constrain_kv_cache, init_kv_cache

NEG_INF = -jnp.inf  # what the original's processors write; top-k and sums keep it exact


def reorder_beams(cache, flat_parents, first_slot: int = 0):
  """Gathers every cache leaf's batch axis (axis 1, `[layers, batch * beams, slots, ...]`) by
  parent, from slot `first_slot` on: slots before it (an example's shared prompt, the same in
  all of its beams) need no copy."""
  if first_slot == 0:
    return jax.tree_util.tree_map(lambda c: jnp.take(c, flat_parents, axis=1), cache)
  return jax.tree_util.tree_map(
      lambda c: c.at[:, :, first_slot:].set(jnp.take(c[:, :, first_slot:], flat_parents, axis=1)),
      cache)


def top_candidates(step_scores, beam_scores, num_candidates: int):
  """`[B, K, V]` step log-probs + `[B, K]` running sums -> the best `num_candidates` over K * V:
  (sums, parent beam, token), best first."""
  batch, beams, vocab = step_scores.shape
  flat = (step_scores + beam_scores[:, :, None]).reshape(batch, beams * vocab)
  sums, index = jax.lax.top_k(flat, num_candidates)
  return sums, index // vocab, (index % vocab).astype(jnp.int32)


def _normalize(sums, lengths, length_penalty):
  """The original's hypothesis score: sum / max(length, 1) ** length_penalty."""
  return sums / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty


def _add_hypotheses(hyps, valid, seqs, lengths, scores):
  """Adds one hypothesis per example where `valid` (`BeamHypotheses.add`): into a free slot while
  fewer than `num_beams` are kept, else in place of the worst when strictly better."""
  h_tokens, h_lengths, h_scores, h_count = hyps
  worst = jnp.argmin(h_scores, axis=1)                                  # free slots hold -inf
  rows = jnp.arange(h_scores.shape[0])
  full = h_count >= h_scores.shape[1]
  take = valid & (~full | (scores > h_scores[rows, worst]))
  h_tokens = h_tokens.at[rows, worst].set(jnp.where(take[:, None], seqs, h_tokens[rows, worst]))
  h_lengths = h_lengths.at[rows, worst].set(jnp.where(take, lengths, h_lengths[rows, worst]))
  h_scores = h_scores.at[rows, worst].set(jnp.where(take, scores, h_scores[rows, worst]))
  return h_tokens, h_lengths, h_scores, jnp.minimum(h_count + take, h_scores.shape[1])


def search(step: Callable, cache, first_logits, *, num_beams: int, max_length: int,
           end_ids: Sequence[int], length_penalty=1.0, min_length: int = 0,
           no_repeat_ngram_size: int = 0, length_offset: int = 0, vocab_limit: int | None = None,
           shared_slots: int = 0):
  """Beam search for a batch of examples; returns (tokens `[B, max_length]` -1 padded, lengths
  `[B]`, scores `[B]`) of each example's best hypothesis (end token excluded).

  step(cache, tokens `[B * K]`, index) -> (logits `[B * K, V]`, cache): feeds each beam's
    `index`-th generated token (0-based) and returns the next token's logits.
  cache: already holds `num_beams` copies of each example (rows `b * K + k`), batch on axis 1.
  first_logits: `[B, V]` logits of the first generated token (all beams start from it).
  end_ids: tokens that close a hypothesis (the seq2seq evaluator: eop only); `min_length` bans
    them while fewer than that many tokens are generated.
  length_offset: added to a hypothesis' token count where it is scored and in the stopping rule
    (1 where the original counts the [sop] it starts from, as generate_samples.py does).
  shared_slots: cache slots that hold the same thing in every beam of an example (the prompt);
    beam reordering leaves them alone.
  Traceable: call it under `jax.jit`.
  """
  batch, vocab = first_logits.shape
  k, t_max = num_beams, max_length
  end_ids = jnp.asarray(tuple(end_ids), jnp.int32)
  vocab_ids = jnp.arange(vocab)
  is_end_id = jnp.isin(vocab_ids, end_ids)
  allowed = vocab_ids < (vocab if vocab_limit is None else vocab_limit)
  rows = jnp.arange(batch)

  def select(state):
    n, cache, logits, seqs, beam_scores, hyps, done = state
    step_scores = jax.nn.log_softmax(jnp.where(allowed, logits, NEG_INF).astype(jnp.float32), -1)
    step_scores = jnp.where(is_end_id & (n < min_length), NEG_INF, step_scores)
    if no_repeat_ngram_size > 0:
      banned = sampling.no_repeat_ngram_mask(seqs.reshape(batch * k, t_max),
                                             jnp.full((batch * k,), n), no_repeat_ngram_size, vocab)
      step_scores = jnp.where(banned, NEG_INF, step_scores)
    sums, parents, tokens = top_candidates(step_scores.reshape(batch, k, vocab), beam_scores, 2 * k)
    cand_end = jnp.isin(tokens, end_ids)
    cur_len = n + length_offset
    for rank in range(k):   # end tokens ranked within the beams close hypotheses, in rank order
      seq = seqs[rows, parents[:, rank]]
      hyps = _add_hypotheses(hyps, ~done & cand_end[:, rank], seq, jnp.full((batch,), cur_len),
                             _normalize(sums[:, rank], jnp.full((batch,), cur_len), length_penalty))
    # The first K candidates that are not end tokens are the next beams.
    order = jnp.argsort(jnp.where(cand_end, 2 * k, 0) + jnp.arange(2 * k), axis=1)[:, :k]
    parents = jnp.take_along_axis(parents, order, 1)
    tokens = jnp.take_along_axis(tokens, order, 1)
    new_scores = jnp.take_along_axis(sums, order, 1)
    new_seqs = jnp.take_along_axis(seqs, parents[:, :, None], 1).at[:, :, n].set(tokens)
    # Hugging Face's stopping rule (never at length 0: the original would divide by zero there).
    best_now = sums[:, 0] / jnp.float32(cur_len) ** length_penalty
    now_done = (hyps[3] >= k) & (jnp.min(hyps[2], axis=1) >= best_now) & (cur_len > 0)
    keep = ~done
    seqs = jnp.where(keep[:, None, None], new_seqs, seqs)
    beam_scores = jnp.where(keep[:, None], new_scores, beam_scores)
    flat_parents = jnp.where(keep[:, None], rows[:, None] * k + parents,
                             rows[:, None] * k + jnp.arange(k)).reshape(-1)
    cache = reorder_beams(cache, flat_parents, shared_slots)
    return cache, jnp.where(keep[:, None], tokens, 0).reshape(-1), seqs, beam_scores, hyps, \
        done | now_done

  def body(state):
    n = state[0]
    cache, fed, seqs, beam_scores, hyps, done = select(state)
    go_on = (n + 1 < t_max) & ~jnp.all(done)
    logits, cache = jax.lax.cond(go_on, lambda c: step(c, fed, n),
                                 lambda c: (state[2], c), cache)
    return n + 1, cache, logits, seqs, beam_scores, hyps, done

  def cond(state):
    return (state[0] < t_max) & ~jnp.all(state[6])

  hyps = (jnp.full((batch, k, t_max), -1, jnp.int32), jnp.zeros((batch, k), jnp.int32),
          jnp.full((batch, k), NEG_INF, jnp.float32), jnp.zeros((batch,), jnp.int32))
  beam_scores = jnp.full((batch, k), -1e9, jnp.float32).at[:, 0].set(0.0)
  logits0 = jnp.repeat(first_logits, k, axis=0)
  state = (jnp.int32(0), cache, logits0, jnp.full((batch, k, t_max), -1, jnp.int32), beam_scores,
           hyps, jnp.zeros((batch,), bool))
  n, _, _, seqs, beam_scores, hyps, done = jax.lax.while_loop(cond, body, state)
  # Finalize: the live beams of unfinished examples join, in beam order.
  length = jnp.full((batch,), n + length_offset)
  for beam in range(k):
    hyps = _add_hypotheses(hyps, ~done, seqs[:, beam], length,
                           _normalize(beam_scores[:, beam], length, length_penalty))
  best = jnp.argmax(hyps[2], axis=1)
  return hyps[0][rows, best], hyps[1][rows, best] - length_offset, hyps[2][rows, best]


# ----------------------------------------------------------------------------- seq2seq decoding


def _decode_beams(params, source_ids, mask_positions, sop_id, length_penalty, *, cfg, num_beams,
            max_length, end_ids, min_length, no_repeat_ngram_size, vocab_limit):
  batch, src = source_ids.shape
  total = src + 1 + max_length
  # Prefill: the source (bidirectional, its padding included, as the original with sep = its
  # length) and [sop] at (mask position, block 1), whose logits give the first token.
  ids = jnp.concatenate([source_ids, jnp.full((batch, 1), sop_id, jnp.int32)], axis=1)
  pos = jnp.concatenate([jnp.broadcast_to(jnp.arange(src, dtype=jnp.int32), (batch, src)),
                         mask_positions[:, None]], axis=1)
  block = jnp.zeros((batch, src + 1), jnp.int32).at[:, src].set(1)
  mask = attention_lib.glm_mask(jnp.full((batch,), src), src + 1, total)[:, 0]
  logits, cache = GLM(cfg).apply({"params": params}, ids, jnp.stack([pos, block], axis=1),
                                 kv_cache=init_kv_cache(cfg, batch, total), cache_index=0,
                                 attention_mask=mask)
  cache = constrain_kv_cache(
      jax.tree_util.tree_map(lambda c: jnp.repeat(c, num_beams, axis=1), cache))
  beam_mask_pos = jnp.repeat(mask_positions, num_beams)
  keys = jnp.arange(total, dtype=jnp.int32)

  def step(cache, tokens, index):
    # The index-th generated token: at (mask position, block index + 2), cache slot src+1+index;
    # it sees every earlier slot (the original's decode mask, sep = 0 over all memories).
    slot = src + 1 + index
    position_ids = jnp.stack([beam_mask_pos, jnp.full_like(beam_mask_pos, index + 2)], 1)
    step_mask = jnp.broadcast_to(keys <= slot, (tokens.shape[0], 1, total))
    out, cache = GLM(cfg).apply({"params": params}, tokens[:, None], position_ids[:, :, None],
                                kv_cache=cache, cache_index=slot, attention_mask=step_mask)
    return out[:, 0], cache

  return search(step, cache, logits[:, src], num_beams=num_beams, max_length=max_length,
                end_ids=end_ids, length_penalty=length_penalty, min_length=min_length,
                no_repeat_ngram_size=no_repeat_ngram_size, vocab_limit=vocab_limit,
                shared_slots=src + 1)


_decode = sharding.mesh_jit(
    _decode_beams, ("cfg", "num_beams", "max_length", "end_ids", "min_length",
                    "no_repeat_ngram_size", "vocab_limit"),
    rows=lambda inputs, static: inputs[0].shape[0] * static["num_beams"])


def decode_seq2seq(config, params, source_ids, mask_positions, *, sop_id: int, eop_id: int,
                   num_beams: int, max_length: int, length_penalty: float = 1.0,
                   min_length: int = 0, no_repeat_ngram_size: int = 0,
                   vocab_limit: int | None = None, mesh=None):
  """Beam-decodes the answer to each source's blank as the original seq2seq evaluator does.

  source_ids `[B, S]`: the task's source rows (`[CLS] [MASK|sMASK] ...`, padded to S with pad,
  which stays visible as in the original); mask_positions `[B]`: each row's blank. Ends at eop.
  Returns (tokens `[B, max_length]` -1 padded, lengths `[B]`, scores `[B]`).
  """
  cfg = as_glm_config(config)
  if 2 * num_beams > cfg.vocab_size:
    raise ValueError(f"num_beams={num_beams} needs 2 * num_beams <= vocab_size ({cfg.vocab_size}).")
  if max_length + 1 > cfg.max_sequence_length:
    raise ValueError(f"max_length={max_length} needs block positions up to {max_length + 1} but "
                     f"the model's table has {cfg.max_sequence_length + 1} rows; lower it.")
  return _decode(params, jnp.asarray(source_ids, jnp.int32), jnp.asarray(mask_positions, jnp.int32),
                 jnp.int32(sop_id), jnp.float32(length_penalty), cfg=cfg, num_beams=int(num_beams),
                 max_length=int(max_length), end_ids=(int(eop_id),), min_length=int(min_length),
                 no_repeat_ngram_size=int(no_repeat_ngram_size), vocab_limit=vocab_limit,
                 mesh=mesh)

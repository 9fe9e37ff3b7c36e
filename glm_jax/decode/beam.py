"""One batched, jitted beam search; its stopping and scoring rule is a parameter.

Every step, for every example of a batch in lockstep: the step's log-probabilities (after the
vocabulary limit and the min-length and no-repeat-n-gram bans) plus each beam's running sum,
over `num_beams * vocab` candidates, of which the best `2 * num_beams` are kept. A rule then
says which candidates close a hypothesis, which `num_beams` go on, when an example is done and
what it returns. Scores are sum / length ** length_penalty (`_normalize`). The rules:

`original` (THUDM/GLM's Hugging Face `BeamSearchScorer`: its seq2seq `DecoderEvaluater` with
  `--select-topk`, and generate_samples.py's beam search): walking the candidates in rank order,
  an end token ranked within the first `num_beams` closes a hypothesis (length = its tokens, end
  excluded, plus `length_offset`), one ranked lower is dropped; the first `num_beams` others go
  on; at most `num_beams` finished hypotheses are kept (a new one replaces the worst when
  better); an example is done once it holds `num_beams` of them and the worst is at least the
  best candidate's sum / current length ** length_penalty; at the budget the live beams join
  the finished ones; the best score wins.
`bound` (ours): any end token closes a hypothesis (length = its tokens, end included) and the
  best one is kept; the `num_beams` best other candidates go on; at the budget the live beams
  are hypotheses too; an example is done when no live beam can still beat the best finished
  one (scores only fall as tokens are added: a bound, not a heuristic).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from glm_jax.decode import cache as cache_lib
from glm_jax.decode import sampling

RULES = ("bound", "original")


def top_candidates(step_scores, beam_scores, num_candidates: int):
  """`[B, K, V]` step log-probs + `[B, K]` running sums -> the best `num_candidates` over K * V:
  (sums, parent beam, token), best first."""
  batch, beams, vocab = step_scores.shape
  flat = (step_scores + beam_scores[:, :, None]).reshape(batch, beams * vocab)
  sums, index = jax.lax.top_k(flat, num_candidates)
  return sums, index // vocab, (index % vocab).astype(jnp.int32)


def _normalize(sums, lengths, length_penalty):
  """A hypothesis' score: sum / max(length, 1) ** length_penalty."""
  return sums / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty


@dataclasses.dataclass(frozen=True)
class _Rule:
  """What a rule is told: beams, the token budget, the length penalty, the length offset. Its
  methods, each over `[B, ...]` (n: tokens in each beam before this step; keep: `[B]` not done):

  init(batch) -> hyps; end_mask(sums, cand_end) -> the candidates that close a hypothesis;
  close(hyps, n, seqs, sums, parents, is_end, keep) -> hyps;
  pick(sums, is_end) -> (`[B, K]` candidate ranks that go on, their running sums);
  settle(hyps, n, new_seqs, new_sums, sums, keep) -> (hyps, newly done `[B]`);
  finalize(hyps, n, seqs, beam_sums, done) -> (tokens `[B, T]` -1 padded, lengths, scores).
  """
  num_beams: int
  max_length: int
  length_penalty: jax.Array
  length_offset: int


class _Bound(_Rule):
  """The `bound` rule; hyps = (best tokens `[B, T]`, its score `[B]`)."""
  neg = sampling.NEG_INF         # what bans write (finite, as the greedy loop's)
  start_score = sampling.NEG_INF  # the running sum of every beam but the first at the start

  def init(self, batch):
    return (jnp.full((batch, self.max_length), -1, jnp.int32),
            jnp.full((batch,), self.neg, jnp.float32))

  def end_mask(self, sums, cand_end):
    return cand_end & (sums > self.neg / 2)

  def _keep_better(self, hyps, keep, scores, seqs):
    best_seq, best_score = hyps
    better = keep & (scores > best_score)
    return jnp.where(better[:, None], seqs, best_seq), jnp.where(better, scores, best_score)

  def close(self, hyps, n, seqs, sums, parents, is_end, keep):
    # Finished: an end token after n tokens (n + 1 scored).
    finished = jnp.where(is_end, _normalize(sums, n + 1, self.length_penalty), self.neg)
    rows = jnp.arange(sums.shape[0])
    i = jnp.argmax(finished, axis=1)
    return self._keep_better(hyps, keep, finished[rows, i], seqs[rows, parents[rows, i]])

  def pick(self, sums, is_end):
    live, order = jax.lax.top_k(jnp.where(is_end, self.neg, sums), self.num_beams)
    return order, live

  def settle(self, hyps, n, new_seqs, new_sums, sums, keep):
    del sums
    n = n + 1
    # Truncated at the budget: the live beams are hypotheses of max_length scored tokens.
    trunc = jnp.where(n >= self.max_length, _normalize(new_sums, n, self.length_penalty),
                      self.neg)
    rows = jnp.arange(new_sums.shape[0])
    j = jnp.argmax(trunc, axis=1)
    hyps = self._keep_better(hyps, keep, trunc[rows, j], new_seqs[rows, j])
    # The normalized best any live beam can still reach:
    reach = jnp.where(self.length_penalty >= 0, jnp.float32(self.max_length),
                      (n + 1).astype(jnp.float32))
    bound = jnp.max(new_sums, axis=1) / reach ** self.length_penalty
    return hyps, ~(bound > hyps[1])

  def finalize(self, hyps, n, seqs, beam_sums, done):
    del n, seqs, beam_sums, done
    tokens, scores = hyps
    return tokens, jnp.sum(tokens >= 0, axis=1).astype(jnp.int32), scores


class _Original(_Rule):
  """The `original` rule; hyps = (tokens `[B, K, T]`, lengths `[B, K]`, scores `[B, K]`
  (-inf where free), count `[B]`), the Hugging Face `BeamHypotheses`."""
  neg = -jnp.inf      # what the original's processors write; top-k and sums keep it exact
  start_score = -1e9  # Hugging Face's

  def init(self, batch):
    k, t = self.num_beams, self.max_length
    return (jnp.full((batch, k, t), -1, jnp.int32), jnp.zeros((batch, k), jnp.int32),
            jnp.full((batch, k), self.neg, jnp.float32), jnp.zeros((batch,), jnp.int32))

  def end_mask(self, sums, cand_end):
    del sums
    return cand_end

  def _add(self, hyps, valid, seqs, lengths, scores):
    """One hypothesis per example where `valid` (`BeamHypotheses.add`): into a free slot while
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

  def close(self, hyps, n, seqs, sums, parents, is_end, keep):
    batch, rows = sums.shape[0], jnp.arange(sums.shape[0])
    length = jnp.full((batch,), n + self.length_offset)
    for rank in range(self.num_beams):  # end tokens ranked within the beams, in rank order
      hyps = self._add(hyps, keep & is_end[:, rank], seqs[rows, parents[:, rank]], length,
                       _normalize(sums[:, rank], length, self.length_penalty))
    return hyps

  def pick(self, sums, is_end):
    # The first K candidates that are not end tokens.
    k = self.num_beams
    order = jnp.argsort(jnp.where(is_end, 2 * k, 0) + jnp.arange(2 * k), axis=1)[:, :k]
    return order, jnp.take_along_axis(sums, order, 1)

  def settle(self, hyps, n, new_seqs, new_sums, sums, keep):
    del new_seqs, new_sums, keep
    # Hugging Face's stopping rule (never at length 0: the original would divide by zero there).
    cur_len = n + self.length_offset
    best_now = sums[:, 0] / jnp.float32(cur_len) ** self.length_penalty
    done = (hyps[3] >= self.num_beams) & (jnp.min(hyps[2], axis=1) >= best_now) & (cur_len > 0)
    return hyps, done

  def finalize(self, hyps, n, seqs, beam_sums, done):
    # The live beams of unfinished examples join, in beam order.
    length = jnp.full((seqs.shape[0],), n + self.length_offset)
    for beam in range(self.num_beams):
      hyps = self._add(hyps, ~done, seqs[:, beam], length,
                       _normalize(beam_sums[:, beam], length, self.length_penalty))
    rows, best = jnp.arange(seqs.shape[0]), jnp.argmax(hyps[2], axis=1)
    return hyps[0][rows, best], hyps[1][rows, best] - self.length_offset, hyps[2][rows, best]


_RULE_CLASSES = {"bound": _Bound, "original": _Original}


def search(step: Callable, cache, first_logits, *, rule: str, num_beams: int, max_length: int,
           end_ids: Sequence[int], length_penalty=1.0, min_length: int = 0,
           no_repeat_ngram_size: int = 0, length_offset: int = 0, vocab_limit: int | None = None,
           shared_slots: int = 0):
  """Beam search for a batch of examples by `rule` ("bound" | "original", see the module);
  returns (tokens `[B, max_length]` -1 padded, lengths `[B]`, scores `[B]`) of each example's
  best hypothesis (end token excluded).

  step(cache, tokens `[B * K]`, index) -> (logits `[B * K, V]`, cache): feeds each beam's
    `index`-th generated token (0-based) and returns the next token's logits.
  cache: already holds `num_beams` copies of each example (rows `b * K + k`), batch on axis 1.
  first_logits: `[B, V]` logits of the first generated token (all beams start from it).
  end_ids: tokens that close a hypothesis; `min_length` bans them while fewer than that many
    tokens are generated.
  length_offset: (`original`) added to a hypothesis' token count where it is scored and in the
    stopping rule (1 where the original counts the [sop] it starts from, as generate_samples.py
    does).
  shared_slots: cache slots that hold the same thing in every beam of an example (the prompt);
    beam reordering leaves them alone.
  Traceable: call it under `jax.jit`.
  """
  if rule not in _RULE_CLASSES:
    raise ValueError(f"beam rule {rule!r} is unknown; use one of {RULES}.")
  batch, vocab = first_logits.shape
  k, t_max = num_beams, max_length
  how = _RULE_CLASSES[rule](k, t_max, length_penalty, length_offset)
  neg = how.neg
  end_ids = jnp.asarray(tuple(end_ids), jnp.int32)
  is_end_id = jnp.isin(jnp.arange(vocab), end_ids)
  rows = jnp.arange(batch)

  def select(state):
    n, cache, logits, seqs, beam_scores, hyps, done = state
    step_scores = jax.nn.log_softmax(
        sampling.limit_vocab(logits, vocab_limit, neg).astype(jnp.float32), -1)
    if min_length > 0:
      step_scores = jnp.where(is_end_id & (n < min_length), neg, step_scores)
    if no_repeat_ngram_size > 0:
      banned = sampling.no_repeat_ngram_mask(seqs.reshape(batch * k, t_max),
                                             jnp.full((batch * k,), n), no_repeat_ngram_size, vocab)
      step_scores = jnp.where(banned, neg, step_scores)
    sums, parents, tokens = top_candidates(step_scores.reshape(batch, k, vocab), beam_scores, 2 * k)
    is_end = how.end_mask(sums, jnp.isin(tokens, end_ids))
    keep = ~done
    hyps = how.close(hyps, n, seqs, sums, parents, is_end, keep)
    order, new_scores = how.pick(sums, is_end)
    parents = jnp.take_along_axis(parents, order, 1)
    tokens = jnp.take_along_axis(tokens, order, 1)
    new_seqs = jnp.take_along_axis(seqs, parents[:, :, None], 1).at[:, :, n].set(tokens)
    hyps, now_done = how.settle(hyps, n, new_seqs, new_scores, sums, keep)
    seqs = jnp.where(keep[:, None, None], new_seqs, seqs)
    beam_scores = jnp.where(keep[:, None], new_scores, beam_scores)
    flat_parents = jnp.where(keep[:, None], rows[:, None] * k + parents,
                             rows[:, None] * k + jnp.arange(k)).reshape(-1)
    cache = cache_lib.reorder_beams(cache, flat_parents, shared_slots)
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

  beam_scores = jnp.full((batch, k), how.start_score, jnp.float32).at[:, 0].set(0.0)
  logits0 = jnp.repeat(first_logits, k, axis=0)
  state = (jnp.int32(0), cache, logits0, jnp.full((batch, k, t_max), -1, jnp.int32), beam_scores,
           how.init(batch), jnp.zeros((batch,), bool))
  n, _, _, seqs, beam_scores, hyps, done = jax.lax.while_loop(cond, body, state)
  return how.finalize(hyps, n, seqs, beam_scores, done)

"""Blank filling with a KV cache: greedy, sampling and beam search, and the `generate` CLI.

The procedure is the original GLM's (THUDM/GLM generate_samples.py):
  * the prompt (`[CLS] text-with-blanks [eos]`, or ending in `[gMASK]`) runs once with
    `sep = len(prompt)`, positions `0..len-1`, block positions 0;
  * blanks ([MASK], [sMASK], [gMASK]) are filled left to right: feed `sop` at (position of the
    blank, block position 1), then each generated token at block positions 2, 3, ...; the blank
    ends at eop / eos (not fed) or after `max_new_tokens` tokens (the last one is then not fed);
  * every fed token stays in the cache, so later blanks see earlier answers.

Decoding is one `lax.while_loop` over a fixed-size cache (`prompt slots + blanks * max_new_tokens`),
compiled once per (shapes, strategy); each step feeds one token per row. Rows of a batch move in
lockstep: slot `P + t` holds row b's t-th fed token whatever blank it is on, so a row sees its
prompt (`j < len_b`, padding excluded) and every decode slot up to its own.

CLI:
  python -m glm_jax.generate --checkpoint=DIR --tokenizer=MODEL --prompt="Text with a [MASK]."
  (--tokenizer may be omitted when DIR came from `convert import --tokenizer=...`.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from glm_jax import attention as attention_lib
from glm_jax import beam_search
from glm_jax import sampling
from glm_jax import sharding
from glm_jax.model import GLM, as_glm_config, init_kv_cache

STRATEGIES = ("greedy", "sample", "beam")
BLANK_KEYS = ("MASK", "sMASK", "gMASK")
END_KEYS = ("eop", "eos")
REQUIRED_SPECIAL_KEYS = BLANK_KEYS + END_KEYS + ("sop",)
PAD_TO = 16  # prompt slots are rounded up to a multiple of this, so nearby lengths share a compile


class GenerationError(ValueError):
  """Input that cannot be generated from; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- input checks


def _check_special_ids(special_ids: Mapping[str, int]) -> dict[str, int]:
  special_ids = dict(special_ids)
  if "MASK" in special_ids:  # a tokenizer without task masks (GLM-Base/Large): [MASK] is every blank
    special_ids.setdefault("sMASK", special_ids["MASK"])
    special_ids.setdefault("gMASK", special_ids["MASK"])
  missing = [k for k in REQUIRED_SPECIAL_KEYS if k not in special_ids]
  if missing:
    raise GenerationError(
        f"special_ids lacks {missing}; pass the tokenizer's `special_ids` (it must hold "
        f"{list(REQUIRED_SPECIAL_KEYS)}).")
  return {k: int(special_ids[k]) for k in REQUIRED_SPECIAL_KEYS}


def _as_prompt_list(prompt_ids) -> tuple[list[list[int]], bool]:
  """One prompt (ints) or a batch (lists of ints) -> (batch, was_single)."""
  if isinstance(prompt_ids, np.ndarray):
    prompt_ids = prompt_ids.tolist()
  if not isinstance(prompt_ids, Sequence) or len(prompt_ids) == 0:
    raise GenerationError("prompt_ids is empty; pass a list of token ids or a list of them.")
  if all(isinstance(x, (int, np.integer)) for x in prompt_ids):
    return [[int(x) for x in prompt_ids]], True
  batch = []
  for i, p in enumerate(prompt_ids):
    p = list(np.asarray(p).reshape(-1).tolist())
    if not p:
      raise GenerationError(f"prompt {i} is empty; every prompt needs [CLS] text and a blank.")
    batch.append([int(x) for x in p])
  return batch, False


def _blank_positions(prompt: list[int], special: dict[str, int], index: int) -> list[int]:
  blank_ids = {special[k] for k in BLANK_KEYS}
  positions = [i for i, t in enumerate(prompt) if t in blank_ids]
  if not positions:
    raise GenerationError(
        f"prompt {index} has no blank: it contains none of [MASK] ({special['MASK']}), "
        f"[sMASK] ({special['sMASK']}), [gMASK] ({special['gMASK']}). Put a [MASK] where text "
        "should go, or end the prompt with [gMASK] to continue it.")
  return positions


@dataclasses.dataclass(frozen=True)
class Batch:
  """Prompts laid out for the device: right-padded ids and each row's blank positions."""
  ids: np.ndarray          # [B, P] int32, padded with eos
  lengths: np.ndarray      # [B] true prompt lengths (the sep of each row)
  blank_pos: np.ndarray    # [B, NB] positions of the blanks, left to right (padded with 0)
  num_blanks: np.ndarray   # [B]


def make_batch(config, prompts: list[list[int]], special: dict[str, int],
               max_new_tokens: int) -> Batch:
  """Checks prompts against the model's position table and pads them into one `Batch`."""
  cfg = as_glm_config(config)
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
    raise GenerationError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
  if max_new_tokens > cfg.max_sequence_length:
    raise GenerationError(
        f"max_new_tokens={max_new_tokens} exceeds the block-position table "
        f"(max_sequence_length={cfg.max_sequence_length}); ask for at most that many per blank.")
  positions = []
  for i, p in enumerate(prompts):
    if len(p) > cfg.max_sequence_length + 1:
      raise GenerationError(
          f"prompt {i} has {len(p)} tokens but the model's position table holds "
          f"{cfg.max_sequence_length + 1}; shorten the prompt to at most that many tokens.")
    bad = [t for t in p if not 0 <= t < cfg.vocab_size]
    if bad:
      raise GenerationError(f"prompt {i} holds ids {bad[:5]} outside the vocabulary "
                            f"[0, {cfg.vocab_size}); encode it with this model's tokenizer.")
    positions.append(_blank_positions(p, special, i))
  batch, max_len = len(prompts), max(len(p) for p in prompts)
  slots = -(-max_len // PAD_TO) * PAD_TO
  nb = max(len(b) for b in positions)
  ids = np.full((batch, slots), special["eos"], np.int32)
  blank_pos = np.zeros((batch, nb), np.int32)
  for i, (p, b) in enumerate(zip(prompts, positions)):
    ids[i, :len(p)] = p
    blank_pos[i, :len(b)] = b
  return Batch(ids, np.array([len(p) for p in prompts], np.int32), blank_pos,
               np.array([len(b) for b in positions], np.int32))


# ----------------------------------------------------------------------------- masks and steps


def decode_mask(lengths, prompt_slots: int, query_slots, total: int):
  """`[B, q, total]` bool: a token at cache slot `query_slots[i]` sees its row's prompt
  (`j < lengths[b]`; padding slots never) and every decode slot up to its own."""
  j = jnp.arange(total, dtype=jnp.int32)[None, None, :]
  q = jnp.asarray(query_slots, jnp.int32).reshape(1, -1, 1)
  prompt = j < jnp.asarray(lengths, jnp.int32)[:, None, None]
  decoded = (j >= prompt_slots) & (j <= q)
  return prompt | decoded


def recompute_mask(lengths, prompt_slots: int, last_slot, total: int):
  """`[B, total, total]`: the full-recomputation mask over a buffer whose slots up to
  `last_slot` are filled. The prompt is bidirectional, decode slots causal (the GLM mask with
  `sep = len`), padding and unfilled slots invisible."""
  i = jnp.arange(total, dtype=jnp.int32)[None, :, None]
  j = jnp.arange(total, dtype=jnp.int32)[None, None, :]
  sep = jnp.asarray(lengths, jnp.int32)[:, None, None]
  valid = (j < sep) | ((j >= prompt_slots) & (j <= last_slot))
  return valid & ((j < sep) | (j <= i))


def _prompt_positions(lengths, slots: int):
  """`[B, slots]` positions 0..len-1, then 0 on padding (which may lie past the position table)."""
  positions = jnp.arange(slots, dtype=jnp.int32)[None, :]
  return jnp.where(positions < jnp.asarray(lengths)[:, None], positions, 0)


def _prefill(cfg, params, ids, lengths, total):
  """Runs the prompt once (sep = its length) and returns the cache with its keys/values."""
  batch, slots = ids.shape
  positions = _prompt_positions(lengths, slots)
  position_ids = jnp.stack([positions, jnp.zeros_like(positions)], axis=1)
  # The GLM mask with sep = length; keys past the prompt slots are never visible (j <= i < P).
  mask = attention_lib.glm_mask(lengths, slots, total)[:, 0]
  _, cache = GLM(cfg).apply({"params": params}, ids, position_ids,
                            kv_cache=init_kv_cache(cfg, batch, total), cache_index=0,
                            attention_mask=mask)
  return cache


def _cached_logits(cfg, params, cache, tokens, position_ids, lengths, prompt_slots, slot, total):
  """One decode step: feeds `tokens [B]` at cache slot `slot`; returns (logits [B, V], cache)."""
  mask = decode_mask(lengths, prompt_slots, slot[None], total)
  logits, cache = GLM(cfg).apply({"params": params}, tokens[:, None], position_ids[:, :, None],
                                 kv_cache=cache, cache_index=slot, attention_mask=mask)
  return logits[:, 0], cache


def _limit_vocab(logits, vocab_limit: int):
  """Never choose ids >= vocab_limit (the embedding rows padded past the tokenizer's pieces)."""
  if vocab_limit >= logits.shape[-1]:
    return logits
  return jnp.where(jnp.arange(logits.shape[-1]) < vocab_limit, logits, sampling.NEG_INF)


# ----------------------------------------------------------------------------- greedy / sampling


@functools.partial(jax.jit, static_argnames=(
    "cfg", "max_new_tokens", "greedy", "top_k", "no_repeat_ngram_size", "use_cache", "ends",
    "vocab_limit"))
@sharding.with_rules
def _fill(params, ids, lengths, blank_pos, num_blanks, rng, temperature, top_p, *, cfg,
          max_new_tokens, greedy, top_k, no_repeat_ngram_size, use_cache, sop, ends, vocab_limit):
  """The jitted decode loop. Returns `[B, NB, max_new_tokens]` tokens, -1 past each blank's end.

  `use_cache=False` runs the same loop by full recomputation (the whole buffer every step):
  the reference the cache is checked and benchmarked against.
  """
  batch, prompt_slots = ids.shape
  nb = blank_pos.shape[1]
  steps = nb * max_new_tokens
  total = prompt_slots + steps
  rows = jnp.arange(batch)
  end_ids = jnp.asarray(ends, jnp.int32)

  if use_cache:
    memory = _prefill(cfg, params, ids, lengths, total)
  else:
    buf_pos = jnp.pad(_prompt_positions(lengths, prompt_slots), ((0, 0), (0, steps)))
    memory = (jnp.pad(ids, ((0, 0), (0, steps))),
              jnp.stack([buf_pos, jnp.zeros_like(buf_pos)], axis=1))

  def logits_at(memory, tokens, position_ids, slot):
    if use_cache:
      return _cached_logits(cfg, params, memory, tokens, position_ids, lengths, prompt_slots,
                            slot, total)
    buf_ids, buf_pos = memory
    buf_ids = jax.lax.dynamic_update_slice_in_dim(buf_ids, tokens[:, None], slot, axis=1)
    buf_pos = jax.lax.dynamic_update_slice_in_dim(buf_pos, position_ids[:, :, None], slot, axis=2)
    mask = recompute_mask(lengths, prompt_slots, slot, total)
    logits = GLM(cfg).apply({"params": params}, buf_ids, buf_pos, attention_mask=mask)
    return jax.lax.dynamic_index_in_dim(logits, slot, axis=1, keepdims=False), (buf_ids, buf_pos)

  def body(state):
    t, memory, token, block, blank, count, done, out = state
    slot = prompt_slots + t
    blank_c = jnp.minimum(blank, nb - 1)
    position_ids = jnp.stack([blank_pos[rows, blank_c], block], axis=1)   # [B, 2]
    logits, memory = logits_at(memory, token, position_ids, slot)
    logits = _limit_vocab(logits, vocab_limit)
    if no_repeat_ngram_size > 0:
      banned = sampling.no_repeat_ngram_mask(out[rows, blank_c], count, no_repeat_ngram_size,
                                             logits.shape[-1])
      logits = jnp.where(banned, sampling.NEG_INF, logits)
    nxt = sampling.choose(logits, jax.random.fold_in(rng, t), greedy=greedy,
                          temperature=temperature, top_k=top_k, top_p=top_p)
    is_end = jnp.isin(nxt, end_ids)
    keep = ~done & ~is_end
    count_c = jnp.minimum(count, max_new_tokens - 1)
    out = out.at[rows, blank_c, count_c].set(jnp.where(keep, nxt, out[rows, blank_c, count_c]))
    count = count + keep
    finished = ~done & (is_end | (count >= max_new_tokens))
    blank = blank + finished
    token = jnp.where(finished, sop, nxt)
    block = jnp.where(finished, 1, block + 1)
    count = jnp.where(finished, 0, count)
    done = done | (blank >= num_blanks)
    return t + 1, memory, token, block, blank, count, done, out

  def cond(state):
    t, *_, done, _ = state
    return (t < steps) & ~jnp.all(done)

  zeros = jnp.zeros((batch,), jnp.int32)
  state = (jnp.int32(0), memory, jnp.full((batch,), sop, jnp.int32), zeros + 1, zeros, zeros,
           num_blanks <= 0, jnp.full((batch, nb, max_new_tokens), -1, jnp.int32))
  return jax.lax.while_loop(cond, body, state)[-1]


def _to_host(out) -> np.ndarray:
  """The whole array on this host, also when it spans processes (params sharded over hosts)."""
  if isinstance(out, jax.Array) and not out.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(out, tiled=True))
  return np.asarray(out)


def _to_lists(out: np.ndarray, num_blanks: np.ndarray) -> list[list[list[int]]]:
  return [[[int(x) for x in out[b, k] if x >= 0] for k in range(int(num_blanks[b]))]
          for b in range(out.shape[0])]


# ----------------------------------------------------------------------------- beam search


def _original_rule_blank(cfg, params, cache, start, lengths, blank_position, total, *,
                         prompt_slots, max_new_tokens, num_beams, length_penalty,
                         no_repeat_ngram_size, sop, ends, vocab_limit):
  """One blank by generate_samples.py's beam search (the HF scorer of `beam_search.search`, the
  hypothesis length counting [sop]), candidates by top-k; the best tokens `[max_new]`."""
  k = num_beams

  def feed(c, tokens, block, slot):
    position_ids = jnp.stack([jnp.full((k,), blank_position, jnp.int32),
                              jnp.full((k,), block, jnp.int32)], axis=1)
    return _cached_logits(cfg, params, c, tokens, position_ids, lengths, prompt_slots, slot, total)

  first, cache = feed(cache, jnp.full((k,), sop, jnp.int32), 1, start)
  tokens, _, _ = beam_search.search(
      lambda c, fed, index: feed(c, fed, index + 2, start + 1 + index), cache, first[:1],
      num_beams=k, max_length=max_new_tokens, end_ids=ends, length_penalty=length_penalty,
      no_repeat_ngram_size=no_repeat_ngram_size, length_offset=1, vocab_limit=vocab_limit)
  return tokens[0]


def _beam_blank(cfg, params, cache, start, prompt_len, blank_position, *, prompt_slots,
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

  def body(state):
    n, beam_cache, token, seq, logp, best_seq, best_score = state
    position_ids = jnp.stack([jnp.full((k,), blank_position, jnp.int32),
                              jnp.full((k,), n + 1, jnp.int32)], axis=1)
    logits, beam_cache = _cached_logits(cfg, params, beam_cache, token, position_ids, lengths,
                                        prompt_slots, start + n, total)
    step_logp = jax.nn.log_softmax(_limit_vocab(logits, vocab_limit), axis=-1)
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
    return n, beam_cache, tok, seq, live_scores, best_seq, best_score

  def cond(state):
    n, _, _, _, logp, _, best_score = state
    # Scores only fall as tokens are added; the normalized best any live beam can reach:
    reach_len = jnp.where(length_penalty >= 0, max_len, (n + 1).astype(jnp.float32))
    bound = jnp.max(logp) / reach_len ** length_penalty
    return (n < max_new_tokens) & (bound > best_score)

  logp0 = jnp.full((k,), neg).at[0].set(0.0)   # all beams start equal: keep one
  state = (jnp.int32(0), cache, jnp.full((k,), sop, jnp.int32),
           jnp.full((k, max_new_tokens), -1, jnp.int32), logp0,
           jnp.full((max_new_tokens,), -1, jnp.int32), jnp.float32(neg))
  if beam_rule == "original":
    best_seq = _original_rule_blank(
        cfg, params, cache, start, lengths, blank_position, total, prompt_slots=prompt_slots,
        max_new_tokens=max_new_tokens, num_beams=k, length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size, sop=sop, ends=ends, vocab_limit=vocab_limit)
  else:
    _, _, _, _, _, best_seq, _ = jax.lax.while_loop(cond, body, state)
  best_n = jnp.sum(best_seq >= 0).astype(jnp.int32)

  # Write the winner into the cache as the greedy loop would have: sop, then its tokens
  # (a blank cut at the budget does not feed its last token).
  fed = jnp.concatenate([jnp.array([sop], jnp.int32), jnp.maximum(best_seq[:-1], 0)])
  slots = start + jnp.arange(max_new_tokens)
  position_ids = jnp.stack([jnp.full((max_new_tokens,), blank_position, jnp.int32),
                            jnp.arange(1, max_new_tokens + 1, dtype=jnp.int32)])
  mask = decode_mask(lengths, prompt_slots, slots, total)
  _, cache = GLM(cfg).apply({"params": params}, jnp.broadcast_to(fed, (k, max_new_tokens)),
                            jnp.broadcast_to(position_ids, (k, 2, max_new_tokens)),
                            kv_cache=cache, cache_index=start, attention_mask=mask)
  return best_seq, cache, start + jnp.minimum(best_n + 1, max_new_tokens)


@functools.partial(jax.jit, static_argnames=(
    "cfg", "max_new_tokens", "num_beams", "no_repeat_ngram_size", "sop", "ends", "vocab_limit",
    "beam_rule"))
@sharding.with_rules
def _beam_fill(params, ids, length, blank_pos, length_penalty, *, cfg, max_new_tokens, num_beams,
               no_repeat_ngram_size, sop, ends, vocab_limit, beam_rule="bound"):
  """Beam search over every blank of one prompt (ids `[1, P]`); `[NB, max_new]` tokens."""
  prompt_slots, nb = ids.shape[1], blank_pos.shape[0]
  total = prompt_slots + nb * max_new_tokens
  cache = _prefill(cfg, params, ids, length[None], total)
  cache = jax.tree_util.tree_map(lambda c: jnp.repeat(c, num_beams, axis=1), cache)
  blank_fn = functools.partial(
      _beam_blank, cfg, params, prompt_slots=prompt_slots, max_new_tokens=max_new_tokens,
      num_beams=num_beams, length_penalty=length_penalty,
      no_repeat_ngram_size=no_repeat_ngram_size, sop=sop, ends=ends, vocab_limit=vocab_limit,
      beam_rule=beam_rule)

  def over_blanks(carry, position):
    cache, start = carry
    best, cache, start = blank_fn(cache, start, length, position)
    return (cache, start), best

  _, out = jax.lax.scan(over_blanks, (cache, jnp.int32(prompt_slots)), blank_pos)
  return out


# ----------------------------------------------------------------------------- public entry


def fill_blanks(config, params, prompt_ids, *, special_ids: Mapping[str, int],
                max_new_tokens: int = 32, strategy: str = "greedy", temperature: float = 0.9,
                top_k: int = 40, top_p: float = 0.0, num_beams: int = 4,
                length_penalty: float = 1.0, no_repeat_ngram_size: int = 0, seed: int = 0,
                vocab_limit: int | None = None, use_cache: bool = True, beam_rule: str = "bound"):
  """Fills every blank of each prompt, left to right; returns each blank's tokens (end excluded).

  prompt_ids: one prompt (list of ints, e.g. `[CLS] ... [MASK] ... [eos]`, see `build_prompt`)
    -> `list[list[int]]` (one list per blank); or a batch of prompts -> a list of those.
  strategy: "greedy" | "sample" (temperature, top_k (0 = off), top_p (0 = off), seed) |
    "beam" (num_beams, length_penalty; prompts run one at a time).
  beam_rule: "bound" (stop when no live beam can beat the best finished one) | "original"
    (generate_samples.py's Hugging Face scorer, candidates by top-k: `beam_search.search`).
  no_repeat_ngram_size: never repeat an n-gram inside one blank (0 = off).
  vocab_limit: ids at or above it are never generated (pass the tokenizer's size so the
    embedding's padding rows stay out); default the whole vocabulary.
  max_new_tokens: budget per blank. use_cache=False: full recomputation (testing, benchmarks).
  """
  cfg = as_glm_config(config)
  if strategy not in STRATEGIES:
    raise GenerationError(f"strategy={strategy!r} is unknown; use one of {STRATEGIES}.")
  special = _check_special_ids(special_ids)
  prompts, single = _as_prompt_list(prompt_ids)
  if not isinstance(no_repeat_ngram_size, int) or no_repeat_ngram_size < 0:
    raise GenerationError(f"no_repeat_ngram_size must be an integer >= 0 (0 = off), got "
                          f"{no_repeat_ngram_size!r}.")
  ends = tuple(special[k] for k in END_KEYS)
  vocab_limit = cfg.vocab_size if vocab_limit is None else int(vocab_limit)
  if not max(ends + (special["sop"],)) < vocab_limit <= cfg.vocab_size:
    raise GenerationError(f"vocab_limit={vocab_limit} must lie in (the largest special id, "
                          f"vocab_size={cfg.vocab_size}]; pass the tokenizer's vocabulary size.")

  if strategy == "beam":
    if not isinstance(num_beams, int) or num_beams < 1:
      raise GenerationError(f"num_beams must be a positive integer, got {num_beams!r}.")
    if 2 * num_beams > cfg.vocab_size:
      raise GenerationError(f"num_beams={num_beams} needs 2 * num_beams <= vocab_size "
                            f"({cfg.vocab_size}); use fewer beams.")
    if beam_rule not in ("bound", "original"):
      raise GenerationError(f"beam_rule={beam_rule!r} is unknown; use 'bound' or 'original'.")
    results = []
    for p in prompts:
      b = make_batch(cfg, [p], special, max_new_tokens)
      out = _beam_fill(params, jnp.asarray(b.ids), jnp.int32(b.lengths[0]),
                       jnp.asarray(b.blank_pos[0]), jnp.float32(length_penalty), cfg=cfg,
                       max_new_tokens=max_new_tokens, num_beams=num_beams,
                       no_repeat_ngram_size=no_repeat_ngram_size, sop=special["sop"], ends=ends,
                       vocab_limit=vocab_limit, beam_rule=beam_rule)
      results.append(_to_lists(_to_host(out)[None], b.num_blanks)[0])
    return results[0] if single else results

  if strategy == "sample":
    if not temperature > 0:
      raise GenerationError(f"temperature must be > 0 for sampling, got {temperature!r}; use "
                            "strategy='greedy' for argmax decoding.")
    if not isinstance(top_k, int) or top_k < 0:
      raise GenerationError(f"top_k must be an integer >= 0 (0 = off), got {top_k!r}.")
  b = make_batch(cfg, prompts, special, max_new_tokens)
  out = _fill(params, jnp.asarray(b.ids), jnp.asarray(b.lengths), jnp.asarray(b.blank_pos),
              jnp.asarray(b.num_blanks), jax.random.PRNGKey(seed), jnp.float32(temperature),
              jnp.float32(top_p), cfg=cfg, max_new_tokens=max_new_tokens,
              greedy=strategy == "greedy", top_k=top_k if strategy == "sample" else 0,
              no_repeat_ngram_size=no_repeat_ngram_size, use_cache=use_cache,
              sop=special["sop"], ends=ends, vocab_limit=vocab_limit)
  results = _to_lists(_to_host(out), b.num_blanks)
  return results[0] if single else results


# ----------------------------------------------------------------------------- text in, text out


def build_prompt(tokenizer, text: str, task_mask: bool = False) -> list[int]:
  """`[CLS] text [eos]` as the original's `generate_samples.read_context` builds it.

  A text with no blank gets ` [gMASK]` appended (` [MASK]` for models pretrained without the
  original's --task-mask, its default), so it is continued; [eos] follows unless the text ends
  in `[gMASK]` (the original leaves it off only there, not after [MASK] or [sMASK]).
  """
  if "MASK]" not in text:
    text += " [gMASK]" if task_mask else " [MASK]"
  ids = [tokenizer.special_ids["CLS"]] + list(tokenizer.encode(text))
  if not text.endswith("[gMASK]"):
    ids.append(tokenizer.special_ids["eos"])
  return ids


def fill_text(tokenizer, prompt: list[int], blanks: list[list[int]]) -> str:
  """The prompt's text with each blank replaced by what was generated for it."""
  special = tokenizer.special_ids
  blank_ids = {special[k] for k in BLANK_KEYS if k in special}
  drop = {special["CLS"], special["eos"]}
  answers, out = iter(blanks), []
  for t in prompt:
    if t in blank_ids:
      out.extend(next(answers, []))
    elif t not in drop:
      out.append(t)
  return tokenizer.decode(out)


def generate_text(config, params, tokenizer, texts, task_mask: bool = False, **kwargs) -> list[str]:
  """Text prompts with [MASK] / [sMASK] / [gMASK] -> the filled texts (kwargs: `fill_blanks`)."""
  prompts = [build_prompt(tokenizer, t, task_mask) for t in texts]
  kwargs.setdefault("vocab_limit", tokenizer.vocab_size)
  filled = fill_blanks(config, params, prompts, special_ids=tokenizer.special_ids, **kwargs)
  return [fill_text(tokenizer, p, f) for p, f in zip(prompts, filled)]


def _read_prompts(prompts, prompt_file) -> list[str]:
  texts = list(prompts or [])
  if prompt_file:
    from glm_jax import paths  # pylint: disable=g-import-not-at-top
    with paths.as_path(prompt_file).open() as f:
      texts += [line.rstrip("\n") for line in f if line.strip()]
  if not texts:
    raise GenerationError("No prompt given; pass --prompt='Text with a [MASK].' or "
                          "--prompt_file=FILE (one prompt per line).")
  return texts


def main(argv):
  del argv
  from absl import flags
  from glm_jax import export
  from glm_jax import cli
  cli.quiet_logs()
  from input_pipeline import tokenizer as tokenizer_lib
  f = flags.FLAGS
  config, params = export.load_for_inference(f.checkpoint, f.dtype)
  tokenizer_path = f.tokenizer or tokenizer_lib.tokenizer_beside(f.checkpoint)
  if tokenizer_path is None:
    raise GenerationError(
        f"No tokenizer is stored with {f.checkpoint}; pass --tokenizer=FILE.model (ours) or "
        "--tokenizer=DIR (a released GLM tokenizer, with --tokenizer_kind if DIR has no "
        "tokenizer_config.json).")
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path, f.tokenizer_kind or None)
  if tokenizer.vocab_size > config.vocab_size:
    raise GenerationError(
        f"The tokenizer ({tokenizer_path}) has {tokenizer.vocab_size} pieces but the model only "
        f"{config.vocab_size} embeddings; pass the tokenizer the checkpoint was trained with.")
  texts = _read_prompts(f.prompt, f.prompt_file)
  kwargs = dict(max_new_tokens=f.max_new_tokens, strategy=f.strategy, temperature=f.temperature,
                top_k=f.top_k, top_p=f.top_p, num_beams=f.num_beams,
                length_penalty=f.length_penalty, no_repeat_ngram_size=f.no_repeat_ngram_size,
                seed=f.seed, beam_rule=f.beam_rule)
  for start in range(0, len(texts), f.batch_size):
    for text in generate_text(config, params, tokenizer, texts[start:start + f.batch_size],
                              task_mask=f.task_mask, **kwargs):
      print(text, flush=True)


def _define_flags():
  from absl import flags
  flags.DEFINE_string("checkpoint", None, "Params-only checkpoint directory (glm_jax.export, "
                      "`convert import`, or checkpoint.save_params).")
  flags.DEFINE_string("tokenizer", None, "Our sentencepiece .model file, or a directory with a "
                      "released GLM tokenizer; default: the one stored with --checkpoint.")
  flags.DEFINE_string("tokenizer_kind", None, "Released tokenizer kind (bert-uncased, bert-cased, "
                      "gpt2, roberta, chinese-sp) when --tokenizer has no tokenizer_config.json.")
  flags.DEFINE_multi_string("prompt", [], "Prompt text with [MASK] / [sMASK] / [gMASK] blanks; "
                            "repeat the flag for several.")
  flags.DEFINE_string("prompt_file", None, "File with one prompt per line (a batch).")
  flags.DEFINE_integer("batch_size", 16, "Prompts decoded together.")
  flags.DEFINE_enum("strategy", "greedy", list(STRATEGIES), "Decoding strategy.")
  flags.DEFINE_integer("max_new_tokens", 32, "Token budget per blank.")
  flags.DEFINE_float("temperature", 0.9, "Sampling temperature (strategy=sample).")
  flags.DEFINE_integer("top_k", 40, "Sample from the k most likely tokens; 0 = all.")
  flags.DEFINE_float("top_p", 0.0, "Nucleus sampling mass; 0 = off.")
  flags.DEFINE_integer("num_beams", 4, "Beams (strategy=beam).")
  flags.DEFINE_float("length_penalty", 1.0, "Beam score = log-prob / length ** length_penalty.")
  flags.DEFINE_enum("beam_rule", "bound", ["bound", "original"],
                    "bound: stop when no live beam can win; original: generate_samples.py's "
                    "Hugging Face scorer (candidates by top-k).")
  flags.DEFINE_integer("no_repeat_ngram_size", 0, "Never repeat an n-gram inside a blank; 0 = off.")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_string("dtype", None, "Compute dtype (float32 / bfloat16); default the params'.")
  flags.DEFINE_bool("task_mask", False, "The model was pretrained with [sMASK]/[gMASK] (the original's "
                    "--task-mask in config_tasks/model_blocklm_*.sh: GLM-2B/10B/Large-Chinese): a prompt without a blank gets "
                    "' [gMASK]' appended instead of ' [MASK]'.")
  flags.mark_flags_as_required(["checkpoint"])


if __name__ == "__main__":
  from glm_jax import cli
  from absl import app
  _define_flags()
  from glm_jax import generate  # the module's own classes, not __main__'s copies
  app.run(cli.exit_on_user_error(generate.main))

"""The jitted greedy / sampling decode loop: prefill once, then one token per row per step.

Decoding is one `lax.while_loop` over a fixed-size cache (`prompt slots + blanks * max_new_tokens`),
compiled once per (shapes, strategy); each step feeds one token per row. Rows of a batch move in
lockstep: slot `P + t` holds row b's t-th fed token whatever blank it is on, so a row sees its
prompt (`j < len_b`, padding excluded) and every decode slot up to its own. `glm_jax.generate`
is the public entry.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from glm_jax.decode import cache as cache_lib
from glm_jax.decode import sampling
from glm_jax.modeling import sharding


@flax.struct.dataclass
class LoopState:
  """What the greedy / sampling loop carries from one step to the next (all `[B]` unless noted)."""
  step: jax.Array     # scalar: decode steps taken; the next token goes to slot prompt_slots + step
  memory: Any         # what `logits_at` reads and updates: the KV cache in `fill`
  token: jax.Array    # the token to feed next (sop when a blank starts)
  block: jax.Array    # its block position (1 for sop, then 2, 3, ...)
  blank: jax.Array    # which blank the row is filling
  count: jax.Array    # tokens kept for that blank so far
  done: jax.Array     # bool: every blank of the row is filled
  out: jax.Array      # [B, NB, max_new_tokens] the kept tokens, -1 elsewhere


STATIC_ARGS = ("cfg", "max_new_tokens", "greedy", "top_k", "no_repeat_ngram_size", "sop", "ends",
               "vocab_limit")


def _fill(params, ids, lengths, blank_pos, num_blanks, rng, temperature, top_p, **static):
  return run_loop(params, ids, lengths, blank_pos, num_blanks, rng, temperature, top_p,
                  init_memory=cache_lib.prefill_prompt, logits_at=cache_lib.step, **static)


fill = sharding.mesh_jit(_fill, STATIC_ARGS, rows=lambda inputs, static: inputs[0].shape[0])
fill.__doc__ = """The jitted decode loop with the KV cache. Returns `[B, NB, max_new_tokens]`
tokens, -1 past each blank's end. `static`: the names in STATIC_ARGS (see `run_loop`); `mesh=`:
decode with the params sharded on it, rows (and the cache) over data, heads over tensor."""


def run_loop(params, ids, lengths, blank_pos, num_blanks, rng, temperature, top_p, *, cfg,
             max_new_tokens, greedy, top_k, no_repeat_ngram_size, sop, ends, vocab_limit,
             init_memory, logits_at):
  """The loop itself, traced inside a jit; how logits are computed is passed in, so a test can
  run the same loop by full recomputation (`tests/recompute_decode.py`).

  init_memory(cfg, params, ids, lengths, total) -> memory (`cache.prefill_prompt`: the KV cache);
  logits_at(cfg, params, memory, tokens, position_ids, lengths, prompt_slots, slot, total)
    -> (logits [B, V], memory) (`cache.step`).
  """
  batch, prompt_slots = ids.shape
  nb = blank_pos.shape[1]
  steps = nb * max_new_tokens
  total = prompt_slots + steps
  rows = jnp.arange(batch)
  end_ids = jnp.asarray(ends, jnp.int32)
  memory = init_memory(cfg, params, ids, lengths, total)

  def body(state: LoopState) -> LoopState:
    t, memory, token, block, blank, count, done, out = (
        state.step, state.memory, state.token, state.block, state.blank, state.count,
        state.done, state.out)
    slot = prompt_slots + t
    blank_c = jnp.minimum(blank, nb - 1)
    position_ids = jnp.stack([blank_pos[rows, blank_c], block], axis=1)   # [B, 2]
    logits, memory = logits_at(cfg, params, memory, token, position_ids, lengths, prompt_slots,
                               slot, total)
    logits = sampling.limit_vocab(logits, vocab_limit)
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
    return LoopState(step=t + 1, memory=memory, token=token, block=block, blank=blank,
                     count=count, done=done, out=out)

  def cond(state: LoopState):
    return (state.step < steps) & ~jnp.all(state.done)

  zeros = jnp.zeros((batch,), jnp.int32)
  state = LoopState(step=jnp.int32(0), memory=memory, token=jnp.full((batch,), sop, jnp.int32),
                    block=zeros + 1, blank=zeros, count=zeros, done=num_blanks <= 0,
                    out=jnp.full((batch, nb, max_new_tokens), -1, jnp.int32))
  return jax.lax.while_loop(cond, body, state).out


def to_lists(out: np.ndarray, num_blanks: np.ndarray) -> list[list[list[int]]]:
  """`[B, NB, max_new]` tokens (-1 padded) -> per row, per blank, the generated ids."""
  return [[[int(x) for x in out[b, k] if x >= 0] for k in range(int(num_blanks[b]))]
          for b in range(out.shape[0])]

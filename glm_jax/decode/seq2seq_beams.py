"""Seq2seq beam decoding in the original's layout (THUDM/GLM tasks/seq2seq/evaluate.py): the
source once, [sop] at its blank, then `beam.search` over the answer, batched over examples."""

from __future__ import annotations

import jax.numpy as jnp

from glm_jax.decode import beam
from glm_jax.decode import cache as cache_lib
from glm_jax.modeling import sharding
from glm_jax.modeling.model import as_glm_config


def _decode_beams(params, source_ids, mask_positions, sop_id, length_penalty, *, cfg, num_beams,
                  max_length, end_ids, min_length, no_repeat_ngram_size, vocab_limit, beam_rule):
  batch, src = source_ids.shape
  total = src + 1 + max_length
  # Prefill: the source (bidirectional, its padding included, as the original with sep = its
  # length) and [sop] at (mask position, block 1), whose logits give the first token.
  ids = jnp.concatenate([source_ids, jnp.full((batch, 1), sop_id, jnp.int32)], axis=1)
  pos = jnp.concatenate([jnp.broadcast_to(jnp.arange(src, dtype=jnp.int32), (batch, src)),
                         mask_positions[:, None]], axis=1)
  block = jnp.zeros((batch, src + 1), jnp.int32).at[:, src].set(1)
  logits, cache = cache_lib.prefill(cfg, params, ids, jnp.stack([pos, block], axis=1),
                                    jnp.full((batch,), src), total)
  cache = cache_lib.repeat_beams(cache, num_beams)
  beam_mask_pos = jnp.repeat(mask_positions, num_beams)
  # Every generated token sees every earlier slot (the original's decode mask, sep = 0 over all
  # memories): the source and [sop] are the "prompt" of each beam.
  seen = jnp.full((batch * num_beams,), src + 1, jnp.int32)

  def step(cache, tokens, index):
    # The index-th generated token: at (mask position, block index + 2), cache slot src+1+index.
    position_ids = jnp.stack([beam_mask_pos, jnp.full_like(beam_mask_pos, index + 2)], 1)
    return cache_lib.step(cfg, params, cache, tokens, position_ids, seen, src + 1,
                          src + 1 + index, total)

  return beam.search(step, cache, logits[:, src], rule=beam_rule, num_beams=num_beams,
                     max_length=max_length, end_ids=end_ids, length_penalty=length_penalty,
                     min_length=min_length, no_repeat_ngram_size=no_repeat_ngram_size,
                     vocab_limit=vocab_limit, shared_slots=src + 1)


_decode = sharding.mesh_jit(
    _decode_beams, ("cfg", "num_beams", "max_length", "end_ids", "min_length",
                    "no_repeat_ngram_size", "vocab_limit", "beam_rule"),
    rows=lambda inputs, static: inputs[0].shape[0] * static["num_beams"])


def decode_seq2seq(config, params, source_ids, mask_positions, *, sop_id: int, eop_id: int,
                   num_beams: int, max_length: int, length_penalty: float = 1.0,
                   min_length: int = 0, no_repeat_ngram_size: int = 0,
                   vocab_limit: int | None = None, beam_rule: str = "original", mesh=None):
  """Beam-decodes the answer to each source's blank as the original seq2seq evaluator does
  (`beam_rule="original"`; `"bound"`: ours, see `glm_jax.decode.beam`).

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
                 beam_rule=beam_rule, mesh=mesh)

"""Runs scoring rows through the model: batched, length-bucketed, jitted, sharded over a mesh.

Every evaluation (cloze, LAMBADA, sliding-window perplexity) reduces to rows (eval_rows.Row) and,
per row, three statistics of the teacher-forced logits: the summed log-probability of the scored
targets, whether the argmax equals the target at every scored slot, and (single-token cloze) the
raw logits at the `[sop]` slot gathered at given ids. Rows are sorted by length and cut into
batches of `batch_size` padded to a bucket length (powers of two up to 256, then multiples of 128),
so a dataset compiles a handful of shapes. Only the scored slots go through the vocabulary
projection. The step is one `jax.jit` with the params sharded by
their logical axes and the batch split over data x fsdp, traced under the project's mesh and
logical-axis rules (no ambient context needed).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from glm_jax.evaluation.eval_rows import EvaluationError, Row
from glm_jax.modeling import model as model_lib
from glm_jax.modeling import sharding

DEFAULT_BATCH_SIZE = 16
MIN_BUCKET = 16


def default_mesh():
  """All devices on the data axis: evaluation of a model that fits on one device."""
  return sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})


def bucket(n: int, minimum: int = 1) -> int:
  """The padded size of n (a row's tokens, its scored slots): a power of two (at least
  `minimum`) up to 256, then a multiple of 128, so nearby sizes share one compiled shape."""
  if n <= 256:
    return max(minimum, 1 << max(n - 1, 0).bit_length())
  return -(-n // 128) * 128


def _param_shardings(cfg, params, mesh):
  shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), params)
  try:
    return sharding.param_shardings(cfg, shapes, mesh)
  except ValueError as e:
    raise EvaluationError(f"The params do not have the structure of a GLM of this config ({e}); "
                          "load them with glm_jax.storage.params_io.load_for_inference or "
                          "glm_jax.convert.from_thudm.") from e


def place_params(config, params, mesh=None):
  """The params on the mesh, sharded by their logical axes; call once and reuse across calls
  (already-placed params pass through the scorers untouched)."""
  cfg = model_lib.as_glm_config(config)
  mesh = mesh if mesh is not None else default_mesh()
  params = model_lib.strip_boxes(params)
  shardings = _param_shardings(cfg, params, mesh)
  return sharding.place(params, shardings)


def _batch_multiple(mesh) -> int:
  return int(mesh.shape["data"] * mesh.shape["fsdp"])


@functools.lru_cache(maxsize=None)
def _row_stats_fn(cfg: model_lib.GLMConfig, mesh, num_gather: int):
  """Jitted `(params, batch) -> {logprob, correct[, gathered]}` for one (config, mesh, #gather)."""
  glm = model_lib.GLM(cfg)

  def stats(params, batch):
    # Only the scored slots go through the vocabulary projection (the model's `head`).
    hidden = glm.apply({"params": params}, batch["ids"], batch["position_ids"], batch["sep"],
                       deterministic=True, return_hidden=True)
    hidden = jnp.take_along_axis(hidden, batch["slots"][..., None], axis=1)
    logits = model_lib.head(cfg, params, hidden)
    targets, scored = batch["slot_targets"], batch["slot_valid"] > 0
    log_norm = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logprob = jnp.sum(jnp.where(scored, target_logits - log_norm, 0.0), axis=-1)
    hits = (jnp.argmax(logits, axis=-1) == targets) | ~scored
    out = {"logprob": logprob, "correct": jnp.all(hits, axis=-1)}
    if num_gather:  # single-token rows: their one scored slot is the [sop]
      out["gathered"] = jnp.take_along_axis(logits[:, 0], batch["gather_ids"], axis=-1)
    return out

  replicated = NamedSharding(mesh, P())
  return jax.jit(stats, out_shardings=replicated)


def _put(array: np.ndarray, mesh):
  target = sharding.batch_sharding(mesh, array.ndim)
  if jax.process_count() == 1:
    return jax.device_put(array, target)
  return jax.make_array_from_callback(array.shape, target, lambda index: array[index])


def _check_rows(cfg, rows: Sequence[Row], gather_ids):
  for i, row in enumerate(rows):
    highest = max(max(row.positions), max(row.block_positions))
    if highest > cfg.max_sequence_length:
      raise EvaluationError(
          f"Row {i} needs position {highest} but the model's position table has "
          f"{cfg.max_sequence_length + 1} rows; lower seq_length to at most "
          f"{cfg.max_sequence_length}.")
    ids = set(row.ids) | set(row.targets)
    if max(ids) >= cfg.vocab_size or min(ids) < 0:
      raise EvaluationError(
          f"Row {i} holds token ids outside the model's vocabulary [0, {cfg.vocab_size}); "
          "encode the text with the tokenizer this model was trained with.")
  if gather_ids is not None and (np.max(gather_ids) >= cfg.vocab_size or np.min(gather_ids) < 0):
    raise EvaluationError(f"label ids {np.asarray(gather_ids).tolist()} lie outside the "
                          f"vocabulary [0, {cfg.vocab_size}).")


def _pack(rows: Sequence[Row], order, length: int, batch: int, eos: int, gather_ids):
  """Numpy batch of `rows[order]`, padded to [batch, length]; `slots` [batch, K] index each
  row's scored positions (K = the bucket of the most in the batch), with their targets."""
  order = list(order)
  scored = [[i for i, m in enumerate(rows[index].loss_mask) if m] for index in order]
  width = bucket(max([len(s) for s in scored] + [1]))
  arrays = {
      "ids": np.full((batch, length), eos, np.int32),
      "position_ids": np.zeros((batch, 2, length), np.int32),
      "sep": np.ones((batch,), np.int32),
      "slots": np.zeros((batch, width), np.int32),
      "slot_targets": np.zeros((batch, width), np.int32),
      "slot_valid": np.zeros((batch, width), np.int32),
  }
  if gather_ids is not None:
    arrays["gather_ids"] = np.zeros((batch, gather_ids.shape[-1]), np.int32)
  for slot, (index, positions) in enumerate(zip(order, scored)):
    row, n, k = rows[index], len(rows[index]), len(positions)
    arrays["ids"][slot, :n] = row.ids
    arrays["position_ids"][slot, 0, :n] = row.positions
    arrays["position_ids"][slot, 1, :n] = row.block_positions
    arrays["sep"][slot] = row.sep
    arrays["slots"][slot, :k] = positions
    arrays["slot_targets"][slot, :k] = [row.targets[i] for i in positions]
    arrays["slot_valid"][slot, :k] = 1
    if gather_ids is not None:
      if positions != [row.sop_index]:
        raise EvaluationError("single-token rows must score exactly their [sop] slot.")
      arrays["gather_ids"][slot] = gather_ids[index]
  return arrays


def score_rows(config, params, rows: Sequence[Row], *, eos_id: int, gather_ids=None,
               batch_size: int = DEFAULT_BATCH_SIZE, mesh=None, progress=None,
               pad_to: int | None = None) -> dict:
  """Per-row statistics of the teacher-forced logits, in the rows' order.

  Returns numpy arrays: `logprob` [N] (float64 host sum of fp32 per-row sums of log-softmax at
  the scored targets), `num_targets` [N], `correct` [N] bool (argmax == target at every scored
  slot), and with `gather_ids` ([N, K] ids) `gathered` [N, K]: raw logits at the `[sop]` slot.
  `progress(num_rows_done)` is called after each batch (for a progress bar).
  pad_to: pad every batch to this many slots instead of its length bucket (the original's loaders
    pad every row to `seq_length`; benchmarks/eval.py measures what bucketing saves).
  """
  cfg = model_lib.as_glm_config(config)
  mesh = mesh if mesh is not None else default_mesh()
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise EvaluationError(f"batch_size must be a positive integer, got {batch_size!r}.")
  num = len(rows)
  if gather_ids is not None:
    gather_ids = np.asarray(gather_ids, np.int32).reshape(num, -1)
  out = {"logprob": np.zeros(num, np.float64),
         "num_targets": np.array([sum(r.loss_mask) for r in rows], np.int64),
         "correct": np.zeros(num, bool)}
  if gather_ids is not None:
    out["gathered"] = np.zeros(gather_ids.shape, np.float32)
  if not num:
    return out
  _check_rows(cfg, rows, gather_ids)
  if pad_to is not None:
    longest = max(len(r) for r in rows)
    if not (isinstance(pad_to, (int, np.integer)) and pad_to >= longest):
      raise EvaluationError(f"pad_to={pad_to!r} must be an integer >= the longest row ({longest}).")
  multiple = _batch_multiple(mesh)
  # Fewer rows than a batch (one cloze question): the next power of two, not a full batch.
  batch = min(int(batch_size), 1 << (num - 1).bit_length())
  batch = -(-batch // multiple) * multiple
  params = place_params(cfg, params, mesh)
  step = _row_stats_fn(cfg, mesh, 0 if gather_ids is None else gather_ids.shape[-1])
  by_length = sorted(range(num), key=lambda i: len(rows[i]))
  done = 0
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    for start in range(0, num, batch):
      order = by_length[start:start + batch]
      length = pad_to or bucket(max(len(rows[i]) for i in order), MIN_BUCKET)
      arrays = _pack(rows, order, length, batch, eos_id, gather_ids)
      result = step(params, {k: _put(v, mesh) for k, v in arrays.items()})
      result = jax.tree_util.tree_map(sharding.to_host, result)
      count = len(order)
      out["logprob"][order] = result["logprob"][:count]
      out["correct"][order] = result["correct"][:count]
      if gather_ids is not None:
        out["gathered"][order] = result["gathered"][:count]
      done += count
      if progress is not None:
        progress(done)
  return out


def tokens_per_batch(rows: Sequence[Row]) -> int:
  """Real (unpadded) tokens in `rows`, for throughput numbers."""
  return int(sum(len(r) for r in rows))


def check_vocab(config, tokenizer_vocab_size: int) -> None:
  """A model whose embedding has fewer rows than the tokenizer has pieces cannot score its ids."""
  cfg = model_lib.as_glm_config(config)
  if tokenizer_vocab_size > cfg.vocab_size:
    raise EvaluationError(
        f"The tokenizer has {tokenizer_vocab_size} pieces but the checkpoint only "
        f"{cfg.vocab_size} embedding rows; pass the tokenizer the checkpoint was trained with.")


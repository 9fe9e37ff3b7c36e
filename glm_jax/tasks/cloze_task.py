"""The pieces of a cloze finetuning task: encoded examples -> fixed-shape batches (`pack`:
`[batch, choices, length]` rows, missing choices masked), the original's choice losses
(`make_objective`), the resumable per-epoch batch iterator (`EpochBatches`, seq2seq's too), and
dev / test scoring through the evaluation scorers (`score_examples`:
glm_jax.evaluation.scoring.score_rows).

The SuperGLUE task (`tasks/superglue/task.py`) puts them together into the finetune loop's task
protocol (`tasks/protocol.py`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from glm_jax.evaluation import scoring
from glm_jax.modeling import model as model_lib
from glm_jax.modeling import sharding
from glm_jax.tasks.superglue.patterns import Encoded
from glm_jax.training.train_state import Objective

NO_CHOICE = -10000.0  # the original's additive mask of a missing choice


def slot_logits(glm, params, batch, rng, deterministic: bool):
  """fp32 logits `[B, C, S, vocab]` at the scored slots only (the vocabulary projection of the
  model's tied head runs on B*C*S hidden states, not on every position)."""
  b, c, length = batch["ids"].shape
  hidden = glm.apply({"params": params}, batch["ids"].reshape(b * c, length),
                     batch["position_ids"].reshape(b * c, 2, length),
                     batch["sep"].reshape(b * c), deterministic=deterministic,
                     rngs={"dropout": rng}, return_hidden=True)
  slots = batch["slots"].reshape(b * c, -1)
  hidden = jnp.take_along_axis(hidden, slots[..., None], axis=1)
  logits = model_lib.head(glm.config, params, hidden)
  return logits.reshape(b, c, slots.shape[-1], -1)


def choice_scores(logits, batch, multi_token: bool, length_penalty: float):
  """`[B, C]` scores: multi-token, the summed log-probability of each answer's targets (divided
  by its length ** length_penalty); single-token, the raw logits at [sop] of the label ids."""
  if not multi_token:
    return jnp.take_along_axis(logits[:, 0, 0], batch["label_ids"], axis=-1)
  valid = batch["slot_valid"].astype(jnp.float32)
  logprobs = jax.nn.log_softmax(logits, axis=-1)
  target = jnp.take_along_axis(logprobs, batch["slot_targets"][..., None], axis=-1)[..., 0]
  scores = jnp.sum(target * valid, axis=-1)
  if length_penalty > 0:
    scores = scores / jnp.maximum(jnp.sum(valid, axis=-1), 1.0) ** length_penalty
  return scores


def choice_loss_sums(scores, batch, loss: str):
  """Cross-entropy over the choices (missing ones masked out as the original does); `mix` adds
  the negative score of the right choice (WSC's generative term)."""
  mask = batch["choice_mask"].astype(jnp.float32)
  masked = scores * mask + NO_CHOICE * (1.0 - mask)
  label = batch["label"]
  losses = optax.softmax_cross_entropy_with_integer_labels(masked, label)
  if loss == "mix":
    losses = losses - jnp.take_along_axis(masked, label[:, None], axis=-1)[:, 0]
  weight = batch["example_mask"].astype(jnp.float32)
  hits = (jnp.argmax(masked, axis=-1) == label).astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * weight), "correct_sum": jnp.sum(hits * weight),
          "tokens": jnp.sum(weight)}


BATCH_NDIMS = {"ids": 3, "position_ids": 4, "sep": 2, "slots": 3, "slot_targets": 3,
               "slot_valid": 3, "choice_mask": 2, "label": 1, "label_ids": 2, "example_mask": 1}


def make_objective(multi_token: bool, loss: str, length_penalty: float) -> Objective:
  """The finetuning loss over choices: cross-entropy on candidate scores, or the original's mix."""
  if loss not in ("cross_entropy", "mix"):
    raise ValueError(f"loss={loss!r}: use cross_entropy or mix.")

  def sums(glm, params, batch, rng, deterministic):
    logits = slot_logits(glm, params, batch, rng, deterministic)
    return choice_loss_sums(choice_scores(logits, batch, multi_token, length_penalty), batch, loss)

  return Objective(sums, lambda batch: jnp.sum(batch["example_mask"].astype(jnp.float32)),
                   dict(BATCH_NDIMS))


def pack(encoded: Sequence[Encoded | None], *, seq_length: int, num_choices: int,
         num_slots: int, eos_id: int, num_labels: int) -> dict[str, np.ndarray]:
  """Host arrays of one batch; None entries are padding examples (example_mask 0). A missing
  choice repeats the example's first row (as the original's collate) with choice_mask 0."""
  b = len(encoded)
  out = {"ids": np.full((b, num_choices, seq_length), eos_id, np.int32),
         "position_ids": np.zeros((b, num_choices, 2, seq_length), np.int32),
         "sep": np.zeros((b, num_choices), np.int32),
         "slots": np.zeros((b, num_choices, num_slots), np.int32),
         "slot_targets": np.zeros((b, num_choices, num_slots), np.int32),
         "slot_valid": np.zeros((b, num_choices, num_slots), np.int32),
         "choice_mask": np.zeros((b, num_choices), np.int32),
         "label": np.zeros((b,), np.int32),
         "label_ids": np.zeros((b, max(num_labels, 1)), np.int32),
         "example_mask": np.zeros((b,), np.int32)}
  for i, enc in enumerate(encoded):
    if enc is None:
      continue
    enc_rows = enc.rows
    if len(enc_rows) > num_choices:
      raise ValueError(f"an example has {len(enc_rows)} choices, more than the batch's "
                       f"{num_choices}.")
    for c in range(num_choices):
      row = enc_rows[c] if c < len(enc_rows) else enc_rows[0]
      n = len(row)
      out["ids"][i, c, :n] = row.ids
      out["position_ids"][i, c, 0, :n] = row.positions
      out["position_ids"][i, c, 1, :n] = row.block_positions
      out["sep"][i, c] = row.sep
      scored = [j for j, m in enumerate(row.loss_mask) if m][:num_slots]
      out["slots"][i, c, :len(scored)] = scored
      out["slot_targets"][i, c, :len(scored)] = [row.targets[j] for j in scored]
      out["slot_valid"][i, c, :len(scored)] = 1
      out["choice_mask"][i, c] = int(c < len(enc_rows))
    out["label"][i] = enc.label
    if enc.label_ids is not None:
      out["label_ids"][i] = enc.label_ids
    out["example_mask"][i] = 1
  return out


class EpochBatches:
  """`protocol.TrainBatches` over a list of items: the training set in batches, reshuffled every
  epoch from (seed, epoch) like the original's `sampler.set_epoch(seed + epoch)`; the last batch
  of an epoch is padded (not dropped). With a `mesh`, each batch holds only the row blocks this
  process's devices hold (`sharding.put_batch`'s layout: processes across a tensor axis build
  the same rows); without, every row. Its state is the number of batches served, so a restored
  iterator continues exactly."""

  def __init__(self, encoded: Sequence[Encoded], batch_size: int, seed: int,
               make_batch: Callable, mesh=None):
    if not encoded:
      raise ValueError("the training set is empty.")
    self.encoded, self.batch_size, self.seed = list(encoded), int(batch_size), int(seed)
    self.make_batch = make_batch
    self.blocks, self.num_blocks = sharding.fed_row_blocks(mesh)
    self.steps_per_epoch = math.ceil(len(self.encoded) / self.batch_size)
    self.position = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    epoch, index = divmod(self.position, self.steps_per_epoch)
    order = np.random.RandomState(self.seed + epoch).permutation(len(self.encoded))
    chosen = order[index * self.batch_size:(index + 1) * self.batch_size]
    items = [self.encoded[i] for i in chosen] + [None] * (self.batch_size - len(chosen))
    rows = self.batch_size // self.num_blocks   # this process's row blocks, block after block
    items = [item for b in self.blocks for item in items[b * rows:(b + 1) * rows]]
    self.position += 1
    return self.make_batch(items)

  def get_state(self) -> dict:
    """Where the iterator is, saved with each checkpoint so a resumed run continues there."""
    return {"position": self.position}

  def set_state(self, state: dict) -> None:
    """Continues from a state `get_state` returned."""
    self.position = int(state["position"])


def score_examples(config, params, encoded: Sequence[Encoded], *, eos_id: int,
                   multi_token: bool, length_penalty: float, batch_size: int,
                   mesh=None) -> list[np.ndarray]:
  """Per example, the scores of its choices (the evaluation scorers, no dropout): all rows of
  all examples share length-bucketed batches."""
  rows = [row for enc in encoded for row in enc.rows]
  owner = np.repeat(np.arange(len(encoded)), [len(enc.rows) for enc in encoded])
  if multi_token:
    stats = scoring.score_rows(config, params, rows, eos_id=eos_id, batch_size=batch_size,
                               mesh=mesh)
    scores = stats["logprob"]
    if length_penalty > 0:
      scores = scores / np.maximum(stats["num_targets"], 1).astype(np.float64) ** length_penalty
    return [scores[owner == i] for i in range(len(encoded))]
  gather = np.asarray([enc.label_ids for enc in encoded], np.int32)
  stats = scoring.score_rows(config, params, rows, eos_id=eos_id, gather_ids=gather,
                             batch_size=batch_size, mesh=mesh)
  return list(stats["gathered"])

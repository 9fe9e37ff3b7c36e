"""What the training loop reads: the GLM input pipeline, or synthetic batches.

Synthetic batches (config.synthetic_data=True) have the real layout (Part A, then causal Part B
with 2D positions) and random tokens; they need neither a tokenizer nor TensorFlow, and each row is
a pure function of (seed, step, global row), so any process split yields the same global batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

SYNTHETIC_SPECIAL_IDS = {"eos": 0, "CLS": 1, "MASK": 2, "sMASK": 3, "gMASK": 4, "sop": 5, "eop": 6}


def synthetic_example(seed: int, step: int, row: int, seq_length: int, vocab_size: int) -> dict:
  """One sample: sep in [S/2, 3S/4], loss on Part B, positions of Part B pinned to its blank."""
  rng = np.random.default_rng([seed, step, row])
  sep = int(rng.integers(seq_length // 2, 3 * seq_length // 4 + 1))
  index = np.arange(seq_length)
  part_b = index >= sep
  return {
      "input_ids": rng.integers(7, vocab_size, seq_length).astype(np.int32),
      "target_ids": rng.integers(7, vocab_size, seq_length).astype(np.int32),
      "loss_mask": part_b.astype(np.float32),
      "position_ids": np.stack([np.where(part_b, sep - 1, index),
                                np.where(part_b, index - sep + 1, 0)]).astype(np.int32),
      "sep": np.int32(sep),
  }


class SyntheticIterator:
  """This process's rows of synthetic global batches; state is just the step."""

  def __init__(self, *, seed, seq_length, vocab_size, global_batch, process_index, process_count):
    per_host = global_batch // process_count
    self.rows = range(process_index * per_host, (process_index + 1) * per_host)
    self.seed, self.seq_length, self.vocab_size, self.step = seed, seq_length, vocab_size, 0

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    rows = [synthetic_example(self.seed, self.step, r, self.seq_length, self.vocab_size)
            for r in self.rows]
    self.step += 1
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

  def get_state(self) -> dict:
    """Where the iterator is, saved with each checkpoint so a resumed run continues there."""
    return {"synthetic_step": self.step}

  def set_state(self, state: dict) -> None:
    """Continues from a state `get_state` returned."""
    self.step = int(state["synthetic_step"])


@dataclasses.dataclass
class TrainData:
  """What the train loop needs from the data side: batches, eval batches, special ids."""
  train: Iterator[dict]                 # infinite; has get_state / set_state
  make_eval: Callable[[], Iterator[dict]]  # a fresh held-out iterator (same batches each time)
  special_ids: dict[str, int]
  vocab_size: int                       # tokenizer vocabulary (before padding)
  tokenizer: Any = None


def load_vocab_size(config) -> int | None:
  """The tokenizer's vocabulary (trains/caches it if needed); None for synthetic data."""
  if config.synthetic_data:
    return None
  from input_pipeline import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  return tokenizer_lib.load_or_train(config.data).vocab_size


def objective_batch_size(config) -> int:
  """Samples per objective draw: `data.objective_batch_size`, or (0) the per-device micro-batch,
  as the original draws one objective per data-parallel micro-batch (one collate call)."""
  if config.data.get("objective_batch_size", 0):
    return int(config.data.objective_batch_size)
  import jax  # pylint: disable=g-import-not-at-top
  from glm_jax import sharding  # pylint: disable=g-import-not-at-top
  data, fsdp, _ = sharding.mesh_shape(config.mesh, jax.device_count())
  return max(1, int(config.global_batch_size) // (int(config.grad_accum_steps) * data * fsdp))


def build(config, process_index: int, process_count: int) -> TrainData:
  """Train iterator and eval-iterator factory for this process's share of each global batch."""
  per_host = int(config.global_batch_size) // process_count
  common = dict(seq_length=int(config.seq_length), process_index=process_index,
                process_count=process_count)
  if config.synthetic_data:
    def make(seed):
      return SyntheticIterator(seed=seed, vocab_size=config.model.vocab_size,
                               global_batch=int(config.global_batch_size), **common)
    return TrainData(make(int(config.seed)), lambda: make(int(config.seed) + 1),
                     SYNTHETIC_SPECIAL_IDS, int(config.model.vocab_size))

  from input_pipeline import pipeline, tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  tok = tokenizer_lib.load_or_train(config.data)
  accum = int(config.grad_accum_steps)
  def make(split):
    return pipeline.make_iterator(config.data, tok, split=split, per_host_batch=per_host,
                                  seed=int(config.seed), objective_interleave=accum,
                                  objective_batch_size=objective_batch_size(config), **common)
  return TrainData(make("train"), lambda: make("eval"), tokenizer_lib.with_blank_fallbacks(tok.special_ids), tok.vocab_size, tok)

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

  def __init__(self, *, seed, seq_length, vocab_size, global_batch, blocks, num_blocks):
    per_block = global_batch // num_blocks
    self.rows = [b * per_block + r for b in blocks for r in range(per_block)]
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
  local_rows: int = 0                   # rows of each batch this process builds
  seq_length: int = 0

  def eval_padding(self) -> dict:
    """A batch of this process's shape with zero weight (its eval data ran out before others')."""
    return padding_rows(self.local_rows, self.seq_length)


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
  from glm_jax.modeling import sharding  # pylint: disable=g-import-not-at-top
  data, fsdp, _ = sharding.mesh_shape(config.mesh, jax.device_count())
  return max(1, int(config.global_batch_size) // (int(config.grad_accum_steps) * data * fsdp))


def padding_rows(rows: int, seq_length: int) -> dict:
  """Rows of zero weight in the batch layout: a process whose eval data ran out runs these so
  every process runs the same number of batches, and they change no sum."""
  return {"input_ids": np.zeros((rows, seq_length), np.int32),
          "target_ids": np.zeros((rows, seq_length), np.int32),
          "loss_mask": np.zeros((rows, seq_length), np.float32),
          "position_ids": np.zeros((rows, 2, seq_length), np.int32),
          "sep": np.ones((rows,), np.int32)}


class BlockIterator:
  """The held row blocks' pipelines side by side: block b reads shard b of `num_blocks` of the
  corpus with its own randomness, so a block's rows do not depend on which process builds it.

  A finite (eval) block that ran out gives zero-weight rows until every held block has
  (`StopIteration`); `last_had_data` says whether the batch just returned held any real row.
  """

  def __init__(self, iterators: dict, rows: int, seq_length: int):
    self.iterators, self.rows, self.seq_length = iterators, rows, seq_length
    self.done = {b: False for b in iterators}
    self.last_objectives, self.last_had_data = [], False

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    parts, objectives = [], []
    for block, it in self.iterators.items():
      batch = None
      if not self.done[block]:
        try:
          batch = next(it)
        except StopIteration:
          self.done[block] = True
      if batch is None:
        batch, names = padding_rows(self.rows, self.seq_length), []
      else:
        names = list(getattr(it, "last_objectives", ()))
      parts.append(batch)
      objectives += names + [None] * (self.rows - len(names))
    if all(self.done.values()):
      raise StopIteration
    self.last_objectives = objectives
    self.last_had_data = True
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def get_state(self) -> dict:
    """Each held block's state, by block: small, and the same whichever process holds it."""
    return {"blocks": {str(b): it.get_state() for b, it in self.iterators.items()}}

  def set_state(self, state: dict) -> None:
    """Continues every held block from a state `get_state` returned."""
    saved = state.get("blocks", {})
    missing = sorted(set(map(str, self.iterators)) - set(saved))
    if missing:
      from input_pipeline.errors import DataSourceError  # pylint: disable=g-import-not-at-top
      raise DataSourceError(f"the saved data state has no row blocks {missing} (saved: "
                            f"{sorted(saved)}); resume with the mesh the run was saved with")
    for block, it in self.iterators.items():
      it.set_state(saved[str(block)])

  def close(self):
    for it in self.iterators.values():
      it.close()


def build(config, process_index: int = 0, process_count: int = 1, mesh=None) -> TrainData:
  """Train iterator and eval-iterator factory for the rows this process's devices hold.

  With `mesh`, the rows of `sharding.held_row_blocks(mesh)` (what `sharding.put_batch` expects);
  without, process `process_index`'s contiguous 1/`process_count` of each batch."""
  if mesh is not None:
    from glm_jax.modeling import sharding  # pylint: disable=g-import-not-at-top
    blocks, num_blocks = sharding.fed_row_blocks(mesh)
  else:
    blocks, num_blocks = (process_index,), process_count
  rows = int(config.global_batch_size) // num_blocks
  seq_length = int(config.seq_length)
  if config.synthetic_data:
    def make(seed):
      return SyntheticIterator(seed=seed, vocab_size=config.model.vocab_size, seq_length=seq_length,
                               global_batch=int(config.global_batch_size), blocks=blocks,
                               num_blocks=num_blocks)
    return TrainData(make(int(config.seed)), lambda: make(int(config.seed) + 1),
                     SYNTHETIC_SPECIAL_IDS, int(config.model.vocab_size), None,
                     rows * len(blocks), seq_length)

  from input_pipeline import (  # pylint: disable=g-import-not-at-top
      pipeline, tokenizer as tokenizer_lib)
  tok = tokenizer_lib.load_or_train(config.data)
  accum = int(config.grad_accum_steps)
  def make(split):
    return BlockIterator({b: pipeline.make_iterator(
        config.data, tok, split=split, per_host_batch=rows, seq_length=seq_length,
        seed=int(config.seed), process_index=b, process_count=num_blocks,
        objective_interleave=accum, objective_batch_size=objective_batch_size(config))
        for b in blocks}, rows, seq_length)
  return TrainData(make("train"), lambda: make("eval"),
                   tokenizer_lib.with_blank_fallbacks(tok.special_ids), tok.vocab_size, tok,
                   rows * len(blocks), seq_length)

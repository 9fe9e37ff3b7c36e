"""The finetuning task protocol: all that the finetune loop (glm_jax.finetune) uses of a task.

A task supplies data, loss and metric; the loop is the shared one (mesh, jitted sharded step,
Orbax checkpoints and resume, the best checkpoint by the task's metric, the prediction files).
SuperGLUE's cloze tasks (`tasks/superglue/task.py`) and the seq2seq tasks (`tasks/seq2seq/task.py`)
implement it; a new task family implements these members, and `finetune.build_task` builds it.
The loop reads nothing else of a task, so what a task keeps besides (encoded splits, its
tokenizer, its own metadata) is its own business.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from glm_jax.training.train_state import Objective

SPLITS = ("train", "dev", "test")   # the keys of `Task.sizes`


@runtime_checkable
class TrainBatches(Protocol):
  """The training set as an endless iterator of this process's host batches (fixed shapes),
  resumable: its state is saved with every checkpoint and set again on resume."""

  steps_per_epoch: int   # batches per pass over the training set (the loop counts epochs in them)

  def __iter__(self) -> TrainBatches:
    ...

  def __next__(self) -> dict[str, np.ndarray]:
    ...

  def get_state(self) -> dict:
    """Where the iterator is (JSON-serialisable)."""
    ...

  def set_state(self, state: dict) -> None:
    """Continues from a state `get_state` returned."""
    ...


@runtime_checkable
class Task(Protocol):
  """One finetuning task, built from the finetune config (and the model's tokenizer)."""

  name: str                     # the task's name in log lines, e.g. "copa", "cnn_dm"
  main_metric: str              # the key of `evaluate`'s results that picks the best checkpoint
  objective: Objective          # what the shared train step computes on `train_data()`'s batches
  sizes: Mapping[str, int]      # examples per split (SPLITS); 0 dev: no evaluation, 0 test: no
                                # predictions
  tokens_per_example: int       # model tokens one training example fills, padding included
                                # (choices x seq_length for cloze): the throughput's unit
  submission_file: str          # the file of `output_files` the run reports as its predictions

  def train_data(self, mesh=None) -> TrainBatches:
    """The training batches, reshuffled every epoch: with `mesh`, the rows this process's
    devices hold (`sharding.fed_row_blocks`, what `sharding.put_batch` expects); without, all."""
    ...

  def evaluate(self, params, mesh) -> dict[str, float]:
    """The dev set's metrics (higher is better for `main_metric`)."""
    ...

  def predict(self, params, mesh) -> Sequence:
    """The test set's predictions, one per example, in order."""
    ...

  def output_files(self, predictions: Sequence) -> dict[str, str]:
    """File name -> text for the predictions (the loop writes them into workdir/predictions)."""
    ...

"""A SuperGLUE task as a cloze finetuning task (`tasks.protocol.Task`): its splits read and
encoded by the task's pattern, batches and loss from `tasks/cloze_task.py`, the official dev
metrics and the test predictions in the SuperGLUE submission format (`COPA.jsonl`, ...).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import numpy as np
from etils import epath

from glm_jax.errors import FinetuneError
from glm_jax.tasks import cloze_task
from glm_jax.tasks import superglue
from glm_jax.training import train_state


@dataclasses.dataclass
class ClozeTask:
  """One SuperGLUE task ready for the loop: encoded splits, batch shape, objective, scoring."""
  config: object
  info: superglue.TaskInfo
  eos_id: int
  train_encoded: list
  dev_examples: list
  dev_encoded: list
  test_examples: list
  test_encoded: list
  num_choices: int
  num_slots: int
  num_labels: int

  @property
  def name(self) -> str:
    """The task's name (copa, wsc, rte, ...)."""
    return self.info.name

  @property
  def main_metric(self) -> str:
    """The metric that picks the best checkpoint (the task's, e.g. accuracy or f1a)."""
    return self.info.main_metric

  @property
  def sizes(self) -> dict[str, int]:
    """Examples per split."""
    return {"train": len(self.train_encoded), "dev": len(self.dev_examples),
            "test": len(self.test_examples)}

  @property
  def tokens_per_example(self) -> int:
    """Every choice is a row of seq_length tokens."""
    return self.num_choices * int(self.config.seq_length)

  @property
  def submission_file(self) -> str:
    """The official SuperGLUE submission file name."""
    return self.info.submission_file

  @property
  def objective(self) -> train_state.Objective:
    """The task's loss for the shared train step (cross-entropy over choices, or mix)."""
    return cloze_task.make_objective(self.info.multi_token, self.config.loss,
                                     self.config.length_penalty)

  def make_batch(self, items):
    """Encoded examples -> one fixed-shape batch (choices and answer slots padded)."""
    return cloze_task.pack(items, seq_length=self.config.seq_length,
                           num_choices=self.num_choices, num_slots=self.num_slots,
                           eos_id=self.eos_id, num_labels=self.num_labels)

  def train_data(self, mesh=None) -> cloze_task.EpochBatches:
    """The resumable, shuffled epoch iterator over the training examples (this process's rows
    of `mesh`)."""
    return cloze_task.EpochBatches(self.train_encoded, self.config.global_batch_size,
                                   self.config.seed, self.make_batch, mesh)

  def choices(self, params, mesh, encoded) -> list[int]:
    """The predicted choice of each encoded example (argmax of the candidate scores)."""
    scores = cloze_task.score_examples(
        self.config, params, encoded, eos_id=self.eos_id, multi_token=self.info.multi_token,
        length_penalty=self.config.length_penalty, batch_size=self.config.eval_batch_size,
        mesh=mesh)
    return [int(np.argmax(s)) for s in scores]

  def evaluate(self, params, mesh) -> dict:
    """The task's official metrics on the dev set (percent)."""
    return superglue.score(self.info.name, self.dev_examples,
                           self.choices(params, mesh, self.dev_encoded))

  def predict(self, params, mesh) -> list:
    """Test-set predictions in the task's submission format."""
    return superglue.submission_records(self.info.name, self.test_examples,
                                        self.choices(params, mesh, self.test_encoded))

  def output_files(self, predictions) -> dict[str, str]:
    """The submission file: one JSON record per line."""
    return {self.submission_file: "".join(json.dumps(r) + "\n" for r in predictions)}


def load_examples(config, split: str) -> list:
  """A task split's examples from JSONL files or TFDS (config.data_source), checked."""
  if config.data_source == "tfds":
    return superglue.load_tfds_split(config.task, split, config.data_dir or None)
  if config.data_source != "jsonl":
    raise FinetuneError(f"data_source={config.data_source!r}: use jsonl or tfds.")
  if split == "test" and not (epath.Path(config.data_dir) / "test.jsonl").exists():
    return []
  return superglue.load_split(config.task, config.data_dir, split)


def build(config, tokenizer, warn: Callable[[str], None]) -> ClozeTask:
  """Reads and encodes the splits; `warn`s of the examples cut to seq_length (as the original)."""
  info = superglue.get_task(config.task)
  encoder = superglue.make_encoder(info.name, tokenizer, config.seq_length, config.pattern_id)
  splits = {}
  for split in ("train", "dev", "test"):
    examples = load_examples(config, split)
    encoded = [encoder.encode(ex, for_training=(split == "train")) for ex in examples]
    cut = sum(e.truncated for e in encoded)
    if cut:
      warn(f"{info.name} {split}: {cut} of {len(examples)} examples longer than seq_length="
           f"{config.seq_length} were truncated (the original's rule).")
    splits[split] = (examples, encoded)
  if not splits["train"][0]:
    raise FinetuneError(f"{config.data_dir}: the training set is empty.")
  if info.name == "wsc" and not any("candidates" in ex.meta for ex in splits["dev"][0]):
    warn("wsc: the files have no `candidates` (the original trains on its WSC-negative files, "
         "each record with candidates: [{\"text\": noun phrase}, ...]); with the referent as the "
         "only choice, training is generative only and every dev prediction is True.")
  train_encoded = splits["train"][1]
  num_slots = max(sum(r.loss_mask) for e in train_encoded for r in e.rows)
  return ClozeTask(config, info, int(tokenizer.special_ids["eos"]), train_encoded,
                   *splits["dev"], *splits["test"],
                   num_choices=max(len(e.rows) for e in train_encoded), num_slots=num_slots,
                   num_labels=0 if info.multi_token else len(info.labels))

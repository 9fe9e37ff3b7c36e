"""The eight SuperGLUE tasks as GLM cloze questions: labels, readers, patterns, metrics and the
submission format of each (`TASKS`), and `score` / `submission_records` over choice predictions."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from glm_jax.tasks.superglue import metrics
from glm_jax.tasks.superglue.examples import Example, TaskDataError, load_split, load_tfds_split
from glm_jax.tasks.superglue.patterns import PATTERNS, Encoded, PatternEncoder, padded


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What differs between the tasks (the hyperparameters live in configs/finetune/superglue.py)."""
  name: str
  submission_file: str          # the official SuperGLUE submission file name
  labels: tuple                 # label values as the readers give them; index = class id
  main_metric: str              # picks the best checkpoint (the original's first metric)
  multi_token: bool


TASKS = {
    "copa": TaskInfo("copa", "COPA.jsonl", (0, 1), "accuracy", True),
    "wsc": TaskInfo("wsc", "WSC.jsonl", ("False", "True"), "accuracy", True),
    "record": TaskInfo("record", "ReCoRD.jsonl", ("0", "1"), "em", True),
    "rte": TaskInfo("rte", "RTE.jsonl", ("entailment", "not_entailment"), "accuracy", False),
    "cb": TaskInfo("cb", "CB.jsonl", ("entailment", "contradiction", "neutral"), "accuracy",
                   False),
    "boolq": TaskInfo("boolq", "BoolQ.jsonl", ("false", "true"), "accuracy", False),
    "wic": TaskInfo("wic", "WiC.jsonl", ("false", "true"), "accuracy", False),
    "multirc": TaskInfo("multirc", "MultiRC.jsonl", (0, 1), "f1a", False),
}


def get_task(name: str) -> TaskInfo:
  """The task named (case-insensitive), or an error listing the tasks."""
  key = str(name).lower()
  if key not in TASKS:
    raise TaskDataError(f"unknown SuperGLUE task {name!r}; the tasks are "
                        f"{', '.join(sorted(TASKS))} (set --config.task).")
  return TASKS[key]


def make_encoder(task: str, tokenizer, seq_length: int, pattern_id: int) -> PatternEncoder:
  """The pattern encoder of a task (its labels, the chosen pattern)."""
  info = get_task(task)
  return PatternEncoder(info.name, info.labels, tokenizer, seq_length, pattern_id)


def predicted_labels(task: str, choices: Sequence[int]) -> list[int]:
  """Choice index -> class index. WSC's choices are [referent, *candidates]: choosing the
  referent means the label True (as the original's evaluation maps it)."""
  if get_task(task).name == "wsc":
    return [1 if c == 0 else 0 for c in choices]
  return [int(c) for c in choices]


def gold_labels(task: str, examples: Sequence[Example]) -> list[int]:
  """Label indices of the examples, for scoring predictions."""
  info = get_task(task)
  return [0 if ex.label is None else info.labels.index(ex.label) for ex in examples]


def score(task: str, examples: Sequence[Example], choices: Sequence[int]) -> dict[str, float]:
  """The task's official metrics (percent) for the chosen choice of each example."""
  info = get_task(task)
  if len(examples) != len(choices):
    raise ValueError(f"{len(choices)} predictions for {len(examples)} examples.")
  if info.name == "record":
    predictions = [ex.meta["candidates"][c] for ex, c in zip(examples, choices)]
    return metrics.record_scores(predictions, [ex.meta["answers"] for ex in examples])
  predictions, labels = predicted_labels(task, choices), gold_labels(task, examples)
  out = {"accuracy": metrics.accuracy(predictions, labels)}
  if info.name == "cb":
    out["f1_macro"] = metrics.f1_macro(predictions, labels)
  if info.name == "multirc":
    questions = [(ex.meta["passage_idx"], ex.meta["question_idx"]) for ex in examples]
    out = {"f1a": metrics.f1_binary(predictions, labels),
           "em": metrics.multirc_exact_match(predictions, labels, questions), **out}
  return out


def submission_records(task: str, examples: Sequence[Example], choices: Sequence[int]) -> list:
  """Test predictions as the lines of the official submission file (`idx` and `label`;
  MultiRC nested by passage and question; ReCoRD's label is the chosen entity)."""
  info = get_task(task)
  if info.name == "record":
    return [{"idx": ex.idx, "label": ex.meta["candidates"][c]} for ex, c in zip(examples, choices)]
  labels = [info.labels[p] for p in predicted_labels(task, choices)]
  if info.name != "multirc":
    return [{"idx": ex.idx, "label": label} for ex, label in zip(examples, labels)]
  passages: dict = {}
  for ex, label in zip(examples, labels):
    p = passages.setdefault(ex.meta["passage_idx"], {"idx": ex.meta["passage_idx"],
                                                     "passage": {"questions": []}})
    questions = p["passage"]["questions"]
    if not questions or questions[-1]["idx"] != ex.meta["question_idx"]:
      questions.append({"idx": ex.meta["question_idx"], "answers": []})
    questions[-1]["answers"].append({"idx": ex.meta["answer_idx"], "label": label})
  return list(passages.values())


__all__ = ["TASKS", "TaskInfo", "Example", "Encoded", "PatternEncoder", "TaskDataError",
           "get_task", "make_encoder", "load_split", "load_tfds_split", "score",
           "submission_records", "predicted_labels", "gold_labels", "padded", "PATTERNS",
           "metrics"]

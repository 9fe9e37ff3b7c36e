"""SuperGLUE metrics as the official scorer defines them: accuracy, F1 (binary / macro), MultiRC
exact match per question, and ReCoRD token F1 / exact match with the official normalisation.

All return percentages (0-100) except where noted, like the original GLM's printed metrics.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Hashable, Sequence

import numpy as np


def accuracy(predictions: Sequence, labels: Sequence) -> float:
  """Percent of predictions equal to their labels."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  if predictions.shape != labels.shape:
    raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels.")
  return 100.0 * float(np.mean(predictions == labels)) if len(labels) else 0.0


def _f1_of_class(predictions: np.ndarray, labels: np.ndarray, cls) -> float:
  tp = float(np.sum((predictions == cls) & (labels == cls)))
  fp = float(np.sum((predictions == cls) & (labels != cls)))
  fn = float(np.sum((predictions != cls) & (labels == cls)))
  return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_binary(predictions: Sequence[int], labels: Sequence[int]) -> float:
  """F1 of the positive class 1 (MultiRC's F1a over all answer options), in percent."""
  return 100.0 * _f1_of_class(np.asarray(predictions), np.asarray(labels), 1)


def f1_macro(predictions: Sequence[int], labels: Sequence[int]) -> float:
  """Unweighted mean of the per-class F1 over the classes present in labels or predictions
  (CB), in percent."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  classes = sorted(set(labels.tolist()) | set(predictions.tolist()))
  return 100.0 * float(np.mean([_f1_of_class(predictions, labels, c) for c in classes]))


def multirc_exact_match(predictions: Sequence[int], labels: Sequence[int],
                        question_ids: Sequence[Hashable]) -> float:
  """Percent of questions whose every answer option is predicted right (grouped by question)."""
  right = collections.defaultdict(lambda: True)
  for p, l, q in zip(predictions, labels, question_ids):
    right[q] = right[q] and (p == l)
  return 100.0 * sum(right.values()) / len(right) if right else 0.0


def normalize_answer(text: str) -> str:
  """The official ReCoRD normalisation: lower case, no punctuation, no articles, single spaces."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def token_f1(prediction: str, truth: str) -> float:
  """Bag-of-tokens F1 between two normalised answers (a fraction)."""
  pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
  same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(gold)
  return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str) -> float:
  """SQuAD-style exact match after normalizing both answers (ReCoRD)."""
  return float(normalize_answer(prediction) == normalize_answer(truth))


def record_scores(predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]) -> dict:
  """ReCoRD {'f1', 'em'} in percent: per query the max over its gold answers, then the mean
  over queries (a query without gold answers scores 0)."""
  f1 = em = 0.0
  for pred, golds in zip(predictions, gold_answers):
    if golds:
      f1 += max(token_f1(pred, g) for g in golds)
      em += max(exact_match(pred, g) for g in golds)
  n = max(len(predictions), 1)
  return {"f1": 100.0 * f1 / n, "em": 100.0 * em / n}

"""Cloze scoring as the original GLM does it: multi-token candidate scores and single-token logits.

`multi_token_scores` is THUDM/GLM `GLMForMultiTokenCloze` on the rows its PVPs build (one row per
candidate, `[eop]` appended to the candidate, `[sop]` at the last [MASK]); `single_token_logits` is
`GLMForSingleTokenCloze`: the raw logits at the `[sop]` slot, gathered at the verbalizer ids.
Over-long inputs are cut as `PVP.truncate` cuts them when every text token is shortenable and
the [MASK] is not: one token at a time from the end of the longer of text_a / text_b.
The `*_batch` forms score many examples in one pass (what the evaluate CLI uses).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from glm_jax.evaluation import scoring
from glm_jax.evaluation.eval_rows import EvaluationError, as_id_list, build_row, check_special_ids


@dataclasses.dataclass(frozen=True)
class ClozeExample:
  """Token ids of one cloze question: text_a (with [MASK]), optional text_b, and the choices."""
  text_a_ids: Sequence[int]
  text_b_ids: Sequence[int] | None
  candidates: Sequence[Sequence[int]]  # multi-token answers, or single-token label ids


def truncate_texts(text_a: list[int], text_b: list[int] | None, answer_length: int,
                   seq_length: int, mask_id: int) -> tuple[list[int], list[int] | None, bool]:
  """(text_a, text_b, truncated) so that `[CLS] a b [eos]` + the answer's slots fit seq_length.

  `answer_length` counts the Part-B slots: the answer's tokens with [eop], or 1 (the lone [sop])
  for single-token scoring.
  """
  a, b = list(text_a), (list(text_b) if text_b is not None else None)
  excess = len(a) + len(b or []) + 2 + answer_length - seq_length
  if excess <= 0:
    return a, b, False

  def shortenable(ids):
    return sum(1 for t in ids or [] if t != mask_id)

  def drop_last(ids):
    for i in range(len(ids) - 1, -1, -1):
      if ids[i] != mask_id:
        del ids[i]
        return

  for _ in range(excess):
    side = a if shortenable(a) > shortenable(b) else b
    if not shortenable(side):
      raise EvaluationError(
          f"The example cannot fit seq_length={seq_length}: its [MASK] tokens and an answer of "
          f"{answer_length} slots leave no room; raise seq_length or shorten the answer.")
    drop_last(side)
  return a, b, True


def _texts(example: ClozeExample, index: int, mask_id: int):
  a = as_id_list(example.text_a_ids, f"example {index} text_a_ids")
  b = None if example.text_b_ids is None else as_id_list(example.text_b_ids,
                                                          f"example {index} text_b_ids")
  if mask_id not in a and mask_id not in (b or []):
    raise EvaluationError(f"example {index} has no [MASK] (id {mask_id}) in text_a or text_b; "
                          "put a [MASK] where the answer goes.")
  return a, b


def multi_token_rows(examples: Sequence[ClozeExample], *, special_ids, seq_length: int):
  """(rows, example index of each row, number of truncated examples)."""
  special = check_special_ids(special_ids)
  rows, owner, truncated = [], [], 0
  for i, ex in enumerate(examples):
    a, b = _texts(ex, i, special["MASK"])
    if not len(ex.candidates):
      raise EvaluationError(f"example {i} has no candidates to score.")
    cut = False
    for j, cand in enumerate(ex.candidates):
      answer = as_id_list(cand, f"example {i} candidate {j}") + [special["eop"]]
      ta, tb, was_cut = truncate_texts(a, b, len(answer), seq_length, special["MASK"])
      cut |= was_cut
      rows.append(build_row(ta, tb, answer, special=special, mask_id=special["MASK"],
                            max_length=seq_length))
      owner.append(i)
    truncated += int(cut)
  return rows, np.asarray(owner, np.int64), truncated


def multi_token_scores_batch(config, params, examples: Sequence[ClozeExample], *, special_ids,
                             seq_length: int, length_penalty: float = 0.0,
                             batch_size: int = scoring.DEFAULT_BATCH_SIZE, mesh=None,
                             progress=None) -> tuple[list[np.ndarray], int]:
  """(per-example candidate scores, number of truncated examples); rows of all examples share
  batches."""
  rows, owner, truncated = multi_token_rows(examples, special_ids=special_ids,
                                            seq_length=seq_length)
  stats = scoring.score_rows(config, params, rows, eos_id=int(special_ids["eos"]),
                             batch_size=batch_size, mesh=mesh, progress=progress)
  scores = stats["logprob"]
  if length_penalty > 0.0:
    scores = scores / stats["num_targets"].astype(np.float64) ** float(length_penalty)
  return [scores[owner == i] for i in range(len(examples))], truncated


def multi_token_scores(config, params, text_a_ids, text_b_ids, candidates, *, special_ids,
                       seq_length: int, length_penalty: float = 0.0,
                       batch_size: int = scoring.DEFAULT_BATCH_SIZE, mesh=None) -> np.ndarray:
  """Each candidate's summed log-probability (with its [eop]) of filling the last [MASK];
  divided by (its number of targets) ** length_penalty when length_penalty > 0."""
  scores, _ = multi_token_scores_batch(
      config, params, [ClozeExample(text_a_ids, text_b_ids, list(candidates))],
      special_ids=special_ids, seq_length=seq_length, length_penalty=length_penalty,
      batch_size=batch_size, mesh=mesh)
  return scores[0]


def single_token_rows(examples: Sequence[ClozeExample], *, special_ids, seq_length: int):
  """(rows, label ids [N, K], number of truncated examples)."""
  special = check_special_ids(special_ids)
  rows, labels, truncated = [], [], 0
  width = None
  for i, ex in enumerate(examples):
    a, b = _texts(ex, i, special["MASK"])
    label_ids = as_id_list(ex.candidates, f"example {i} label_ids")
    if not label_ids:
      raise EvaluationError(f"example {i} has no label ids to score.")
    if width is not None and len(label_ids) != width:
      raise EvaluationError("single-token examples scored together need the same number of "
                            f"labels; example {i} has {len(label_ids)}, earlier ones {width}.")
    width = len(label_ids)
    ta, tb, cut = truncate_texts(a, b, 1, seq_length, special["MASK"])
    truncated += int(cut)
    rows.append(build_row(ta, tb, None, special=special, mask_id=special["MASK"],
                          max_length=seq_length))
    labels.append(label_ids)
  return rows, np.asarray(labels, np.int64).reshape(len(rows), -1), truncated


def single_token_logits_batch(config, params, examples: Sequence[ClozeExample], *, special_ids,
                              seq_length: int, batch_size: int = scoring.DEFAULT_BATCH_SIZE,
                              mesh=None, progress=None) -> tuple[np.ndarray, int]:
  """([N, K] logits at each example's [sop] slot for its label ids, number truncated)."""
  rows, labels, truncated = single_token_rows(examples, special_ids=special_ids,
                                              seq_length=seq_length)
  stats = scoring.score_rows(config, params, rows, eos_id=int(special_ids["eos"]),
                             gather_ids=labels, batch_size=batch_size, mesh=mesh,
                             progress=progress)
  return stats["gathered"], truncated


def single_token_logits(config, params, text_a_ids, text_b_ids, label_ids, *, special_ids,
                        seq_length: int, batch_size: int = scoring.DEFAULT_BATCH_SIZE,
                        mesh=None) -> np.ndarray:
  """The raw logits (no softmax) at the [sop] slot after `[CLS] a b [eos]`, at `label_ids`."""
  logits, _ = single_token_logits_batch(
      config, params, [ClozeExample(text_a_ids, text_b_ids, list(label_ids))],
      special_ids=special_ids, seq_length=seq_length, batch_size=batch_size, mesh=mesh)
  return logits[0]


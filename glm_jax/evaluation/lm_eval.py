"""Language-model evaluation as the original GLM does it: LAMBADA accuracy and sliding-window NLL.

`lambada_correct` uses the rows of THUDM/GLM `tasks/language_model/dataset.LambadaDataset` (block
LM): `[CLS] context [MASK] [eos] [sop] answer` with the context cut on the left to fit, and the
original's `accuracy` metric (teacher-forced argmax equals the answer at every answer slot).
`windowed_nll` uses the windows of `LMDataset`: the first window predicts all but the document's
first token from `[CLS] t0 [MASK]`; window k > 0 starts at `k * overlap`, reads
`seq_length - 1 - overlap` tokens as context and predicts the next `overlap` ones, so the predicted
tokens tile the document minus its first token.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from glm_jax.evaluation import scoring
from glm_jax.evaluation.eval_rows import (EvaluationError, Row, as_id_list, build_row,
                                          check_special_ids)

MASK_TOKENS = ("MASK", "gMASK")


def _mask_id(special_ids, mask_token: str) -> tuple[dict, int]:
  if mask_token not in MASK_TOKENS:
    raise EvaluationError(f"mask_token={mask_token!r} is not one of {MASK_TOKENS} ([gMASK] for "
                          "models trained with task masks, e.g. GLM-10B; [MASK] otherwise).")
  special = check_special_ids(special_ids, extra=(mask_token,))
  return special, special[mask_token]


def lambada_rows(examples: Sequence, *, special_ids, seq_length: int, mask_token: str = "MASK",
                 unidirectional: bool = False) -> tuple[list[Row], int]:
  """(one row per (context_ids, answer_ids) example, number of left-truncated examples)."""
  special, mask_id = _mask_id(special_ids, mask_token)
  rows, truncated = [], 0
  for i, example in enumerate(examples):
    try:
      context, answer = example
    except (TypeError, ValueError) as e:
      raise EvaluationError(f"example {i} must be a (context_ids, answer_ids) pair.") from e
    context = as_id_list(context, f"example {i} context_ids")
    answer = as_id_list(answer, f"example {i} answer_ids")
    if not answer:
      raise EvaluationError(f"example {i} has an empty answer; LAMBADA scores the last word.")
    if unidirectional:
      if not context:
        raise EvaluationError(f"example {i} has an empty context; the unidirectional layout "
                              "needs its first token.")
      prompt, predicted = context[:1] + [mask_id], context[1:] + answer
    else:
      prompt, predicted = context + [mask_id], answer
    shift = len(prompt) + len(predicted) + 2 - seq_length
    if shift > 0:
      if shift >= len(prompt):
        raise EvaluationError(
            f"example {i}: {len(predicted)} tokens to predict do not fit seq_length={seq_length}"
            + (" in the unidirectional layout (it keeps the whole context in Part B)"
               if unidirectional else "") + "; raise seq_length.")
      prompt = prompt[shift:]
      truncated += 1
    row = build_row(prompt, None, predicted, special=special, mask_id=mask_id,
                    max_length=seq_length)
    if unidirectional:  # only the answer's slots count, as in the original
      keep = len(row.loss_mask) - len(answer)
      row = dataclasses.replace(row, loss_mask=(0,) * keep + row.loss_mask[keep:])
    rows.append(row)
  return rows, truncated


def lambada_correct(config, params, examples, *, special_ids, seq_length: int,
                    mask_token: str = "MASK", unidirectional: bool = False,
                    batch_size: int = scoring.DEFAULT_BATCH_SIZE, mesh=None,
                    progress=None) -> np.ndarray:
  """Per example: does the model's teacher-forced argmax give the whole answer?

  unidirectional=True is the original's `--unidirectional` variant: Part A is `[CLS] t0 [MASK]
  [eos]` and the rest of the context is read left to right in Part B before the answer.
  """
  rows, _ = lambada_rows(examples, special_ids=special_ids, seq_length=seq_length,
                         mask_token=mask_token, unidirectional=unidirectional)
  stats = scoring.score_rows(config, params, rows, eos_id=int(special_ids["eos"]),
                             batch_size=batch_size, mesh=mesh, progress=progress)
  return stats["correct"]


def num_windows(num_tokens: int, seq_length: int, overlap: int) -> int:
  """How many windows `LMDataset` cuts a document of num_tokens into."""
  return max(math.ceil(max(num_tokens - (seq_length - 1), 0) / overlap) + 1, 1)


def window_rows(doc_ids, *, special_ids, seq_length: int, overlap: int,
                mask_token: str = "MASK") -> list[Row]:
  """The rows of `LMDataset(block_lm=True)` for one document (see the module docstring)."""
  special, mask_id = _mask_id(special_ids, mask_token)
  doc = as_id_list(doc_ids, "doc_ids")
  window = int(seq_length) - 1
  if window < 1:
    raise EvaluationError(f"seq_length must be at least 2, got {seq_length!r}.")
  if not isinstance(overlap, (int, np.integer)) or not 1 <= overlap <= window:
    raise EvaluationError(f"overlap must be an integer in [1, seq_length - 1 = {window}] (the new "
                          f"tokens each later window predicts), got {overlap!r}.")
  rows = []
  for k in range(num_windows(len(doc), seq_length, overlap)):
    tokens = doc[k * overlap:k * overlap + window]
    context_length = 1 if k == 0 else window - overlap
    prompt, text = tokens[:context_length] + [mask_id], tokens[context_length:]
    # Part A holds no [eos]; the table size passed to build_input_from_ids never cuts Part A.
    rows.append(build_row(prompt, None, text, special=special, mask_id=mask_id,
                          max_length=seq_length + 2, add_eos=False))
  return rows


def windowed_nll(config, params, doc_ids, *, special_ids, seq_length: int, overlap: int,
                 mask_token: str = "MASK", batch_size: int = scoring.DEFAULT_BATCH_SIZE,
                 mesh=None, progress=None) -> tuple[float, int]:
  """(summed cross-entropy in nats, number of predicted tokens) over the document's windows."""
  rows = window_rows(doc_ids, special_ids=special_ids, seq_length=seq_length, overlap=overlap,
                     mask_token=mask_token)
  stats = scoring.score_rows(config, params, rows, eos_id=int(special_ids["eos"]),
                             batch_size=batch_size, mesh=mesh, progress=progress)
  return float(-np.sum(stats["logprob"])), int(np.sum(stats["num_targets"]))


def perplexities(nll: float, num_tokens: int, num_tokenized: int, num_original_words: int) -> dict:
  """Token perplexity and the paper's adjusted (per original word) perplexity, as the original's
  `evaluate_and_print_results` computes them (exponents capped at 20)."""
  avg = nll / max(num_tokenized - 1, 1)
  ratio = (num_tokenized - 1) / max(num_original_words - 1, 1)
  return {"avg_nll": avg, "ppl": math.exp(min(20.0, avg)),
          "adjusted_ppl": math.exp(min(20.0, avg * ratio)), "token_ratio": ratio,
          "predicted_tokens": int(num_tokens)}

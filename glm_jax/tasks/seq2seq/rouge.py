"""ROUGE-1/2/L F1 as the original GLM reports it (`rouge_metric`, tasks/seq2seq/evaluate.py).

Google's `rouge-score` with stemming; ROUGE-L is rougeLsum over sentences split on newlines.
Before scoring, each prediction is split on [SEP]; each sentence and reference sentence gets the
dataset's tokenization fix; sentences of 4 words or fewer are dropped, and a sentence sharing more
than 70% of its words with earlier ones is dropped (the original's CNN/DM de-duplication, which it
applies to every task). The dataset is 'cnn_dm' for BERT tokenizers, 'gigaword' for Gigaword
otherwise, else 'cnn_dm_org' (no tokenization fix), as the original's finetune.py picks it.
"""

from __future__ import annotations

import string
from typing import Sequence

from rouge_score import rouge_scorer

METRICS = {"rouge-1": "rouge1", "rouge-2": "rouge2", "rouge-l": "rougeLsum"}
DUPLICATE_RATE = 0.7


def metric_dataset(task: str, tokenizer_kind: str) -> str:
  """Which tokenization fix the original applies for this task and tokenizer."""
  if str(tokenizer_kind).startswith("bert"):
    return "cnn_dm"
  return "gigaword" if task == "gigaword" else "cnn_dm_org"


def _is_number(word: str) -> bool:
  return all(ch.isdigit() or ch == "," for ch in word)


def _join_quote(token, state, out):
  """`"` alternates `` / '' (`'` alternates ` / ')."""
  opened = state[token]
  out.append({"\"": ("''", "``"), "'": ("'", "`")}[token][0 if opened else 1])
  state[token] = not opened


def fix_tokenization(text: str, dataset: str) -> str:
  """The original's PTB-style re-tokenization of space-split text (CNN/DM); Gigaword only maps
  [UNK] -> UNK; cnn_dm_org leaves text alone."""
  if dataset == "cnn_dm_org":
    return text
  if dataset == "gigaword":
    return text.replace("[UNK]", "UNK")
  words = text.split()
  out: list[str] = []
  quotes = {"\"": False, "'": False}
  i, prev_dash = 0, False
  while i < len(words):
    tok, dash_now = words[i], False
    nxt = words[i + 1] if i + 1 < len(words) else None
    if tok == "\"":
      _join_quote(tok, quotes, out)
      i += 1
    elif tok == "'" and out and out[-1].endswith("n") and nxt == "t":
      out[-1] = out[-1][:-1]
      out.append("n't")
      i += 2
    elif tok == "'" and nxt in ("s", "d", "ll"):
      out.append("'" + nxt)
      i += 2
    elif tok == "'":
      _join_quote(tok, quotes, out)
      i += 1
    elif tok == "." and i < len(words) - 2 and nxt == "." and words[i + 2] == ".":
      out.append("...")
      i += 3
    elif tok == "," and out and _is_number(out[-1]) and nxt is not None and _is_number(nxt):
      out[-1] += "," + nxt
      i += 2
    elif tok == "." and out and out[-1].isdigit() and nxt is not None and nxt.isdigit():
      out[-1] += "." + nxt
      i += 2
    elif (tok == "." and out and len(out[-1]) == 1 and out[-1].isalpha() and i < len(words) - 2
          and len(nxt) == 1 and nxt.isalpha() and words[i + 2] == "."):
      end = i + 3      # U . N . -> U.N.
      while end + 2 < len(words) and len(words[end + 1]) == 1 and words[end + 1].isalpha() \
          and words[end + 2] == ".":
        end += 2
      out[-1] += "".join(words[i:end])
      i = end
    elif tok == "-":
      if nxt == "-":
        out.append("--")
        i += 2
      elif nxt is None or i == 0:
        out.append("-")
        i += 1
      elif out[-1] not in string.punctuation and nxt[0] not in string.punctuation:
        out[-1] += "-"
        i += 1
        dash_now = True
      else:
        out.append("-")
        i += 1
    elif prev_dash and out and tok[0] not in string.punctuation:
      out[-1] += tok
      i += 1
    else:
      out.append(tok)
      i += 1
    prev_dash = dash_now
  return " ".join(out)


def _word_counts(words):
  counts = {}
  for w in words:
    counts[w] = counts.get(w, 0) + 1
  return counts


def word_f1(text_a: str, text_b: str) -> float:
  """Lower-cased word-overlap F1 (with the original's 1e-5 in the denominator)."""
  a, b = text_a.lower().split(), text_b.lower().split()
  if not a or not b:
    return 1 if len(a) == len(b) else 0
  ca, cb = _word_counts(a), _word_counts(b)
  match = sum(min(n, cb[w]) for w, n in ca.items() if w in cb)
  p, r = match / len(a), match / len(b)
  return 2.0 * p * r / (p + r + 1e-5)


def remove_duplicates(sentences: Sequence[str], rate: float) -> list[str]:
  """Drops a sentence when more than `rate` of its distinct words were in earlier sentences."""
  kept, seen = [], set()
  for sentence in sentences:
    words = set(sentence.lower().split())
    if len(words & seen) / len(words) <= rate:
      kept.append(sentence)
    seen |= words
  return kept


def prepare_reference(ref: str, dataset: str) -> str:
  """A reference as the original scores it: one sentence per line, tokenization fixed."""
  return "\n".join(fix_tokenization(s, dataset) for s in ref.strip().split("[SEP]"))


def prepare_prediction(prediction: str, dataset: str, duplicate_rate=DUPLICATE_RATE) -> str:
  """A prediction as the original scores it: sentences fixed, near-duplicate sentences dropped."""
  kept = []
  for sentence in prediction.strip().split("[SEP]"):
    sentence = fix_tokenization(sentence, dataset)
    if any(word_f1(sentence, s) > 1.0 for s in kept) or len(sentence.split()) <= 4:
      continue
    kept.append(sentence)
  if duplicate_rate and duplicate_rate < 1:
    kept = remove_duplicates(kept, duplicate_rate)
  return "\n".join(kept)


def rouge_scores(predictions: Sequence[str], references: Sequence[str], dataset: str = "cnn_dm",
                 metrics: Sequence[str] = tuple(METRICS)) -> dict[str, float]:
  """Mean F1 per metric ('rouge-1', 'rouge-2', 'rouge-l') over (prediction, reference) pairs;
  references are the examples' `ref` (decode(encode(target)))."""
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions for {len(references)} references; "
                     "give one prediction per example.")
  if not predictions:
    raise ValueError("no predictions to score.")
  refs = [prepare_reference(r, dataset) for r in references]
  preds = [prepare_prediction(p, dataset) for p in predictions]
  scorer = rouge_scorer.RougeScorer([METRICS[m] for m in metrics], use_stemmer=True)
  totals = dict.fromkeys(metrics, 0.0)
  for pred, ref in zip(preds, refs):
    score = scorer.score(pred, ref)
    for m in metrics:
      totals[m] += score[METRICS[m]].fmeasure
  return {m: totals[m] / len(preds) for m in metrics}

"""Evaluation files -> token ids: LAMBADA JSONL, raw WikiText, cloze JSONL; the WikiText
detokenizer.

Each reader follows the original GLM (tasks/language_model/dataset.py): LAMBADA's last word is
split off as in its strict mode and encoded with a leading space; WikiText is read as ONE document,
detokenized, and its original word count is kept for the adjusted perplexity. Files are read
through `etils.epath` (local paths and gs:// alike); a line that does not parse is reported with
its file and line number.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

from etils import epath

from glm_jax.evaluation.cloze import ClozeExample
from glm_jax.evaluation.eval_rows import EvaluationError
from glm_jax.storage import paths

# The WikiText detokenizer of the original (tasks/language_model/detokenizer.py), as data: plain
# replacements and regular expressions applied in this order.
_WIKITEXT_STEPS: tuple[tuple[str, str, str], ...] = (
    ("str", "s '", "s'"),
    ("re", r"/' [0-9]/", r"/'[0-9]/"),
    ("str", " @-@ ", "-"),
    ("str", " @,@ ", ","),
    ("str", " @.@ ", "."),
    *(("str", f" {p} ", f"{p} ") for p in ":;.!?,"),
    *(("re", rf"\{o}\s*([^\{c}]*?)\s*\{c}", rf"{o}\1{c}") for o, c in ("()", "[]", "{}")),
    ("re", r"\"\s*([^\"]*?)\s*\"", '"\\1"'),
    ("re", r"'\s*([^']*?)\s*'", "'\\1'"),
    ("str", "= = = =", "===="),
    ("str", "= = =", "==="),
    ("str", "= =", "=="),
    ("str", " \u00b0 ", "\u00b0"),
    ("str", " \n", "\n"),
    ("str", "\n ", "\n"),
    ("str", " N ", " 1 "),
    ("str", " 's", "'s"),
)


def wikitext_detokenize(text: str) -> str:
  """Undoes WikiText's tokenization (` @-@ `, spaced punctuation and brackets, `= = headings`)
  exactly as the original GLM evaluation does before encoding."""
  for kind, old, new in _WIKITEXT_STEPS:
    text = text.replace(old, new) if kind == "str" else re.sub(old, new, text)
  return text


def _read_text(path) -> str:
  target = epath.Path(path)
  if not target.exists():
    raise FileNotFoundError(f"Evaluation data {path} does not exist; pass --data=FILE.")
  try:
    return target.read_bytes().decode("utf-8")
  except UnicodeDecodeError as e:
    raise EvaluationError(f"{path} is not UTF-8 text ({e}).") from None


def _jsonl(path, required: tuple[str, ...]):
  """(line number, record) for each non-blank line; one clear error for a bad line."""
  for number, record in paths.json_lines(_read_text(path), path, EvaluationError,
                                         "each line must be one JSON object."):
    missing = [k for k in required if not isinstance(record, dict) or k not in record]
    if missing:
      raise EvaluationError(f"{path}:{number}: the record lacks {missing}; each line needs "
                            f"{list(required)}.")
    yield number, record


def lambada_split(text: str) -> tuple[str, str]:
  """(context, last word) as the original's strict mode splits them: the last whitespace-separated
  word, found from the right; the context is everything before it, stripped."""
  words = text.split()
  if not words:
    raise EvaluationError("empty LAMBADA text")
  last = words[-1]
  return text[:text.rfind(last)].strip(), last


def read_lambada(path, encode: Callable[[str], list[int]]) -> list[tuple[list[int], list[int]]]:
  """(context ids, answer ids) per line of a LAMBADA JSONL file (`{"text": ...}` per line)."""
  examples = []
  for number, record in _jsonl(path, ("text",)):
    text = record["text"]
    if not isinstance(text, str) or not text.split():
      raise EvaluationError(f"{path}:{number}: \"text\" must be a non-empty string.")
    context, last = lambada_split(text)
    answer = encode(" " + last)
    if not answer:
      raise EvaluationError(f"{path}:{number}: the last word {last!r} encodes to no tokens.")
    examples.append((encode(context), answer))
  if not examples:
    raise EvaluationError(f"{path} holds no examples.")
  return examples


@dataclasses.dataclass(frozen=True)
class WikiText:
  """A WikiText test file as one token stream, with the word count the adjusted perplexity needs."""
  ids: list[int]            # the detokenized file, encoded as one document
  num_original_words: int   # words of the raw file (split on single spaces), for adjusted ppl


def read_wikitext(path, encode: Callable[[str], list[int]]) -> WikiText:
  """A raw `wiki.test.tokens` file as one detokenized, encoded document."""
  raw = _read_text(path)
  if not raw.strip():
    raise EvaluationError(f"{path} is empty; pass the raw wiki.test.tokens file.")
  num_words = len(raw.strip().split(" "))
  return WikiText(list(encode(wikitext_detokenize(raw))), num_words)


def text_encoder(tokenizer) -> Callable[[str], list[int]]:
  """`encode` that turns a written `[MASK]` into the [MASK] id whatever the tokenizer (released
  tokenizers cut command tokens out themselves; others get the text split around them)."""
  mask_id = int(tokenizer.special_ids["MASK"])
  if list(tokenizer.encode("[MASK]")) == [mask_id]:
    return lambda text: [int(t) for t in tokenizer.encode(text)]

  def encode(text: str) -> list[int]:
    ids = []
    for i, piece in enumerate(text.split("[MASK]")):
      if i:
        ids.append(mask_id)
      if piece:
        ids.extend(int(t) for t in tokenizer.encode(piece))
    return ids
  return encode


@dataclasses.dataclass(frozen=True)
class ClozeItem:
  """One multiple-choice example with the index of its right answer."""
  example: ClozeExample
  label: int


def read_cloze(path, encode: Callable[[str], list[int]], mask_id: int) -> list[ClozeItem]:
  """`{"text_a", "text_b", "candidates", "label"}` per line; `[MASK]` marks the blank, `label` is
  the index of the right candidate (or the candidate itself)."""
  items = []
  for number, record in _jsonl(path, ("text_a", "candidates", "label")):
    text_b = record.get("text_b")
    candidates = record["candidates"]
    if not isinstance(candidates, list) or not candidates or \
        not all(isinstance(c, str) for c in candidates):
      raise EvaluationError(f"{path}:{number}: \"candidates\" must be a non-empty list of strings.")
    label = record["label"]
    if isinstance(label, str) and label in candidates:
      label = candidates.index(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(candidates):
      raise EvaluationError(f"{path}:{number}: \"label\" must be a candidate's index "
                            f"(0..{len(candidates) - 1}) or one of the candidates, got {label!r}.")
    text_a = encode(str(record["text_a"]))
    text_b_ids = encode(str(text_b)) if text_b not in (None, "") else None
    if mask_id not in text_a and mask_id not in (text_b_ids or []):
      raise EvaluationError(f"{path}:{number}: no [MASK] in text_a or text_b; write [MASK] where "
                            "the answer goes.")
    if text_a.count(mask_id) + (text_b_ids or []).count(mask_id) > 1:
      raise EvaluationError(f"{path}:{number}: more than one [MASK] in text_a / text_b; a cloze "
                            "example has one blank: keep one [MASK] (split the example).")
    cand_ids = [encode(c) for c in candidates]
    empty = [c for c, ids in zip(candidates, cand_ids) if not ids]
    if empty:
      raise EvaluationError(f"{path}:{number}: candidates {empty} encode to no tokens.")
    items.append(ClozeItem(ClozeExample(text_a, text_b_ids, cand_ids), label))
  if not items:
    raise EvaluationError(f"{path} holds no examples.")
  return items

"""Patterns and verbalizers of the original GLM (`tasks/superglue/pvp.py`): an `Example` -> text
parts with one [MASK] -> token rows in the original layout, truncated as `PVP.truncate` does.

A pattern is two lists of parts (text_a, text_b); a part is a string (kept whole), a
`shortenable(string)` (may lose tokens from its end when the row is too long) or `MASK`. Each
string part is tokenized on its own, as the original does. Single-token tasks (RTE, CB, BoolQ,
WiC, MultiRC) give one row scored at the `[sop]` slot against the verbalizer ids; multi-token
tasks (COPA, WSC, ReCoRD) give one row per answer (the answer's tokens + `[eop]` as targets).
"""

from __future__ import annotations

import dataclasses
import string
from typing import Callable, Sequence

from glm_jax.evaluation.eval_rows import Row, build_row
from glm_jax.tasks.superglue.examples import Example, TaskDataError

MASK = object()  # the blank the model fills


@dataclasses.dataclass(frozen=True)
class Shortenable:
  """Text the encoder may cut from the end when the pattern is too long."""
  text: str


def remove_final_punc(text):
  """Strips trailing ASCII punctuation (keeps a `Shortenable` shortenable)."""
  if isinstance(text, Shortenable):
    return Shortenable(text.text.rstrip(string.punctuation))
  return text.rstrip(string.punctuation)


def lowercase_first(text: str) -> str:
  """The text with its first letter lowercased (a sentence continued mid-pattern)."""
  return text[0].lower() + text[1:]


# ----------------------------------------------------------------------------- the patterns
# Each returns (parts_a, parts_b); the original's prompt placeholders (None) are left out.

def copa_parts(ex: Example, pattern_id: int):
  """The pieces of a COPA pattern (premise, "because"/"so", the blank)."""
  premise = remove_final_punc(Shortenable(" " + ex.text_a))
  choice1 = remove_final_punc(lowercase_first(ex.meta["choice1"]))
  choice2 = remove_final_punc(lowercase_first(ex.meta["choice2"]))
  joiner = " because" if ex.meta["question"] == "cause" else ", so"
  if pattern_id == 0:
    return ['"', choice1, '" or "', choice2, '"?', premise, joiner, MASK, "."], []
  if pattern_id == 1:
    return [choice1, " or", " " + choice2, "?", premise, joiner, MASK, "."], []
  raise NotImplementedError(pattern_id)


def copa_answers(ex: Example, pattern_id: int) -> list[str]:
  """The two COPA choices as the candidate texts to score."""
  del pattern_id
  return [" " + remove_final_punc(lowercase_first(ex.meta[k])) for k in ("choice1", "choice2")]


def wsc_parts(ex: Example, pattern_id: int):
  """The pieces of a WSC pattern (the text, the pronoun, the blank for its referent)."""
  pronoun = ex.meta["span2_text"]
  words = ex.text_a.split()
  index = ex.meta["span2_index"]
  words[index] = "*" + words[index] + "*"
  text = Shortenable(" ".join(words))
  if pattern_id == 0:
    return [text, " The pronoun '*" + pronoun + "*' refers to", MASK, "."], []
  if pattern_id == 1:
    return [text, " In the previous sentence, the pronoun '*" + pronoun + "*' refers to", MASK,
            "."], []
  if pattern_id == 2:
    return [text, " Question: In the passage above, what does the pronoun '*" + pronoun
            + "*' refer to?", " Answer:", MASK, "."], []
  raise NotImplementedError(pattern_id)


def wsc_answers(ex: Example, pattern_id: int) -> list[str]:
  """The referent first, then the candidate noun phrases (WSC-negative files carry them)."""
  del pattern_id
  return [" " + ex.meta["span1_text"]] + [" " + c for c in ex.meta.get("candidates", [])]


def record_parts(ex: Example, pattern_id: int):
  """The pieces of the ReCoRD pattern (passage, query with the blank)."""
  if pattern_id != 0:
    raise NotImplementedError(pattern_id)
  if ex.text_b.count("@placeholder") != 1:
    raise TaskDataError(f"{ex.guid}: the query must hold exactly one @placeholder.")
  left, right = ex.text_b.split("@placeholder")
  return [Shortenable(ex.text_a), " " + left.rstrip(), MASK, right], []


def record_answers(ex: Example, pattern_id: int) -> list[str]:
  """The candidate entities of a ReCoRD example, to score in the blank."""
  del pattern_id
  return [" " + c for c in ex.meta["candidates"]]


def rte_parts(ex: Example, pattern_id: int):
  """RTE and CB patterns 0-3: the hypothesis first, then [MASK] and the premise."""
  premise, hypothesis = ex.text_a, ex.text_b.rstrip(string.punctuation)
  if pattern_id == 0:
    return ['"', Shortenable(hypothesis), '" ?'], [MASK, ",", ' "', Shortenable(premise), '"']
  if pattern_id == 1:
    return [Shortenable(hypothesis), "?"], [MASK, ",", Shortenable(" " + premise)]
  if pattern_id == 2:
    return ['"', Shortenable(hypothesis), '" ?'], [MASK, '. "', Shortenable(premise), '"']
  if pattern_id == 3:
    return [Shortenable(hypothesis), "?"], [MASK, ".", Shortenable(" " + premise)]
  if pattern_id == 4:
    return [Shortenable(premise), " question:", Shortenable(" " + hypothesis),
            " True or False?", " answer:", MASK], []
  raise NotImplementedError(pattern_id)


def cb_parts(ex: Example, pattern_id: int):
  """The pieces of a CB pattern for `pattern_id`."""
  if pattern_id == 4:
    return [Shortenable(ex.text_a), " question:", Shortenable(" " + ex.text_b),
            " true, false or neither?", " answer:", MASK], []
  return rte_parts(ex, pattern_id)


def boolq_parts(ex: Example, pattern_id: int):
  """The pieces of a BoolQ pattern for `pattern_id`."""
  passage, question = ex.text_a, ex.text_b
  if pattern_id < 2:
    return [Shortenable(passage), " Question:", Shortenable(" " + question), "? Answer:", MASK,
            "."], []
  if pattern_id < 4:
    return [Shortenable(passage), " Based on the previous passage,",
            Shortenable(" " + question), "?", MASK, "."], []
  if pattern_id < 6:
    return ["Based on the following passage", Shortenable(" " + question), "?", MASK, ".",
            Shortenable(" " + passage)], []
  raise NotImplementedError(pattern_id)


def multirc_parts(ex: Example, pattern_id: int):
  """The pieces of a MultiRC pattern (passage, question, answer, the blank)."""
  passage = remove_final_punc(Shortenable(ex.text_a.rstrip()))
  question = remove_final_punc(ex.text_b.rstrip())
  answer = ex.meta["answer"]
  if pattern_id == 0:
    return [passage, ".", " Question:", " " + question + "?", " Is it", " " + answer, "?", MASK,
            "."], []
  if pattern_id == 1:
    return [passage, ".", " Question:", " " + question, "?", ' Is the correct answer "', answer,
            '"?', MASK, "."], []
  if pattern_id == 2:
    return [passage, ". Based on the previous passage,", " " + question, "?", ' Is "', answer,
            '" a correct answer?', MASK, "."], []
  if pattern_id == 3:
    return [passage, " " + question, "- [", MASK, "]", answer], []
  if pattern_id == 4:
    return [passage, ".", " Question:", " " + question, "?", " " + answer, "?", MASK, "."], []
  raise NotImplementedError(pattern_id)


def wic_parts(ex: Example, pattern_id: int):
  """The pieces of a WiC pattern (two sentences, the word, the blank)."""
  word = ex.meta["word"]
  if pattern_id == 0:
    return [Shortenable('"' + ex.text_a + '" / "' + ex.text_b + '"'),
            ' Similar sense of "' + word + '"?', MASK, "."], []
  if pattern_id == 1:
    return [Shortenable(ex.text_a), Shortenable(" " + ex.text_b),
            " Does " + word + " have the same meaning in both sentences?", MASK], []
  if pattern_id == 2:
    return [word, " .", ' Sense (1) (a) "', Shortenable(ex.text_a), '"', " (", MASK, ') "',
            ex.text_b, '"'], []
  raise NotImplementedError(pattern_id)


# --------------------------------------------------------------------------- verbalizers

def rte_verbalizer(label, pattern_id: int) -> str:
  """The word that stands for an RTE label in the blank."""
  if pattern_id == 4:
    return " true" if label == "entailment" else " false"
  return {"not_entailment": " No", "entailment": " Yes"}[label]


def cb_verbalizer(label, pattern_id: int) -> str:
  """The word that stands for a CB label in the blank."""
  if pattern_id == 4:
    return {"entailment": " true", "contradiction": " false"}.get(label, " neither")
  return {"contradiction": " No", "entailment": " Yes", "neutral": " Maybe"}[label]


def boolq_verbalizer(label, pattern_id: int) -> str:
  """The word that stands for a BoolQ label in the blank."""
  if pattern_id in (0, 2, 4):
    return {"false": " No", "true": " Yes"}[label]
  return {"false": " false", "true": " true"}[label]


def multirc_verbalizer(label, pattern_id: int) -> str:
  """The word that stands for a MultiRC label in the blank."""
  if pattern_id == 3:
    return " False" if label == 0 else " True"
  return {0: " No", 1: " Yes"}[label]


def wic_verbalizer(label, pattern_id: int) -> str:
  """The word that stands for a WiC label in the blank."""
  if pattern_id == 2:
    return {"false": "2", "true": "b"}[label]
  return {"false": " No", "true": " Yes"}[label]


# ------------------------------------------------------------------------------- encoding

@dataclasses.dataclass
class Encoded:
  """An example's model rows: one per choice (multi-token) or one scored at [sop] against
  `label_ids` (single-token); `label` is the index of the right choice."""
  rows: list[Row]
  label: int
  label_ids: list[int] | None
  truncated_rows: int  # rows cut to fit seq_length (the original's `num_truncated` count)

  @property
  def truncated(self) -> bool:
    """Whether any row had to be cut to fit seq_length (reported, not an error)."""
    return self.truncated_rows > 0


def _seq_length(parts, only_shortenable=False) -> int:
  return sum(len(ids) for ids, short in parts or [] if short or not only_shortenable)


def _remove_last(parts, where: str) -> None:
  candidates = [i for i, (ids, short) in enumerate(parts or []) if short and ids]
  if not candidates:
    raise TaskDataError(f"{where}: too long for seq_length and nothing left to shorten (the "
                        "fixed parts of the pattern and the answer alone overflow); raise "
                        "--config.seq_length.")
  i = candidates[-1]
  parts[i] = (parts[i][0][:-1], True)


def truncate(parts_a, parts_b, answer_length: int, max_length: int, where: str = "") -> bool:
  """`PVP.truncate`: drop tokens one at a time from the end of the last shortenable part of
  whichever side holds more shortenable tokens (text_b on ties). `answer_length` counts the
  answer with [eop]; 0 means a single-token row (its lone [sop] slot)."""
  total = _seq_length(parts_a) + _seq_length(parts_b) + answer_length
  total += 2 + (0 if answer_length else 1)  # [CLS], [eos], and [sop] without an answer
  excess = total - max_length
  if excess <= 0:
    return False
  for _ in range(excess):
    if _seq_length(parts_a, True) > _seq_length(parts_b, True):
      _remove_last(parts_a, where)
    else:
      _remove_last(parts_b, where)
  return True


def _flat(parts) -> list[int] | None:
  return None if parts is None else [t for ids, _ in parts for t in ids]


@dataclasses.dataclass(frozen=True)
class PatternSpec:
  """A task's patterns: parts builder, verbalizer (single-token) or answers (multi-token)."""
  parts: Callable
  patterns: Sequence[int]
  verbalizer: Callable | None = None
  answers: Callable | None = None

  @property
  def multi_token(self) -> bool:
    """Whether candidates are free texts (scored token by token) rather than label words."""
    return self.answers is not None


PATTERNS = {
    "copa": PatternSpec(copa_parts, (0, 1), answers=copa_answers),
    "wsc": PatternSpec(wsc_parts, (0, 1, 2), answers=wsc_answers),
    "record": PatternSpec(record_parts, (0,), answers=record_answers),
    "rte": PatternSpec(rte_parts, (0, 1, 2, 3, 4), verbalizer=rte_verbalizer),
    "cb": PatternSpec(cb_parts, (0, 1, 2, 3, 4), verbalizer=cb_verbalizer),
    "boolq": PatternSpec(boolq_parts, (0, 1, 2, 3, 4, 5), verbalizer=boolq_verbalizer),
    "multirc": PatternSpec(multirc_parts, (0, 1, 2, 3, 4), verbalizer=multirc_verbalizer),
    "wic": PatternSpec(wic_parts, (0, 1, 2), verbalizer=wic_verbalizer),
}


class PatternEncoder:
  """Encodes a task's examples with one pattern and a tokenizer (`encode`, `special_ids`)."""

  def __init__(self, task: str, labels: Sequence, tokenizer, seq_length: int, pattern_id: int):
    self.spec = PATTERNS[task]
    if pattern_id not in self.spec.patterns:
      raise TaskDataError(f"{task} has no pattern {pattern_id}; its patterns are "
                          f"{list(self.spec.patterns)}.")
    self.task, self.labels, self.tokenizer = task, list(labels), tokenizer
    self.seq_length, self.pattern_id = int(seq_length), int(pattern_id)
    self.special = {k: int(v) for k, v in tokenizer.special_ids.items()}
    self.mask_id = self.special["MASK"]
    self.label_ids = None if self.spec.multi_token else [
        self._single_token(self.spec.verbalizer(label, pattern_id)) for label in self.labels]

  def _token(self, word: str) -> int | None:
    ids = list(self.tokenizer.encode(word))
    return ids[0] if len(ids) == 1 and ids[0] not in self.special.values() else None

  def _single_token(self, word: str) -> int:
    token = self._token(word)
    if token is None:
      ids = list(self.tokenizer.encode(word))
      fitting = [p for p in self.spec.patterns
                 if all(self._token(self.spec.verbalizer(l, p)) is not None for l in self.labels)]
      fix = (f"pass --config.pattern_id={fitting[0]} (patterns whose verbalizers are single "
             f"tokens here: {fitting})" if fitting else "no pattern of this task fits")
      raise TaskDataError(f"verbalizer {word!r} of {self.task} pattern {self.pattern_id} is "
                          f"{len(ids)} tokens {ids} with this tokenizer, not one ordinary token; "
                          f"{fix}, or use the tokenizer of the released model.")
    return token

  def _encode_parts(self, parts):
    out = []
    for part in parts:
      if part is MASK:
        out.append(([self.mask_id], False))
      elif isinstance(part, Shortenable):
        out.append((list(self.tokenizer.encode(part.text)), True))
      else:
        out.append((list(self.tokenizer.encode(part)), False))
    return out

  def label_index(self, ex: Example) -> int:
    """The example's label as an index into the task's labels (0 when unlabeled)."""
    return 0 if ex.label is None else self.labels.index(ex.label)

  def encode(self, ex: Example, for_training: bool = False) -> Encoded:
    """The original `PVP.encode(example)` rows (unpadded). WSC trains on its referent (choice
    0) whatever the label says, as the original's `mix` loss does (`for_training`)."""
    raw_a, raw_b = self.spec.parts(ex, self.pattern_id)
    parts_a = self._encode_parts(raw_a)
    parts_b = self._encode_parts(raw_b) if raw_b else None
    where = f"example {ex.guid}" + (f" (line {ex.line})" if ex.line else "")
    if not self.spec.multi_token:
      truncated = truncate(parts_a, parts_b, 0, self.seq_length, where)
      row = build_row(_flat(parts_a), _flat(parts_b), None, special=self.special,
                      mask_id=self.mask_id, max_length=self.seq_length)
      return Encoded([row], self.label_index(ex), list(self.label_ids), int(truncated))
    rows, truncated = [], 0
    for answer in self.spec.answers(ex, self.pattern_id):
      answer_ids = list(self.tokenizer.encode(answer)) + [self.special["eop"]]
      a = [(list(ids), s) for ids, s in parts_a]
      b = None if parts_b is None else [(list(ids), s) for ids, s in parts_b]
      truncated += truncate(a, b, len(answer_ids), self.seq_length, where)
      rows.append(build_row(_flat(a), _flat(b), answer_ids, special=self.special,
                            mask_id=self.mask_id, max_length=self.seq_length))
    label = 0 if (for_training and self.task == "wsc") else self.label_index(ex)
    return Encoded(rows, label, None, truncated)


def padded(row: Row, seq_length: int, eos_id: int) -> dict[str, list[int]]:
  """The row padded to seq_length like the original (eos ids, zero positions/targets/masks)."""
  pad = seq_length - len(row)
  return {"ids": list(row.ids) + [eos_id] * pad,
          "positions": list(row.positions) + [0] * pad,
          "block_positions": list(row.block_positions) + [0] * pad,
          "sep": row.sep,
          "targets": list(row.targets) + [0] * pad,
          "loss_mask": list(row.loss_mask) + [0] * pad}

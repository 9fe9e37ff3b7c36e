"""SuperGLUE examples: the official JSONL files (or TFDS `super_glue/*`) -> `Example`s, as the
original GLM's processors (`tasks/superglue/dataset.py`) make them.

Each reader takes parsed records (dicts in the official JSONL layout) and a split name; `train`
splits get the original's augmentations (COPA mirrors, WSC positives with candidate groups of 9,
ReCoRD one example per correct answer with at most 9 shuffled negatives).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any, Callable, Iterable, Sequence

from etils import epath

from glm_jax.storage import paths
from input_pipeline.errors import DataSourceError

SPLIT_FILES = {"train": "train.jsonl", "dev": "val.jsonl", "test": "test.jsonl"}


class TaskDataError(DataSourceError):
  """A task file or record that cannot be used; the message names the file, line and fix."""


@dataclasses.dataclass
class Example:
  """One cloze question before patterns: texts, label (None on test) and task-specific meta."""
  guid: str
  text_a: str
  text_b: str | None = None
  label: Any = None
  idx: Any = -1
  meta: dict = dataclasses.field(default_factory=dict)
  line: int = 0  # 1-based line in the source file (0: not from a file)


def standardize_punctuation(text: str) -> str:
  """Curly quotes and en dashes -> ASCII, as the original's `punctuation_standardization`."""
  for old, new in (("\u201c", '"'), ("\u201d", '"'), ("\u2019", "'"), ("\u2018", "'"),
                   ("\u2013", "-")):
    text = text.replace(old, new)
  return text


def read_jsonl(path) -> list[tuple[int, dict]]:
  """(line number, record) for every non-blank line; one error naming file and line otherwise."""
  path = epath.Path(path)
  if not path.exists():
    raise TaskDataError(f"{path} does not exist; --config.data_dir must be the task's folder "
                        "holding the official train.jsonl / val.jsonl / test.jsonl.")
  records = []
  for number, record in paths.json_lines(path.read_text(encoding="utf-8"), path, TaskDataError,
                                         "each line of a SuperGLUE file is one JSON object."):
    if not isinstance(record, dict):
      raise TaskDataError(f"{path}:{number}: expected a JSON object, got "
                          f"{type(record).__name__}.")
    records.append((number, record))
  return records


def _field(record: dict, key: str, where: str):
  try:
    return record[key]
  except (KeyError, TypeError):
    raise TaskDataError(f"{where}: the record has no {key!r} field; is this the right task's "
                        "file (official SuperGLUE JSONL)?") from None


def _check_label(label, labels: Sequence, where: str):
  if label is not None and label not in labels:
    raise TaskDataError(f"{where}: label {label!r} is not one of the task's labels "
                        f"{list(labels)}; fix the file or pick the right --config.task.")
  return label


def _bool_label(rec, where: str):
  """A True/False label as the original's verbalizer keys 'true'/'false'; None when absent."""
  raw = _check_label(rec.get("label"), (True, False), where)
  return None if raw is None else str(raw).lower()


def _int_idx(idx, fallback: int):
  if isinstance(idx, str):
    try:
      return int(idx)
    except ValueError:
      return fallback
  return idx


def _indexed_records(records, source: str):
  """(line number, record, "file:line" for error messages, the record's `idx`) for each record:
  every reader starts from these, and a record without `idx` is named by file and line."""
  for number, rec in records:
    where = f"{source}:{number}"
    yield number, rec, where, _field(rec, "idx", where)


def _text_pair(split, rec, where, number, first, second, label, idx, meta=None) -> Example:
  """An example of two texts (fields `first`, `second` of `rec`), punctuation standardized."""
  return Example(f"{split}-{idx}", standardize_punctuation(_field(rec, first, where)),
                 standardize_punctuation(_field(rec, second, where)), label, idx,
                 {} if meta is None else meta, line=number)


def rte_examples(records, split: str, labels=("entailment", "not_entailment"), source="",
                 premise="premise", hypothesis="hypothesis") -> list[Example]:
  """RTE (and CB): premise -> text_a, hypothesis -> text_b."""
  out = []
  for line, (number, rec, where, idx) in enumerate(_indexed_records(records, source)):
    idx = _int_idx(idx, line)
    label = _check_label(rec.get("label"), labels, where)
    out.append(_text_pair(split, rec, where, number, premise, hypothesis, label, idx))
  return out


def cb_examples(records, split: str, source="") -> list[Example]:
  """CB records -> examples (RTE's format with three labels)."""
  return rte_examples(records, split, ("entailment", "contradiction", "neutral"), source)


def wic_examples(records, split: str, source="") -> list[Example]:
  """WiC: the two sentences and the word; label true/false as the strings 'true'/'false'."""
  return [_text_pair(split, rec, where, number, "sentence1", "sentence2", _bool_label(rec, where),
                     int(idx), {"word": _field(rec, "word", where)})
          for number, rec, where, idx in _indexed_records(records, source)]


def boolq_examples(records, split: str, source="") -> list[Example]:
  """BoolQ records -> examples (passage, question, True/False label)."""
  return [_text_pair(split, rec, where, number, "passage", "question", _bool_label(rec, where), idx)
          for number, rec, where, idx in _indexed_records(records, source)]


def copa_examples(records, split: str, source="") -> list[Example]:
  """COPA (texts kept as written, like the original); train adds the mirrored examples."""
  out = []
  for number, rec, where, idx in _indexed_records(records, source):
    label = _check_label(rec.get("label"), (0, 1), where)
    question = _field(rec, "question", where)
    if question not in ("cause", "effect"):
      raise TaskDataError(f"{where}: question {question!r} must be 'cause' or 'effect'.")
    meta = {"choice1": _field(rec, "choice1", where), "choice2": _field(rec, "choice2", where),
            "question": question}
    out.append(Example(f"{split}-{idx}", _field(rec, "premise", where), None, label, idx, meta,
                       line=number))
  if split == "train":
    out += [Example(ex.guid + "m", ex.text_a, None, 1 if ex.label == 0 else 0, -1,
                    {"choice1": ex.meta["choice2"], "choice2": ex.meta["choice1"],
                     "question": ex.meta["question"]}, line=ex.line) for ex in list(out)]
  return out


def _fix_wsc_spans(text: str, meta: dict, where: str) -> str:
  """The dataset's span indices are off by one for some examples: fix them as the original."""
  words, lower = text.split(), text.lower().split()
  span1_words = meta["span1_text"].lower().split()
  i1, i2, pronoun = meta["span1_index"], meta["span2_index"], meta["span2_text"]
  if lower[i1:i1 + len(span1_words)] != span1_words:
    for offset in (-1, 1):
      if lower[i1 + offset:i1 + len(span1_words) + offset] == span1_words:
        i1 += offset
  if i2 >= len(words) or words[i2] != pronoun:
    for offset in (-1, 1):
      if 0 <= i2 + offset < len(words) and words[i2 + offset] == pronoun:
        i2 += offset
    if i2 < len(words) and words[i2] != pronoun and words[i2].startswith(pronoun):
      words = words[:i2] + [words[i2][:len(pronoun)], words[i2][len(pronoun):]] + words[i2 + 1:]
  if i2 >= len(words) or words[i2] != pronoun:
    raise TaskDataError(f"{where}: span2_text {pronoun!r} is not the word at span2_index "
                        f"{meta['span2_index']} (nor next to it) of the text.")
  meta["span1_index"], meta["span2_index"] = i1, i2
  return " ".join(words)


def wsc_examples(records, split: str, source="") -> list[Example]:
  """WSC as the original's cloze setup: train keeps the positives only and splits their
  candidate noun phrases (field `candidates`, the WSC-negative layout) into groups of 9."""
  out = []
  for number, rec, where, idx in _indexed_records(records, source):
    label = None
    if "label" in rec:
      _check_label(rec["label"], (True, False), where)
      label = str(rec["label"])
    target = _field(rec, "target", where)
    meta = {k: _field(target, k, where) for k in
            ("span1_text", "span2_text", "span1_index", "span2_index")}
    text = _fix_wsc_spans(standardize_punctuation(_field(rec, "text", where)), meta, where)
    candidates = None
    if "candidates" in rec:
      candidates = []
      for cand in rec["candidates"]:
        if cand["text"] not in candidates:
          candidates.append(cand["text"])
    guid = f"{split}-{idx}"
    if split == "train" and label != "True":
      continue
    if split == "train" and candidates is not None and len(candidates) > 9:
      for i in range(0, len(candidates), 9):
        group = candidates[i:i + 9]
        group += candidates[:9 - len(group)]
        out.append(Example(guid, text, None, label, idx, {**copy.deepcopy(meta),
                                                          "candidates": group}, line=number))
    else:
      if candidates is not None:
        meta["candidates"] = candidates
      out.append(Example(guid, text, None, label, idx, meta, line=number))
  return out


def multirc_examples(records, split: str, source="") -> list[Example]:
  """MultiRC: one example per (question, answer option), label 0/1."""
  out = []
  for number, rec, where, passage_idx in _indexed_records(records, source):
    passage = _field(rec, "passage", where)
    text = standardize_punctuation(_field(passage, "text", where))
    for question in _field(passage, "questions", where):
      q_text = standardize_punctuation(_field(question, "question", where))
      q_idx = _field(question, "idx", where)
      for answer in _field(question, "answers", where):
        label = _check_label(answer.get("label"), (0, 1), where)
        a_idx = _field(answer, "idx", where)
        meta = {"passage_idx": passage_idx, "question_idx": q_idx, "answer_idx": a_idx,
                "answer": standardize_punctuation(_field(answer, "text", where))}
        out.append(Example(f"{split}-p{passage_idx}-q{q_idx}-a{a_idx}", text, q_text, label,
                           [passage_idx, q_idx, a_idx], meta, line=number))
  return out


def record_examples(records, split: str, source="", seed: int = 42,
                    max_train_candidates: int = 10) -> list[Example]:
  """ReCoRD: train has one example per correct answer (it first, then at most 9 other
  entities, shuffled by one `random.Random(seed)` over the file); dev/test one example per
  query with every entity as a choice."""
  shuffler = random.Random(seed)
  out = []
  for number, rec, where, idx in _indexed_records(records, source):
    passage = _field(rec, "passage", where)
    raw = _field(passage, "text", where)
    text = standardize_punctuation(raw)
    entities = set()
    for entity in _field(passage, "entities", where):
      if isinstance(entity, str):  # TFDS gives the entity strings
        entities.add(standardize_punctuation(entity))
      else:
        entities.add(standardize_punctuation(text[entity["start"]:entity["end"] + 1]))
    entities = sorted(entities)
    text = text.replace("@highlight\n", "- ")
    for qa in _field(rec, "qas", where):
      query = standardize_punctuation(_field(qa, "query", where))
      if "@placeholder" not in query:
        raise TaskDataError(f"{where}: query {query[:60]!r}... has no @placeholder to fill.")
      q_idx = _field(qa, "idx", where)
      answers = list({standardize_punctuation(a["text"]) for a in qa.get("answers", [])})
      if split == "train":
        for a_idx, answer in enumerate(answers):
          negatives = [e for e in entities if e not in answers]
          if len(negatives) > max_train_candidates - 1:
            shuffler.shuffle(negatives)
            negatives = negatives[:max_train_candidates - 1]
          meta = {"passage_idx": idx, "question_idx": q_idx, "candidates": [answer] + negatives,
                  "answers": [answer]}
          out.append(Example(f"{split}-p{idx}-q{q_idx}-a{a_idx}", text, query, "0",
                             [idx, q_idx, a_idx], meta, line=number))
      else:
        meta = {"passage_idx": idx, "question_idx": q_idx, "candidates": entities,
                "answers": answers}
        out.append(Example(f"{split}-p{idx}-q{q_idx}", text, query, "1", q_idx, meta,
                           line=number))
  return out


READERS: dict[str, Callable[..., list[Example]]] = {
    "rte": rte_examples, "cb": cb_examples, "wic": wic_examples, "boolq": boolq_examples,
    "copa": copa_examples, "wsc": wsc_examples, "multirc": multirc_examples,
    "record": record_examples,
}


def load_split(task: str, data_dir, split: str) -> list[Example]:
  """The examples of one split read from `data_dir/{train,val,test}.jsonl`."""
  path = epath.Path(data_dir) / SPLIT_FILES[split]
  return READERS[task](read_jsonl(path), split, source=str(path))


# ---------------------------------------------------------------- TFDS `super_glue/*` records

def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _tfds_label(value, names: Sequence, split: str):
  value = int(value)
  return None if split == "test" or value < 0 else names[value]


def tfds_to_official(task: str, elements: Iterable[dict], split: str) -> list[tuple[int, dict]]:
  """TFDS `super_glue/<task>` elements (numpy values) -> (index, record in the official JSONL
  layout), so both sources go through the same readers. MultiRC's per-answer elements and
  ReCoRD's per-query elements are regrouped by passage."""
  out: list[tuple[int, dict]] = []
  if task in ("rte", "cb"):
    names = ("entailment", "not_entailment") if task == "rte" else (
        "entailment", "contradiction", "neutral")
    for i, el in enumerate(elements):
      out.append((i + 1, {"idx": int(el["idx"]), "premise": _text(el["premise"]),
                          "hypothesis": _text(el["hypothesis"]),
                          "label": _tfds_label(el["label"], names, split)}))
  elif task in ("boolq", "wic"):
    for i, el in enumerate(elements):
      rec = {"idx": int(el["idx"]), "label": _tfds_label(el["label"], (False, True), split)}
      keys = ("passage", "question") if task == "boolq" else ("sentence1", "sentence2", "word")
      rec.update({k: _text(el[k]) for k in keys})
      out.append((i + 1, rec))
  elif task == "copa":
    for i, el in enumerate(elements):
      out.append((i + 1, {"idx": int(el["idx"]), "label": _tfds_label(el["label"], (0, 1), split),
                          **{k: _text(el[k]) for k in ("premise", "choice1", "choice2",
                                                       "question")}}))
  elif task == "wsc":
    for i, el in enumerate(elements):
      out.append((i + 1, {"idx": int(el["idx"]), "text": _text(el["text"]),
                          "label": _tfds_label(el["label"], (False, True), split),
                          "target": {"span1_text": _text(el["span1_text"]),
                                     "span2_text": _text(el["span2_text"]),
                                     "span1_index": int(el["span1_index"]),
                                     "span2_index": int(el["span2_index"])}}))
  elif task == "multirc":
    passages: dict[int, dict] = {}
    for el in elements:
      p, q, a = (int(el["idx"][k]) for k in ("paragraph", "question", "answer"))
      rec = passages.setdefault(p, {"idx": p, "passage": {"text": _text(el["paragraph"]),
                                                          "questions": []}})
      questions = rec["passage"]["questions"]
      if not questions or questions[-1]["idx"] != q:
        questions.append({"idx": q, "question": _text(el["question"]), "answers": []})
      questions[-1]["answers"].append({"idx": a, "text": _text(el["answer"]),
                                       "label": _tfds_label(el["label"], (0, 1), split)})
    out = list(enumerate(passages.values(), start=1))
  elif task == "record":
    passages = {}
    for el in elements:
      p, q = int(el["idx"]["passage"]), int(el["idx"]["query"])
      rec = passages.setdefault(p, {"idx": p, "passage": {
          "text": _text(el["passage"]), "entities": [_text(e) for e in el["entities"]]},
                                    "qas": []})
      rec["qas"].append({"idx": q, "query": _text(el["query"]),
                         "answers": [{"text": _text(a)} for a in el["answers"]]})
    out = list(enumerate(passages.values(), start=1))
  else:
    raise TaskDataError(f"no TFDS converter for task {task!r}.")
  for _, rec in out:  # test labels are absent in the official files
    if "label" in rec and rec["label"] is None:
      del rec["label"]
    for q in rec.get("passage", {}).get("questions", []):
      for a in q["answers"]:
        if a.get("label") is None:
          a.pop("label", None)
  return out


TFDS_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def load_tfds_split(task: str, split: str, data_dir=None, download: bool = True) -> list[Example]:
  """The examples of one split from TFDS `super_glue/<task>` (downloaded/prepared by TFDS)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = f"super_glue/{'wsc.fixed' if task == 'wsc' else task}"
  try:
    ds = tfds.load(name, split=TFDS_SPLITS[split], data_dir=data_dir, download=download)
  except Exception as e:  # noqa: BLE001  (TFDS raises many kinds for a missing dataset)
    raise TaskDataError(f"TFDS could not load {name} ({split}): {e}; prepare it with "
                        f"`tfds build {name}` or use the official JSONL files.") from e
  return READERS[task](tfds_to_official(task, tfds.as_numpy(ds), split), split, source=name)

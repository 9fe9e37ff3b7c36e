"""Seq2seq examples (the original's train/val/test .source/.target files, or TFDS) and their rows.

The layout is THUDM/GLM's `Seq2SeqDataset` (tasks/seq2seq/dataset.py, commit 4f61ed7):
  source  `[CLS] [MASK|sMASK] " Content:" " "+text` cut to `src_seq_length`, padded with pad
          (squad_generation: `[CLS] text " Question:" [MASK] " Answer: "+answer`, cut around the
          answer); `sep` = src_seq_length, so the whole padded source is Part A;
  train   `source [sop] y` -> targets `y [eop]` at the blank's position, block positions 1, 2, ...,
          target cut to / padded to `tgt_seq_length`, loss on the target only;
  eval    `source [sop]`, [sop] at (blank position, block 1): what the beam search starts from.
Texts pass the original's punctuation standardization and its per-task detokenizer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

import numpy as np

from input_pipeline.errors import DataSourceError

SUMMARY_TASKS = ("cnn_dm", "cnn_dm_original", "gigaword", "xsum")
TASKS = SUMMARY_TASKS + ("squad_generation",)
SPLIT_FILES = {"train": "train", "dev": "val", "test": "test"}
# TFDS as a second source: dataset name, source field, target field per task.
TFDS_SOURCES = {"cnn_dm": ("cnn_dailymail", "article", "highlights"),
                "cnn_dm_original": ("cnn_dailymail", "article", "highlights"),
                "xsum": ("xsum", "document", "summary"),
                "gigaword": ("gigaword", "document", "summary")}
TFDS_SPLITS = {"train": "train", "dev": "validation", "test": "test"}

_PUNCTUATION = {"\u201c": "\"", "\u201d": "\"", "\u2019": "'", "\u2018": "'", "\u2013": "-"}
_GIGAWORD_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-",
                      "}": "-rcb-", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
_CNNDM_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-",
                   "}": "-RCB-"}
_CNNDM_CLITICS = (("''", "\""), ("``", "\""), ("`", "'"), (" n't", "n't"), (" 's", "'s"),
                  (" 'd", "'d"), (" 'll", "'ll"))


class Seq2SeqDataError(DataSourceError):
  """Seq2seq data that cannot be used; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One source/target pair; `ref` is the target as the tokenizer gives it back (ROUGE's ref)."""
  uid: str
  source: str
  target: str
  ref: str
  answer: str = ""       # squad_generation only


@dataclasses.dataclass
class ReadStats:
  """What reading and laying out a split found (reported, never silently dropped)."""
  examples: int = 0
  empty_sources: int = 0
  empty_targets: int = 0
  truncated_targets: int = 0


def standardize_punctuation(text: str) -> str:
  """Curly quotes and en dashes to ASCII, as the original's `punctuation_standardization`."""
  for key, value in _PUNCTUATION.items():
    text = text.replace(key, value)
  return text


def gigaword_detokenize(text: str, is_target: bool = False) -> str:
  """Gigaword's `UNK` / `<unk>` -> [UNK] and its bracket / entity escapes back to characters."""
  del is_target
  text = text.replace("UNK", "[UNK]").replace("<unk>", "[UNK]")
  for char, escaped in _GIGAWORD_BRACKETS.items():
    text = text.replace(escaped, char)
  return text


def cnndm_detokenize(text: str, is_target: bool = False) -> str:
  """CNN/DM's sentence marks (<S_SEP>: dropped in sources, [SEP] in targets), PTB brackets and
  quotes / clitics joined back."""
  text = text.replace("<S_SEP>", "[SEP]" if is_target else "")
  for char, escaped in _CNNDM_BRACKETS.items():
    text = text.replace(escaped, char)
  for old, new in _CNNDM_CLITICS:
    text = text.replace(old, new)
  return text


DETOKENIZERS = {"gigaword": gigaword_detokenize, "cnn_dm": cnndm_detokenize}


def check_task(task: str) -> str:
  """The canonical task name; an unknown one is one clear error listing the tasks."""
  key = str(task).lower()
  if key not in TASKS:
    raise Seq2SeqDataError(f"unknown seq2seq task {task!r}; the tasks are {', '.join(TASKS)} "
                           "(set --config.task).")
  return key


def _read_lines(path: str) -> list[str]:
  if not os.path.exists(path):
    raise Seq2SeqDataError(f"{path} does not exist; data_dir must hold the original's "
                           "train/val/test .source and .target files (one example per line).")
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f]


def read_pairs(data_dir: str, split: str) -> tuple[list[str], list[str]]:
  """The raw (stripped) lines of `<split>.source` / `<split>.target` (split: train | dev | test;
  dev reads val.*). Files of different lengths are an error naming both and their counts."""
  if split not in SPLIT_FILES:
    raise Seq2SeqDataError(f"split {split!r} is not one of {list(SPLIT_FILES)}.")
  name = SPLIT_FILES[split]
  src_path = os.path.join(data_dir, f"{name}.source")
  tgt_path = os.path.join(data_dir, f"{name}.target")
  sources, targets = _read_lines(src_path), _read_lines(tgt_path)
  if len(sources) != len(targets):
    raise Seq2SeqDataError(
        f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}; every source "
        "line needs its target on the same line number (one example per line in both).")
  return sources, targets


def _tfds_text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_tfds_pairs(task: str, split: str, data_dir: str | None = None) -> tuple[list, list]:
  """The same pairs from TFDS (cnn_dailymail / xsum / gigaword), in the original files' form:
  CNN/DM highlights joined with <S_SEP> (so targets keep the sentence marks ROUGE-Lsum uses)."""
  task = check_task(task)
  if task not in TFDS_SOURCES:
    raise Seq2SeqDataError(f"task {task!r} has no TFDS source; use data_source=files.")
  import tensorflow_datasets as tfds  # only this path needs TensorFlow
  name, src_key, tgt_key = TFDS_SOURCES[task]
  try:
    ds = tfds.load(name, split=TFDS_SPLITS[split], data_dir=data_dir or None)
  except Exception as e:  # tfds raises many types; the message says what to do
    raise Seq2SeqDataError(f"could not load TFDS {name}/{TFDS_SPLITS[split]} ({e}); prepare it "
                           f"with `tfds build {name}` or use data_source=files.") from None
  pairs = [tfds_pair(task, element) for element in tfds.as_numpy(ds)]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def tfds_pair(task: str, element: dict) -> tuple[str, str]:
  """One TFDS element -> (source line, target line) as the original's files hold them: one line
  each; CNN/DM (task cnn_dm) highlights joined with <S_SEP>, which becomes [SEP] in targets."""
  _, src_key, tgt_key = TFDS_SOURCES[task]
  source = " ".join(_tfds_text(element[src_key]).split("\n")).strip()
  lines = [s.strip() for s in _tfds_text(element[tgt_key]).split("\n") if s.strip()]
  return source, (" <S_SEP> " if task == "cnn_dm" else " ").join(lines)


def make_examples(task: str, split: str, sources: Sequence[str], targets: Sequence[str],
                  tokenizer, stats: ReadStats | None = None) -> list[Example]:
  """Standardizes and detokenizes each pair as the original's SummmaryProcessor does; the ref is
  `decode(encode(target))`. Empty lines are kept (as there) and counted in `stats`."""
  task = check_task(task)
  stats = stats if stats is not None else ReadStats()
  detok = DETOKENIZERS.get(task)
  examples = []
  for i, (source, target) in enumerate(zip(sources, targets)):
    stats.empty_sources += not source.strip()
    stats.empty_targets += not target.strip()
    source = standardize_punctuation(source.strip())
    target = standardize_punctuation(target.strip())
    if detok is not None:
      source, target = detok(source), detok(target, is_target=True)
    ref = tokenizer.decode(tokenizer.encode(target))
    examples.append(Example(f"{split}-{i}", source, target, ref))
  stats.examples += len(examples)
  return examples


SQUAD_FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}


def read_squad_generation(data_dir: str, split: str, tokenizer) -> list[Example]:
  """Question generation from SQuAD-format json (`train.json`, `dev.json`, `test.json` with
  data/paragraphs/qas, as the original's SQuADGenerationProcessor reads): one example per
  (question, distinct answer text), the context as source, the question as target.

  Differs from the original on purpose in two places: the ROUGE reference is the question (the
  original stores the answer there, so its ROUGE compares questions with answers), and test
  examples keep their answers (the original replaces them with "FAKE_ANSWER")."""
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(data_dir, SQUAD_FILES[split])
  if not os.path.exists(path):
    raise Seq2SeqDataError(f"{path} does not exist; squad_generation reads SQuAD-format "
                           "train.json / dev.json / test.json.")
  try:
    with open(path, encoding="utf-8") as f:
      articles = json.load(f)["data"]
  except (ValueError, KeyError, TypeError) as e:
    raise Seq2SeqDataError(f"{path} is not SQuAD-format json ({e!r}); it needs "
                           '{"data": [{"paragraphs": [{"context", "qas"}]}]}.') from None
  examples = []
  for article in articles:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        answers = dict.fromkeys(a["text"] for a in qa.get("answers", []))  # distinct, in order
        for answer in answers:
          question = qa["question"]
          examples.append(Example(f"{split}-{len(examples)}", paragraph["context"], question,
                                  tokenizer.decode(tokenizer.encode(question)), answer))
  return examples


def load_examples(task: str, split: str, tokenizer, *, data_dir: str = "",
                  data_source: str = "files") -> tuple[list[Example], ReadStats]:
  """A split's examples from the original's files (`data_source=files`) or TFDS (`tfds`)."""
  task = check_task(task)
  if task == "squad_generation":
    if data_source != "files":
      raise Seq2SeqDataError("squad_generation reads the SQuAD json files; use data_source=files.")
    examples = read_squad_generation(data_dir, split, tokenizer)
    return examples, ReadStats(examples=len(examples))
  if data_source == "files":
    if not data_dir:
      raise Seq2SeqDataError("data_dir is empty; point it at the folder with train.source, "
                             "train.target, val.*, test.* (or set data_source=tfds).")
    sources, targets = read_pairs(data_dir, split)
  elif data_source == "tfds":
    sources, targets = read_tfds_pairs(task, split, data_dir or None)
  else:
    raise Seq2SeqDataError(f"data_source={data_source!r}; use files or tfds.")
  stats = ReadStats()
  examples = make_examples(task, split, sources, targets, tokenizer, stats)
  if stats.empty_sources or stats.empty_targets:
    logging.warning("%s %s: %d empty source lines and %d empty target lines (kept, as the "
                    "original keeps them)", task, split, stats.empty_sources, stats.empty_targets)
  return examples, stats


# ----------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class Layout:
  """Lengths and command-token ids of the rows."""
  src_seq_length: int
  tgt_seq_length: int
  cls_id: int
  mask_id: int
  pad_id: int
  sop_id: int
  eop_id: int


def make_layout(tokenizer, src_seq_length: int, tgt_seq_length: int, task_mask: bool) -> Layout:
  """[sMASK] marks the blank when the tokenizer has task masks (`task_mask`), else [MASK]."""
  ids = tokenizer.special_ids
  if task_mask and "sMASK" not in ids:
    raise Seq2SeqDataError("task_mask is set but the tokenizer has no [sMASK]; load it with "
                           "task_mask=True (GLM-10B / 2B / RoBERTa / Chinese) or unset task_mask.")
  return Layout(int(src_seq_length), int(tgt_seq_length), ids["CLS"],
                ids["sMASK" if task_mask else "MASK"], ids["pad"], ids["sop"], ids["eop"])


def _sub_positions(tokens: list[int], pattern: list[int]) -> list[int]:
  return [i for i in range(len(tokens)) if pattern and tokens[i:i + len(pattern)] == pattern]


def source_tokens(task: str, example: Example, tokenizer, layout: Layout) -> list[int]:
  """The source row (before padding) for one example."""
  n = layout.src_seq_length
  if task == "squad_generation":
    source = tokenizer.encode(example.source.rstrip() + " Question:")
    answer = tokenizer.encode(" Answer: " + example.answer)
    room = n - len(answer) - 2
    if len(source) > room:
      hits = _sub_positions(source, tokenizer.encode(" " + example.answer))
      start = max(hits[0] - room // 2, 0) if hits else 0
      source = source[start:start + room]
    return [layout.cls_id] + source + [layout.mask_id] + answer
  prompt = [layout.cls_id, layout.mask_id] + tokenizer.encode(" Content:")
  return prompt + tokenizer.encode(" " + example.source)[:max(n - len(prompt), 0)]


def _pad_source(tokens: list[int], layout: Layout) -> list[int]:
  return tokens + [layout.pad_id] * (layout.src_seq_length - len(tokens))


def eval_rows(task: str, examples: Sequence[Example], tokenizer, layout: Layout) -> dict:
  """`source [N, src]` (padded) and `mask_position [N]`: the beam search's inputs (it appends
  [sop] itself)."""
  task = check_task(task)
  sources, masks = [], []
  for ex in examples:
    tokens = _pad_source(source_tokens(task, ex, tokenizer, layout), layout)
    sources.append(tokens)
    masks.append(tokens.index(layout.mask_id))
  return {"source": np.array(sources, np.int32).reshape(-1, layout.src_seq_length),
          "mask_position": np.array(masks, np.int32)}


def train_rows(task: str, examples: Sequence[Example], tokenizer, layout: Layout,
               stats: ReadStats | None = None) -> dict:
  """The training arrays, `[N, src + tgt]` each: `tokens`, `targets`, `loss_mask`,
  `position_ids [N, 2, L]`, and `sep [N]`. Targets longer than tgt_seq_length (their [eop]
  counted) are cut there, as the original does, and counted in `stats.truncated_targets`."""
  task = check_task(task)
  stats = stats if stats is not None else ReadStats()
  src_n, tgt_n = layout.src_seq_length, layout.tgt_seq_length
  rows = {k: [] for k in ("tokens", "targets", "loss_mask", "position_ids", "sep")}
  for ex in examples:
    source = _pad_source(source_tokens(task, ex, tokenizer, layout), layout)
    mask_pos = source.index(layout.mask_id)
    target = tokenizer.encode(" " + ex.target) + [layout.eop_id]
    if len(target) > tgt_n:
      target = target[:tgt_n]
      stats.truncated_targets += 1
    loss = [1] * len(target) + [0] * (tgt_n - len(target))
    target = target + [layout.pad_id] * (tgt_n - len(target))
    rows["tokens"].append(source + [layout.sop_id] + target[:-1])
    rows["targets"].append([0] * src_n + target)
    rows["loss_mask"].append([0] * src_n + loss)
    rows["position_ids"].append([list(range(src_n)) + [mask_pos] * tgt_n,
                                 [0] * src_n + list(range(1, tgt_n + 1))])
    rows["sep"].append(src_n)
  if stats.truncated_targets:
    logging.warning("%s: %d of %d targets are longer than tgt_seq_length=%d and were cut "
                    "(raise tgt_seq_length to keep them whole)", task, stats.truncated_targets,
                    len(examples), tgt_n)
  length = src_n + tgt_n
  return {"tokens": np.array(rows["tokens"], np.int32).reshape(-1, length),
          "targets": np.array(rows["targets"], np.int32).reshape(-1, length),
          "loss_mask": np.array(rows["loss_mask"], np.float32).reshape(-1, length),
          "position_ids": np.array(rows["position_ids"], np.int32).reshape(-1, 2, length),
          "sep": np.array(rows["sep"], np.int32)}

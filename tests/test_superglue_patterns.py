"""SuperGLUE patterns: our readers + encoder give exactly the rows of the original PVP.encode."""

import json
import os

import pytest

from glm_jax.tasks import superglue
from glm_jax.tasks.superglue import examples as examples_lib
from input_pipeline import tokenizer as tokenizer_lib

DATA = os.path.join(os.path.dirname(__file__), "data", "superglue")
SPLITS = {"train": "train", "dev": "dev", "test": "test"}


@pytest.fixture(scope="module")
def expected():
  with open(os.path.join(DATA, "expected_rows.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def tokenizer():
  return tokenizer_lib.load_pretrained(DATA, "bert-uncased")


def test_tokenizer_matches_the_one_used_for_the_fixtures(expected, tokenizer):
  assert {k: tokenizer.special_ids[k] for k in expected["special_ids"]} == expected["special_ids"]
  assert tokenizer.vocab_size == expected["vocab_size"]


def _cases():
  with open(os.path.join(DATA, "expected_rows.json")) as f:
    data = json.load(f)
  for task, entry in data["tasks"].items():
    for split, split_entry in entry["splits"].items():
      for pattern in split_entry["patterns"]:
        yield task, split, int(pattern)


@pytest.mark.parametrize("task,split,pattern", list(_cases()))
def test_encoded_rows_match_original_pvp_encode(expected, tokenizer, task, split, pattern):
  entry = expected["tasks"][task]
  want_split = entry["splits"][split]
  want = want_split["patterns"][str(pattern)]
  exs = superglue.load_split(task, os.path.join(DATA, task), split)
  assert [ex.guid for ex in exs] == want_split["guids"]
  assert [ex.label for ex in exs] == want_split["labels"]
  assert [ex.meta.get("candidates") for ex in exs] == want_split["meta_candidates"]
  encoder = superglue.make_encoder(task, tokenizer, entry["seq_length"], pattern)
  seq, eos = entry["seq_length"], tokenizer.special_ids["eos"]
  truncated_rows = 0
  for ex, want_ex in zip(exs, want["examples"]):
    got = encoder.encode(ex, for_training=(split == "train"))
    assert got.label == want_ex["label"], ex.guid
    assert len(got.rows) == len(want_ex["rows"]), ex.guid
    if "label_ids" in want_ex:
      assert got.label_ids == want_ex["label_ids"]
    for row, want_row in zip(got.rows, want_ex["rows"]):
      pad = superglue.padded(row, seq, eos)
      for key in ("ids", "positions", "block_positions", "sep", "loss_mask"):
        assert pad[key] == want_row[key], (ex.guid, key)
      if want_row["targets"] is not None:
        assert pad["targets"] == want_row["targets"], ex.guid
    truncated_rows += got.truncated_rows
  assert truncated_rows == want["num_truncated"]


def test_too_long_with_nothing_shortenable_left_is_one_clear_error(tokenizer):
  exs = superglue.load_split("wic", os.path.join(DATA, "wic"), "dev")
  encoder = superglue.make_encoder("wic", tokenizer, 40, 2)  # text_b is not shortenable here
  with pytest.raises(examples_lib.TaskDataError, match="nothing left to shorten.*seq_length"):
    encoder.encode(exs[1])


def test_verbalizer_must_be_one_token(tokenizer):
  plain = tokenizer_lib.load_pretrained(os.path.join(DATA, "..", "released_tokenizers",
                                                     "bert-uncased"), "bert-uncased")
  with pytest.raises(examples_lib.TaskDataError, match="verbalizer ' Yes'.*not one ordinary"):
    superglue.make_encoder("rte", plain, 64, 0)


def test_unknown_pattern_lists_the_patterns(tokenizer):
  with pytest.raises(examples_lib.TaskDataError, match=r"copa has no pattern 2; its patterns"):
    superglue.make_encoder("copa", tokenizer, 64, 2)


def test_tfds_elements_become_the_official_records():
  import numpy as np
  copa = [{"idx": np.int32(3), "premise": b"P.", "choice1": b"A.", "choice2": b"B.",
           "question": b"cause", "label": np.int64(-1)}]
  got = examples_lib.tfds_to_official("copa", copa, "test")
  assert got == [(1, {"idx": 3, "premise": "P.", "choice1": "A.", "choice2": "B.",
                      "question": "cause"})]
  multirc = [{"idx": {"paragraph": 0, "question": q, "answer": a}, "paragraph": b"T.",
              "question": b"Q%d?" % q, "answer": b"A%d" % a, "label": a % 2}
             for q, a in ((0, 0), (0, 1), (1, 2))]
  recs = examples_lib.tfds_to_official("multirc", multirc, "validation")
  exs = examples_lib.multirc_examples(recs, "dev")
  assert [(ex.meta["question_idx"], ex.meta["answer_idx"], ex.label) for ex in exs] == [
      (0, 0, 0), (0, 1, 1), (1, 2, 0)]
  record = [{"idx": {"passage": 0, "query": 1}, "passage": b"Ann met Bob.\n@highlight\nBob",
             "query": b"@placeholder met Bob.", "entities": [b"Ann", b"Bob"], "answers": [b"Ann"]}]
  exs = examples_lib.record_examples(examples_lib.tfds_to_official("record", record, "dev"), "dev")
  assert exs[0].meta["candidates"] == ["Ann", "Bob"] and exs[0].text_a == "Ann met Bob.\n- Bob"


def test_tfds_source_not_prepared_is_one_clear_error(tmp_path):
  with pytest.raises(examples_lib.TaskDataError, match=r"TFDS could not load super_glue/copa "
                     r"\(dev\).*tfds build super_glue/copa"):
    examples_lib.load_tfds_split("copa", "dev", data_dir=str(tmp_path), download=False)

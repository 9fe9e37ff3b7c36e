"""Seq2seq rows and ROUGE against the ORIGINAL THUDM/GLM `Seq2SeqDataset` and `rouge_metric`.

Fixture (tests/data/README.md): the original's train and dev rows for cnn_dm, gigaword and
cnn_dm_original files (with and without task masks) made with the original BERT tokenizer on the
small test vocabulary, its `meta['ref']`s, and `rouge_metric` on fixed predictions.
"""

import functools
import json
import os

import pytest

from glm_jax.tasks.seq2seq import data, rouge
from input_pipeline import tokenizer as tokenizer_lib

DATA = os.path.join(os.path.dirname(__file__), "data")
VOCAB_DIR = os.path.join(DATA, "released_tokenizers", "bert-uncased")


@functools.lru_cache(maxsize=None)
def _fixture():
  with open(os.path.join(DATA, "thudm_seq2seq_data.json")) as f:
    return json.load(f)


@functools.lru_cache(maxsize=None)
def _tokenizer(task_mask):
  return tokenizer_lib.load_pretrained(VOCAB_DIR, "bert-uncased", task_mask=task_mask)


def _write(tmp_path, split, sources, targets):
  (tmp_path / f"{split}.source").write_text("\n".join(sources) + "\n", encoding="utf-8")
  (tmp_path / f"{split}.target").write_text("\n".join(targets) + "\n", encoding="utf-8")


CASES = [(i, c["task"], c["task_mask"], c["split"]) for i, c in enumerate(_fixture()["cases"])]


@pytest.mark.parametrize("index,task,task_mask,split", CASES)
def test_rows_equal_original_dataset(tmp_path, index, task, task_mask, split):
  case = _fixture()["cases"][index]
  tok = _tokenizer(task_mask)
  if task == "squad_generation":
    for name in ("train.json", "dev.json"):
      (tmp_path / name).write_text(json.dumps(_fixture()["squad_json"]))
  else:
    _write(tmp_path, "train" if split == "train" else "val", case["sources"], case["targets"])
  examples, _ = data.load_examples(task, split, tok, data_dir=str(tmp_path))
  if task == "squad_generation":  # our reference is the question (the original's is the answer)
    assert [ex.answer for ex in examples] == case["answers"]
    assert [ex.ref for ex in examples] == [tok.decode(tok.encode(ex.target)) for ex in examples]
  else:
    assert [ex.ref for ex in examples] == case["refs"]
  layout = data.make_layout(tok, case["src_seq_length"], case["tgt_seq_length"], task_mask)
  rows = case["rows"]
  if split == "train":
    got = data.train_rows(task, examples, tok, layout)
    assert got["tokens"].tolist() == [r["text"] for r in rows]
    assert got["targets"].tolist() == [r["target"] for r in rows]
    assert got["loss_mask"].astype(int).tolist() == [r["loss_mask"] for r in rows]
    assert got["position_ids"].tolist() == [r["position_id"] for r in rows]
    assert got["sep"].tolist() == [r["attention_mask"] for r in rows]
  else:
    got = data.eval_rows(task, examples, tok, layout)
    src = case["src_seq_length"]
    assert got["source"].tolist() == [r["text"][:src] for r in rows]
    assert [r["text"][src] for r in rows] == [layout.sop_id] * len(rows)
    assert got["mask_position"].tolist() == [r["position_id"][0][src] for r in rows]


def test_long_targets_are_cut_and_counted(tmp_path):
  case = next(c for c in _fixture()["cases"] if c["task"] == "cnn_dm" and c["split"] == "train")
  _write(tmp_path, "train", case["sources"], case["targets"])
  tok = _tokenizer(False)
  examples, stats = data.load_examples("cnn_dm", "train", tok, data_dir=str(tmp_path))
  layout = data.make_layout(tok, 40, 16, False)
  rows = data.train_rows("cnn_dm", examples, tok, layout, stats)
  lengths = [len(tok.encode(" " + ex.target)) + 1 for ex in examples]
  assert stats.truncated_targets == sum(n > 16 for n in lengths) > 0
  assert rows["loss_mask"][:, 40:].sum(1).tolist() == [min(n, 16) for n in lengths]


def test_source_and_target_files_of_different_lengths_name_both(tmp_path):
  (tmp_path / "val.source").write_text("a\nb\nc\n")
  (tmp_path / "val.target").write_text("a\nb\n")
  with pytest.raises(data.Seq2SeqDataError, match=r"val\.source has 3 lines but .*val\.target has 2"):
    data.load_examples("xsum", "dev", _tokenizer(False), data_dir=str(tmp_path))


def test_empty_lines_are_kept_and_counted(tmp_path):
  _write(tmp_path, "test", ["one source", "", "three"], ["t1", "t2", ""])
  examples, stats = data.load_examples("xsum", "test", _tokenizer(False), data_dir=str(tmp_path))
  assert len(examples) == 3 and stats.empty_sources == 1 and stats.empty_targets == 1


def test_missing_files_and_unknown_task_say_what_to_do(tmp_path):
  with pytest.raises(data.Seq2SeqDataError, match="train.source does not exist"):
    data.load_examples("xsum", "train", _tokenizer(False), data_dir=str(tmp_path))
  with pytest.raises(data.Seq2SeqDataError, match="unknown seq2seq task 'summ'"):
    data.load_examples("summ", "train", _tokenizer(False), data_dir=str(tmp_path))


@pytest.mark.parametrize("dataset", ["cnn_dm", "gigaword", "cnn_dm_org"])
def test_rouge_equals_original_rouge_metric(dataset):
  fx = _fixture()
  for entry in (e for e in fx["rouge"] if e["dataset"] == dataset):
    metric = entry["metric"]
    got = rouge.rouge_scores(fx["rouge_predictions"], fx["rouge_references"], dataset, [metric])
    assert got[metric] == pytest.approx(entry["mean"], abs=1e-12)
    for p, r, want in zip(fx["rouge_predictions"], fx["rouge_references"], entry["each"]):
      assert rouge.rouge_scores([p], [r], dataset, [metric])[metric] == pytest.approx(want, abs=1e-12)


def test_rouge_drops_short_and_duplicate_sentences_as_the_original():
  pred = "the people went to the city . [SEP] too short [SEP] the people went to the city ."
  assert [s.strip() for s in rouge.prepare_prediction(pred, "cnn_dm_org").split("\n")] == \
      ["the people went to the city ."]
  assert rouge.fix_tokenization("it ' s 3 , 000 u . n . men \" yes \"", "cnn_dm") == \
      "it 's 3,000 u.n. men `` yes ''"


def test_tfds_elements_become_the_original_file_lines():
  element = {"article": b"First line.\nSecond line.", "highlights": b"One fact .\nTwo facts ."}
  assert data.tfds_pair("cnn_dm", element) == ("First line. Second line.", "One fact . <S_SEP> Two facts .")
  assert data.tfds_pair("cnn_dm_original", element)[1] == "One fact . Two facts ."
  tok = _tokenizer(False)
  (ex,) = data.make_examples("cnn_dm", "train", *map(list, zip(data.tfds_pair("cnn_dm", element))), tok)
  assert ex.target == "One fact . [SEP] Two facts ." and "[SEP]" in ex.ref
  assert data.tfds_pair("xsum", {"document": "a\nb", "summary": "s"}) == ("a b", "s")

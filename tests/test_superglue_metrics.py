"""SuperGLUE metrics equal the official definitions; bad task files get one clear error."""

import json
import os

import pytest

from glm_jax.tasks import superglue
from glm_jax.tasks.superglue import examples as examples_lib
from glm_jax.tasks.superglue import metrics

DATA = os.path.join(os.path.dirname(__file__), "data", "superglue")


def test_accuracy_is_percent_of_matches():
  assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 75.0


def test_cb_macro_f1_averages_per_class_f1():
  labels = [0, 0, 1, 1, 2, 2]
  preds = [0, 1, 1, 1, 0, 2]
  # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
  assert metrics.f1_macro(preds, labels) == pytest.approx(100 * (0.5 + 0.8 + 2 / 3) / 3)


def test_macro_f1_counts_a_class_only_predicted_as_zero():
  assert metrics.f1_macro([0, 2], [0, 0]) == pytest.approx(100 * (2 / 3 + 0) / 2)


def test_multirc_f1a_is_over_all_answer_options():
  labels = [1, 0, 1, 1, 0]
  preds = [1, 1, 0, 1, 0]   # tp 2, fp 1, fn 1
  assert metrics.f1_binary(preds, labels) == pytest.approx(100 * 4 / 6)


def test_multirc_exact_match_groups_answers_by_question():
  labels = [1, 0, 1, 1, 0, 1]
  preds = [1, 0, 1, 1, 1, 1]
  questions = [(0, 0), (0, 0), (0, 0), (0, 1), (0, 1), (1, 2)]
  assert metrics.multirc_exact_match(preds, labels, questions) == pytest.approx(100 * 2 / 3)


def test_record_normalisation_drops_case_punctuation_articles_and_spaces():
  assert metrics.normalize_answer("  The  U.S. Army, an   army!") == "us army army"
  assert metrics.exact_match("the Apple", "apple.") == 1.0


def test_record_scores_take_the_max_over_gold_answers():
  preds = ["Barack Obama", "New York", "Paris"]
  gold = [["Obama", "President Barack Obama"], ["York"], []]
  f1_first = max(2 * 1 * 0.5 / 1.5, 2 * 1 * (2 / 3) / (1 + 2 / 3))   # vs "Obama" / vs the full
  f1_second = 2 * 0.5 * 1 / 1.5
  got = metrics.record_scores(preds, gold)
  assert got["f1"] == pytest.approx(100 * (f1_first + f1_second + 0) / 3)
  assert got["em"] == 0.0
  assert metrics.record_scores(["obama"], [["Obama", "x"]])["em"] == 100.0


def test_task_scores_map_wsc_choice_zero_to_true():
  exs = superglue.load_split("wsc", os.path.join(DATA, "wsc"), "dev")  # labels True, False, True
  assert superglue.score("wsc", exs, [0, 2, 1]) == {"accuracy": pytest.approx(200 / 3)}


def test_multirc_task_score_uses_passage_and_question(tmp_path):
  exs = superglue.load_split("multirc", os.path.join(DATA, "multirc"), "dev")
  labels = [ex.label for ex in exs]  # 1 0 1 | 1 0 | 1
  got = superglue.score("multirc", exs, labels)
  assert got == {"f1a": 100.0, "em": 100.0, "accuracy": 100.0}
  wrong = list(labels)
  wrong[1] = 1
  got = superglue.score("multirc", exs, wrong)
  assert got["em"] == pytest.approx(200 / 3)
  assert got["f1a"] == pytest.approx(100 * 2 * 4 / (2 * 4 + 1))


def test_record_task_scores_the_chosen_entity():
  exs = superglue.load_split("record", os.path.join(DATA, "record"), "dev")
  cands = [ex.meta["candidates"] for ex in exs]
  right = [cands[0].index("Israel"), cands[1].index("Judah")]
  assert superglue.score("record", exs, right) == {"f1": 100.0, "em": 100.0}
  assert superglue.score("record", exs, [right[0], cands[1].index("king")])["em"] == 50.0


def test_submission_records_follow_the_official_layout():
  exs = superglue.load_split("multirc", os.path.join(DATA, "multirc"), "dev")
  recs = superglue.submission_records("multirc", exs, [1, 0, 1, 1, 0, 1])
  assert recs[0] == {"idx": 0, "passage": {"questions": [
      {"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 1, "label": 0},
                             {"idx": 2, "label": 1}]},
      {"idx": 1, "answers": [{"idx": 3, "label": 1}, {"idx": 4, "label": 0}]}]}}
  copa = superglue.load_split("copa", os.path.join(DATA, "copa"), "test")
  assert superglue.submission_records("copa", copa, [1]) == [{"idx": 0, "label": 1}]
  rec = superglue.load_split("record", os.path.join(DATA, "record"), "dev")
  assert superglue.submission_records("record", rec, [0, 0])[0] == {
      "idx": 0, "label": rec[0].meta["candidates"][0]}


def test_unparsable_line_names_file_and_line(tmp_path):
  (tmp_path / "val.jsonl").write_text('{"idx": 0, "premise": "a", "hypothesis": "b"}\n{"idx": 1,\n')
  with pytest.raises(examples_lib.TaskDataError, match=r"val.jsonl:2: not valid JSON"):
    superglue.load_split("rte", tmp_path, "dev")


def test_label_outside_the_task_labels_is_refused(tmp_path):
  rec = {"idx": 0, "premise": "a", "hypothesis": "b", "label": "maybe"}
  (tmp_path / "val.jsonl").write_text("\n" + json.dumps(rec) + "\n")
  with pytest.raises(examples_lib.TaskDataError,
                     match=r"val.jsonl:2: label 'maybe' is not one of the task's labels"):
    superglue.load_split("rte", tmp_path, "dev")


def test_unknown_task_lists_the_tasks():
  with pytest.raises(examples_lib.TaskDataError, match="the tasks are boolq, cb, copa, multirc, "
                     "record, rte, wic, wsc"):
    superglue.get_task("mnli")


def test_missing_file_says_what_data_dir_must_hold(tmp_path):
  with pytest.raises(examples_lib.TaskDataError, match="train.jsonl / val.jsonl / test.jsonl"):
    superglue.load_split("copa", tmp_path, "train")

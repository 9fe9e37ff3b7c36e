"""Cloze, LAMBADA and sliding-window scores against the ORIGINAL THUDM/GLM code (tests/data/README.md).

The fixture holds a random 2-layer model (THUDM names) and what the original classes gave for it:
`GLMForMultiTokenCloze` / `GLMForSingleTokenCloze` on PVP-style rows (several [MASK]s, text_b present
and absent, PVP truncation), `LambadaDataset` + `lm_forward_step`'s accuracy ([MASK] and [gMASK],
left truncation, the unidirectional variant) and `LMDataset` + summed cross-entropy (several
overlaps, including overlap = window).
"""

import functools
import json
import os

import numpy as np
import pytest

from glm_jax.evaluation import cloze, lm_eval, scoring
from glm_jax.evaluation.eval_rows import EvaluationError
from tests import original_fixtures

DATA = os.path.join(os.path.dirname(__file__), "data")


@functools.lru_cache(maxsize=None)
def _fixture():
  cfg, params = original_fixtures.converted_model(original_fixtures.load("thudm_eval_scoring.npz"))
  with open(os.path.join(DATA, "thudm_eval_scoring.json")) as f:
    cases = json.load(f)
  return cfg, params, cases


def test_fixture_covers_the_cases_the_issue_names():
  _, _, cases = _fixture()
  special = cases["special_ids"]
  assert any(c["text_a"].count(special["MASK"]) > 1 for c in cases["cloze"])
  assert any(c["text_b"] is None for c in cases["cloze"])
  assert any(c["text_b"] is not None for c in cases["cloze"])
  assert any(any(c["truncated"]) for c in cases["cloze"])
  assert any(c["length_penalty"] > 0 for c in cases["cloze"])
  assert {c["mask_token"] for c in cases["lambada"]} == {"MASK", "gMASK"}
  assert any(c["unidirectional"] for c in cases["lambada"])
  for c in cases["lambada"]:
    assert 0 < sum(c["correct"]) < len(c["correct"])
  assert any(len(ctx) + len(ans) + 3 > c["seq_length"]  # left truncation happened
             for c in cases["lambada"] for ctx, ans in zip(c["contexts"], c["answers"]))
  assert any(c["overlap"] == c["seq_length"] - 1 for c in cases["windowed_lm"])
  assert {c["mask_token"] for c in cases["windowed_lm"]} == {"MASK", "gMASK"}


@pytest.mark.parametrize("index", range(7))
def test_multi_token_scores_match_original(index):
  cfg, params, cases = _fixture()
  case = cases["cloze"][index]
  scores = cloze.multi_token_scores(cfg, params, case["text_a"], case["text_b"],
                                    case["candidates"], special_ids=cases["special_ids"],
                                    seq_length=case["seq_length"],
                                    length_penalty=case["length_penalty"])
  assert scores.shape == (len(case["candidates"]),)
  np.testing.assert_allclose(scores, case["multi_token_scores"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("index", range(7))
def test_single_token_logits_match_original(index):
  cfg, params, cases = _fixture()
  case = cases["cloze"][index]
  logits = cloze.single_token_logits(cfg, params, case["text_a"], case["text_b"],
                                     case["label_ids"], special_ids=cases["special_ids"],
                                     seq_length=case["seq_length"])
  np.testing.assert_allclose(logits, case["single_token_logits"], rtol=0, atol=1e-4)


def test_cloze_rows_and_truncation_match_original_layout():
  _, _, cases = _fixture()
  special = cases["special_ids"]
  for case in cases["cloze"]:
    example = cloze.ClozeExample(case["text_a"], case["text_b"], case["candidates"])
    rows, _, truncated = cloze.multi_token_rows([example], special_ids=special,
                                                seq_length=case["seq_length"])
    for row, expected in zip(rows, case["multi_rows"]):
      assert list(row.ids) == expected[:len(row)]
      assert all(t == special["eos"] for t in expected[len(row):])
    assert truncated == int(any(case["truncated"]))
    single = cloze.ClozeExample(case["text_a"], case["text_b"], case["label_ids"])
    rows, _, truncated = cloze.single_token_rows([single], special_ids=special,
                                                 seq_length=case["seq_length"])
    assert list(rows[0].ids) == case["single_row"][:len(rows[0])]
    assert truncated == int(case["single_truncated"])


def test_cloze_batch_equals_one_example_at_a_time():
  cfg, params, cases = _fixture()
  chosen = [c for c in cases["cloze"] if c["seq_length"] == 32 and c["length_penalty"] == 0]
  examples = [cloze.ClozeExample(c["text_a"], c["text_b"], c["candidates"]) for c in chosen]
  scores, truncated = cloze.multi_token_scores_batch(cfg, params, examples,
                                                     special_ids=cases["special_ids"],
                                                     seq_length=32, batch_size=4)
  expected = [c["multi_token_scores"] for c in chosen]
  assert len(chosen) >= 3 and truncated == sum(any(c["truncated"]) for c in chosen) == 1
  for got, want in zip(scores, expected):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("index", range(3))
def test_lambada_correct_matches_original(index):
  cfg, params, cases = _fixture()
  case = cases["lambada"][index]
  correct = lm_eval.lambada_correct(
      cfg, params, list(zip(case["contexts"], case["answers"])),
      special_ids=cases["special_ids"], seq_length=case["seq_length"],
      mask_token=case["mask_token"], unidirectional=case["unidirectional"], batch_size=4)
  assert correct.dtype == bool
  assert correct.tolist() == case["correct"]
  rows, _ = lm_eval.lambada_rows(list(zip(case["contexts"], case["answers"])),
                                 special_ids=cases["special_ids"], seq_length=case["seq_length"],
                                 mask_token=case["mask_token"],
                                 unidirectional=case["unidirectional"])
  for row, expected in zip(rows, case["rows"]):
    assert list(row.ids) == expected[:len(row)]


@pytest.mark.slow
def test_rows_padded_to_seq_length_as_the_original_score_the_same_as_bucketed_rows():
  cfg, params, cases = _fixture()
  case = cases["lambada"][0]
  rows, _ = lm_eval.lambada_rows(list(zip(case["contexts"], case["answers"])),
                                 special_ids=cases["special_ids"], seq_length=case["seq_length"])
  eos = cases["special_ids"]["eos"]
  bucketed = scoring.score_rows(cfg, params, rows, eos_id=eos, batch_size=4)
  full = scoring.score_rows(cfg, params, rows, eos_id=eos, batch_size=1,
                            pad_to=case["seq_length"])
  assert min(len(r) for r in rows) < case["seq_length"]  # so padding is added
  assert full["correct"].tolist() == bucketed["correct"].tolist() == case["correct"]
  np.testing.assert_allclose(full["logprob"], bucketed["logprob"], rtol=0, atol=1e-4)
  with pytest.raises(EvaluationError, match="pad_to=3 must be an integer >= the longest row"):
    scoring.score_rows(cfg, params, rows, eos_id=eos, pad_to=3)


@pytest.mark.parametrize("index", range(7))
def test_windowed_nll_matches_original(index):
  cfg, params, cases = _fixture()
  case = cases["windowed_lm"][index]
  nll, tokens = lm_eval.windowed_nll(cfg, params, case["doc"], special_ids=cases["special_ids"],
                                     seq_length=case["seq_length"], overlap=case["overlap"],
                                     mask_token=case["mask_token"], batch_size=4)
  assert tokens == case["tokens"] == len(case["doc"]) - 1
  assert abs(nll - case["nll"]) <= 1e-4
  rows = lm_eval.window_rows(case["doc"], special_ids=cases["special_ids"],
                             seq_length=case["seq_length"], overlap=case["overlap"],
                             mask_token=case["mask_token"])
  assert len(rows) == case["num_windows"]


@pytest.mark.slow
def test_bfloat16_config_computes_in_bf16_and_stays_close_to_the_original():
  cfg, params, cases = _fixture()
  bf16 = cfg.replace(dtype="bfloat16")
  case = cases["cloze"][0]
  scores = cloze.multi_token_scores(bf16, params, case["text_a"], case["text_b"],
                                    case["candidates"], special_ids=cases["special_ids"],
                                    seq_length=case["seq_length"])
  expected = np.asarray(case["multi_token_scores"])
  assert not np.allclose(scores, expected, rtol=0, atol=1e-5)  # really ran in bf16
  np.testing.assert_allclose(scores, expected, rtol=1e-2)
  assert np.argsort(scores).tolist() == np.argsort(expected).tolist()
  lm = cases["windowed_lm"][0]
  nll, tokens = lm_eval.windowed_nll(bf16, params, lm["doc"], special_ids=cases["special_ids"],
                                     seq_length=lm["seq_length"], overlap=lm["overlap"],
                                     mask_token=lm["mask_token"])
  assert tokens == lm["tokens"] and abs(nll - lm["nll"]) < 1e-2 * lm["nll"]


def test_bad_arguments_get_one_clear_error():
  cfg, params, cases = _fixture()
  special = cases["special_ids"]
  with pytest.raises(EvaluationError, match="overlap must be"):
    lm_eval.windowed_nll(cfg, params, list(range(10, 40)), special_ids=special, seq_length=16,
                         overlap=16)
  with pytest.raises(EvaluationError, match="position table"):
    lm_eval.windowed_nll(cfg, params, list(range(10, 100)) * 2, special_ids=special,
                         seq_length=100, overlap=10)
  with pytest.raises(EvaluationError, match="outside the model's vocabulary"):
    cloze.multi_token_scores(cfg, params, [10, special["MASK"]], None, [[500]],
                             special_ids=special, seq_length=16)
  with pytest.raises(EvaluationError, match="special_ids lacks"):
    lm_eval.lambada_correct(cfg, params, [([10, 11], [12])], special_ids={"eos": 0},
                            seq_length=16)
  with pytest.raises(EvaluationError, match="mask_token"):
    lm_eval.lambada_correct(cfg, params, [([10, 11], [12])], special_ids=special, seq_length=16,
                            mask_token="sMASK")


@pytest.mark.slow
def test_a_dataset_compiles_a_handful_of_shapes_not_one_per_example():
  cfg, params, cases = _fixture()
  rng = np.random.default_rng(0)
  examples = [(rng.integers(10, 128, rng.integers(3, 60)).tolist(),
               rng.integers(10, 128, rng.integers(1, 4)).tolist()) for _ in range(40)]
  lengths = {len(r) for r in lm_eval.lambada_rows(examples, special_ids=cases["special_ids"],
                                                  seq_length=64)[0]}
  assert len(lengths) > 20
  step = scoring._row_stats_fn(cfg, scoring.default_mesh(), 0)
  before = step._cache_size()
  for example in examples:  # one call per example: the worst case for recompiles
    lm_eval.lambada_correct(cfg, params, [example], special_ids=cases["special_ids"],
                            seq_length=64, batch_size=1)
  # row lengths bucket to {16, 32, 64} and scored slots to {1, 2, 4}
  assert step._cache_size() - before <= 9

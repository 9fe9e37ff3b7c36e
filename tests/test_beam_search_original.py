"""Seq2seq beam search against the ORIGINAL THUDM/GLM `DecoderEvaluater` (--select-topk).

The fixture (tests/data/README.md) holds a random 3-layer model (THUDM names), 6 source rows in the
original's eval layout and, for 5 decoding settings (2, 5, 6 beams; length penalty 0.6 / 0.7 / 1.0;
min_tgt_length; no_repeat_ngram_size), the original's best hypothesis per source and its score.
"""

import functools
import json
import os

import numpy as np
import pytest

from glm_jax.decode import seq2seq_beams as beam_search
from tests import fresh_interpreter, original_fixtures

DATA = os.path.join(os.path.dirname(__file__), "data")


@functools.lru_cache(maxsize=None)
def _fixture():
  cfg, params = original_fixtures.converted_model(original_fixtures.load("thudm_seq2seq_beam.npz"))
  with open(os.path.join(DATA, "thudm_seq2seq_beam.json")) as f:
    spec = json.load(f)
  return cfg, params, spec


def _decode(case, sources):
  cfg, params, spec = _fixture()
  special = spec["special"]
  masks = [s.index(special["sMASK"]) for s in sources]
  tokens, lengths, scores = beam_search.decode_seq2seq(
      cfg, params, np.array(sources), np.array(masks), sop_id=special["sop"],
      eop_id=special["eop"], num_beams=case["num_beams"], max_length=case["tgt_seq_length"],
      length_penalty=case["length_penalty"], min_length=case["min_tgt_length"],
      no_repeat_ngram_size=case["no_repeat_ngram_size"])
  tokens, lengths = np.asarray(tokens), np.asarray(lengths)
  return [tokens[i, :lengths[i]].tolist() for i in range(len(sources))], np.asarray(scores)


def test_fixture_is_non_degenerate():
  _, _, spec = _fixture()
  cases = spec["cases"]
  assert {c["num_beams"] for c in cases} >= {2, 5}
  lengths = [len(h) for c in cases for h in c["hypotheses"]]
  assert any(len(h) == c["tgt_seq_length"] for c in cases for h in c["hypotheses"])  # at budget
  assert any(0 < len(h) < c["tgt_seq_length"] for c in cases for h in c["hypotheses"])  # at eop
  assert min(lengths) < 5 < max(lengths)
  for c in cases:  # min length and no-repeat-ngram show in the original's output
    assert all(len(h) >= c["min_tgt_length"] for h in c["hypotheses"])


@pytest.mark.slow
@pytest.mark.parametrize("index", range(5))
def test_batched_beam_search_matches_original_token_for_token(index):
  _, _, spec = _fixture()
  case = spec["cases"][index]
  got, scores = _decode(case, spec["sources"])
  assert got == case["hypotheses"], case["name"]
  np.testing.assert_allclose(scores, case["scores"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("index", [1, 3])
def test_one_source_at_a_time_matches_original(index):
  _, _, spec = _fixture()
  case = spec["cases"][index]
  for source, expected in zip(spec["sources"][:3], case["hypotheses"]):
    got, _ = _decode(case, [source])
    assert got == [expected], case["name"]


@pytest.mark.slow  # beam search over many hypotheses: about 9 s
def test_no_repeat_ngram_holds_in_every_hypothesis():
  _, _, spec = _fixture()
  for case in spec["cases"]:
    n = case["no_repeat_ngram_size"]
    if n:
      got, _ = _decode(case, spec["sources"])
      for h in got:
        grams = [tuple(h[i:i + n]) for i in range(len(h) - n + 1)]
        assert len(grams) == len(set(grams))


@pytest.mark.slow
def test_beam_search_on_a_sharded_mesh_matches_original():
  proc = fresh_interpreter.run("sharded_beam_search", devices=8)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = fresh_interpreter.last_json(proc)
  assert result == {"devices": 8, "equal": [True, True]}

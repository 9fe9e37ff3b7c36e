"""Beam blank filling with `beam_rule="original"` against the ORIGINAL generate_samples.py.

Fixture (tests/data/README.md, thudm_beam_generation.json): on the greedy fixture's random model
and 7 prompts ([MASK]s, [sMASK], final [gMASK]; several blanks), each blank's tokens from the
original's `sample_sequence` beam search with its candidates taken by top-k (the deterministic
choice of --select-topk) for 2, 4 and 5 beams and length penalties 1.0, 0.7, 1.5.
"""

import functools
import json
import os

import pytest

from glm_jax import generate
from tests import original_fixtures

DATA = os.path.join(os.path.dirname(__file__), "data")


@functools.lru_cache(maxsize=None)
def _fixture():
  _, cfg, params, special, prompts, budgets = original_fixtures.greedy_generation()
  with open(os.path.join(DATA, "thudm_beam_generation.json")) as f:
    cases = json.load(f)["cases"]
  return cfg, params, special, prompts, budgets, cases


def test_fixture_is_non_degenerate():
  *_, budgets, cases = _fixture()
  lengths = [len(b) for c in cases for o in c["outputs"] for b in o]
  assert any(n == 40 for n in lengths) and any(0 < n < 12 for n in lengths)
  assert any(len(o) > 1 for o in cases[0]["outputs"])                  # several blanks
  assert cases[0]["outputs"] != cases[1]["outputs"] != cases[2]["outputs"]


@pytest.mark.slow
def test_original_beam_rule_matches_generate_samples_on_a_three_blank_prompt():
  cfg, params, special, prompts, budgets, cases = _fixture()
  spec = cases[1]
  got = generate.fill_blanks(cfg, params, prompts[3], special_ids=special,
                             max_new_tokens=budgets[3], strategy="beam",
                             num_beams=spec["num_beams"], length_penalty=spec["length_penalty"],
                             beam_rule="original")
  assert len(got) == 3 and got == spec["outputs"][3]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(3))
def test_original_beam_rule_matches_generate_samples(case):
  cfg, params, special, prompts, budgets, cases = _fixture()
  spec = cases[case]
  for prompt, budget, expected in zip(prompts, budgets, spec["outputs"]):
    got = generate.fill_blanks(cfg, params, prompt, special_ids=special, max_new_tokens=budget,
                               strategy="beam", num_beams=spec["num_beams"],
                               length_penalty=spec["length_penalty"], beam_rule="original")
    assert got == expected, (spec, prompt)


def test_unknown_beam_rule_is_refused():
  cfg, params, special, prompts, *_ = _fixture()
  with pytest.raises(generate.GenerationError, match="beam_rule='hf' is unknown"):
    generate.fill_blanks(cfg, params, prompts[0], special_ids=special, strategy="beam",
                         beam_rule="hf")

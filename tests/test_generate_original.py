"""Greedy blank filling against the ORIGINAL THUDM/GLM code's output (tests/data/README.md).

The fixture holds a random 3-layer model (THUDM names) and, for 7 prompts ([MASK]s, [sMASK],
final [gMASK]), the tokens the original `generate_samples.sample_sequence` produced per blank,
greedy (top_k=1), end token excluded; some blanks end at eop, others run to the budget.
"""

import functools

import pytest

from glm_jax import generate
from tests import original_fixtures


@functools.lru_cache(maxsize=None)
def _fixture():
  data, cfg, params, special, prompts, budgets = original_fixtures.greedy_generation()
  expected = [[[int(t) for t in data["outputs"][i, j, :data["output_lengths"][i, j]]]
               for j in range(int(data["num_blanks"][i]))] for i in range(len(prompts))]
  return cfg, params, special, prompts, expected, budgets


def test_fixture_is_non_degenerate():
  _, _, special, prompts, expected, budgets = _fixture()
  lengths = [len(b) for e in expected for b in e]
  assert any(len(blank) < b for e, b in zip(expected, budgets) for blank in e)  # ended at eop
  assert any(len(blank) == b for e, b in zip(expected, budgets) for blank in e)  # ran to budget
  assert len({t for e in expected for b in e for t in b}) > 5
  assert any(p[-1] == special["gMASK"] for p in prompts)
  assert any(special["sMASK"] in p for p in prompts)
  assert max(lengths) == 40


@pytest.mark.parametrize("index", range(7))
def test_greedy_matches_original_per_prompt(index):
  cfg, params, special, prompts, expected, budgets = _fixture()
  out = generate.fill_blanks(cfg, params, prompts[index], special_ids=special,
                             max_new_tokens=budgets[index], strategy="greedy")
  assert out == expected[index]


@pytest.mark.parametrize("budget", [12, 40])
def test_greedy_matches_original_as_batch(budget):
  cfg, params, special, prompts, expected, budgets = _fixture()
  idx = [i for i, b in enumerate(budgets) if b == budget]
  assert len(idx) >= 2
  out = generate.fill_blanks(cfg, params, [prompts[i] for i in idx], special_ids=special,
                             max_new_tokens=budget, strategy="greedy")
  assert out == [expected[i] for i in idx]

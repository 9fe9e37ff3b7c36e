"""The scorers on 8 fake CPU devices: every mesh gives the original's numbers, with no ambient context.

JAX fixes its device count at import, so the check (tests/fresh_interpreter/sharded_eval_scores.py)
runs in a fresh interpreter with 8 fake CPU devices and reports JSON on its last line.
"""

import json
import os

import numpy as np
import pytest

from tests import fresh_interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_scores_equal_the_original_on_every_mesh_without_ambient_context():
  result = fresh_interpreter.run("sharded_eval_scores", devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  out = fresh_interpreter.last_json(result)
  with open(os.path.join(ROOT, "tests", "data", "thudm_eval_scoring.json")) as f:
    cases = json.load(f)
  c, lam, lm = cases["cloze"][1], cases["lambada"][1], cases["windowed_lm"][0]
  assert out["devices"] == 8
  assert "tensor" in out["fsdp_tensor"]["embedding_spec"]  # the vocabulary really is split
  for name in ("data", "fsdp_tensor", "mixed", "ambient"):
    got = out[name]
    np.testing.assert_allclose(got["scores"], c["multi_token_scores"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["logits"], c["single_token_logits"], rtol=0, atol=1e-4)
    assert got["correct"] == lam["correct"]
    assert abs(got["nll"][0] - lm["nll"]) <= 1e-4 and got["nll"][1] == lm["tokens"]

"""The scorers on 8 fake CPU devices: every mesh gives the original's numbers, with no ambient context.

JAX fixes its device count at import, so the check runs in a fresh interpreter with
XLA_FLAGS=--xla_force_host_platform_device_count=8 and reports JSON on its last line.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json
import flax.linen as nn, jax, numpy as np
from glm_jax import cloze, convert, lm_eval, scoring, sharding

weights = np.load("tests/data/thudm_eval_scoring.npz")
cases = json.load(open("tests/data/thudm_eval_scoring.json"))
state = {k[6:]: weights[k] for k in weights.files if k.startswith("param/")}
cfg, params = convert.from_thudm(state, int(weights["num_attention_heads"]))
special = cases["special_ids"]
c, lam, lm = cases["cloze"][1], cases["lambada"][1], cases["windowed_lm"][0]

def run(mesh):
  placed = scoring.place_params(cfg, params, mesh)
  spec = placed["word_embeddings"]["embedding"].sharding.spec
  return dict(
      embedding_spec=str(spec),
      scores=cloze.multi_token_scores(cfg, placed, c["text_a"], c["text_b"], c["candidates"],
                                      special_ids=special, seq_length=c["seq_length"],
                                      length_penalty=c["length_penalty"], mesh=mesh).tolist(),
      logits=cloze.single_token_logits(cfg, params, c["text_a"], c["text_b"], c["label_ids"],
                                       special_ids=special, seq_length=c["seq_length"],
                                       mesh=mesh).tolist(),
      correct=lm_eval.lambada_correct(cfg, params, list(zip(lam["contexts"], lam["answers"])),
                                      special_ids=special, seq_length=lam["seq_length"],
                                      mask_token=lam["mask_token"], batch_size=3,
                                      mesh=mesh).tolist(),
      nll=lm_eval.windowed_nll(cfg, params, lm["doc"], special_ids=special,
                               seq_length=lm["seq_length"], overlap=lm["overlap"],
                               mask_token=lm["mask_token"], batch_size=5, mesh=mesh))

out = {"devices": jax.device_count()}
for name, shape in {"data": (8, 1, 1), "fsdp_tensor": (1, 4, 2), "mixed": (2, 2, 2)}.items():
  out[name] = run(sharding.make_mesh(dict(zip(("data", "fsdp", "tensor"), shape))))
# An unrelated ambient context (no rules, another mesh) must not change anything.
with jax.set_mesh(sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 8})), nn.logical_axis_rules(()):
  out["ambient"] = run(sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_scores_equal_the_original_on_every_mesh_without_ambient_context():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
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

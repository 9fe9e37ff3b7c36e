"""The scorers (cloze, LAMBADA, windowed LM) on 8-device meshes and under an unrelated context.

Scores the fixture cases of tests/data/thudm_eval_scoring.json on a data, an fsdp x tensor and a
mixed mesh, and once inside an ambient mesh with no rules, and prints JSON: per mesh the scores,
logits, LAMBADA hits, windowed NLL and the embedding's partition spec. Run by
tests/test_eval_sharding.py with 8 fake CPU devices.
"""

import json

import flax.linen as nn
import jax

from glm_jax.evaluation import cloze, lm_eval, scoring
from glm_jax.modeling import sharding
from tests import original_fixtures


def main():
  with open("tests/data/thudm_eval_scoring.json") as f:
    cases = json.load(f)
  cfg, params = original_fixtures.converted_model(original_fixtures.load("thudm_eval_scoring.npz"))
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
  with (jax.set_mesh(sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 8})),
        nn.logical_axis_rules(())):
    out["ambient"] = run(sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
  print(json.dumps(out))


if __name__ == "__main__":
  main()

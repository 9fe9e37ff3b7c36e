"""Greedy, sampled and beam blank filling and seq2seq beams with the params sharded (fsdp=8; data=4
x tensor=2) against the same calls on one device.

Prints JSON: the device count and, per mesh, whether each strategy's tokens equal one device's,
and the mesh axes the word embedding is split over.
Run by tests/test_generate_sharding.py with 8 fake CPU devices.
"""

import json

import jax
import numpy as np

from glm_jax import generate
from glm_jax.modeling import model, sharding
from glm_jax.decode import seq2seq_beams as beam_search

SPECIAL = {"MASK": 3, "sMASK": 4, "gMASK": 5, "eop": 6, "eos": 7, "sop": 8}
# 8 rows: split over fsdp=8 (and over data=4 on the tensor mesh); beams (4 rows) over data there.
PROMPTS = [[1, 20, 21, 3, 22, 23, 7], [1, 30, 3, 31, 32, 33, 34, 4, 35, 7]] * 3 + [
    [1, 40, 41, 42, 5], [1, 3, 50, 51, 7]]
STRATEGIES = {"greedy": dict(strategy="greedy"),
              "sample": dict(strategy="sample", seed=3, temperature=0.8, top_k=10),
              "beam": dict(strategy="beam", num_beams=4)}


def decode(cfg, params, mesh):
  out = {name: generate.fill_blanks(cfg, params, PROMPTS if name != "beam" else PROMPTS[:2],
                                    special_ids=SPECIAL, max_new_tokens=4, mesh=mesh, **options)
         for name, options in STRATEGIES.items()}
  sources = np.array([[1, 3, 40, 41, 42, 43, 0, 0], [1, 3, 50, 51, 52, 0, 0, 0]], np.int32)
  tokens, lengths, _ = beam_search.decode_seq2seq(cfg, params, sources, np.array([1, 1]),
                                                  sop_id=8, eop_id=6, num_beams=2, max_length=4,
                                                  mesh=mesh)
  out["seq2seq_beam"] = [np.asarray(tokens)[i, :int(l)].tolist()
                         for i, l in enumerate(np.asarray(lengths))]
  return out


def main():
  cfg = model.GLMConfig(vocab_size=64, num_layers=2, hidden_size=32, num_heads=4,
                        max_sequence_length=32, dtype="float32", init_std=0.2)
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  one = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  reference = decode(cfg, params, one)
  report = {"devices": jax.device_count()}
  for name, sizes in {"fsdp8": {"data": 1, "fsdp": 8, "tensor": 1},
                      "tensor2": {"data": 4, "fsdp": 1, "tensor": 2}}.items():
    mesh = sharding.make_mesh(sizes)
    placed = sharding.place(params, sharding.param_shardings(cfg, params, mesh))
    got = decode(cfg, placed, mesh)
    report[name] = {"equal": {k: got[k] == reference[k] for k in reference},
                    "embedding_spec": list(placed["word_embeddings"]["embedding"].sharding.spec)}
  report["reference_nonempty"] = all(any(b for row in reference[k] for b in row)
                                     for k in STRATEGIES)
  print(json.dumps(report))


if __name__ == "__main__":
  main()

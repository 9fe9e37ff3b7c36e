"""Seq2seq beam search on a (data=2, fsdp=2, tensor=2) mesh against the original's hypotheses.

Decodes the first two cases of tests/data/thudm_seq2seq_beam.json with the parameters placed on
the mesh and prints JSON: the device count and, per case, whether every hypothesis equals the
original's.
Run by tests/test_beam_search_original.py with 8 fake CPU devices.
"""

import json

import flax.linen as nn
import jax
import numpy as np

from glm_jax.evaluation import scoring
from glm_jax.modeling import sharding
from glm_jax.decode import seq2seq_beams as beam_search
from tests import test_beam_search_original as beam_test


def main():
  cfg, params, spec = beam_test._fixture()  # pylint: disable=protected-access
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    placed = scoring.place_params(cfg, params, mesh)
    out = []
    for case in spec["cases"][:2]:
      special = spec["special"]
      masks = [s.index(special["sMASK"]) for s in spec["sources"]]
      tokens, lengths, _ = beam_search.decode_seq2seq(
          cfg, placed, np.array(spec["sources"]), np.array(masks), sop_id=special["sop"],
          eop_id=special["eop"], num_beams=case["num_beams"], max_length=case["tgt_seq_length"],
          length_penalty=case["length_penalty"], min_length=case["min_tgt_length"],
          no_repeat_ngram_size=case["no_repeat_ngram_size"])
      tokens, lengths = np.asarray(tokens), np.asarray(lengths)
      out.append([tokens[i, :lengths[i]].tolist() for i in range(len(lengths))]
                 == case["hypotheses"])
  print(json.dumps({"devices": jax.device_count(), "equal": out}))


if __name__ == "__main__":
  main()

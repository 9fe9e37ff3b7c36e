"""Seq2seq beam decoding speed: the original's beam search (glm_jax.decode.seq2seq_beams) batched
over examples against one example at a time, in one run on one machine. Prints JSON.

  python benchmarks/seq2seq_decode.py                              # CPU: a small model
  python benchmarks/seq2seq_decode.py --shape=glm_large --src_len=608 --max_length=60 --beams=6

[eop] is made unreachable (vocab_limit), so every example decodes exactly `--max_length` tokens
per beam. Random weights: speed does not depend on them. Times are medians over `--repeats` runs
after one compiling run; tokens/s counts the best hypothesis' tokens (examples x max_length).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import bench_model  # noqa: E402
from glm_jax.decode import seq2seq_beams  # noqa: E402
import timing  # noqa: E402

SHAPES = {"small": bench_model.tiny_shape(max_sequence_length=256),
          "glm_large": bench_model.glm_large_shape(max_sequence_length=1024)}
CLS, MASK, SOP = 1, 2, 3


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
  parser.add_argument("--examples", type=int, default=8)
  parser.add_argument("--src_len", type=int, default=128)
  parser.add_argument("--max_length", type=int, default=32)
  parser.add_argument("--beams", type=int, default=4)
  parser.add_argument("--no_repeat_ngram_size", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  cfg, params = bench_model.build_without_dropout(SHAPES[args.shape])
  rng = np.random.default_rng(0)
  src = rng.integers(8, cfg.vocab_size - 1, (args.examples, args.src_len)).astype(np.int32)
  src[:, 0], src[:, 1] = CLS, MASK
  masks = np.ones((args.examples,), np.int32)
  eop = cfg.vocab_size - 1

  def decode(rows, mask_rows):
    return seq2seq_beams.decode_seq2seq(
        cfg, params, rows, mask_rows, sop_id=SOP, eop_id=eop, num_beams=args.beams,
        max_length=args.max_length, length_penalty=1.0,
        no_repeat_ngram_size=args.no_repeat_ngram_size, vocab_limit=eop)

  out = decode(src, masks)
  assert (np.asarray(out[1]) == args.max_length).all(), "an example stopped early"
  t_batched = timing.median_seconds(lambda: decode(src, masks), args.repeats)
  t_single = timing.median_seconds(lambda: [decode(src[i:i + 1], masks[i:i + 1])
                                   for i in range(args.examples)], args.repeats)
  tokens = args.examples * args.max_length
  print(json.dumps({
      "benchmark": "seq2seq_decode", "shape": args.shape, "device": jax.devices()[0].device_kind,
      "backend": jax.default_backend(), "jax": jax.__version__, "dtype": cfg.dtype,
      "examples": args.examples, "src_len": args.src_len, "max_length": args.max_length,
      "num_beams": args.beams, "no_repeat_ngram_size": args.no_repeat_ngram_size,
      "batched_s": t_batched, "batched_tokens_per_s": tokens / t_batched,
      "one_at_a_time_s": t_single, "one_at_a_time_tokens_per_s": tokens / t_single,
      "speedup_batched_vs_one_at_a_time": t_single / t_batched}, indent=2))


if __name__ == "__main__":
  main()

"""Evaluation throughput: LAMBADA-style scoring batched vs one example at a time, one JSON line.

  python benchmarks/eval.py                                   # small model, CPU
  python benchmarks/eval.py --layers=24 --hidden=1024 --heads=16 --vocab=30592 --examples=256

Three modes score the same rows (`lm_eval.lambada_rows`) through `scoring.score_rows`:
- batched: `--batch_size` rows per call, each batch padded to its length bucket (what
  `lm_eval.lambada_correct` does);
- one_at_a_time: one row per call, same buckets: what batching alone buys;
- one_at_a_time_full_rows: one row per call padded to `--seq_length`, as the original's
  LambadaDataset lays every row out (config_tasks/zero_lambada.sh: --seq-length 512).
Every shape is compiled in a warm-up pass first, so the ratios measure execution only.
Tokens/s counts real (unpadded) tokens of the rows.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import bench_model  # noqa: E402
from glm_jax.evaluation import lm_eval, scoring  # noqa: E402

SPECIAL = {"eos": 0, "CLS": 1, "MASK": 2, "sop": 3, "eop": 4, "gMASK": 5}


def make_examples(num, vocab, seed=0):
  """LAMBADA-like: contexts of 40..120 tokens, last words of 1..3 tokens."""
  rng = np.random.default_rng(seed)
  return [(rng.integers(10, vocab, rng.integers(40, 121)).tolist(),
           rng.integers(10, vocab, rng.integers(1, 4)).tolist()) for _ in range(num)]


def timed(fn, repeats):
  fn()  # compile every bucket first
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser()
  bench_model.add_size_flags(parser, vocab=8192)
  parser.add_argument("--examples", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--seq_length", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()

  cfg, params = bench_model.build_without_dropout(bench_model.size_from_flags(args))
  mesh = scoring.default_mesh()
  params = scoring.place_params(cfg, params, mesh)
  examples = make_examples(args.examples, args.vocab)
  rows, _ = lm_eval.lambada_rows(examples, special_ids=SPECIAL, seq_length=args.seq_length)
  tokens = scoring.tokens_per_batch(rows)
  kw = dict(eos_id=SPECIAL["eos"], mesh=mesh)

  def batched():
    return scoring.score_rows(cfg, params, rows, batch_size=args.batch_size, **kw)["correct"]

  def one_at_a_time(pad_to=None):
    return [scoring.score_rows(cfg, params, [row], batch_size=1, pad_to=pad_to, **kw)["correct"][0]
            for row in rows]

  def full_rows():
    return one_at_a_time(pad_to=args.seq_length)

  expected = batched().tolist()
  assert expected == one_at_a_time() == full_rows(), "the modes disagree"
  seconds = {name: timed(fn, args.repeats)
             for name, fn in [("batched", batched), ("one_at_a_time", one_at_a_time),
                              ("one_at_a_time_full_rows", full_rows)]}
  print(json.dumps({
      "benchmark": "eval_lambada_scoring", "device": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "layers": args.layers, "hidden": args.hidden,
      "vocab": args.vocab, "dtype": args.dtype, "examples": args.examples,
      "real_tokens": tokens, "batch_size": args.batch_size, "seq_length": args.seq_length,
      **{f"{name}_tokens_per_s": round(tokens / s, 1) for name, s in seconds.items()},
      "speedup_vs_one_at_a_time": round(seconds["one_at_a_time"] / seconds["batched"], 2),
      "speedup_vs_one_at_a_time_full_rows":
          round(seconds["one_at_a_time_full_rows"] / seconds["batched"], 2)}))


if __name__ == "__main__":
  main()

"""Evaluation throughput: LAMBADA-style scoring batched vs one example at a time, one JSON line.

  python benchmarks/eval.py                                   # small model, CPU
  python benchmarks/eval.py --layers=24 --hidden=1024 --heads=16 --vocab=30592 --examples=256

Both modes run the same rows through `glm_jax.lm_eval.lambada_correct` (so the same jitted,
bucketed scorer); "one at a time" calls it per example with batch_size=1, as an unbatched loop
would. Every shape is compiled in a warm-up pass first, so the ratio measures execution only.
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
from glm_jax import lm_eval, model, scoring  # noqa: E402

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
  parser.add_argument("--seq_length", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()

  cfg = model.GLMConfig(**bench_model.size_from_flags(args))
  mesh = scoring.default_mesh()
  params = scoring.place_params(cfg, model.init_params(cfg, jax.random.PRNGKey(0)), mesh)
  examples = make_examples(args.examples, args.vocab)
  rows, _ = lm_eval.lambada_rows(examples, special_ids=SPECIAL, seq_length=args.seq_length)
  tokens = scoring.tokens_per_batch(rows)
  kw = dict(special_ids=SPECIAL, seq_length=args.seq_length, mesh=mesh)

  def batched():
    return lm_eval.lambada_correct(cfg, params, examples, batch_size=args.batch_size, **kw)

  def one_at_a_time():
    return [lm_eval.lambada_correct(cfg, params, [ex], batch_size=1, **kw) for ex in examples]

  assert batched().tolist() == [bool(r[0]) for r in one_at_a_time()]
  batched_s = timed(batched, args.repeats)
  single_s = timed(one_at_a_time, args.repeats)
  print(json.dumps({
      "benchmark": "eval_lambada_scoring", "device": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "layers": args.layers, "hidden": args.hidden,
      "vocab": args.vocab, "dtype": args.dtype, "examples": args.examples,
      "real_tokens": tokens, "batch_size": args.batch_size,
      "batched_tokens_per_s": round(tokens / batched_s, 1),
      "one_at_a_time_tokens_per_s": round(tokens / single_s, 1),
      "speedup": round(single_s / batched_s, 2)}))


if __name__ == "__main__":
  main()

"""lm-evaluation-harness requests on a GLM: batched vs one request a call, one JSON line.

  python benchmarks/harness.py                       # small random model, CPU
  python benchmarks/harness.py --layers=24 --hidden=1024 --heads=16 --dtype=bfloat16

The same `loglikelihood` requests (lm_eval Instances: a 40..120-word context, a 1..3-word
continuation, as LAMBADA / multiple choice send them) go through the `glm_jax` harness model:
- batched: all requests in one `loglikelihood` call (how the harness calls a model), scored
  `--batch_size` rows per jitted call in length buckets;
- one_request: one `loglikelihood` call per request (a model that scores requests one by one).
Both are warmed up first (every shape compiled; median of --repeats runs), so the ratio
measures execution only.
Needs lm-eval (pip install -e ".[harness]").
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import bench_model  # noqa: E402
import timing  # noqa: E402
from glm_jax import harness  # noqa: E402
from input_pipeline import tokenizer as tokenizer_lib  # noqa: E402


def word_tokenizer(num_words: int, directory: str):
  """A BERT-style tokenizer of `num_words` words w0, w1, ... (one token each)."""
  specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  with open(os.path.join(directory, "vocab.txt"), "w") as f:
    f.write("\n".join(specials + [f"w{i}" for i in range(num_words)]) + "\n")
  return tokenizer_lib.load_pretrained(directory, "bert-uncased")


def make_requests(num: int, num_words: int, seed: int = 0):
  from lm_eval.api.instance import Instance
  rng = np.random.default_rng(seed)

  def words(n):
    return " ".join(f"w{i}" for i in rng.integers(0, num_words, n))

  return [Instance("loglikelihood", {}, (words(rng.integers(40, 121)),
                                         " " + words(rng.integers(1, 4))), i)
          for i in range(num)]


def main():
  parser = argparse.ArgumentParser()
  bench_model.add_size_flags(parser, vocab=1024)
  parser.add_argument("--requests", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--seq_length", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  harness.import_lm_eval()
  cfg, params = bench_model.build_without_dropout(bench_model.size_from_flags(args))
  with tempfile.TemporaryDirectory() as directory:
    tok = word_tokenizer(args.vocab - 16, directory)
  lm = harness.model_class()(loaded=(cfg, params, tok), seq_length=args.seq_length,
                             batch_size=args.batch_size)
  requests = make_requests(args.requests, args.vocab - 16)

  def batched():
    return lm.loglikelihood(requests, disable_tqdm=True)

  def one_request():
    return [lm.loglikelihood([r], disable_tqdm=True)[0] for r in requests]

  a, b = batched(), one_request()
  assert [g for _, g in a] == [g for _, g in b], "the modes disagree"
  np.testing.assert_allclose([x for x, _ in a], [x for x, _ in b], rtol=1e-4, atol=1e-4)
  seconds = {"batched": timing.median_seconds(batched, args.repeats),
             "one_request": timing.median_seconds(one_request, args.repeats)}
  print(json.dumps({
      "benchmark": "harness_loglikelihood", "device": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "layers": args.layers, "hidden": args.hidden,
      "vocab": args.vocab, "dtype": args.dtype, "requests": args.requests,
      "batch_size": args.batch_size, "seq_length": args.seq_length,
      **{f"{name}_requests_per_s": round(args.requests / s, 2) for name, s in seconds.items()},
      "speedup_batched_vs_one_request": round(seconds["one_request"] / seconds["batched"], 2)}))


if __name__ == "__main__":
  main()

"""Blank-filling speed: prefill latency and decode tokens/s with the KV cache, against the same
jitted loop by full recomputation, in one run on one machine. Prints JSON.

  python benchmarks/generate.py --shape=tiny                  # CPU: configs/tiny.py's model
  python benchmarks/generate.py --shape=glm_large --prompt_len=384   # GPU: GLM-Large, bf16

Every prompt ends in [gMASK] and the end tokens are made unreachable, so every row decodes
exactly `--new_tokens` tokens. Random weights: speed does not depend on them.
Times are medians over `--repeats` runs after one compiling run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bench_model  # noqa: E402
from glm_jax import decode_loop, generate  # noqa: E402
from tests import recompute_decode  # noqa: E402
import timing  # noqa: E402

SHAPES = {"tiny": bench_model.tiny_shape(max_sequence_length=128),
          "glm_large": bench_model.glm_large_shape(max_sequence_length=512)}
SOP, GMASK = 5, 4


def bench(cfg, params, batch, prompt_len, new_tokens, repeats):
  rng = np.random.default_rng(batch)
  ids = rng.integers(8, cfg.vocab_size - 1, (batch, prompt_len)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 2, GMASK                     # [CLS] ... [gMASK]
  end = cfg.vocab_size - 1                               # unreachable: vocab_limit = end
  special = {"MASK": 3, "sMASK": 6, "gMASK": GMASK, "sop": SOP, "eop": end, "eos": end}
  b = generate.make_batch(cfg, [list(r) for r in ids], special, new_tokens)
  arrays = [jnp.asarray(x) for x in (b.ids, b.lengths, b.blank_pos, b.num_blanks)]
  total = b.ids.shape[1] + new_tokens

  def run(use_cache):
    loop = decode_loop.fill if use_cache else recompute_decode.fill
    return loop(  # the loop itself, with the end token unreachable
        params, *arrays, jax.random.PRNGKey(0), jnp.float32(1.0), jnp.float32(0.0), cfg=cfg,
        max_new_tokens=new_tokens, greedy=True, top_k=0, no_repeat_ngram_size=0, sop=SOP,
        ends=(end,), vocab_limit=end)

  prefill = jax.jit(lambda p, i, l: decode_loop.prefill(cfg, p, i, l, total))
  t_prefill = timing.median_seconds(lambda: prefill(params, arrays[0], arrays[1]), repeats)
  out = run(True)
  assert int((np.asarray(out) >= 0).sum()) == batch * new_tokens, "a row stopped early"
  t_cache = timing.median_seconds(lambda: run(True), repeats)
  t_recompute = timing.median_seconds(lambda: run(False), repeats)
  decode = max(t_cache - t_prefill, 1e-9)
  return {
      "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
      "prefill_latency_ms": 1e3 * t_prefill,
      "cache_total_s": t_cache,
      "cache_decode_tokens_per_s": batch * new_tokens / decode,
      "cache_ms_per_token_step": 1e3 * t_cache / new_tokens,
      "recompute_total_s": t_recompute,
      "recompute_tokens_per_s": batch * new_tokens / t_recompute,
      "recompute_ms_per_token_step": 1e3 * t_recompute / new_tokens,
      # Per generated token, prefill counted against the cache: the conservative ratio.
      "speedup_cache_vs_recompute": t_recompute / t_cache,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
  parser.add_argument("--batches", default="1,16")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--attention_backend", default="xla",
                      help="xla (default, same kernel for both paths) | auto | cudnn")
  args = parser.parse_args()
  cfg, params = bench_model.build_without_dropout(SHAPES[args.shape],
                                                  attention_backend=args.attention_backend)
  results = [bench(cfg, params, int(b), args.prompt_len, args.new_tokens, args.repeats)
             for b in args.batches.split(",")]
  print(json.dumps({
      "benchmark": "generate", "shape": args.shape, "device": jax.devices()[0].device_kind,
      "backend": jax.default_backend(), "jax": jax.__version__, "dtype": cfg.dtype,
      "attention_backend": args.attention_backend,
      "recompute": "same jitted loop, whole fixed-size buffer (prompt + new tokens) every step",
      "results": results}, indent=2))


if __name__ == "__main__":
  main()

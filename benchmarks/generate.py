"""Blank-filling speed: prefill latency and decode tokens/s with the KV cache, against the same
jitted loop by full recomputation, in one run on one machine. Prints JSON.

  python benchmarks/generate.py --shape=tiny                  # CPU: configs/tiny.py's model
  python benchmarks/generate.py --shape=glm_large --prompt_len=384   # GPU: GLM-Large, bf16
  python benchmarks/generate.py --quantize=int8 --batches=1,8  # int8 weights (and an int8 KV
      cache) against bf16 weights and cache, the same cached loop, bf16 compute, in one run

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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bench_model  # noqa: E402
from glm_jax import generate  # noqa: E402
from glm_jax.decode import cache as cache_lib, loop as decode_loop  # noqa: E402
from tests import recompute_decode  # noqa: E402
import timing  # noqa: E402

SHAPES = {"tiny": bench_model.tiny_shape(max_sequence_length=128),
          "glm_large": bench_model.glm_large_shape(max_sequence_length=512)}
SOP, GMASK = 5, 4


def _inputs(cfg, batch, prompt_len, new_tokens):
  """Prompts `[CLS] random ids [gMASK]` as device arrays, with the end token unreachable."""
  rng = np.random.default_rng(batch)
  ids = rng.integers(8, cfg.vocab_size - 1, (batch, prompt_len)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 2, GMASK                     # [CLS] ... [gMASK]
  end = cfg.vocab_size - 1                               # unreachable: vocab_limit = end
  special = {"MASK": 3, "sMASK": 6, "gMASK": GMASK, "sop": SOP, "eop": end, "eos": end}
  b = generate.make_batch(cfg, [list(r) for r in ids], special, new_tokens)
  arrays = [jnp.asarray(x) for x in (b.ids, b.lengths, b.blank_pos, b.num_blanks)]
  return arrays, end, b.ids.shape[1] + new_tokens


def _run_loop(cfg, params, arrays, end, new_tokens, use_cache=True):
  loop = decode_loop.fill if use_cache else recompute_decode.fill
  return loop(  # the loop itself, with the end token unreachable
      params, *arrays, jax.random.PRNGKey(0), jnp.float32(1.0), jnp.float32(0.0), cfg=cfg,
      max_new_tokens=new_tokens, greedy=True, top_k=0, no_repeat_ngram_size=0, sop=SOP,
      ends=(end,), vocab_limit=end)


def bench(cfg, params, batch, prompt_len, new_tokens, repeats):
  arrays, end, total = _inputs(cfg, batch, prompt_len, new_tokens)

  def run(use_cache):
    return _run_loop(cfg, params, arrays, end, new_tokens, use_cache)

  prefill = jax.jit(lambda p, i, l: cache_lib.prefill_prompt(cfg, p, i, l, total))
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


def bench_quantized(cfg, params, batch, prompt_len, new_tokens, repeats, method):
  """Decode tokens/s (prefill included) of bf16 weights + bf16 cache (the baseline) against
  `method` weights with a bf16 and an int8 KV cache; all compute in bf16."""
  from glm_jax.modeling import quantization  # pylint: disable=g-import-not-at-top
  cfg = cfg.replace(dtype="bfloat16", param_dtype="bfloat16")
  bf16 = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
  quantized = quantization.quantize_params(params, method)
  arrays, end, _ = _inputs(cfg, batch, prompt_len, new_tokens)
  variants = {"bf16_weights_bf16_cache": (cfg, bf16),
              f"{method}_weights_bf16_cache": (cfg.replace(quantization=method), quantized),
              f"{method}_weights_int8_cache": (cfg.replace(quantization=method,
                                                           kv_cache_dtype="int8"), quantized)}
  out = {"batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens}
  rounds = {name: [] for name in variants}  # interleaved, so a busy host slows every variant alike
  for _ in range(repeats):
    for name, (c, p) in variants.items():
      rounds[name].append(timing.median_seconds(
          lambda c=c, p=p: _run_loop(c, p, arrays, end, new_tokens), 1))
  for name, seconds in rounds.items():
    out[f"{name}_tokens_per_s"] = batch * new_tokens / float(np.median(seconds))
  base = out["bf16_weights_bf16_cache_tokens_per_s"]
  for name in list(variants)[1:]:
    out[f"{name}_vs_bf16"] = out[f"{name}_tokens_per_s"] / base
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
  parser.add_argument("--batches", default="1,16")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--attention_backend", default="xla",
                      help="xla (default, same kernel for both paths) | auto | cudnn")
  parser.add_argument("--quantize", default="", help="int8: compare int8 weights (and an int8 "
                      "KV cache) with bf16 instead of cache vs recompute")
  args = parser.parse_args()
  cfg, params = bench_model.build_without_dropout(SHAPES[args.shape],
                                                  attention_backend=args.attention_backend)
  if args.quantize:
    print(json.dumps({
        "benchmark": "generate_quantized", "shape": args.shape,
        "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
        "jax": jax.__version__, "compute_dtype": "bfloat16", "quantize": args.quantize,
        "tokens_per_s": "batch * new_tokens / (prefill + decode), median of --repeats rounds "
                        "that time each variant in turn",
        "results": [bench_quantized(cfg, params, int(b), args.prompt_len, args.new_tokens,
                                    args.repeats, args.quantize)
                    for b in args.batches.split(",")]}, indent=2))
    return
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

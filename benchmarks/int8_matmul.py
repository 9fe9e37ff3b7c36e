"""Which int8 weight-only matmul XLA compiles better, on one dense layer's shape. Prints JSON.

  python benchmarks/int8_matmul.py                       # CPU timings + compiled temp bytes
  python benchmarks/int8_matmul.py --topology=v5e:1x1    # also libtpu's compile (ESTIMATE: no run)

Three formulations of `x . (q * s)` (q int8 `[in, out]`, s bfloat16 `[out]`), against bf16 weights:
  dequantize_then_matmul: `x . (q.astype(bf16) * s)`   (glm_jax.modeling.quantization.int8_dot)
  int8_in_dot_scale_out:  `(x . q.astype(bf16)) * s`
  mixed_int8_bf16_dot:    `dot_general(x, q, preferred_element_type=bf16) * s` (int8 operand)
`temp_bytes` is the compiled program's scratch: a widened copy of the kernel shows up there;
`bytes_accessed` (XLA's cost model) is what a memory-bound decode step pays: ~1 byte per weight
when the int8 kernel is read as int8 inside the dot, ~2 (or more) when it is widened first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from glm_jax.modeling import quantization  # noqa: E402
import timing  # noqa: E402

BF16 = jnp.bfloat16
CONTRACT = (((1,), (0,)), ((), ()))


def formulations():
  return {
      "bf16_weights": lambda x, w, q, s: jax.lax.dot_general(x, w, CONTRACT),
      "dequantize_then_matmul": lambda x, w, q, s: quantization.int8_dot(
          x, q, s, CONTRACT[0], BF16),
      "int8_in_dot_scale_out": lambda x, w, q, s: jax.lax.dot_general(
          x, q.astype(BF16), CONTRACT) * s,
      "mixed_int8_bf16_dot": lambda x, w, q, s: jax.lax.dot_general(
          x, q, CONTRACT, preferred_element_type=BF16) * s,
  }


def cpu_report(tokens, d_in, d_out, repeats):
  key = jax.random.PRNGKey(0)
  w = (0.02 * jax.random.normal(key, (d_in, d_out))).astype(BF16)
  q, s = quantization.quantize(w, (0,))
  x = jax.random.normal(key, (tokens, d_in)).astype(BF16)
  out = {}
  for name, fn in formulations().items():
    jitted = jax.jit(fn)
    compiled = jitted.lower(x, w, q, s).compile()
    seconds = timing.median_seconds(lambda: jitted(x, w, q, s), repeats)
    out[name] = {"cpu_ms": 1e3 * seconds,
                 "cpu_temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes)}
  return out


def tpu_report(topology, tokens, d_in, d_out):
  from glm_jax.training import aot  # pylint: disable=g-import-not-at-top
  aot.prepare_libtpu()
  device = aot.topology_devices(topology)[0]
  sharding = jax.sharding.SingleDeviceSharding(device)
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
  args = (spec((tokens, d_in), BF16), spec((d_in, d_out), BF16), spec((d_in, d_out), jnp.int8),
          spec((d_out,), BF16))
  out = {}
  for name, fn in formulations().items():
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out[name] = {"tpu_temp_bytes_ESTIMATE": int(compiled.memory_analysis().temp_size_in_bytes),
                 "tpu_bytes_accessed_ESTIMATE": int(cost.get("bytes accessed", -1)),
                 "tpu_fusions": compiled.as_text().count(" fusion(")}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tokens", type=int, default=16, help="rows of x (decode: the batch)")
  parser.add_argument("--d_in", type=int, default=1024, help="GLM-Large hidden size")
  parser.add_argument("--d_out", type=int, default=4096, help="GLM-Large FFN width")
  parser.add_argument("--repeats", type=int, default=50)
  parser.add_argument("--topology", default="", help="also compile for this TPU topology")
  a = parser.parse_args()
  report = {"shape": {"tokens": a.tokens, "d_in": a.d_in, "d_out": a.d_out},
            "cpu": cpu_report(a.tokens, a.d_in, a.d_out, a.repeats)}
  if a.topology:
    report["tpu_compile_only"] = tpu_report(a.topology, a.tokens, a.d_in, a.d_out)
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()

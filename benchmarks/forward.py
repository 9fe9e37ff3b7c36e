"""Forward+backward throughput of the GLM model on synthetic GLM batches, one JSON line per backend.

  python benchmarks/forward.py --config=configs/tiny.py --batch=8 --seq=128
  python benchmarks/forward.py --config=configs/large.py --batch=16 --seq=512   # on a GPU

Every attention backend that can run on this machine is measured in the same process, so their
ratio is meaningful; absolute numbers are only comparable on the same device.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from glm_jax.modeling import model  # noqa: E402


def load_config(path):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def synthetic_batch(cfg, batch, seq, seed=0):
  """Half Part A, half Part B per row, with varying sep, as pretraining batches look."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, cfg.vocab_size, (batch, seq), dtype=np.int32)
  sep = rng.integers(seq // 4, 3 * seq // 4, (batch,)).astype(np.int32)
  pos = np.zeros((batch, 2, seq), np.int32)
  for b in range(batch):
    pos[b, 0, :sep[b]] = np.arange(sep[b])
    pos[b, 0, sep[b]:] = rng.integers(0, sep[b], seq - sep[b])
    pos[b, 1, sep[b]:] = np.arange(1, seq - sep[b] + 1) % 8 + 1
  pos = np.minimum(pos, cfg.max_sequence_length)
  return jnp.asarray(ids), jnp.asarray(pos), jnp.asarray(sep)


def measure(cfg, batch, seq, steps):
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  ids, pos, sep = synthetic_batch(cfg, batch, seq)

  def loss(p):
    logits = model.GLM(cfg).apply({"params": p}, ids, pos, sep)
    return jnp.mean(jax.nn.logsumexp(logits, -1))

  step = jax.jit(jax.value_and_grad(loss))
  jax.block_until_ready(step(params))  # compile
  start = time.perf_counter()
  for _ in range(steps):
    out = step(params)
  jax.block_until_ready(out)
  seconds = (time.perf_counter() - start) / steps
  n = model.count_params(cfg)
  flops = (6 * n + 12 * cfg.num_layers * cfg.hidden_size * seq) * batch * seq
  return {"tokens_per_s": round(batch * seq / seconds), "step_ms": round(seconds * 1e3, 3),
          "tflops_per_s": round(flops / seconds / 1e12, 3)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/tiny.py")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=0, help="default: the config's seq_length")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--dtype", default="", help="override the config's compute dtype")
  args = parser.parse_args()
  config = load_config(args.config)
  if config.vocab_from_tokenizer:
    config.model.vocab_size = 4096  # synthetic: no tokenizer needed
  cfg = model.as_glm_config(config).replace(embedding_dropout=0.0, attention_dropout=0.0,
                                            hidden_dropout=0.0)
  if args.dtype:
    cfg = cfg.replace(dtype=args.dtype)
  seq = args.seq or config.seq_length
  backends = (["xla"] + (["cudnn"] if jax.default_backend() == "gpu" else [])
              + (["pallas"] if jax.default_backend() == "tpu" else []))
  for backend in backends:
    result = measure(cfg.replace(attention_backend=backend), args.batch, seq, args.steps)
    print(json.dumps({"benchmark": "forward_backward", "config": args.config, "backend": backend,
                      "device": jax.devices()[0].device_kind, "dtype": cfg.dtype,
                      "batch": args.batch, "seq": seq, **result}))


if __name__ == "__main__":
  main()

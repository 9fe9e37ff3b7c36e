"""Throughput of the full train step (forward, backward, AdamW) on synthetic batches; prints JSON.

  python benchmarks/train_step.py --config=configs/tiny.py                 # CPU smoke run
  (or python -m benchmarks.train_step ...)
  python benchmarks/train_step.py --config=configs/large.py --batch=64     # one GPU, GLM-Large
  python benchmarks/train_step.py --config=configs/glm_2b.py --batch=16

No TensorFlow and no tokenizer: batches come from glm_jax.training.train_data.synthetic_example (the GLM
layout: bidirectional Part A, causal Part B, per-example sep). On GPU, --fast_attention (default)
sets attention_dropout=0 so that attention_backend='auto' picks the cuDNN fused kernel with the
GLM mask; the JSON says which backend ran. data_wait_fraction: over --steps more steps fed the
way train.py feeds them (fresh synthetic host batches, built and placed on the devices by
glm_jax/training/prefetch.py while the previous step runs), the share of the time spent waiting for data.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

if not __package__:  # run as a script: import the repo's packages, not benchmarks/ siblings
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np
from ml_collections import config_flags

from glm_jax.modeling import attention
from glm_jax.training import metrics
from glm_jax.modeling import model as model_lib
from glm_jax.training import optim
from glm_jax.training import prefetch
from glm_jax.modeling import sharding
from glm_jax.training import train_data
from glm_jax.training import train_state

_CONFIG = config_flags.DEFINE_config_file("config", "configs/tiny.py", "Run config file.")
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch (0: 64 on GPU/TPU, 8 on CPU).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after --warmup untimed ones).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (compile + first runs).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed windows; the median is reported.")
_FAST_ATTENTION = flags.DEFINE_boolean("fast_attention", True, "attention_dropout=0 so the "
                                       "cuDNN kernel can run (GPU).")


def synthetic_batch(config, batch: int) -> dict:
  rows = [train_data.synthetic_example(0, 0, r, config.seq_length, config.model.vocab_size)
          for r in range(batch)]
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def peak_memory_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  return None


def time_steps(step_fn, state, batch, steps: int):
  start = time.perf_counter()
  for _ in range(steps):
    state, step_metrics = step_fn(state, batch)
  jax.block_until_ready((state, step_metrics))
  return state, (time.perf_counter() - start) / steps, step_metrics


def fed_steps(config, mesh, step_fn, state, steps: int):
  """`steps` steps fed as train.py feeds them (train_data + prefetch.DevicePrefetcher, fresh
  synthetic rows each step): (state, the fraction of the time the step thread waited for data)."""
  batches = prefetch.DevicePrefetcher(train_data.build(config, mesh=mesh).train, mesh)
  state, step_metrics = step_fn(state, next(batches))
  jax.block_until_ready(step_metrics)
  batches.wait_seconds = 0.0
  start = time.perf_counter()
  for _ in range(steps):
    state, step_metrics = step_fn(state, next(batches))
  jax.block_until_ready((state, step_metrics))
  fraction = batches.wait_seconds / (time.perf_counter() - start)
  batches.close()
  return state, fraction


def configure(config):
  on_cpu = jax.default_backend() == "cpu"
  config.global_batch_size = _BATCH.value or (8 if on_cpu else 64)
  config.grad_accum_steps = 1
  config.synthetic_data = True
  if _FAST_ATTENTION.value and not on_cpu:
    config.model.attention_dropout = 0.0
  return config


def main(argv):
  del argv
  config = configure(_CONFIG.value)
  cfg = model_lib.as_glm_config(config)
  mesh = sharding.make_mesh(config.mesh)
  optimizer = optim.make_optimizer(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    _, shardings = train_state.state_shardings(config, mesh, optimizer)
    state = train_state.init_state(config, optimizer, shardings)
    step_fn = train_state.make_train_step(config, mesh, optimizer, shardings)
    batch = sharding.put_batch(synthetic_batch(config, config.global_batch_size), mesh)
    compile_start = time.perf_counter()
    state, _, _ = time_steps(step_fn, state, batch, _WARMUP.value)
    warmup_s = time.perf_counter() - compile_start
    windows = []
    for _ in range(_REPEATS.value):
      state, seconds, step_metrics = time_steps(step_fn, state, batch, _STEPS.value)
      windows.append(seconds)
    state, wait_fraction = fed_steps(config, mesh, step_fn, state, _STEPS.value)
  step_s = statistics.median(windows)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
  tokens = config.global_batch_size * config.seq_length
  peak = metrics.peak_tflops(config)
  flops_token = metrics.flops_per_token(cfg, config.seq_length, num_params)
  result = {
      "config": config_flags.get_config_filename(flags.FLAGS["config"]),
      "device_kind": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
      "jax_version": jax.__version__, "mesh": dict(mesh.shape),
      "params": num_params, "layers": cfg.num_layers, "hidden": cfg.hidden_size,
      "batch": config.global_batch_size, "seq_length": config.seq_length,
      "dtype": cfg.dtype, "remat_policy": cfg.remat_policy,
      "attention_backend": attention.resolve_backend(
          cfg.attention_backend, dtype=cfg.dtype,
          training_with_dropout=cfg.attention_dropout > 0),
      "attention_dropout": cfg.attention_dropout,
      "warmup_s_incl_compile": round(warmup_s, 3), "step_s_median": step_s,
      "step_s_windows": windows, "flops_per_token": flops_token, "peak_tflops": peak,
      **metrics.throughput(tokens, step_s, flops_token, peak, jax.device_count()),
      "peak_memory_bytes": peak_memory_bytes(),
      "host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "final_loss": float(step_metrics["loss"]),
      "data_wait_fraction": round(wait_fraction, 5),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)

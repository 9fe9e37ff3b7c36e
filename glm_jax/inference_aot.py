"""`generate --compile_only` and `evaluate --compile_only`: the real decode / scoring programs
compiled for a TPU topology with abstract params of the config's size (nothing is read).

The report is `train --compile_only`'s (glm_jax/training/aot.py: `per_chip_gib`, `hbm_gib`, `fits`,
`collectives`, ...) plus the program's own shape keys. Options are keyword arguments that land in
the report as given, so another (e.g. a quantization) is one more keyword and one more flag.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from glm_jax import run_checks
from glm_jax.modeling import model as model_lib
from glm_jax.modeling import sharding
from glm_jax.training import aot

GENERATE_DEFAULTS = dict(batch_size=1, prompt_length=512, max_new_tokens=128, num_blanks=1,
                         strategy="greedy", num_beams=4, quantize="", kv_cache_dtype="")
# Scored slots per row (the scorers pad them to a bucket): a LAMBADA answer word, a cloze
# candidate; WikiText scores up to a whole window.
SCORED_SLOTS = {"lambada": 8, "cloze": 16}


def inference_config(config, dtype: str = "bfloat16") -> model_lib.GLMConfig:
  """The model of a run config, for inference: no dropout, params and compute in `dtype`
  (what `extract_params --dtype` writes and generate / evaluate compute in on TPU)."""
  cfg = run_checks.model_config(config)  # its refusals: one line and exit 2, before compiling
  return cfg.replace(dtype=dtype, param_dtype=dtype, embedding_dropout=0.0,
                     attention_dropout=0.0, hidden_dropout=0.0)


def _topology(topology: str, mesh_config, num_slices: int):
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  devices = aot.topology_devices(topology, num_slices)
  return devices, hosts.make_mesh(mesh_config, devices)  # the builder every run uses


def _param_inputs(cfg, mesh):
  shapes = model_lib.param_shapes(cfg)
  return shapes, sharding.abstract_arrays(shapes, sharding.param_shardings(cfg, shapes, mesh))


def compile_generate(config, topology: str, mesh_config, *, num_slices: int = 1,
                     dtype: str = "bfloat16", **options: Any) -> dict:
  """Compiles the KV-cached decode loop (greedy / sample) or the blank beam search for
  `topology`: `batch_size` prompts of `prompt_length` tokens, `num_blanks` blanks of
  `max_new_tokens` each. Returns the report."""
  from glm_jax.decode import blank_beams, loop  # pylint: disable=g-import-not-at-top
  from glm_jax.decode import cache as cache_lib  # pylint: disable=g-import-not-at-top
  from glm_jax.modeling import quantization  # pylint: disable=g-import-not-at-top
  opts = {**GENERATE_DEFAULTS, **options}
  cfg = inference_config(config, dtype).replace(
      quantization=quantization.check_method(opts["quantize"]),
      kv_cache_dtype=quantization.check_kv_cache_dtype(opts["kv_cache_dtype"]))
  devices, mesh = _topology(topology, mesh_config, num_slices)
  report = aot.topology_report(topology, num_slices, devices, mesh)
  report.update(program="generate", dtype=dtype, **opts)
  shapes, params = _param_inputs(cfg, mesh)
  b, nb = int(opts["batch_size"]), int(opts["num_blanks"])
  slots = cache_lib.padded_length(int(opts["prompt_length"]))
  i32, f32 = jnp.int32, jnp.float32
  ends = (cfg.vocab_size - 1, cfg.vocab_size - 2)  # any ids: only their count is compiled in
  static = dict(cfg=cfg, max_new_tokens=int(opts["max_new_tokens"]), no_repeat_ngram_size=0,
                sop=cfg.vocab_size - 3, ends=ends, vocab_limit=cfg.vocab_size)
  if opts["strategy"] == "beam":
    inputs = (jax.ShapeDtypeStruct((1, slots), i32), jax.ShapeDtypeStruct((), i32),
              jax.ShapeDtypeStruct((nb,), i32), jax.ShapeDtypeStruct((), f32))
    lowered = blank_beams.beam_fill.lower(shapes, *inputs, mesh=mesh,
                                          num_beams=int(opts["num_beams"]), beam_rule="bound",
                                          **static)
  else:
    inputs = (jax.ShapeDtypeStruct((b, slots), i32), jax.ShapeDtypeStruct((b,), i32),
              jax.ShapeDtypeStruct((b, nb), i32), jax.ShapeDtypeStruct((b,), i32),
              jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((), f32),
              jax.ShapeDtypeStruct((), f32))
    lowered = loop.fill.lower(shapes, *inputs, mesh=mesh, greedy=opts["strategy"] == "greedy",
                              top_k=40 if opts["strategy"] == "sample" else 0, **static)
  cache_rows = b if opts["strategy"] != "beam" else int(opts["num_beams"])
  cache = jax.eval_shape(lambda: model_lib.init_kv_cache(
      cfg, cache_rows, slots + nb * static["max_new_tokens"]))
  report["kv_cache_gib"] = round(sum(x.size * x.dtype.itemsize for x in cache.values())
                                 / aot.GIB, 3)
  return aot.compile_and_report(report, lowered, aot.shard_gib(params))


def compile_scoring(config, topology: str, mesh_config, *, task: str, seq_length: int,
                    batch_size: int, num_slices: int = 1, dtype: str = "bfloat16") -> dict:
  """Compiles evaluate's scoring step (glm_jax/evaluation/scoring.py) for `topology`: `batch_size`
  rows of `seq_length` tokens (rounded up to the data x fsdp multiple the scorers use). The
  report."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from glm_jax.evaluation import scoring  # pylint: disable=g-import-not-at-top
  cfg = inference_config(config, dtype)
  devices, mesh = _topology(topology, mesh_config, num_slices)
  multiple = int(mesh.shape["data"] * mesh.shape["fsdp"])
  rows = -(-int(batch_size) // multiple) * multiple
  length = scoring.bucket(int(seq_length), scoring.MIN_BUCKET)
  slots = scoring.bucket(SCORED_SLOTS.get(task, int(seq_length)))
  report = aot.topology_report(topology, num_slices, devices, mesh)
  report.update(program="evaluate", task=task, dtype=dtype, seq_length=length, batch_size=rows,
                scored_slots=slots)
  _, params = _param_inputs(cfg, mesh)
  shapes = {"ids": (rows, length), "position_ids": (rows, 2, length), "sep": (rows,),
            "slots": (rows, slots), "slot_targets": (rows, slots), "slot_valid": (rows, slots)}
  batch = {k: jax.ShapeDtypeStruct(s, np.int32, sharding=sharding.batch_sharding(mesh, len(s)))
           for k, s in shapes.items()}
  step = scoring._row_stats_fn(cfg, mesh, 0)  # pylint: disable=protected-access
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    lowered = step.lower(params, batch)
  return aot.compile_and_report(report, lowered, aot.shard_gib((params, batch)))


def define_flags() -> None:
  """--compile_only, --topology, --num_slices, --config (the model size to compile for)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_bool("compile_only", False, "Compile the program for --topology with abstract "
                    "params of --config's size (nothing is read; libtpu from requirements-tpu.txt) "
                    "and print per-chip memory and fit as JSON, as train --compile_only does.")
  flags.DEFINE_string("topology", None, "TPU topology for --compile_only, e.g. v5e:2x4, v5p:2x2x1.")
  flags.DEFINE_integer("num_slices", 1, "Slices (joined over DCN) for --compile_only.")
  config_flags.DEFINE_config_file("config", None, "--compile_only: run config with the model "
                                  "size, e.g. configs/glm_10b.py.")


def main(program: str, compile_fn, **options) -> int:
  """The --compile_only CLI of `program`: checks the flags, prints the report, returns the exit
  status (0 fits, 1 does not, 2 bad input). `compile_fn(config, topology, mesh, **kw)`."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  if f.config is None or not f.topology:
    print(f"{program} --compile_only: pass --config=configs/<size>.py (e.g. configs/glm_10b.py) "
          "and --topology (e.g. v5e:2x4).", file=sys.stderr)
    return 2
  dtype = f.dtype or "bfloat16"
  return aot.report_main(
      program, lambda: compile_fn(f.config, f.topology, hosts.mesh_config(),
                                  num_slices=f.num_slices, dtype=dtype, **options),
      "Shard more (--mesh_fsdp / --mesh_tensor over more chips), or lower the batch size.")

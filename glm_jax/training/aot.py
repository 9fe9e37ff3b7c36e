"""Compile the train step for a TPU topology on any host: per-chip memory, fit, collectives.

`python -m glm_jax.train --config=configs/glm_10b.py --compile_only --topology=v5p:4x4x4` answers
"does this batch fit on that slice, and what does it communicate?" before a slice is booked.
libtpu (`pip install -r requirements-tpu.txt`) compiles for topologies it describes; nothing runs.

Three things keep the compile reliable on a CPU host: the TPU topology is created before anything
imports TensorFlow (the CLI path never imports it); libtpu's worker threads and fibers get big
stacks (`LIBTPU_STACK_FLAGS`, set before libtpu loads), because its convolution cost model
(`xla::jellyfish::...ConvWindowsCost`, run on fibers) overflows their default stacks on large
steps (a SIGSEGV in 9 of 10 GLM-10B / GLM-2B compiles here without them, none in 8 with them);
and the compile itself runs in a thread with a 512 MiB stack.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from glm_jax import libtpu_setup
from glm_jax import run_checks
from glm_jax.errors import TopologyError
from glm_jax.libtpu_setup import (COMPILE_STACK_BYTES, libtpu_available,
                                  raise_default_thread_stack)
from glm_jax.modeling import sharding
from glm_jax.training import optim
from glm_jax.training import train_state

GIB = 1024 ** 3

# HBM per device (one chip; megacore chips count as one device), GiB. Matched in order against
# `device.device_kind`, case-insensitively.
HBM_GIB = (
    ("v6 lite", 32.0), ("v6e", 32.0),
    ("v5 lite", 16.0), ("v5e", 16.0),
    ("v5p", 95.0), ("tpu v5", 95.0),
    ("tpu v4", 32.0),
    ("tpu v3", 16.0),
    ("tpu v2", 8.0),
)

# The TPU generations whose chips have two TensorCores, compiled as one megacore device.
_MEGACORE = ("v4", "v5p")

COLLECTIVE_KINDS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all",
                    "collective-permute", "collective-broadcast", "ragged-all-to-all")


def hbm_gib(device_kind: str) -> float | None:
  """The chip's HBM in GiB from its `device_kind` (None if the chip is not in the table)."""
  kind = device_kind.lower()
  for key, gib in HBM_GIB:
    if key in kind:
      return gib
  return None


def topology_devices(topology: str, num_slices: int = 1) -> list:
  """Compile-only devices for e.g. "v5p:4x4x4" (x `num_slices` slices joined over DCN)."""
  if not re.fullmatch(r"v\d+[a-z]*:\d+(x\d+){1,2}", topology or ""):
    raise TopologyError(f"--topology={topology!r}: expected <generation>:<chip grid>, e.g. "
                        "v5p:4x4x4, v4:4x4x4, v5e:4x4 or v6e:8x8.")
  if not libtpu_available():
    raise TopologyError(f"cannot describe topology {topology!r}: libtpu is not installed "
                        "(pip install -r requirements-tpu.txt).")
  prepare_libtpu()
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  generation = topology.split(":")[0]
  kwargs = {"chip_config_name": "megacore"} if generation in _MEGACORE else {}
  if num_slices > 1:
    kwargs["num_slices"] = num_slices
  grid = [int(x) for x in topology.split(":")[1].split("x")] + [1]
  if grid[0] * grid[1] < 4:  # fewer chips than libtpu's default 2x2 host, e.g. v5e:1x1
    kwargs["chips_per_host_bounds"] = grid[:3]
  try:
    return list(topologies.get_topology_desc(topology, "tpu", **kwargs).devices)
  except Exception as e:  # pylint: disable=broad-except
    message = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
    raise TopologyError(f"libtpu cannot describe topology {topology!r}: {message}") from None


def prepare_libtpu() -> None:
  """Big stacks for libtpu's compiler threads and fibers, and no lockfile (compile only).

  Takes effect only if libtpu has not been loaded yet in this process: importing this module
  does it, so import it before anything initialises JAX's TPU backend.
  """
  # Compile-only use of libtpu may share a host with another process that holds its lockfile.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  libtpu_setup.set_stack_flags()
  raise_default_thread_stack()


def abstract_batch(config, mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes, dtypes and shardings of one global batch, as the data pipeline delivers it."""
  b, s = int(config.global_batch_size), int(config.seq_length)
  shapes = {"input_ids": ((b, s), np.int32), "target_ids": ((b, s), np.int32),
            "loss_mask": ((b, s), np.float32), "position_ids": ((b, 2, s), np.int32),
            "sep": ((b,), np.int32)}
  shardings = train_state.batch_shardings(mesh)
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=shardings[k])
          for k, (shape, dtype) in shapes.items()}


def lower_train_step(config, mesh, task=None):
  """The real jitted train step, lowered for abstract state and batch (nothing allocated).

  task: a finetuning task's `(objective, abstract batch)` (default: pretraining's)."""
  optimizer = optim.make_optimizer(config)
  abstract, shardings = train_state.state_shardings(config, mesh, optimizer)
  if task is None:
    step = train_state.make_train_step(config, mesh, optimizer, shardings)
    return step.lower(abstract, abstract_batch(config, mesh))
  step = train_state.make_train_step(config, mesh, optimizer, shardings, task[0])
  return step.lower(abstract, task[1])


def argument_gib(config, mesh, task=None) -> float:
  """Per-device bytes of the step's inputs (state + batch shards), in GiB, without compiling."""
  abstract, _ = train_state.state_shardings(config, mesh, optim.make_optimizer(config))
  return shard_gib((abstract, abstract_batch(config, mesh) if task is None else task[1]))


def memory_gib(compiled) -> dict[str, float]:
  """Per-device GiB from XLA's memory analysis: arguments + temporaries + outputs - aliased."""
  stats = compiled.memory_analysis()
  parts = {"arguments_gib": stats.argument_size_in_bytes, "outputs_gib": stats.output_size_in_bytes,
           "temporaries_gib": stats.temp_size_in_bytes, "aliased_gib": stats.alias_size_in_bytes,
           "generated_code_gib": stats.generated_code_size_in_bytes}
  total = (stats.argument_size_in_bytes + stats.temp_size_in_bytes + stats.output_size_in_bytes
           - stats.alias_size_in_bytes)
  out = {"per_chip_gib": round(total / GIB, 3)}
  out.update({k: round(v / GIB, 3) for k, v in parts.items()})
  return out


_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_COMMENT = re.compile(r"/\*.*?\*/")
_COLLECTIVE = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*[^=]*?\s(" + "|".join(COLLECTIVE_KINDS)
                         + r")(-start)?\(")
_CALLS = re.compile(
    r"\b(body|calls|to_apply|branch_computations|condition)=\{?([^}]*?)\}?(?:,\s|$)")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_S32_CONSTANT = re.compile(r"=\s*s32\[\]\S*\s+constant\((\d+)\)")


def _split_computations(hlo_text: str) -> tuple[dict[str, list[str]], str | None]:
  """{computation name: instruction lines} and the ENTRY computation's name."""
  bodies: dict[str, list[str]] = {}
  entry, current = None, None
  for line in hlo_text.splitlines():
    match = _COMPUTATION.match(line)
    if match and not line.startswith(" "):
      current = match.group(1)
      bodies[current] = []
      if line.startswith("ENTRY"):
        entry = current
    elif line.strip() == "}":
      current = None
    elif current is not None:
      bodies[current].append(_COMMENT.sub("", line))
  return bodies, entry


def _trip_count(while_line: str, condition: list[str]) -> int:
  """A while loop's trip count: as the compiler recorded it, else the bound of `i < N` in its
  condition (loops from scans count 0..N-1), else 1."""
  known = _TRIP_COUNT.search(while_line)
  if known:
    return int(known.group(1))
  bounds = [int(m.group(1)) for line in condition for m in [_S32_CONSTANT.search(line)] if m]
  if len(bounds) == 1 and any("direction=LT" in line for line in condition):
    return bounds[0]
  return 1


def collective_counts(hlo_text: str) -> dict[str, int]:
  """Collectives executed per step, by kind, from optimized HLO text.

  Each collective instruction counts once per execution: the body of a `while` (the layer scan,
  gradient accumulation) counts its trip count times; of a conditional's branches, the largest
  counts. Async pairs (`-start` / `-done`) count once.
  """
  bodies, entry = _split_computations(hlo_text)
  memo: dict[str, collections.Counter] = {}

  def count(name: str, depth: int = 0) -> collections.Counter:
    if name in memo or name not in bodies or depth > 64:
      return memo.get(name, collections.Counter())
    total = collections.Counter()
    for line in bodies[name]:
      found = _COLLECTIVE.search(line)
      if found:
        total[found.group(1)] += 1
      calls = {key: [n.strip().lstrip("%") for n in names.split(",") if n.strip()]
               for key, names in _CALLS.findall(line)}
      for callee in calls.get("body", []):
        trips = _trip_count(line, bodies.get(calls.get("condition", [""])[0], []))
        for kind, n in count(callee, depth + 1).items():
          total[kind] += n * trips
      for callee in calls.get("calls", []) + calls.get("condition", []):
        total.update(count(callee, depth + 1))
      branches = [count(c, depth + 1) for c in calls.get("branch_computations", [])]
      if branches:
        total.update(max(branches, key=lambda c: sum(c.values())))
    memo[name] = total
    return total

  counts = count(entry) if entry else collections.Counter()
  return {kind: int(counts.get(kind, 0)) for kind in COLLECTIVE_KINDS if counts.get(kind)}


def run_with_big_stack(fn: Callable[[], Any], stack_bytes: int = COMPILE_STACK_BYTES) -> Any:
  """fn() in a fresh thread with a `stack_bytes` stack; returns its result or re-raises its error.

  Also raises the default stack of threads created meanwhile (see raise_default_thread_stack).
  """
  raise_default_thread_stack(stack_bytes)
  result: dict[str, Any] = {}

  def target():
    try:
      result["value"] = fn()
    except BaseException as e:  # pylint: disable=broad-except
      result["error"] = e

  previous = threading.stack_size(stack_bytes)
  try:
    thread = threading.Thread(target=target, name="glm_jax-compile")
    thread.start()
  finally:
    threading.stack_size(previous)
  thread.join()
  if "error" in result:
    raise result["error"]
  return result["value"]


# libtpu's wording: "... required for HLO temporaries (23.16G) exceeds available HBM (15.75G)";
# older releases: "Used 101.2G of 95.7G hbm". Its G is GiB.
_OOM_TEMPORARIES = re.compile(
    r"HLO temporaries \(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)")
_OOM_USED = re.compile(r"Used ([\d.]+)([KMGT]?)i?B? of ([\d.]+)([KMGT]?)i?B? hbm", re.IGNORECASE)
_UNIT = {"": 1 / GIB, "K": 1024 / GIB, "M": 1024 ** 2 / GIB, "G": 1.0, "T": 1024.0}


def _gib(number: str, unit: str) -> float:
  return round(float(number) * _UNIT[unit.upper()], 3)


def out_of_memory(error: Exception, arguments_gib: float = 0.0) -> dict | None:
  """What an out-of-memory compile error says, as report fields; None for any other error.

  `needed_gib` is what one chip would need: the compiler's figure for temporaries plus the
  step's inputs (`arguments_gib`), or its total where it gives one.
  """
  text = str(error)
  if "RESOURCE_EXHAUSTED" not in text and "out of memory" not in text.lower():
    return None
  info: dict[str, Any] = {"error": next((l.strip() for l in text.splitlines() if l.strip()), text)}
  temporaries, used = _OOM_TEMPORARIES.search(text), _OOM_USED.search(text)
  if temporaries:
    info["temporaries_gib"] = _gib(*temporaries.group(1, 2))
    info["arguments_gib"] = arguments_gib
    info["needed_gib"] = round(info["temporaries_gib"] + arguments_gib, 3)
    info["available_hbm_gib"] = _gib(*temporaries.group(3, 4))
  elif used:
    info["needed_gib"] = _gib(*used.group(1, 2))
    info["available_hbm_gib"] = _gib(*used.group(3, 4))
  return info


def topology_report(topology: str, num_slices: int, devices, mesh) -> dict[str, Any]:
  """The report's opening keys, shared by every --compile_only (train, finetune, generate,
  evaluate): where it compiles for and the mesh."""
  kind = devices[0].device_kind
  return {"topology": topology, "num_slices": num_slices, "chips": len(devices),
          "hosts": len({(getattr(d, "slice_index", 0), d.process_index) for d in devices}),
          "device_kind": kind, "mesh": {k: int(v) for k, v in mesh.shape.items()},
          "dcn": sharding.slices_per_axis(mesh),
          "hbm_gib": hbm_gib(kind)}


def compile_and_report(report: dict, lowered, arguments_gib: float,
                       hlo_path: str | None = None) -> dict:
  """Compiles `lowered` (big stacks) and adds per-chip memory, `fits` and collectives to `report`.

  A program that does not fit in HBM gives `fits` False (and `needed_gib` where the compiler says);
  other compile errors propagate. `hlo_path`: also write the optimized HLO text there.
  """
  start = time.perf_counter()
  try:
    compiled = run_with_big_stack(lowered.compile)
  except Exception as e:  # pylint: disable=broad-except
    oom = out_of_memory(e, arguments_gib)
    if oom is None:
      raise
    report.update(oom, fits=False, compile_seconds=round(time.perf_counter() - start, 1))
    return report
  report["compile_seconds"] = round(time.perf_counter() - start, 1)
  report.update(memory_gib(compiled))
  if report["hbm_gib"] is None:
    report["fits"] = True  # the compiler checks HBM itself; it accepted the program
  else:
    report["fits"] = report["per_chip_gib"] <= report["hbm_gib"]
  hlo_text = compiled.as_text()
  report["collectives"] = collective_counts(hlo_text)
  # Pallas (Mosaic) kernels in the step: the attention kernel's forward, dK/dV and dQ passes.
  report["mosaic_kernels"] = hlo_text.count('custom_call_target="tpu_custom_call"')
  if hlo_path:
    from etils import epath  # pylint: disable=g-import-not-at-top
    epath.Path(hlo_path).write_text(hlo_text)
  return report


def shard_gib(tree) -> float:
  """Per-device GiB of a tree of sharded ShapeDtypeStructs (a program's inputs)."""
  total = sum(math.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
              for x in jax.tree_util.tree_leaves(tree))
  return round(total / GIB, 3)


def compile_train_step(config, topology: str, num_slices: int = 1,
                       hlo_path: str | None = None, task_for_mesh=None) -> dict:
  """Lowers and compiles the train step for `topology`; returns the report (see module doc).

  task_for_mesh: mesh -> a finetuning task's (objective, abstract batch); default pretraining.
  """
  devices = topology_devices(topology, num_slices)
  hosts = len({(getattr(d, "slice_index", 0), d.process_index) for d in devices})
  run_checks.validate(config, len(devices), hosts)
  mesh = sharding.make_mesh(config.mesh, devices)  # the builder training uses
  report = topology_report(topology, num_slices, devices, mesh)
  report.update({
      "global_batch_size": int(config.global_batch_size), "seq_length": int(config.seq_length),
      "grad_accum_steps": int(config.grad_accum_steps),
      "remat_policy": str(config.model.remat_policy)})
  task = task_for_mesh(mesh) if task_for_mesh is not None else None
  lowered = lower_train_step(config, mesh, task)
  return compile_and_report(report, lowered, argument_gib(config, mesh, task), hlo_path)


def main(config, topology: str, num_slices: int = 1, hlo_path: str | None = None,
         program: str = "glm_jax.train", task_for_mesh=None) -> int:
  """CLI: the report as the last stdout line; 0 if the step fits, 1 if not, 2 on bad input."""
  return report_main(
      program, lambda: compile_train_step(config, topology, num_slices, hlo_path, task_for_mesh),
      "Lower global_batch_size, raise grad_accum_steps, set model.remat_policy, or shard more "
      "(mesh.fsdp / mesh.tensor).")


def report_main(program: str, make_report: Callable[[], dict], advice: str) -> int:
  """Prints `make_report()` as the last stdout line (and a line on stderr when it does not fit);
  returns 0 if it fits, 1 if not, 2 on bad input (a topology or config error)."""
  try:
    report = make_report()
  except (TopologyError, run_checks.ConfigError) as e:
    print(f"{program} --compile_only: {e}", file=sys.stderr, flush=True)
    return 2
  if not report["fits"]:
    need = report.get("needed_gib", report.get("per_chip_gib"))
    print(f"{program} --compile_only: it does not fit: it needs {need} GiB per chip, "
          f"{report['device_kind']} has {report['hbm_gib']} GiB. {advice}",
          file=sys.stderr, flush=True)
  print(json.dumps(report), flush=True)
  return 0 if report["fits"] else 1


# Importing this module readies libtpu for compile-only use, so that a notebook that imports it
# before touching JAX's TPU backend gets the big stacks too.
prepare_libtpu()

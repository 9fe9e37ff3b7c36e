"""Processes and the mesh for every command: the flags, `jax.distributed`, and who writes output.

Every command (train, finetune, generate, evaluate, extract_params, convert) runs the same way on
one host, on a multi-GPU host, or on every host of a TPU pod slice: the same command on each
process, one mesh over all devices, output written by process 0 only.

  --coordinator_address / --num_processes / --process_id   explicit multi-process (GPUs, CPUs);
                                                           on TPU pods nothing: JAX finds peers
  --mesh_data / --mesh_fsdp / --mesh_tensor                the (data, fsdp, tensor) mesh; -1 =
                                                           the remaining devices
"""

from __future__ import annotations

import os
from typing import Mapping

from absl import flags
import jax

from glm_jax import run_checks
from glm_jax.modeling import sharding

_TPU_POD_ENV = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")
# Inference default: params split over every device (fsdp), so no chip holds a whole model.
INFERENCE_MESH = {"data": 1, "fsdp": -1, "tensor": 1}
# Commands whose config has a mesh (finetune): the flags override it only where given.
CONFIG_MESH = {"data": None, "fsdp": None, "tensor": None}


def _define_once(define, name: str, *args) -> None:
  if name not in flags.FLAGS:
    define(name, *args)


def define_process_flags() -> None:
  """--coordinator_address, --num_processes, --process_id, --initialization_timeout."""
  _define_once(flags.DEFINE_string, "coordinator_address", None,
               "host:port of process 0 (multi-process runs outside TPU pods).")
  _define_once(flags.DEFINE_integer, "num_processes", None, "Total processes (multi-process).")
  _define_once(flags.DEFINE_integer, "process_id", None, "This process's index (multi-process).")
  _define_once(flags.DEFINE_integer, "initialization_timeout", 300, "Seconds to wait for peers.")


def define_mesh_flags(defaults: Mapping[str, int | None] = INFERENCE_MESH) -> None:
  """--mesh_data, --mesh_fsdp, --mesh_tensor (None defaults: the config's mesh decides)."""
  help_text = {"data": "Mesh data axis: batch rows (-1: the remaining devices).",
               "fsdp": "Mesh fsdp axis: params split over it, batch rows too (-1: the rest).",
               "tensor": "Mesh tensor axis: heads, FFN and vocabulary split (-1: the rest)."}
  for axis in sharding.MESH_AXES:
    _define_once(flags.DEFINE_integer, f"mesh_{axis}", defaults[axis], help_text[axis])


def define_flags(mesh_defaults: Mapping[str, int | None] = INFERENCE_MESH) -> None:
  """The process and mesh flags of a command."""
  define_process_flags()
  define_mesh_flags(mesh_defaults)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """jax.distributed: explicit values (arguments, else the flags where a command defines them)
  win; TPU pods configure themselves; else single process. Once initialized, a no-op."""
  if jax.distributed.is_initialized():
    return
  f = flags.FLAGS
  if num_processes is None and f.is_parsed() and "num_processes" in f:
    coordinator_address, num_processes, process_id = (
        f.coordinator_address, f.num_processes, f.process_id)
  timeout = f.initialization_timeout if f.is_parsed() and "initialization_timeout" in f else 300
  if num_processes and int(num_processes) > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=int(num_processes),
        process_id=int(process_id), initialization_timeout=timeout)
  elif any(os.environ.get(k) for k in _TPU_POD_ENV):
    jax.distributed.initialize()


def mesh_config(base: Mapping[str, int] | None = None) -> dict[str, int]:
  """The mesh sizes: the --mesh_* flags given on the command line over `base` (a config's mesh),
  or the flags' defaults when there is no base."""
  f = flags.FLAGS
  sizes = {a: int(base[a]) for a in sharding.MESH_AXES} if base is not None else {}
  for axis in sharding.MESH_AXES:
    flag = f[f"mesh_{axis}"]
    if (flag.present or axis not in sizes) and flag.value is not None:
      sizes[axis] = int(flag.value)
  return sizes


def start(base: Mapping[str, int] | None = None):
  """`initialize()`, then the mesh over every process's devices (see `mesh_config`)."""
  initialize()
  return make_mesh(mesh_config(base))


def make_mesh(sizes: Mapping[str, int], devices=None):
  """`sharding.make_mesh` over `devices` (default: every process's), with sizes that do not fit
  them as one ConfigError line naming the flags."""
  devices = list(devices) if devices is not None else jax.devices()
  run_checks.mesh_shape(sizes, len(devices), "--mesh_data / --mesh_fsdp / --mesh_tensor")
  return sharding.make_mesh(sizes, devices)


def is_writer() -> bool:
  """Only process 0 prints results and writes output files; the others run the same steps."""
  return jax.process_index() == 0


def define_dtype_flag() -> None:
  """--dtype for the commands that compute with a loaded model (generate, evaluate)."""
  from glm_jax.modeling.model_shape import PARAM_DTYPES  # pylint: disable=g-import-not-at-top
  _define_once(flags.DEFINE_enum, "dtype", None, list(PARAM_DTYPES),
               "Compute dtype; default bfloat16 on TPU and GPU, the params' on CPU.")


def compute_dtype(requested: str | None) -> str | None:
  """--dtype, else bfloat16 on TPU and GPU (where it halves memory and runs the MXU / tensor
  cores at full rate), else None: the params' own dtype (CPU). Log-softmax, sums and losses stay
  fp32 whatever this is."""
  if requested:
    return requested
  return "bfloat16" if jax.default_backend() in ("tpu", "gpu", "cuda", "rocm") else None

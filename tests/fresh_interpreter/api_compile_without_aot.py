"""The train step compiled for a TPU topology from the Python API after only `import glm_jax`.

Usage: python -m tests.fresh_interpreter.api_compile_without_aot CONFIG TOPOLOGY [BATCH SEQ]
(e.g. configs/glm_10b.py v5p:4x4x4 256 1024). glm_jax.training.aot is never imported: the libtpu stack
flags come from `import glm_jax` alone. Prints JSON: per-chip GiB and that aot stayed unimported.
"""

import json
import os
import sys

# Compile-only: another process on this host may hold libtpu's lockfile (nothing runs on a TPU).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
import glm_jax  # noqa: F401  (sets libtpu's stack flags before JAX loads it)
import jax
from jax.experimental import topologies
from jax.experimental import mesh_utils
import numpy as np

from glm_jax.training import optim, train_state
from glm_jax.modeling import sharding


def main():
  config_path, topology = sys.argv[1], sys.argv[2]
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("size_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  if len(sys.argv) > 4:
    config.global_batch_size, config.seq_length = int(sys.argv[3]), int(sys.argv[4])
  kwargs = {"chip_config_name": "megacore"} if topology.split(":")[0] in ("v4", "v5p") else {}
  devices = topologies.get_topology_desc(topology, "tpu", **kwargs).devices
  shape = sharding.mesh_shape(config.mesh, len(devices))
  mesh = jax.sharding.Mesh(mesh_utils.create_device_mesh(shape, devices), sharding.MESH_AXES,
                           axis_types=(jax.sharding.AxisType.Auto,) * 3)
  optimizer = optim.make_optimizer(config)
  abstract, shardings = train_state.state_shardings(config, mesh, optimizer)
  step = train_state.make_train_step(config, mesh, optimizer, shardings)
  b, s = int(config.global_batch_size), int(config.seq_length)
  batch_shardings = train_state.batch_shardings(mesh)
  shapes = {"input_ids": ((b, s), np.int32), "target_ids": ((b, s), np.int32),
            "loss_mask": ((b, s), np.float32), "position_ids": ((b, 2, s), np.int32),
            "sep": ((b,), np.int32)}
  batch = {k: jax.ShapeDtypeStruct(v, d, sharding=batch_shardings[k]) for k, (v, d) in shapes.items()}
  compiled = step.lower(abstract, batch).compile()  # on the main thread, as a notebook would
  stats = compiled.memory_analysis()
  total = (stats.argument_size_in_bytes + stats.temp_size_in_bytes + stats.output_size_in_bytes
           - stats.alias_size_in_bytes)
  print(json.dumps({"topology": topology, "per_chip_gib": round(total / 1024 ** 3, 3),
                    "aot_imported": "glm_jax.training.aot" in sys.modules}))


if __name__ == "__main__":
  main()

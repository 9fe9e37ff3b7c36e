"""The mesh training builds over two v5e:2x2 slices' devices next to what `--compile_only
--num_slices=2` reports for the same config. Prints one JSON line; run by tests/test_aot.py."""

import json

from glm_jax.training import aot  # first: readies libtpu before JAX loads a TPU backend
from glm_jax.modeling import sharding
import jax

from configs import tiny


def main():
  config = tiny.get_config()
  config.mesh.update(data=-1, fsdp=2, tensor=1)
  devices = aot.topology_devices("v5e:2x2", 2)
  mesh = sharding.make_mesh(config.mesh, devices)   # train.run / finetune's call, on a pod
  report = aot.compile_train_step(config, "v5e:2x2", 2)
  print(json.dumps({
      "train": {"mesh": dict(mesh.shape), "dcn": sharding.slices_per_axis(mesh),
                "auto": all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types),
                "data_slices": [int(row.flat[0].slice_index) for row in mesh.devices]},
      "compile_only": {"mesh": report["mesh"], "dcn": report["dcn"]}}))


if __name__ == "__main__":
  main()

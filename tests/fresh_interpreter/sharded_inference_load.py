"""`params_io.load_for_inference(path, mesh=)` on 8 devices (fsdp=8): the shardings it returns.

Prints JSON: per leaf the partition spec, the leaves that came back replicated although a rule
shards one of their dimensions evenly, one device's bytes vs the total, and whether the values
equal the saved ones. Run by tests/test_generate_sharding.py with 8 fake CPU devices.
"""

import json
import math
import tempfile

import flax.linen as nn
import jax
import numpy as np

from glm_jax.modeling import model, sharding
from glm_jax.storage import params_io


def main():
  cfg = model.GLMConfig(vocab_size=128, num_layers=2, hidden_size=64, num_heads=4,
                        max_sequence_length=16, dtype="float32")
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  path = tempfile.mkdtemp() + "/params"
  params_io.save_for_inference(path, params)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
  _, loaded = params_io.load_for_inference(path, mesh=mesh)
  flat = {jax.tree_util.keystr(k, simple=True, separator="/"): v
          for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
  axes = {jax.tree_util.keystr(k, simple=True, separator="/"): v for k, v in
          jax.tree_util.tree_flatten_with_path(model.logical_axes(cfg),
                                               is_leaf=lambda x: isinstance(x, tuple))[0]}
  ruled = []
  for name, leaf in flat.items():
    mesh_axes = nn.logical_to_mesh_axes(axes[name], sharding.LOGICAL_RULES)
    shardable = any(a is not None and size % math.prod(
        mesh.shape[n] for n in ((a,) if isinstance(a, str) else a)) == 0 and math.prod(
        mesh.shape[n] for n in ((a,) if isinstance(a, str) else a)) > 1
                    for a, size in zip(mesh_axes, leaf.shape))
    if shardable and leaf.sharding.is_fully_replicated:
      ruled.append(name)
  equal = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
              zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(params)))
  print(json.dumps({
      "devices": jax.device_count(), "equal": equal, "replicated_but_ruled": ruled,
      "specs": {k: list(v.sharding.spec) for k, v in flat.items()},
      "shard_bytes": sum(v.addressable_shards[0].data.nbytes for v in flat.values()),
      "total_bytes": sum(v.nbytes for v in flat.values())}))


if __name__ == "__main__":
  main()

"""The train step on 8 devices along each parallelism axis; a checkpoint restored onto another mesh.

Usage: python -m tests.fresh_interpreter.sharded_train_steps WORKDIR. Prints JSON: two steps'
losses on a pure data, fsdp and tensor mesh and on a mixed mesh with 2 micro-batches and remat
("dots"), and for a state saved on an fsdp x tensor mesh and restored onto a data x tensor mesh
the largest parameter difference, the restored data state and the meshes the parameters landed
on. Run by tests/test_train_sharding.py with 8 fake CPU devices.
"""

import json
import sys

import flax.linen as nn
import jax
import numpy as np

from configs import tiny
from glm_jax.training import checkpoint, optim, train_data, train_state
from glm_jax.modeling import sharding


def small_config(data=-1, fsdp=1, tensor=1, accum=1, remat="none"):
  c = tiny.get_config()
  c.model.update(vocab_size=256, hidden_size=64, num_heads=4, max_sequence_length=32,
                 num_layers=2, remat_policy=remat)
  c.update(seq_length=32, global_batch_size=16, grad_accum_steps=accum, total_steps=10,
           synthetic_data=True, learning_rate=1e-3)
  c.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
  return c


def run(c, steps=2):
  """`steps` train steps of config `c`: their losses, the final state and its abstract shape."""
  mesh = sharding.make_mesh(c.mesh)
  opt = optim.make_optimizer(c)
  data = train_data.build(c, 0, 1)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    abstract, shardings = train_state.state_shardings(c, mesh, opt)
    state = train_state.init_state(c, opt, shardings)
    step = train_state.make_train_step(c, mesh, opt, shardings)
    losses = []
    for _ in range(steps):
      state, m = step(state, sharding.put_batch(next(data.train), mesh))
      losses.append(float(m["loss"]))
    return losses, state, abstract


def reshard(workdir):
  """Saves on an FSDP x tensor mesh, restores onto a data x tensor mesh: same values."""
  ckpt = checkpoint.Checkpointer(workdir, keep=1)
  _, state, _ = run(small_config(1, 4, 2), steps=1)
  ckpt.save(1, state, {"synthetic_step": 1})
  ckpt.wait()
  c2 = small_config(4, 1, 2)
  mesh2 = sharding.make_mesh(c2.mesh)
  with jax.set_mesh(mesh2), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    abstract2, _ = train_state.state_shardings(c2, mesh2, optim.make_optimizer(c2))
    restored, data_state = ckpt.restore(1, abstract2)
  diffs = jax.tree_util.tree_map(
      lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
      restored.params, state.params)
  meshes = {str(dict(x.sharding.mesh.shape)) for x in jax.tree_util.tree_leaves(restored.params)}
  return {"max_diff": max(jax.tree_util.tree_leaves(diffs)), "data_state": data_state,
          "meshes": sorted(meshes)}


def main():
  meshes = {"data": (8, 1, 1), "fsdp": (1, 8, 1), "tensor": (1, 1, 8)}
  out = {}
  for name, (d, f, t) in meshes.items():
    out[name] = run(small_config(d, f, t))[0]
  # All three axes at once, 2 micro-batches per step, activation checkpointing on.
  out["mixed_accum2_remat"] = run(small_config(2, 2, 2, accum=2, remat="dots"))[0]
  out["reshard"] = reshard(sys.argv[1])
  print(json.dumps(out))


if __name__ == "__main__":
  main()

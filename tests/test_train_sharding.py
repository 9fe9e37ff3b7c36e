"""The train step on 8 fake CPU devices: every parallelism axis gives the same losses.

(The mixed run also uses gradient accumulation and remat: equal losses over two steps mean the
micro-batch normalisation and the checkpointed backward pass match one big batch.)

JAX fixes its device count at import, so each check runs in a fresh interpreter with
XLA_FLAGS=--xla_force_host_platform_device_count=8 and reports JSON on its last line.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
import flax.linen as nn, jax, numpy as np
from configs import tiny
from glm_jax import checkpoint, optim, sharding, train_data, train_state

def small_config(data=-1, fsdp=1, tensor=1, accum=1, remat="none"):
  c = tiny.get_config()
  c.model.update(vocab_size=256, hidden_size=64, num_heads=4, max_sequence_length=32,
                 num_layers=2, remat_policy=remat)
  c.update(seq_length=32, global_batch_size=16, grad_accum_steps=accum, total_steps=10,
           synthetic_data=True, learning_rate=1e-3)
  c.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
  return c

def run(c, steps=2, workdir=None, save=False):
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

MESHES = {"data": (8, 1, 1), "fsdp": (1, 8, 1), "tensor": (1, 1, 8)}
out = {}
for name, (d, f, t) in MESHES.items():
  out[name] = run(small_config(d, f, t))[0]
# All three axes at once, 2 micro-batches per step, activation checkpointing on.
out["mixed_accum2_remat"] = run(small_config(2, 2, 2, accum=2, remat="dots"))[0]

# Save on an FSDP x tensor mesh, restore onto a data x tensor mesh: same values.
ckpt = checkpoint.Checkpointer(sys.argv[1], keep=1)
_, state, _ = run(small_config(1, 4, 2), steps=1)
ckpt.save(1, state, {"synthetic_step": 1}); ckpt.wait()
c2 = small_config(4, 1, 2)
mesh2 = sharding.make_mesh(c2.mesh)
with jax.set_mesh(mesh2), nn.logical_axis_rules(sharding.LOGICAL_RULES):
  abstract2, _ = train_state.state_shardings(c2, mesh2, optim.make_optimizer(c2))
  restored, data_state = ckpt.restore(1, abstract2)
diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                               restored.params, state.params)
meshes = {str(dict(x.sharding.mesh.shape)) for x in jax.tree_util.tree_leaves(restored.params)}
out["reshard"] = {"max_diff": max(jax.tree_util.tree_leaves(diffs)), "data_state": data_state,
                  "meshes": sorted(meshes)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def eight_device_results(tmp_path_factory):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  workdir = str(tmp_path_factory.mktemp("reshard"))
  proc = subprocess.run([sys.executable, "-c", SCRIPT, workdir], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("axis", ["fsdp", "tensor", "mixed_accum2_remat"])
def test_each_parallelism_axis_matches_pure_data_parallel_losses(eight_device_results, axis):
  reference = eight_device_results["data"]
  for got, want in zip(eight_device_results[axis], reference):
    assert abs(got - want) <= 1e-5 * abs(want), (axis, eight_device_results[axis], reference)


def test_checkpoint_restores_onto_a_different_mesh(eight_device_results):
  reshard = eight_device_results["reshard"]
  assert reshard["max_diff"] == 0.0
  assert reshard["data_state"] == {"synthetic_step": 1}
  assert reshard["meshes"] == [str({"data": 4, "fsdp": 1, "tensor": 2})]

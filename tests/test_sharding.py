"""The model sharded over a (data=2, fsdp=2, tensor=2) mesh of 8 CPU devices equals unsharded.

Runs in a subprocess: the fake device count must be set before JAX starts, and other tests in
this session have already started it with one device.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from glm_jax import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import flax.linen as nn, jax, jax.numpy as jnp, numpy as np
    from glm_jax import model, sharding
    cfg = model.GLMConfig(vocab_size=256, num_layers=2, hidden_size=64, num_heads=4,
                          max_sequence_length=32, dtype="float32")
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    shardings = sharding.logical_to_sharding(model.logical_axes(cfg), model.param_shapes(cfg), mesh)
    params = model.init_params(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (4, 16)).astype(np.int32)
    pos = np.stack([np.tile(np.arange(16), (4, 1)), np.zeros((4, 16), int)], 1).astype(np.int32)
    sep = np.array([3, 0, 16, 7], np.int32)
    forward = lambda p, i, po, s: model.GLM(cfg).apply({"params": p}, i, po, s)
    expected = np.asarray(jax.jit(forward)(params, ids, pos, sep))
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      placed = jax.device_put(params, shardings)
      kernel = placed["layers"]["mlp"]["dense_h_to_4h"]["kernel"]
      assert len(kernel.sharding.device_set) == 8 and kernel.addressable_shards[0].data.shape == (2, 32, 128)
      batch = sharding.put_batch({"ids": ids, "pos": pos, "sep": sep}, mesh)
      logits = jax.jit(forward)(placed, batch["ids"], batch["pos"], batch["sep"])
    assert logits.sharding.spec[0] == ("data", "fsdp"), logits.sharding
    diff = float(np.abs(np.asarray(logits) - expected).max())
    assert diff < 1e-5, diff
    print("OK", diff)
""")


@pytest.mark.slow
def test_sharded_logits_on_8_devices_equal_unsharded():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "OK" in result.stdout


@pytest.mark.parametrize("mesh,devices,expected", [
    ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
    ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
    ({"data": 1, "fsdp": 1, "tensor": 1}, 1, (1, 1, 1)),
])
def test_mesh_shape_fills_the_free_axis(mesh, devices, expected):
  assert sharding.mesh_shape(mesh, devices) == expected


@pytest.mark.parametrize("mesh,message", [
    ({"data": -1, "fsdp": -1, "tensor": 1}, "at most one"),
    ({"data": 3, "fsdp": -1, "tensor": 1}, "do not divide"),
    ({"data": 2, "fsdp": 2, "tensor": 1}, "uses 4 devices but 8"),
])
def test_bad_mesh_gets_a_clear_error(mesh, message):
  with pytest.raises(ValueError, match=message):
    sharding.mesh_shape(mesh, 8)

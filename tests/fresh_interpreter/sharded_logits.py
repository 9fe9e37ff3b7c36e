"""The model's logits on a (data=2, fsdp=2, tensor=2) mesh equal the unsharded model's.

Asserts the MLP kernel is split over all 8 devices, the logits are sharded over (data, fsdp) and
within 1e-5 of the unsharded forward pass, then prints `OK <max difference>`. Run by
tests/test_sharding.py with 8 fake CPU devices.
"""

import flax.linen as nn
import jax
import numpy as np

from glm_jax.modeling import model, sharding


def main():
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
    assert (len(kernel.sharding.device_set) == 8
            and kernel.addressable_shards[0].data.shape == (2, 32, 128))
    batch = sharding.put_batch({"ids": ids, "pos": pos, "sep": sep}, mesh)
    logits = jax.jit(forward)(placed, batch["ids"], batch["pos"], batch["sep"])
  assert logits.sharding.spec[0] == ("data", "fsdp"), logits.sharding
  diff = float(np.abs(np.asarray(logits) - expected).max())
  assert diff < 1e-5, diff
  print("OK", diff)


if __name__ == "__main__":
  main()

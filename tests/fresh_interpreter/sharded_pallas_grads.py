"""Loss and gradients with the Pallas kernel on a (fsdp=2, tensor=2) mesh equal unsharded XLA's,
training with attention dropout (each shard hashes its mask at its global batch and head indices).

Asserts the kernel runs under shard_map and that loss and every gradient are within 1e-5 of the
unsharded XLA-attention run, then prints `OK <worst gradient difference>`. Run by
tests/test_pallas_attention.py with 4 fake CPU devices.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from glm_jax.modeling import model, sharding


def main():
  cfg = model.GLMConfig(vocab_size=128, num_layers=2, hidden_size=64, num_heads=4,
                        max_sequence_length=32, dtype="float32", attention_dropout=0.1,
                        hidden_dropout=0.0, embedding_dropout=0.0, attention_backend="xla")
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 128, (4, 24)).astype(np.int32)
  pos = np.stack([np.tile(np.arange(24), (4, 1)), np.zeros((4, 24), int)], 1).astype(np.int32)
  sep = np.array([3, 0, 24, 9], np.int32)

  def loss(p, ids, pos, sep, backend):
    logits = model.GLM(cfg.replace(attention_backend=backend)).apply(
        {"params": p}, ids, pos, sep, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
    return jnp.mean(jax.nn.log_softmax(logits)[..., 5])

  grad = jax.jit(jax.value_and_grad(loss), static_argnums=4)
  expected_loss, expected_grads = grad(params, ids, pos, sep, "xla")
  mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "tensor": 2})
  shardings = sharding.logical_to_sharding(model.logical_axes(cfg), model.param_shapes(cfg), mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    placed = jax.device_put(params, shardings)
    batch = sharding.put_batch({"ids": ids, "pos": pos, "sep": sep}, mesh)
    hlo = grad.lower(placed, batch["ids"], batch["pos"], batch["sep"], "pallas").as_text()
    got_loss, got_grads = grad(placed, batch["ids"], batch["pos"], batch["sep"], "pallas")
  assert "shard_map" in hlo or "sdy.manual_computation" in hlo, "kernel not under shard_map"
  assert abs(float(got_loss) - float(expected_loss)) < 1e-5, (got_loss, expected_loss)
  diffs = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                                 got_grads, expected_grads)
  worst = max(jax.tree_util.tree_leaves(diffs))
  assert worst < 1e-5, diffs
  print("OK", worst)


if __name__ == "__main__":
  main()

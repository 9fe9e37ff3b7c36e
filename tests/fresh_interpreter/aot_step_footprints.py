"""Compiles the train and eval steps on 8 devices with and without an ambient mesh/rules context.

Prints, as JSON, each compiled step's memory footprint and collective counts ("bare": no
context, "context": inside `jax.set_mesh` + the logical axis rules) and the collective counts of a
5-step scan whose body all-reduces once ("scan5"). Run by tests/test_aot.py with 8 fake CPU devices.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import tiny
from glm_jax.training import aot, optim, train_state
from glm_jax.modeling import sharding


def small_fsdp_config():
  c = tiny.get_config()
  c.model.update(vocab_size=256, hidden_size=64, num_heads=4, max_sequence_length=32, num_layers=3)
  c.update(seq_length=32, global_batch_size=16, synthetic_data=True)
  c.mesh.update(data=1, fsdp=8, tensor=1)
  return c


def footprint(compiled):
  m = compiled.memory_analysis()
  return {"temp": m.temp_size_in_bytes, "args": m.argument_size_in_bytes,
          "out": m.output_size_in_bytes, "alias": m.alias_size_in_bytes,
          "collectives": aot.collective_counts(compiled.as_text())}


def compile_steps(c, mesh):
  opt = optim.make_optimizer(c)
  abstract, shardings = train_state.state_shardings(c, mesh, opt)
  batch = aot.abstract_batch(c, mesh)
  train = train_state.make_train_step(c, mesh, opt, shardings).lower(abstract, batch).compile()
  evals = train_state.make_eval_step(c, mesh, shardings.params)
  # One-hot objective per row.
  groups = jax.ShapeDtypeStruct((c.global_batch_size, 3), jnp.float32,
                                sharding=sharding.batch_sharding(mesh, 2))
  evals = evals.lower(abstract.params, batch, groups).compile()
  return {"train": footprint(train), "eval": footprint(evals)}


def scan_collectives():
  """A scan of 5 steps whose body all-reduces a sharded sum: 5 all-reduces per call."""
  row = NamedSharding(jax.make_mesh((8,), ("i",)), P("i"))

  def looped(x):
    return jax.lax.scan(lambda c, _: (c + jnp.sum(x * c), None), 1.0, None, length=5)[0]

  x = jax.ShapeDtypeStruct((64,), jnp.float32, sharding=row)
  return aot.collective_counts(jax.jit(looped).lower(x).compile().as_text())


def main():
  c = small_fsdp_config()
  mesh = sharding.make_mesh(c.mesh)
  out = {"bare": compile_steps(c, mesh)}
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out["context"] = compile_steps(c, mesh)
  out["scan5"] = scan_collectives()
  print(json.dumps(out))


if __name__ == "__main__":
  main()

"""Compiles the Pallas kernel's forward + backward for a v5p chip with libtpu (no TPU needed).

Prints JSON: how many Mosaic custom calls the compiled step holds (with attention dropout), its
temporaries next to dense XLA attention's (same dropout), and what `attention_backend="auto"` resolves to on a TPU mesh without and with
attention dropout. Run by tests/test_pallas_attention.py (needs libtpu).
"""

import json

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from glm_jax.training import aot
from glm_jax.modeling import attention


def main():
  device = aot.topology_devices("v5p:2x2x1")[0]
  one = NamedSharding(Mesh(np.asarray([device]), ("x",)), P())
  b, s, h, d = 2, 4000, 4, 64          # not a multiple of the 512 blocks
  qkv = jax.ShapeDtypeStruct((b, s, h, d), jnp.bfloat16, sharding=one)
  sep = jax.ShapeDtypeStruct((b,), jnp.int32, sharding=one)

  def fwd_bwd(attend):
    def step(q, k, v, sep):
      out, vjp = jax.vjp(lambda q, k, v: attend(q, k, v, sep), q, k, v)
      return out, vjp(out)
    compiled = aot.run_with_big_stack(jax.jit(step).lower(qkv, qkv, qkv, sep).compile)
    return compiled.as_text(), compiled.memory_analysis().temp_size_in_bytes

  text, pallas_temp = fwd_bwd(lambda q, k, v, sep: attention.pallas_attention(
      q, k, v, sep, dropout_rate=0.1, dropout_seed=7))
  _, xla_temp = fwd_bwd(lambda q, k, v, sep: attention.xla_attention(
      q, k, v, attention.glm_mask(sep, q.shape[1]), dropout_rate=0.1, dropout_seed=7))
  with jax.sharding.use_abstract_mesh(one.mesh.abstract_mesh):   # compiling for a TPU mesh
    auto = [attention.resolve_backend("auto", dtype=jnp.bfloat16, training_with_dropout=dropout)
            for dropout in (False, True)]
  print(json.dumps({"mosaic_calls": text.count('custom_call_target="tpu_custom_call"'),
                    "pallas_temp": pallas_temp, "xla_temp": xla_temp, "auto": auto}))


if __name__ == "__main__":
  main()

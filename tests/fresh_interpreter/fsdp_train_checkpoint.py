"""Writes a training checkpoint (params + AdamW moments) of a tiny GLM, sharded fsdp=8 as train does.

Usage: python -m tests.fresh_interpreter.fsdp_train_checkpoint WORKDIR
Prints JSON: the mesh the state was sharded on. Run by tests/test_generate_sharding.py.
"""

import json
import sys

import jax

from configs import tiny
from glm_jax.training import checkpoint, optim, train_state
from glm_jax.modeling import sharding


def main():
  config = tiny.get_config()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 8, 1
  config.model.vocab_size, config.model.hidden_size = 256, 64
  mesh = sharding.make_mesh(config.mesh)
  optimizer = optim.make_optimizer(config)
  _, shardings = train_state.state_shardings(config, mesh, optimizer)
  state = train_state.init_state(config, optimizer, shardings)
  saver = checkpoint.Checkpointer(sys.argv[1], keep=1)
  saver.save(1, state, {"position": 0})
  saver.wait()
  saver.close()
  print(json.dumps({"mesh": dict(mesh.shape),
                    "embedding_spec": list(state.params["word_embeddings"]["embedding"]
                                           .sharding.spec)}))


if __name__ == "__main__":
  main()

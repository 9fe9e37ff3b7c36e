"""Finetunes the tiny BoolQ config for one epoch, optionally on a mesh, and prints its losses.

Usage: python -m tests.fresh_interpreter.finetune_losses DATA WORKDIR DATA_AXIS FSDP TENSOR ACCUM
(DATA_AXIS 0: the config's default mesh). Prints the per-step losses as JSON. Run by
tests/test_finetune_sharding.py with 1 or 8 fake CPU devices.
"""

import json
import pathlib
import sys

from tests import test_finetune


def main():
  data, work = pathlib.Path(sys.argv[1]), sys.argv[2]
  d, f, t, accum = (int(a) for a in sys.argv[3:7])
  mesh = dict(data=d, fsdp=f, tensor=t) if d else None
  config = test_finetune.tiny_config(data, epochs=1, grad_accum_steps=accum)
  if mesh:
    config.mesh.update(mesh)
  test_finetune.run(config, pathlib.Path(work))
  print(json.dumps(test_finetune.losses(work)))


if __name__ == "__main__":
  main()

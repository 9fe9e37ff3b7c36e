"""Finetunes a tiny task for one epoch, optionally on a mesh, and prints its losses: the BoolQ
config, or the seq2seq copy task where DATA holds train.source (tests/test_finetune_seq2seq.py).

Usage: python -m tests.fresh_interpreter.finetune_losses DATA WORKDIR DATA_AXIS FSDP TENSOR ACCUM
[PROCESS_ID NUM_PROCESSES PORT] (DATA_AXIS 0: the config's default mesh; the last three: one
process of a multi-process run on 127.0.0.1). Prints the per-step losses as JSON, then the best
dev record. Run by tests/test_finetune_sharding.py with 1 or 8 fake CPU devices, or 2 x 4.
"""

import json
import pathlib
import sys

import jax

from tests import test_finetune, test_finetune_seq2seq


def main():
  data, work = pathlib.Path(sys.argv[1]), sys.argv[2]
  d, f, t, accum = (int(a) for a in sys.argv[3:7])
  if len(sys.argv) > 7:
    process_id, num_processes, port = (int(a) for a in sys.argv[7:10])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id,
                               initialization_timeout=120)
  mesh = dict(data=d, fsdp=f, tensor=t) if d else None
  if (data / "train.source").exists():
    config = test_finetune_seq2seq.tiny_config(data, epochs=1, eval_every_epochs=1,
                                               log_every_steps=1, grad_accum_steps=accum)
  else:
    config = test_finetune.tiny_config(data, epochs=1, grad_accum_steps=accum)
  if mesh:
    config.mesh.update(mesh)
  best = test_finetune.run(config, pathlib.Path(work))
  if jax.process_index() == 0:
    print(json.dumps(test_finetune.losses(work)))
    print(json.dumps(best))


if __name__ == "__main__":
  main()

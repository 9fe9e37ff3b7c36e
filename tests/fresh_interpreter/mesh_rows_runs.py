"""Tiny real-data training runs on several mesh layouts, in one (possibly multi-process) launch.

Usage: python -m tests.fresh_interpreter.mesh_rows_runs WORKDIR CORPUS_GLOB TOKENIZER_MODEL
[PROCESS_ID NUM_PROCESSES PORT]. For each layout (tensor=8; data=2,tensor=4; fsdp=8) trains 5
steps of a one-layer GLM on the `files` corpus with held-out eval every 2 steps (4 batches) and
prints, on process 0, one JSON line: layout -> {step: loss} and {step: eval_loss}. Run by
tests/test_mesh_rows.py as 2 processes x 4 fake CPU devices and as 1 process x 8.
"""

import json
import os
import sys

import jax

LAYOUTS = {"tensor8": (1, 1, 8), "data2_tensor4": (2, 1, 4), "fsdp8": (1, 8, 1)}


def config_for(layout, corpus, tokenizer):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.model.update(hidden_size=64, num_heads=8, num_layers=1, max_sequence_length=32)
  c.update(seq_length=32, global_batch_size=16, total_steps=5, log_every_steps=1,
           eval_every_steps=2, eval_steps=4, checkpoint_every_steps=1000, sample_tokens=0,
           tensorboard=False)
  c.data.update(source="files", files=corpus, tokenizer_model_path=tokenizer,
                eval_holdout_fraction=0.05, shuffle_buffer=64, read_batch_documents=64)
  c.mesh.update(data=layout[0], fsdp=layout[1], tensor=layout[2])
  return c


def main():
  workdir, corpus, tokenizer = sys.argv[1:4]
  if len(sys.argv) > 4:
    process_id, num_processes, port = map(int, sys.argv[4:7])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=120)
  from glm_jax.training import train_loop  # pylint: disable=g-import-not-at-top
  out = {}
  for name, layout in LAYOUTS.items():
    run_dir = os.path.join(workdir, name)
    train_loop.run(config_for(layout, corpus, tokenizer), run_dir)
    if jax.process_index() == 0:
      with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
      out[name] = {"loss": {r["step"]: r["loss"] for r in records if "loss" in r},
                   "eval_loss": {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r}}
  if jax.process_index() == 0:
    print(json.dumps(out))


if __name__ == "__main__":
  main()

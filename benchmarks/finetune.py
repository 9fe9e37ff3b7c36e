"""Cloze finetuning throughput: the jitted, sharded train step of `glm_jax.finetune` on
SuperGLUE-shaped batches, one JSON line per task shape.

  python benchmarks/finetune.py                                      # small model, CPU
  python benchmarks/finetune.py --layers=24 --hidden=1024 --heads=16 --vocab=30592 --dtype=bfloat16

Shapes follow the task scripts: COPA (multi-token, 2 choices, seq 256, batch 16) and RTE
(single-token, seq 256, batch 16) by default; rows hold random ids with real layouts (text ~80%
of the row, answers of 1..4 tokens + [eop]). tokens/s counts the row slots the step processes
(batch x choices x seq_length, padding included, as the original's fixed-length rows);
`real_tokens_per_s` counts the unpadded row tokens. The step is compiled before timing.
`--compare_full_vocab` also times the same step when the loss is taken from the model's full
logits (every position through the vocabulary projection, then gathered at the answer slots),
the naive way, and prints the ratio measured in the same run.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

import bench_model  # noqa: E402
from configs.finetune import superglue as sg_config  # noqa: E402
from glm_jax.training import optim, train_state  # noqa: E402
from glm_jax.modeling import sharding
from glm_jax.evaluation.eval_rows import build_row  # noqa: E402
from glm_jax.tasks import cloze_task  # noqa: E402
from glm_jax.tasks.superglue.patterns import Encoded  # noqa: E402

SPECIAL = {"eos": 0, "CLS": 1, "MASK": 2, "sop": 3, "eop": 4}


def make_encoded(num, choices, seq_length, vocab, multi, rng):
  out = []
  for _ in range(num):
    text = rng.integers(10, vocab, int(seq_length * 0.8) - 6).tolist()
    text.insert(int(rng.integers(0, len(text))), SPECIAL["MASK"])
    if multi:
      rows = [build_row(text, None, rng.integers(10, vocab, rng.integers(1, 5)).tolist() + [4],
                        special=SPECIAL, mask_id=2, max_length=seq_length) for _ in range(choices)]
      out.append(Encoded(rows, int(rng.integers(0, choices)), None, 0))
    else:
      row = build_row(text, None, None, special=SPECIAL, mask_id=2, max_length=seq_length)
      out.append(Encoded([row], int(rng.integers(0, 2)), [11, 12], 0))
  return out


def full_vocab_objective(multi):
  """The same loss from the model's full `[rows, length, vocab]` logits (the naive baseline)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def sums(glm, params, batch, rng, deterministic):
    b, c, length = batch["ids"].shape
    logits = glm.apply({"params": params}, batch["ids"].reshape(b * c, length),
                       batch["position_ids"].reshape(b * c, 2, length),
                       batch["sep"].reshape(b * c), deterministic=deterministic,
                       rngs={"dropout": rng})
    slots = batch["slots"].reshape(b * c, -1)
    logits = jnp.take_along_axis(logits.astype(jnp.float32), slots[..., None], axis=1)
    logits = logits.reshape(b, c, slots.shape[-1], -1)
    scores = cloze_task.choice_scores(logits, batch, multi, 0.0)
    return cloze_task.choice_loss_sums(scores, batch, "cross_entropy")

  base = cloze_task.make_objective(multi, "cross_entropy", 0.0)
  return train_state.Objective(sums, base.count, base.batch_ndims)


def time_steps(config, mesh, objective, placed, steps):
  optimizer = optim.make_optimizer(config)
  _, shardings = train_state.state_shardings(config, mesh, optimizer)
  state = train_state.init_state(config, optimizer, shardings)
  step = train_state.make_train_step(config, mesh, optimizer, shardings, objective)
  state, metrics = step(state, placed[0])  # compile
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for i in range(steps):
    state, metrics = step(state, placed[i % len(placed)])
  jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / steps


def bench(args, name, multi, choices, mesh):
  config = sg_config.get_config()
  config.model.update(**bench_model.size_from_flags(args), remat_policy=args.remat)
  config.seq_length, config.global_batch_size = args.seq_length, args.batch
  config.total_steps, config.learning_rate = 100, 1e-5
  config.from_scratch = True   # random weights: the benchmark times steps
  rng = np.random.default_rng(0)
  encoded = make_encoded(args.batch * 2, choices, args.seq_length, args.vocab, multi, rng)
  slots = max(sum(r.loss_mask) for e in encoded for r in e.rows)
  batches = [cloze_task.pack(encoded[i:i + args.batch], seq_length=args.seq_length,
                             num_choices=choices if multi else 1, num_slots=slots, eos_id=0,
                             num_labels=0 if multi else 2)
             for i in range(0, len(encoded), args.batch)]
  objective = cloze_task.make_objective(multi, "cross_entropy", 0.0)
  placed = [sharding.put_batch(b, mesh) for b in batches]
  per_step = time_steps(config, mesh, objective, placed, args.steps)
  c = choices if multi else 1
  real = np.mean([sum(len(r) for e in encoded[i:i + args.batch] for r in e.rows)
                  for i in range(0, len(encoded), args.batch)])
  out = {"benchmark": "finetune_step", "task_shape": name, "batch": args.batch, "choices": c,
         "seq_length": args.seq_length, "layers": args.layers, "hidden": args.hidden,
         "vocab": args.vocab, "dtype": args.dtype, "devices": jax.device_count(),
         "platform": jax.devices()[0].platform, "step_s": round(per_step, 4),
         "tokens_per_s": round(args.batch * c * args.seq_length / per_step, 1),
         "real_tokens_per_s": round(real / per_step, 1),
         "examples_per_s": round(args.batch / per_step, 2)}
  if args.compare_full_vocab:
    full = time_steps(config, mesh, full_vocab_objective(multi), placed, args.steps)
    out.update(full_vocab_step_s=round(full, 4),
               full_vocab_tokens_per_s=round(args.batch * c * args.seq_length / full, 1),
               speedup_vs_full_vocab=round(full / per_step, 2))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  bench_model.add_size_flags(parser, vocab=30592)
  parser.add_argument("--seq_length", type=int, default=256)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--remat", default="none")
  parser.add_argument("--tasks", default="copa,rte")
  parser.add_argument("--compare_full_vocab", action="store_true")
  args = parser.parse_args()
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  shapes = {"copa": (True, 2), "rte": (False, 1), "record": (True, 10), "wsc": (True, 10)}
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    for name in args.tasks.split(","):
      multi, choices = shapes[name]
      print(json.dumps(bench(args, name, multi, choices, mesh)), flush=True)


if __name__ == "__main__":
  main()

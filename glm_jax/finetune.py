"""Finetuning on SuperGLUE (cloze) and seq2seq tasks: `python -m glm_jax.finetune
--config=configs/finetune/superglue.py --config.task=copa --config.data_dir=DIR
--config.init_from=CKPT --workdir=DIR` (or --config=configs/finetune/seq2seq.py --config.task=xsum).

The loop is the pretraining one (`train_loop.train_loop`: mesh, jitted sharded step, Orbax
checkpoints, resume, SIGTERM, metrics.jsonl, TensorBoard) run with a task (`tasks.protocol.Task`:
SuperGLUE in tasks/superglue/task.py, seq2seq in tasks/seq2seq/task.py) for its batches and loss;
this module adds the task's dev metric every epoch (and every eval_every_steps), the best
checkpoint by that metric (params only, `workdir/best_params`, with `best.json`), and at the end
the task's test predictions (`workdir/predictions/COPA.jsonl`, ...). Re-running the same command
resumes where it stopped.
"""

from __future__ import annotations

import json
import sys
import types

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np
from etils import epath

from glm_jax import cli
from glm_jax import hosts
from glm_jax import run_checks
from glm_jax import run_flags
from glm_jax.errors import FinetuneError
from glm_jax.modeling import sharding
from glm_jax.storage import compilation_cache
from glm_jax.storage import outputs
from glm_jax.storage import params_io
from glm_jax.storage import paths
from glm_jax.tasks import superglue
from glm_jax.tasks.protocol import Task
from glm_jax.tasks.seq2seq import data as seq2seq_data
from glm_jax.tasks.seq2seq import task as seq2seq_task
from glm_jax.tasks.superglue import task as superglue_task
from glm_jax.training import checkpoint as checkpoint_lib
from glm_jax.training import metrics as metrics_lib
from glm_jax.training import optim
from glm_jax.training import profiling
from glm_jax.training import train_loop
from glm_jax.training import train_state
from input_pipeline import tokenizer as tokenizer_lib

# --config, --workdir, the process flags and --compile_only's, shared with train (run_flags.py).
flags.adopt_module_key_flags(run_flags)
log = train_loop.log
# --mesh_data / --mesh_fsdp / --mesh_tensor: given, they override config.mesh (hosts.py).
hosts.define_mesh_flags(hosts.CONFIG_MESH)
warn = checkpoint_lib.warning  # warnings go to stderr, results and progress to stdout


def model_from_checkpoint(config) -> None:
  """Sets config.model's shape (vocab, layers, width, heads, positions, FFN) from the params
  at init_from, so one config serves every released size; dropout and dtype stay configured.
  Without init_from, finetuning refuses unless from_scratch says a random start is meant."""
  if not config.init_from:
    if not config.get("from_scratch", False):
      raise FinetuneError("no model to finetune: pass --config.init_from=DIR (a params checkpoint "
                          "from `python -m glm_jax.extract_params` or `convert import`), or "
                          "--config.from_scratch=True to finetune randomly initialised params.")
    return
  path = epath.Path(config.init_from)
  if not path.is_dir():
    raise FinetuneError(f"--config.init_from={config.init_from} is not a params checkpoint "
                        "directory (make one with `python -m glm_jax.convert import`).")
  shape = params_io.stored_config(config.init_from)
  if shape.quantization:
    raise FinetuneError(f"--config.init_from={config.init_from} holds {shape.quantization} "
                        "kernels, which are for inference only; finetune from the float params "
                        "it was quantized from.")
  with config.unlocked():
    for key in ("vocab_size", "num_layers", "hidden_size", "num_heads", "max_sequence_length",
                "mlp_ratio"):
      config.model[key] = getattr(shape, key)


def load_task_tokenizer(config):
  """The tokenizer named by --config.tokenizer, else the one stored beside init_from."""
  path = config.tokenizer or (tokenizer_lib.tokenizer_beside(config.init_from)
                              if config.init_from else None)
  if not path:
    raise FinetuneError("no tokenizer: pass --config.tokenizer=DIR (the released model's "
                        "tokenizer files) or an init_from checkpoint that stores one "
                        "(`convert import --tokenizer`).")
  return tokenizer_lib.load_tokenizer(path, config.tokenizer_kind or None)


def is_seq2seq(config) -> bool:
  """Seq2seq tasks (configs/finetune/seq2seq.py) and SuperGLUE tasks have distinct names."""
  return str(config.task).lower() in seq2seq_data.TASKS


def build_task(config, tokenizer) -> Task:
  """The config's task, its splits read and encoded (warnings, e.g. examples cut, on stderr)."""
  family = seq2seq_task if is_seq2seq(config) else superglue_task
  return family.build(config, tokenizer, warn)


def prepare_config(config):
  """Task defaults, model shape from init_from, and the step count from the training set."""
  if not config.task:
    raise FinetuneError("pass --config.task (one of " + ", ".join(sorted(superglue.TASKS)) +
                        "; seq2seq with configs/finetune/seq2seq.py: " +
                        ", ".join(seq2seq_data.TASKS) + ").")
  if is_seq2seq(config):
    return _prepare_seq2seq_config(config)
  superglue.get_task(config.task)
  from configs.finetune import superglue as sg_config  # pylint: disable=g-import-not-at-top
  sg_config.apply_task_defaults(config)
  model_from_checkpoint(config)
  if config.data_source == "jsonl" and not config.data_dir:
    raise FinetuneError("pass --config.data_dir=DIR (the task's folder with train.jsonl, "
                        "val.jsonl, test.jsonl).")
  return config


def extend_position_tables(config, workdir: str) -> None:
  """As the original's `load_pretrained`: when the task needs a longer position table than the
  init_from params have (GLM-Large's 513 rows for CNN/DM's 608-token sources), both position
  tables keep their rows and get new N(0, init_std) rows; the result is written once to
  workdir/init_params_<rows> and used as init_from."""
  if not config.init_from:
    return
  rows = int(config.model.max_sequence_length) + 1
  out = str(paths.as_path(workdir) / f"init_params_{rows}")
  if not paths.as_path(out).is_dir():
    if params_io.stored_config(config.init_from).max_sequence_length + 1 >= rows:
      return
    params = params_io.load_params(config.init_from)
    stored = params["position_embeddings"]["embedding"].shape[0]
    if stored >= rows:
      return
    rng = np.random.default_rng(int(config.seed))
    for name in ("position_embeddings", "block_position_embeddings"):
      table = np.asarray(params[name]["embedding"])
      extra = rng.normal(0.0, float(config.model.init_std), (rows - stored, table.shape[1]))
      params[name]["embedding"] = np.concatenate([table, extra.astype(table.dtype)])
    params_io.save_params(out, params)
    log(f"position tables extended from {stored} to {rows} rows (new rows N(0, "
        f"{config.model.init_std})), as the original does for src_seq_length="
        f"{config.src_seq_length}: {out}")
  with config.unlocked():
    config.init_from = out


def _prepare_seq2seq_config(config):
  if "src_seq_length" not in config:
    raise FinetuneError(f"task {config.task} is a seq2seq task: pass "
                        "--config=configs/finetune/seq2seq.py.")
  from configs.finetune import seq2seq as s2s_config  # pylint: disable=g-import-not-at-top
  s2s_config.apply_task_defaults(config)
  model_from_checkpoint(config)
  if config.init_from and config.src_seq_length > config.model.max_sequence_length:
    with config.unlocked():  # the original: max_position_embeddings = src_seq_length
      config.model.max_sequence_length = int(config.src_seq_length)
  if config.data_source == "files" and not config.data_dir:
    raise FinetuneError("pass --config.data_dir=DIR (the folder with train.source, "
                        "train.target, val.source, val.target, test.*).")
  table = config.model.max_sequence_length + 1
  if config.src_seq_length > table or config.tgt_seq_length + 1 > table:
    raise FinetuneError(
        f"src_seq_length={config.src_seq_length} / tgt_seq_length={config.tgt_seq_length} need "
        f"{max(config.src_seq_length, config.tgt_seq_length + 1)} position rows but the model "
        f"has {table} (max_sequence_length={config.model.max_sequence_length}); lower them.")
  return config


def _positions_view(config):
  """The config as run_checks should see it: a seq2seq row is src + tgt tokens long but its
  positions only reach src_seq_length (targets sit at the blank) and its block positions
  tgt_seq_length + 1."""
  if not is_seq2seq(config):
    return config
  view = config.copy_and_resolve_references()
  with view.unlocked():
    view.seq_length = max(int(config.src_seq_length), int(config.tgt_seq_length) + 1)
  return view


class BestKeeper:
  """The best dev score so far (workdir/best.json) and its params (workdir/best_params)."""

  def __init__(self, workdir: str, metric: str):
    self.path = paths.as_path(workdir) / "best.json"
    self.params_dir = str(paths.as_path(workdir) / "best_params")
    self.metric = metric
    self.best = json.loads(self.path.read_text()) if self.path.exists() else None

  def offer(self, step: int, epoch: float, results: dict, params) -> bool:
    """Keeps `params` as the best checkpoint if they beat the best so far; True when kept."""
    value = results[self.metric]
    if self.best is not None and value <= self.best["value"]:
      return False
    params_io.save_for_inference(self.params_dir, params, command="finetune best_params",
                                      overwrite=True)
    self.best = {"metric": self.metric, "value": value, "step": step, "epoch": epoch,
                 "results": results}
    if jax.process_index() == 0:
      paths.write_text_atomic(self.path, json.dumps(self.best))
    return True


def make_periodic_eval(config, task: Task, mesh, steps_per_epoch: int, keeper: BestKeeper):
  """Dev metrics every eval_every_epochs epochs (and eval_every_steps), keeping the best."""
  every_epochs = steps_per_epoch * max(int(config.eval_every_epochs), 0)

  def periodic_eval(state, step):
    due = (every_epochs and step % every_epochs == 0) or (
        config.eval_every_steps and step % config.eval_every_steps == 0)
    if not due or not task.sizes["dev"]:
      return None
    results = task.evaluate(state.params, mesh)
    improved = keeper.offer(step, step / steps_per_epoch, results, state.params)
    log(f"epoch {step / steps_per_epoch:.2f} dev " + " ".join(
        f"{k} {v:.2f}" for k, v in results.items()) + (" (best)" if improved else ""))
    return {f"dev_{k}": v for k, v in results.items()}

  return periodic_eval


def write_predictions(task: Task, params, mesh, workdir: str) -> str | None:
  """Writes the best params' test predictions into the workdir; their path (None: no test set)."""
  if not task.sizes["test"]:
    return None
  files = task.output_files(task.predict(params, mesh))
  out_dir = epath.Path(workdir) / "predictions"
  if jax.process_index() == 0:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
      (out_dir / name).write_text(text)
  return str(out_dir / task.submission_file)


def run(config, workdir: str, mesh) -> dict:
  """Finetunes (or resumes), then predicts the test set with the best params; returns the
  best dev record (best.json)."""
  outputs.claim_workdir(workdir, "finetune")
  compilation_cache.enable(config.compilation_cache_dir, workdir)
  tokenizer = load_task_tokenizer(config)
  if tokenizer.vocab_size > config.model.vocab_size:
    raise FinetuneError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                        f"{config.model.vocab_size} embedding rows; use the model's tokenizer.")
  task = build_task(config, tokenizer)
  if is_seq2seq(config):
    extend_position_tables(config, workdir)
  data = types.SimpleNamespace(train=task.train_data(mesh))
  steps_per_epoch = data.train.steps_per_epoch
  with config.unlocked():
    config.total_steps = int(config.epochs) * steps_per_epoch
  run_checks.validate(_positions_view(config), jax.device_count(),
                      jax.process_count())  # as pretraining checks it
  optimizer = optim.make_optimizer(config)
  abstract, shardings = train_state.state_shardings(config, mesh, optimizer)
  checkpointer = checkpoint_lib.Checkpointer(workdir, config.keep_checkpoints)
  state = train_loop.restore_or_init(config, checkpointer, data, optimizer, abstract, shardings)
  step_fn = train_state.make_train_step(config, mesh, optimizer, shardings, task.objective)
  writer = metrics_lib.MetricsWriter(workdir, tensorboard=config.tensorboard)
  keeper = BestKeeper(workdir, task.main_metric)
  log(f"{task.name}: " + " / ".join(f"{n} {split}" for split, n in task.sizes.items())
      + f" examples | {config.epochs} epochs x {steps_per_epoch} steps | batch "
      f"{config.global_batch_size} x {task.tokens_per_example} tokens | workdir {workdir}")
  with profiling.profiled(config.profile_steps, workdir) as profiler:
    state, step = train_loop.train_loop(
        config, mesh, data, state, step_fn, None, checkpointer, writer, profiler,
        periodic_eval=make_periodic_eval(config, task, mesh, steps_per_epoch, keeper),
        tokens_per_step=config.global_batch_size * task.tokens_per_example)
  checkpointer.wait()
  checkpointer.close()
  writer.close()
  if step < config.total_steps:
    return keeper.best or {}
  if keeper.best is None and task.sizes["dev"]:
    raise FinetuneError("training ended without a dev evaluation; set eval_every_epochs >= 1.")
  params = state.params
  if keeper.best is not None:
    params = params_io.load_params(keeper.params_dir, abstract.params, shardings.params)
    if jax.process_index() == 0:  # generate / evaluate find it there
      if hasattr(tokenizer, "save"):   # a released tokenizer: its files and kind
        tokenizer.save(str(paths.as_path(keeper.params_dir) / "tokenizer"))
      else:                            # ours: the sentencepiece .model file
        tokenizer_lib.store_beside(tokenizer.model_path, keeper.params_dir)
    log(f"best dev {keeper.metric} {keeper.best['value']:.2f} at step {keeper.best['step']}; "
        f"params in {keeper.params_dir}")
  written = write_predictions(task, params, mesh, workdir) if config.predict_test else None
  if written:
    log(f"test predictions: {written}")
  return keeper.best or {}


# Batch shape --compile_only assumes for a cloze task (the data sets it in a real run): answer
# tokens per choice of a multi-token task (COPA's choices are short clauses).
COMPILE_ONLY_SLOTS = 32


def compile_only(config, topology: str | None, num_slices: int = 1,
                 hlo_dump: str | None = None) -> None:
  """--compile_only --topology: the task's train step compiled for a TPU slice (model shape from
  the config's model.* keys, or init_from's metadata; no data or params are read); the report
  and exit status of `train --compile_only`."""
  if not topology:
    raise app.UsageError("--compile_only needs --topology, e.g. --topology=v5p:2x2x4.")
  if is_seq2seq(config) or not config.task:
    raise FinetuneError("finetune --compile_only compiles the SuperGLUE cloze tasks: pass "
                        "--config.task=copa (or wsc, rte, boolq, wic, cb, multirc, record).")
  from configs.finetune import superglue as sg_config  # pylint: disable=g-import-not-at-top
  from glm_jax.tasks import cloze_task  # pylint: disable=g-import-not-at-top
  from glm_jax.training import aot  # pylint: disable=g-import-not-at-top
  info = superglue.get_task(config.task)
  sg_config.apply_task_defaults(config)
  model_from_checkpoint(config)
  with config.unlocked():
    config.total_steps = max(int(config.total_steps), 1)
  choices = len(info.labels) if info.multi_token else 1
  slots = COMPILE_ONLY_SLOTS if info.multi_token else 1
  objective = cloze_task.make_objective(info.multi_token, config.loss, config.length_penalty)

  def task_for_mesh(mesh):
    b, s = int(config.global_batch_size), int(config.seq_length)
    shapes = {"ids": (b, choices, s), "position_ids": (b, choices, 2, s), "sep": (b, choices),
              "slots": (b, choices, slots), "slot_targets": (b, choices, slots),
              "slot_valid": (b, choices, slots), "choice_mask": (b, choices), "label": (b,),
              "label_ids": (b, max(len(info.labels), 1)), "example_mask": (b,)}
    batch = {k: jax.ShapeDtypeStruct(v, np.int32, sharding=sharding.batch_sharding(mesh, len(v)))
             for k, v in shapes.items()}
    return objective, batch

  sys.exit(aot.main(config, topology, num_slices, hlo_dump, program="glm_jax.finetune",
                    task_for_mesh=task_for_mesh))


def main(argv) -> None:
  """The finetune CLI: config -> checks -> `run`; user errors end in one line (cli.run)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  config = cli.loaded_config(run_flags.CONFIG, "configs/finetune/superglue.py")
  config.mesh.update(hosts.mesh_config(config.mesh))
  if run_flags.COMPILE_ONLY.value:
    compile_only(config, run_flags.TOPOLOGY.value, run_flags.NUM_SLICES.value,
                 run_flags.HLO_DUMP.value)
  hosts.initialize()
  config = prepare_config(config)  # a bad config or data source: one line from cli.run
  workdir = run_flags.WORKDIR.value or f"/tmp/glm_jax/finetune_{config.task}"
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    run(config, workdir, mesh)


if __name__ == "__main__":
  cli.run(main, program="glm_jax.finetune")

"""The training loop every run shares (pretraining, finetuning): restore or initialise the state,
step, log one step late, evaluate, checkpoint, stop cleanly on SIGTERM / Ctrl-C / a pod
preemption; and pretraining put together from it (`train_and_evaluate`, `run`).

Reads top to bottom: check the config -> build the data -> restore or initialise the state -> jit
the step -> loop with periodic actions (log, evaluate, checkpoint). Re-running in the same
workdir resumes from the last checkpoint. The command line is glm_jax.train; from Python,
`train_loop.run(config, workdir)` is the same run.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from glm_jax import cli
from glm_jax import run_checks
from glm_jax.errors import ConfigError
from glm_jax.modeling import model as model_lib
from glm_jax.modeling import sharding
from glm_jax.storage import compilation_cache
from glm_jax.storage import outputs
from glm_jax.storage import params_io
from glm_jax.storage import paths
from glm_jax.training import checkpoint as checkpoint_lib
from glm_jax.training import metrics as metrics_lib
from glm_jax.training import objective
from glm_jax.training import optim
from glm_jax.training import prefetch
from glm_jax.training import profiling
from glm_jax.training import train_data
from glm_jax.training import train_state
from input_pipeline.blank_infilling import OBJECTIVES as EVAL_OBJECTIVES


def log(message: str) -> None:
  """Prints on process 0 only, so a pod run logs each line once."""
  if jax.process_index() == 0:
    print(message, flush=True)


def prepare_config(config):
  """Fills the vocabulary from the tokenizer if asked, then checks every value (no compiling)."""
  tokenizer_vocab = train_data.load_vocab_size(config)
  if config.vocab_from_tokenizer and tokenizer_vocab is not None:
    from input_pipeline import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
    config.model.vocab_size = tokenizer_lib.padded_vocab_size(tokenizer_vocab)
  run_checks.validate(config, jax.device_count(), jax.process_count())
  run_checks.check_vocab(config, tokenizer_vocab)
  return config


def _in_notebook() -> bool:
  """Whether an IPython shell or kernel runs this code (a library that merely imported IPython
  does not count: the command line keeps its save-on-Ctrl-C)."""
  ipython = sys.modules.get("IPython")
  return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


class Preemption:
  """Set by SIGTERM or a first Ctrl-C (single process), or by JAX's multi-host preemption sync
  point. A second Ctrl-C stops at once, in one line. `restore()` puts the old handlers back
  when the loop ends."""

  def __init__(self, checkpointer):
    self.checkpointer, self.signalled, self.interrupted = checkpointer, False, False
    self.previous = {}
    if jax.process_count() == 1:
      self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
      if not _in_notebook():  # a notebook keeps its own Ctrl-C (interrupt the cell)
        self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)

  def _handle(self, signum, frame):
    del signum, frame
    self.signalled = True

  def _interrupt(self, signum, frame):
    del signum, frame
    if self.interrupted:
      print("Interrupted again: stopped without saving; the last checkpoint is kept.",
            file=sys.stderr, flush=True)
      os._exit(cli.INTERRUPTED_EXIT_CODE)  # at once: no traceback, no waiting for a step
    self.interrupted = self.signalled = True
    print("Interrupted: saving a checkpoint after this step, then stopping (Ctrl-C again to stop "
          "at once).", file=sys.stderr, flush=True)

  def restore(self) -> None:
    """The signal handlers as they were (a notebook's Ctrl-C works again after a run)."""
    for signum, handler in self.previous.items():
      signal.signal(signum, handler)
    self.previous = {}

  def reached(self, step: int) -> bool:
    """Whether to stop and checkpoint now: SIGTERM seen, or any host was preempted."""
    return self.signalled or self.checkpointer.reached_preemption(step)


def restore_or_init(config, checkpointer, data, optimizer, abstract, shardings):
  """The latest checkpoint that reads (see restore_fallback); else fresh (or `init_from`) params."""
  restored = checkpointer.restore_latest(abstract, fallback=config.restore_fallback)
  if restored is not None:
    step, state, data_state = restored
    data.train.set_state(data_state)
    log(f"Resumed from {checkpointer.directory}/{step}.")
    return state
  state = train_state.init_state(config, optimizer, shardings)
  if config.init_from:
    params = params_io.load_params(config.init_from, abstract.params, shardings.params)
    state = state.replace(params=params)
    log(f"Initialised params from {config.init_from}.")
  return state


def _objective_groups(batches, rows: int) -> np.ndarray:
  """`[rows, 3]` one-hot of each row's objective (token, sentence, document) in the batch just
  read; all zero where the iterator does not say (synthetic data, padding rows)."""
  groups = np.zeros((rows, len(EVAL_OBJECTIVES)), np.float32)
  for row, name in enumerate(getattr(batches, "last_objectives", ())):
    if name is not None:
      groups[row, EVAL_OBJECTIVES.index(name)] = 1.0
  return groups


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on any process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


def evaluate(eval_step, params, data, mesh, num_batches: int) -> dict:
  """Mean loss / Part-B accuracy over `num_batches` held-out batches (a host sync, by design),
  and the loss of each objective that occurred (`eval_loss_token`, ..., as pretrain_glm.py).

  Every process runs the same batches: until `num_batches`, or until no process has data left;
  one that ran out feeds zero-weight rows (as a block that ran out does inside a process)."""
  sums, batches = None, data.make_eval()
  for _ in range(num_batches):
    batch = next(batches, None)
    if not any_process(batch is not None):
      break
    if batch is None:
      batch = data.eval_padding()
    groups = _objective_groups(batches, batch["sep"].shape[0])
    batch_sums = eval_step(params, sharding.put_batch(batch, mesh),
                           sharding.put_batch({"groups": groups}, mesh)["groups"])
    sums = batch_sums if sums is None else objective.add_sums(sums, batch_sums)
  if sums is None:
    return {}
  sums = jax.device_get(sums)
  means = objective.mean_metrics(sums)
  results = {"eval_loss": float(means["loss"]), "eval_accuracy": float(means["accuracy"])}
  for name, loss_sum, tokens in zip(EVAL_OBJECTIVES, sums["group_loss_sum"], sums["group_tokens"]):
    if tokens > 0:
      results[f"eval_loss_{name}"] = float(loss_sum / tokens)
  return results


class TrainLogger:
  """Averages step metrics over each log window and writes them one step late (no host sync)."""

  def __init__(self, config, writer, start_step: int, num_params: int):
    self.config, self.writer = config, writer
    self.tokens_per_step = config.global_batch_size * config.seq_length
    self.flops_token = metrics_lib.flops_per_token(
        model_lib.as_glm_config(config), config.seq_length, num_params)
    self.peak = metrics_lib.peak_tflops(config)
    self.timer = metrics_lib.StepTimer(start_step)
    self.window, self.pending, self.extra = [], None, {}
    self.started = time.perf_counter()  # this invocation's first record says how long it took
    self.first_record = True

  def add(self, step: int, step_metrics) -> None:
    """Records this step's (device) metrics; flushes the previous window, now surely computed."""
    self.flush()
    self.window.append(step_metrics)
    if step % self.config.log_every_steps == 0:
      self.pending, self.window = (step, self.window), []

  def attach(self, values: dict) -> None:
    """Adds values (e.g. eval results) to the next logged record, so each step has one line."""
    self.extra.update(values)

  def flush(self) -> None:
    """Logs the pending window of metrics (fetched one step late so the device never waits)."""
    if self.pending is None:
      return
    step, window = self.pending
    self.pending = None
    host = jax.device_get(window)
    values = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    per_step = self.timer.lap(step)
    values.update(metrics_lib.throughput(self.tokens_per_step, per_step, self.flops_token,
                                         self.peak, jax.device_count()))
    values.update(self.extra)
    self.extra = {}
    if self.first_record:  # compiles included: what a warm compilation cache shortens
      values["time_to_first_step_s"] = time.perf_counter() - self.started
      self.first_record = False
    self.writer.write(step, values)
    log(metrics_lib.progress_line(step, self.config.total_steps, values, per_step))

  def finish(self, step: int) -> None:
    """Logs a trailing partial window (e.g. at a preemption) as well."""
    if self.window and self.pending is None:
      self.pending, self.window = (step, self.window), []
    self.flush()


def train_loop(config, mesh, data, state, step_fn, eval_fn, checkpointer, writer,
               profiler=None, *, periodic_eval=None, tokens_per_step=None,
               started=None) -> tuple:
  """Runs steps until stop_at_step / total_steps or a preemption; returns (state, step).

  profiler: a profiling.StepProfiler (config.profile_steps) told about each step, or None.
  periodic_eval: `(state, step) -> dict | None`, called after every step in place of the
  held-out LM evaluation every eval_every_steps (finetuning: the task's dev metrics when due).
  tokens_per_step: for throughput, when a step holds more than batch x seq_length tokens.
  started: `time.perf_counter()` when the command started (the first record's
  time_to_first_step_s counts from there; default: now)."""
  step = int(jax.device_get(state.step))
  stop = min(config.total_steps, config.stop_at_step or config.total_steps)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params))
  logger = TrainLogger(config, writer, step, num_params)
  logger.started = started or logger.started
  if tokens_per_step:
    logger.tokens_per_step = int(tokens_per_step)
  preemption = Preemption(checkpointer)
  if periodic_eval is None:
    def periodic_eval(state, step):
      if config.eval_every_steps and step % config.eval_every_steps == 0:
        return evaluate(eval_fn, state.params, data, mesh, config.eval_steps)
      return None
  batches = prefetch.DevicePrefetcher(data.train, mesh)  # the next batch builds during this step
  try:
    state, step = _steps(config, batches, state, step, stop, step_fn, checkpointer, profiler,
                         logger, preemption, periodic_eval)
  finally:
    batches.close()
    preemption.restore()  # the signal handlers the loop took over go back
  logger.finish(step)
  return state, step


def _steps(config, batches, state, step, stop, step_fn, checkpointer, profiler, logger,
           preemption, periodic_eval):
  """The loop of `train_loop`: step, log, evaluate, checkpoint; returns (state, step)."""
  while step < stop:
    if profiler is not None:
      profiler.before_step(step + 1)
    with profiling.step_annotation(step + 1):
      state, step_metrics = step_fn(state, next(batches))
    step += 1
    if profiler is not None:
      profiler.after_step(step, (state, step_metrics))
    logger.add(step, step_metrics)
    results = periodic_eval(state, step)
    if results is not None:
      logger.attach(results)
      logger.flush()
      log(f"step {step} | " + " | ".join(f"{k} {v:.4f}" for k, v in results.items()))
    preempted = preemption.reached(step)
    if step % config.checkpoint_every_steps == 0 or step == stop or preempted:
      checkpointer.save(step, state, batches.get_state())
    if preempted:
      why = "Interrupted" if preemption.interrupted else "Preempted"
      log(f"{why}: saved a checkpoint at step {step}; re-run the same command to resume.")
      break
  return state, step


def print_sample(config, params, data) -> None:
  """Fills one blank with the freshly trained params (skipped without generate.py or a tokenizer).

  Runs on every process: the params are spread over all of them, so a computation on process 0
  alone would wait forever for the others (a hang at the end of multi-host runs). Process 0 prints.
  """
  if config.sample_tokens <= 0 or data.tokenizer is None:
    return
  try:
    from glm_jax import generate  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tok, special = data.tokenizer, data.special_ids
  left, right = "In the beginning God created the", "and the earth."
  prompt = ([special["CLS"]] + tok.encode(left) + [special["MASK"]] + tok.encode(right)
            + [special["eos"]])
  blanks = generate.fill_blanks(config, params, prompt, special_ids=special,
                                max_new_tokens=config.sample_tokens)
  log(f"Sample: {left} [[{tok.decode(blanks[0])}]] {right}")


def keep_tokenizer(data, workdir: str) -> None:
  """Copies the tokenizer next to the checkpoints (a released one as workdir/tokenizer/ with
  its kind recorded): generate and export need it."""
  if data.tokenizer is None or jax.process_index() != 0:
    return
  if hasattr(data.tokenizer, "save"):  # a released GLM tokenizer
    data.tokenizer.save(paths.as_path(workdir) / "tokenizer")
    return
  target = paths.as_path(workdir) / "tokenizer.model"
  if not target.exists():
    paths.copy_file(data.tokenizer.model_path, target)


def train_and_evaluate(config, workdir: str, mesh) -> None:
  """Everything after the config is settled; runs inside the mesh and logical-rules context."""
  outputs.claim_workdir(workdir, "train")
  started = time.perf_counter()
  compilation_cache.enable(config.compilation_cache_dir, workdir)
  try:
    sharding.check_feedable(mesh, int(config.global_batch_size))
  except ValueError as e:  # before anything compiles or reads: one line, exit 2
    raise ConfigError(str(e)) from None
  data = train_data.build(config, mesh=mesh)
  keep_tokenizer(data, workdir)
  optimizer = optim.make_optimizer(config)
  abstract, shardings = train_state.state_shardings(config, mesh, optimizer)
  checkpointer = checkpoint_lib.Checkpointer(workdir, config.keep_checkpoints)
  state = restore_or_init(config, checkpointer, data, optimizer, abstract, shardings)
  step_fn = train_state.make_train_step(config, mesh, optimizer, shardings)
  eval_fn = train_state.make_eval_step(config, mesh, shardings.params)
  writer = metrics_lib.MetricsWriter(workdir, tensorboard=config.tensorboard)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract.params))
  log(f"GLM {num_params / 1e6:.1f}M params | mesh "
      f"{dict(mesh.shape)} | batch {config.global_batch_size} x {config.seq_length} | "
      f"workdir {workdir}")
  with profiling.profiled(config.profile_steps, workdir) as profiler:
    state, step = train_loop(config, mesh, data, state, step_fn, eval_fn, checkpointer, writer,
                             profiler, started=started)
  checkpointer.wait()
  checkpointer.close()
  writer.close()
  log(f"Done at step {step}; checkpoints in {checkpointer.directory}.")
  if step >= config.total_steps:
    print_sample(config, state.params, data)


def run(config, workdir: str):
  """Trains (or resumes) `config` in `workdir` from Python: the CLI's run without absl flags.

  For notebooks: `train_loop.run(tiny.get_config(), "/tmp/glm")`. Raises ConfigError /
  DataSourceError on bad input, like the CLI's messages; multi-host runs still start with
  jax.distributed first. Returns the config as trained (e.g. with `vocab_from_tokenizer` resolved),
  for generation.
  """
  config = prepare_config(config)
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    train_and_evaluate(config, workdir, mesh)
  return config


r"""The evaluation CLI: LAMBADA accuracy, WikiText perplexity, cloze accuracy; one JSON line out.

  python -m glm_jax.evaluate --task=lambada --data=lambada_test.jsonl \
      --checkpoint=DIR --tokenizer=DIR [--tokenizer_kind=bert-uncased] [--mask_token=gMASK]
  python -m glm_jax.evaluate --task=wikitext103 --data=wiki.test.tokens --checkpoint=DIR ...
  python -m glm_jax.evaluate --task=cloze --data=questions.jsonl --checkpoint=DIR ...
  python -m glm_jax.evaluate --task=harness --harness_tasks=lambada_openai,piqa --checkpoint=DIR
      (lm-evaluation-harness tasks through glm_jax.harness; pip install -e ".[harness]")

A progress bar with an ETA goes to stderr; the metrics are one JSON line on stdout (and in
--output). The scoring is glm_jax.evaluation.cloze / glm_jax.evaluation.lm_eval, batched and
sharded over the mesh.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from glm_jax.evaluation import cloze, eval_data, lm_eval, scoring
from glm_jax.evaluation.eval_rows import EvaluationError
from glm_jax.storage import outputs

TASKS = ("lambada", "wikitext103", "wikitext2", "cloze", "harness")
COMMAND = "evaluate"
DEFAULT_SEQ_LENGTH = {"lambada": 512, "wikitext103": 1024, "wikitext2": 1024, "cloze": 256}
DEFAULT_OVERLAP = 256


class ProgressBar:
  """`[#####.....] 120/500 rows 24% 3.1 rows/s ETA 0:02:03` on one rewritten stderr line."""

  def __init__(self, total: int, unit: str = "rows", stream=None, width: int = 30):
    self.total, self.unit, self.width = max(int(total), 1), unit, width
    self.stream = stream if stream is not None else sys.stderr
    self.start = time.perf_counter()

  @staticmethod
  def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

  def __call__(self, done: int) -> None:
    elapsed = time.perf_counter() - self.start
    fraction = min(done / self.total, 1.0)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - done) / rate if rate > 0 else float("nan")
    filled = int(round(fraction * self.width))
    eta_text = self._clock(eta) if np.isfinite(eta) else "?"
    self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                      f"{self.unit} {fraction:4.0%} {rate:.1f} {self.unit}/s ETA {eta_text}")
    if done >= self.total:
      self.stream.write(f" (done in {self._clock(elapsed)})\n")
    self.stream.flush()


def resolve_seq_length(task: str, requested: int | None, max_sequence_length: int) -> int:
  """--seq_length, or the task's default (LAMBADA 512, WikiText 1024) capped at what the
  model's position table can index."""
  if requested is not None:
    if requested < 2:
      raise EvaluationError(f"--seq_length must be at least 2, got {requested}.")
    if requested > int(max_sequence_length):
      raise EvaluationError(f"--seq_length={requested} is beyond the model's position table "
                            f"({max_sequence_length} positions); pass --seq_length="
                            f"{max_sequence_length} or less.")
    return int(requested)
  return min(DEFAULT_SEQ_LENGTH[task], int(max_sequence_length))


def evaluate_lambada(config, params, tokenizer, path, *, seq_length, mask_token, unidirectional,
                     batch_size, mesh) -> dict:
  """LAMBADA accuracy (percent, as the original prints it) and counts."""
  examples = eval_data.read_lambada(path, eval_data.text_encoder(tokenizer))
  rows, truncated = lm_eval.lambada_rows(examples, special_ids=tokenizer.special_ids,
                                         seq_length=seq_length, mask_token=mask_token,
                                         unidirectional=unidirectional)
  start = time.perf_counter()
  correct = lm_eval.lambada_correct(config, params, examples, special_ids=tokenizer.special_ids,
                                    seq_length=seq_length, mask_token=mask_token,
                                    unidirectional=unidirectional, batch_size=batch_size,
                                    mesh=mesh, progress=ProgressBar(len(examples), "examples"))
  seconds = time.perf_counter() - start
  return {"accuracy": 100.0 * float(np.mean(correct)), "num_correct": int(np.sum(correct)),
          "num_examples": len(examples), "num_truncated": truncated,
          "eval_tokens_per_s": scoring.tokens_per_batch(rows) / max(seconds, 1e-9)}


def evaluate_wikitext(config, params, tokenizer, path, *, seq_length, overlap, mask_token,
                      batch_size, mesh) -> dict:
  """Token-level and adjusted (per original word) perplexity of the whole file."""
  text = eval_data.read_wikitext(path, tokenizer.encode)
  if overlap is None or int(overlap) > seq_length - 1:
    if overlap is not None:
      print(f"note: --overlap={overlap} exceeds seq_length - 1 = {seq_length - 1}; windows do not "
            f"overlap (overlap {seq_length - 1}).", file=sys.stderr)
    overlap = seq_length - 1
  rows = lm_eval.window_rows(text.ids, special_ids=tokenizer.special_ids, seq_length=seq_length,
                             overlap=overlap, mask_token=mask_token)
  start = time.perf_counter()
  nll, tokens = lm_eval.windowed_nll(config, params, text.ids, special_ids=tokenizer.special_ids,
                                     seq_length=seq_length, overlap=overlap,
                                     mask_token=mask_token, batch_size=batch_size, mesh=mesh,
                                     progress=ProgressBar(len(rows), "windows"))
  seconds = time.perf_counter() - start
  metrics = lm_eval.perplexities(nll, tokens, len(text.ids), text.num_original_words)
  metrics.update(nll=nll, num_tokenized=len(text.ids), num_original_words=text.num_original_words,
                 num_windows=len(rows), overlap=overlap, num_truncated=0,
                 eval_tokens_per_s=scoring.tokens_per_batch(rows) / max(seconds, 1e-9))
  return metrics


def evaluate_cloze(config, params, tokenizer, path, *, seq_length, length_penalty, scoring_kind,
                   batch_size, mesh) -> dict:
  """Accuracy of the best-scored candidate (multi-token log-probability or single-token logit)."""
  special = tokenizer.special_ids
  items = eval_data.read_cloze(path, eval_data.text_encoder(tokenizer), int(special["MASK"]))
  examples = [item.example for item in items]
  start = time.perf_counter()
  if scoring_kind == "single":
    for i, ex in enumerate(examples):
      if any(len(c) != 1 for c in ex.candidates):
        raise EvaluationError(f"{path}: example {i + 1} has candidates of several tokens; use "
                              "--cloze_scoring=multi.")
    singles = [cloze.ClozeExample(ex.text_a_ids, ex.text_b_ids, [c[0] for c in ex.candidates])
               for ex in examples]
    groups: dict[int, list[int]] = {}
    for i, ex in enumerate(singles):
      groups.setdefault(len(ex.candidates), []).append(i)
    scores, truncated = [None] * len(singles), 0
    bar = ProgressBar(len(singles), "examples")
    done = 0
    for indices in groups.values():
      logits, cut = cloze.single_token_logits_batch(
          config, params, [singles[i] for i in indices], special_ids=special,
          seq_length=seq_length, batch_size=batch_size, mesh=mesh,
          progress=lambda n, base=done: bar(base + n))
      done += len(indices)
      truncated += cut
      for i, row in zip(indices, logits):
        scores[i] = row
    rows = [row for indices in groups.values()   # per group: candidate counts may differ
            for row in cloze.single_token_rows([singles[i] for i in indices], special_ids=special,
                                               seq_length=seq_length)[0]]
  else:
    rows, _, _ = cloze.multi_token_rows(examples, special_ids=special, seq_length=seq_length)
    scores, truncated = cloze.multi_token_scores_batch(
        config, params, examples, special_ids=special, seq_length=seq_length,
        length_penalty=length_penalty, batch_size=batch_size, mesh=mesh,
        progress=ProgressBar(len(rows), "rows"))
  seconds = time.perf_counter() - start
  correct = [int(np.argmax(s)) == item.label for s, item in zip(scores, items)]
  return {"accuracy": 100.0 * float(np.mean(correct)), "num_correct": int(sum(correct)),
          "num_examples": len(items), "num_truncated": truncated,
          "eval_tokens_per_s": scoring.tokens_per_batch(rows) / max(seconds, 1e-9)}


def run(task: str, data: str, checkpoint: str, tokenizer_path: str | None = None, *,
        tokenizer_kind=None, seq_length=None, overlap=DEFAULT_OVERLAP,
        batch_size=scoring.DEFAULT_BATCH_SIZE, mask_token="MASK", unidirectional=False,
        length_penalty=0.0, cloze_scoring="multi", dtype=None, mesh_shape=None, output=None,
        overwrite=False) -> dict:
  """Everything the CLI does, callable from Python; returns the metrics it prints.

  mesh_shape: {data, fsdp, tensor} sizes (default every device on fsdp: params split, rows
  too); the params are read straight into their shards. dtype: compute dtype (default bfloat16
  on TPU / GPU, the params' on CPU). Every process runs it; process 0 writes `output` (an
  existing file only with `overwrite`).
  """
  from etils import epath
  from glm_jax import hosts
  from glm_jax.storage import params_io
  from input_pipeline import tokenizer as tokenizer_lib
  if task not in TASKS:
    raise EvaluationError(f"--task={task!r} is not one of {TASKS}.")
  if task == "harness":
    raise EvaluationError("--task=harness runs through run_harness (--harness_tasks=NAME,...).")
  if not data:
    raise EvaluationError(f"--task={task} reads --data=FILE; pass it.")
  if not epath.Path(data).exists():  # before loading a large checkpoint
    raise FileNotFoundError(f"Evaluation data {data} does not exist; pass --data=FILE.")
  if output:
    outputs.check_file(output, COMMAND, overwrite)   # an existing file is not replaced unasked
  mesh = hosts.make_mesh(mesh_shape or hosts.INFERENCE_MESH)
  config, params = params_io.load_for_inference(checkpoint, hosts.compute_dtype(dtype), mesh)
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path or checkpoint, tokenizer_kind)
  scoring.check_vocab(config, tokenizer.vocab_size)
  if mask_token not in tokenizer.special_ids:
    raise EvaluationError(f"The tokenizer has no [{mask_token}]; load it with task masks (a "
                          "tokenizer_config.json with task_mask) or use --mask_token=MASK.")
  seq_length = resolve_seq_length(task, seq_length, config.max_sequence_length)
  common = dict(seq_length=seq_length, batch_size=batch_size, mesh=mesh)
  if task == "lambada":
    metrics = evaluate_lambada(config, params, tokenizer, data, mask_token=mask_token,
                               unidirectional=unidirectional, **common)
  elif task.startswith("wikitext"):
    metrics = evaluate_wikitext(config, params, tokenizer, data, overlap=overlap,
                                mask_token=mask_token, **common)
  else:
    metrics = evaluate_cloze(config, params, tokenizer, data, length_penalty=length_penalty,
                             scoring_kind=cloze_scoring, **common)
  if metrics.get("num_truncated") and hosts.is_writer():
    print(f"warning: {metrics['num_truncated']} examples were longer than seq_length={seq_length} "
          "and were truncated as the original does.", file=sys.stderr)
  metrics = {"task": task, "seq_length": seq_length, "dtype": config.dtype, **metrics}
  line = json.dumps(metrics, sort_keys=False)
  if output and hosts.is_writer():
    with outputs.file(output, COMMAND, overwrite) as local:
      with open(local, "w") as f:
        f.write(line + "\n")
  return metrics


def run_harness(tasks, checkpoint: str, tokenizer_path: str | None = None, *, tokenizer_kind=None,
                seq_length=None, overlap=DEFAULT_OVERLAP, batch_size=scoring.DEFAULT_BATCH_SIZE,
                mask_token="MASK", unidirectional=False, eop=False, dtype=None, mesh_shape=None,
                include_path=None, include_defaults=True, num_fewshot=None, limit=None,
                output=None, coordinator_address=None, num_processes=None,
                process_id=None, **evaluate_kwargs) -> dict | None:
  """lm-evaluation-harness tasks (glm_jax.harness); the metrics line on process 0, else None.
  --output gets the harness's own results file; evaluate_kwargs go to lm_eval.simple_evaluate."""
  from glm_jax import harness
  mesh_shape = mesh_shape or {"data": -1, "fsdp": 1, "tensor": 1}
  model_args = dict(tokenizer=tokenizer_path, tokenizer_kind=tokenizer_kind, mask_token=mask_token,
                    unidirectional=unidirectional, eop=eop, seq_length=seq_length,
                    overlap=overlap, batch_size=batch_size, dtype=dtype,
                    mesh_data=mesh_shape["data"], mesh_fsdp=mesh_shape["fsdp"],
                    mesh_tensor=mesh_shape["tensor"], coordinator_address=coordinator_address,
                    num_processes=num_processes, process_id=process_id)
  tasks = [t for t in (tasks.split(",") if isinstance(tasks, str) else tasks or [])]
  start = time.perf_counter()
  results = harness.evaluate_tasks(tasks, checkpoint, include_path=include_path,
                                   include_defaults=include_defaults, num_fewshot=num_fewshot,
                                   limit=limit, output=output, model_args=model_args,
                                   **evaluate_kwargs)
  if results is None:
    return None
  return {"task": "harness", "harness_tasks": [t.strip() for t in tasks], "mask_token": mask_token,
          "unidirectional": bool(unidirectional), "eop": bool(eop), "num_fewshot": num_fewshot,
          "results": harness.summarize(results), "seconds": time.perf_counter() - start}


def main(argv):
  """The evaluate CLI: flags -> `run` -> one JSON metrics line on stdout."""
  del argv
  from absl import flags
  from glm_jax import cli
  from glm_jax import hosts
  from glm_jax.storage import compilation_cache  # pylint: disable=g-import-not-at-top
  cli.quiet_logs()
  compilation_cache.enable(flags.FLAGS.compilation_cache_dir)
  f = flags.FLAGS
  if not f.task:
    raise EvaluationError(f"pass --task (one of {', '.join(TASKS)}).")
  if f.compile_only:  # before anything initialises a JAX backend or imports TensorFlow
    from glm_jax import inference_aot  # pylint: disable=g-import-not-at-top
    sys.exit(inference_aot.main(
        "glm_jax.evaluate", inference_aot.compile_scoring, task=f.task,
        seq_length=f.seq_length or DEFAULT_SEQ_LENGTH[f.task], batch_size=f.batch_size))
  if f.task == "harness":
    if not f.checkpoint:
      raise EvaluationError("--task=harness scores a model: pass --checkpoint=DIR.")
    metrics = run_harness(f.harness_tasks, f.checkpoint, f.tokenizer,
                          tokenizer_kind=f.tokenizer_kind, seq_length=f.seq_length,
                          overlap=f.overlap, batch_size=f.batch_size, mask_token=f.mask_token,
                          unidirectional=f.unidirectional, eop=f.eop, dtype=f.dtype,
                          mesh_shape=hosts.mesh_config(), include_path=f.harness_include_path,
                          include_defaults=f.harness_default_tasks,
                          num_fewshot=f.harness_num_fewshot, limit=f.harness_limit,
                          output=f.output, coordinator_address=f.coordinator_address,
                          num_processes=f.num_processes, process_id=f.process_id)
    if metrics is not None:
      print(json.dumps(metrics), flush=True)
    return
  if not f.data or not f.checkpoint:
    raise EvaluationError("pass --data=FILE and --checkpoint=DIR (or --compile_only).")
  hosts.initialize()
  mesh_shape = hosts.mesh_config()
  metrics = run(f.task, f.data, f.checkpoint, f.tokenizer, tokenizer_kind=f.tokenizer_kind,
                seq_length=f.seq_length, overlap=f.overlap, batch_size=f.batch_size,
                mask_token=f.mask_token, unidirectional=f.unidirectional,
                length_penalty=f.length_penalty, cloze_scoring=f.cloze_scoring, dtype=f.dtype,
                mesh_shape=mesh_shape, output=f.output, overwrite=f.overwrite)
  if hosts.is_writer():
    print(json.dumps(metrics), flush=True)


def _define_flags():
  from absl import flags
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  from glm_jax.storage import compilation_cache  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("task", None, list(TASKS), "What to evaluate.")
  flags.DEFINE_string("data", None, "LAMBADA JSONL ({\"text\"} per line), the raw "
                      "wiki.test.tokens, or a cloze JSONL ({text_a, text_b, candidates, label}).")
  cli.define_model_flags()
  flags.DEFINE_integer("seq_length", None, "Row length; default 512 (LAMBADA), 1024 (WikiText), "
                       "256 (cloze), capped at the model's position table.")
  flags.DEFINE_integer("overlap", DEFAULT_OVERLAP, "WikiText: new tokens each later window "
                       "predicts (capped at seq_length - 1, which means no overlap).")
  flags.DEFINE_integer("batch_size", scoring.DEFAULT_BATCH_SIZE, "Rows per jitted call.")
  flags.DEFINE_enum("mask_token", "MASK", ["MASK", "gMASK"], "Blank token of the LM tasks: "
                    "gMASK for models trained with task masks (GLM-10B, GLM-2B, GLM-RoBERTa).")
  flags.DEFINE_boolean("unidirectional", False, "LAMBADA: the original's unidirectional layout.")
  flags.DEFINE_float("length_penalty", 0.0, "Cloze: divide a candidate's score by its "
                     "length ** length_penalty (0 = off).")
  flags.DEFINE_enum("cloze_scoring", "multi", ["multi", "single"], "Cloze: summed log-probability "
                    "of each candidate, or the [sop] logit of single-token candidates.")
  hosts.define_flags()
  hosts.define_dtype_flag()
  compilation_cache.define_flag()
  flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
  flags.DEFINE_string("output", None, "Also write the JSON metrics line to this file (harness: "
                      "the harness's results JSON, never over an existing file).")
  flags.DEFINE_list("harness_tasks", [], "--task=harness: lm-evaluation-harness task names.")
  flags.DEFINE_string("harness_include_path", None, "--task=harness: a folder of your task YAMLs.")
  flags.DEFINE_boolean("harness_default_tasks", True, "--task=harness: also index lm_eval's own "
                       "~15k task names (takes seconds); --noharness_default_tasks with only "
                       "--harness_include_path tasks.")
  flags.DEFINE_integer("harness_num_fewshot", None, "--task=harness: few-shot examples.")
  flags.DEFINE_float("harness_limit", None, "--task=harness: the first N documents per task "
                     "(a fraction if < 1): quick checks, not reported numbers.")
  flags.DEFINE_boolean("eop", False, "--task=harness: score [eop] after each continuation (the "
                       "blank holds exactly it, as the original's multiple-choice cloze scores).")
  from glm_jax import inference_aot  # pylint: disable=g-import-not-at-top
  inference_aot.define_flags()


if __name__ == "__main__":
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  _define_flags()
  cli.run(main)

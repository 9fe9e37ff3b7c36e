r"""EleutherAI's lm-evaluation-harness on a GLM: the `glm_jax` model of `lm_eval`, sharded,
multi-host.

Every harness task reduces to three requests, answered here the GLM way with the project's own
scorers (so a harness number and `python -m glm_jax.evaluate --task=lambada` agree):
  * `loglikelihood(context, continuation)`: the rows of `lm_eval.lambada_rows`: `[CLS] context
    [MASK] [eos] [sop] continuation` (context read bidirectionally in Part A, cut on the left to
    fit; `[gMASK]` with mask_token=gMASK; `unidirectional=True` is the original's left-to-right
    layout). They are also the rows of the original's zero-shot multiple choice
    (`MultiChoiceDataset`). `eop=True` appends `[eop]` to the continuation, as the cloze scorer
    (`cloze.multi_token_scores`) scores a candidate filling the whole blank. The fp32 log-softmax
    sum and `is_greedy` (teacher-forced argmax at every slot) come from `scoring.score_rows`,
    batched and length-bucketed over all requests.
  * `loglikelihood_rolling(text)`: the windows of `lm_eval.window_rows` (as `windowed_nll`), all
    documents' windows batched together; like the original's LMDataset the first token is the
    context of the first window, not predicted.
  * `generate_until(context, gen_kwargs)`: `generate.fill_blanks` on `generate.build_prompt`
    (the KV-cached decoder), cut at the first stop sequence; `max_gen_toks` is the budget.

Several hosts: every process builds the model (params sharded over the global mesh); process 0
runs the harness and broadcasts each batch of token ids before running it, the others serve the
same batches (glm_jax.evaluation.harness_dispatch), so every process runs the same jitted calls.
Only process 0 writes results.

    python -m glm_jax.evaluate --task=harness --harness_tasks=lambada_openai,piqa --checkpoint=DIR
    python -m glm_jax.harness --model glm_jax --model_args checkpoint=DIR --tasks piqa
(the second is the `lm_eval` command line with this model registered; `lm_eval --model glm_jax`
itself finds it through the `lm_eval.models` entry point in lm-eval versions that read plugins.)
"""

from __future__ import annotations

import atexit
import json
import sys
from typing import Sequence

import jax

from glm_jax import generate
from glm_jax import hosts
from glm_jax.errors import EvaluationError, MissingDependencyError
from glm_jax.evaluation import lm_eval, scoring
from glm_jax.evaluation.harness_dispatch import Dispatcher, Engine, broadcast

MODEL_NAME = "glm_jax"
REQUEST_TYPES = ("loglikelihood", "multiple_choice", "loglikelihood_rolling", "generate_until")
GEN_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature", "top_k", "top_p")
DEFAULT_MAX_GEN_TOKS = 256
DEFAULT_SEQ_LENGTH = 1024
DEFAULT_OVERLAP = 256
REQUESTS_PER_BROADCAST = 4096  # bounds one broadcast message (token ids as JSON)


def import_lm_eval():
  """The `lm_eval` package, or one line saying how to install it."""
  try:
    import lm_eval as harness_lib  # pylint: disable=g-import-not-at-top
    import lm_eval.api.model  # noqa: F401  pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise MissingDependencyError(
        f"lm-evaluation-harness is not installed ({e}); pip install -e '.[harness]' "
        "(or pip install -r requirements-harness.txt).") from None
  return harness_lib


def load_model(checkpoint: str, dtype, mesh):
  """(config, params placed on `mesh`): the one place the harness reads a checkpoint."""
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  from glm_jax.storage import params_io  # pylint: disable=g-import-not-at-top
  return params_io.load_for_inference(checkpoint, hosts.compute_dtype(dtype), mesh)


def tokenizer_path(checkpoint: str, tokenizer=None) -> str:
  """The tokenizer given, else the one stored with the checkpoint; one line when there is none."""
  from input_pipeline import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  path = tokenizer or tokenizer_lib.tokenizer_beside(checkpoint)
  if path is None:
    raise EvaluationError(
        f"No tokenizer is stored with {checkpoint}; pass tokenizer=FILE.model (ours) or "
        "tokenizer=DIR (a released GLM tokenizer; --tokenizer on the glm_jax.evaluate CLI).")
  return str(path)


def load_tokenizer(checkpoint: str, tokenizer=None, tokenizer_kind=None):
  """The tokenizer of `tokenizer_path`, loaded."""
  from input_pipeline import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  return tokenizer_lib.load_tokenizer(tokenizer_path(checkpoint, tokenizer), tokenizer_kind or None)


# ----------------------------------------------------------------------------- the lm_eval model


def _as_bool(value, name: str) -> bool:
  if isinstance(value, bool):
    return value
  text = str(value).strip().lower()
  if text in ("true", "1", "yes"):
    return True
  if text in ("false", "0", "no", "none", ""):
    return False
  raise EvaluationError(f"model arg {name}={value!r} must be true or false.")


def _as_int(value, name: str, default: int | None = None) -> int | None:
  if value is None or (isinstance(value, str) and (
      value.strip().lower() in ("", "none") or value.strip().lower().startswith("auto"))):
    return default  # "auto" / "auto:N" batch sizes: the mesh decides, not a memory probe
  try:
    return int(value)
  except (TypeError, ValueError):
    raise EvaluationError(f"model arg {name}={value!r} must be an integer.") from None


def cut_at_stop(text: str, until: Sequence[str]) -> str:
  """`text` up to (not including) the earliest of the stop sequences."""
  ends = [text.find(s) for s in until if s]
  ends = [e for e in ends if e >= 0]
  return text[:min(ends)] if ends else text


def check_gen_kwargs(gen_kwargs, where: str) -> dict:
  """The generation options we implement; anything else is one line naming it."""
  gen_kwargs = dict(gen_kwargs or {})
  unknown = sorted(set(gen_kwargs) - set(GEN_KWARGS))
  if unknown:
    raise EvaluationError(f"{where} asks for generation options {unknown}, which glm_jax does "
                          f"not implement (it implements {list(GEN_KWARGS)}); drop them from "
                          "the task's generation_kwargs.")
  return gen_kwargs


class _Model:
  """Mixin with the glm_jax model; `GLMJaxLM` (below) puts it on lm_eval's TemplateLM."""

  backend = "seq2seq"  # context and continuation are encoded separately, as LAMBADA's are
  serve_in_constructor = False  # `python -m glm_jax.harness`: processes > 0 serve, then exit

  def __init__(self, checkpoint=None, tokenizer=None, tokenizer_kind=None, mask_token="MASK",
               unidirectional=False, eop=False, seq_length=None, overlap=DEFAULT_OVERLAP,
               batch_size=None, max_gen_toks=DEFAULT_MAX_GEN_TOKS, dtype=None, mesh_data=-1,
               mesh_fsdp=1, mesh_tensor=1, coordinator_address=None, num_processes=None,
               process_id=None, device=None, max_batch_size=None, loaded=None, **unknown):
    """lm_eval's model args (`--model_args checkpoint=DIR,mask_token=gMASK,...`).

    `loaded=(config, params, tokenizer)` skips reading a checkpoint (Python callers, tests).
    `device` / `max_batch_size` are the harness's own options, unused here (the mesh decides).
    """
    del device, max_batch_size
    if unknown:
      raise EvaluationError(f"unknown glm_jax model args {sorted(unknown)}; see the README's "
                            "lm-evaluation-harness section for the ones it takes.")
    super().__init__()
    from glm_jax.modeling import sharding  # pylint: disable=g-import-not-at-top
    hosts.initialize(coordinator_address, num_processes, process_id)
    if mask_token not in lm_eval.MASK_TOKENS:
      raise EvaluationError(f"mask_token={mask_token!r} is not one of {lm_eval.MASK_TOKENS}.")
    mesh = sharding.make_mesh({"data": _as_int(mesh_data, "mesh_data"),
                               "fsdp": _as_int(mesh_fsdp, "mesh_fsdp"),
                               "tensor": _as_int(mesh_tensor, "mesh_tensor")})
    if loaded is None:
      if not checkpoint:
        raise EvaluationError("model arg checkpoint=DIR is required (a params checkpoint).")
      from glm_jax.storage import params_io  # pylint: disable=g-import-not-at-top
      params_io.params_directory(checkpoint)  # nothing there: say so, not "no tokenizer"
      tok = load_tokenizer(checkpoint, tokenizer, tokenizer_kind)  # before the large read
      config, params = load_model(checkpoint, dtype, mesh)
    else:
      config, params, tok = loaded
      params = scoring.place_params(config, params, mesh)
    scoring.check_vocab(config, tok.vocab_size)
    if mask_token not in tok.special_ids:
      raise EvaluationError(f"The tokenizer has no [{mask_token}]; load it with task masks or "
                            "use mask_token=MASK.")
    self.config, self.glm_tokenizer, self.mask_token = config, tok, mask_token
    seq_length = _as_int(seq_length, "seq_length",
                         min(DEFAULT_SEQ_LENGTH, int(config.max_sequence_length)))
    if not 2 <= seq_length <= config.max_sequence_length:
      raise EvaluationError(f"seq_length={seq_length} must lie in [2, the model's "
                            f"max_sequence_length={config.max_sequence_length}].")
    overlap = min(_as_int(overlap, "overlap", DEFAULT_OVERLAP), seq_length - 1)
    self._batch_size = _as_int(batch_size, "batch_size", scoring.DEFAULT_BATCH_SIZE)
    self.max_gen_toks = _as_int(max_gen_toks, "max_gen_toks", DEFAULT_MAX_GEN_TOKS)
    self.engine = Engine(config, params, tok.special_ids, mesh=mesh, seq_length=seq_length,
                         overlap=overlap, mask_token=mask_token,
                         unidirectional=_as_bool(unidirectional, "unidirectional"),
                         eop=_as_bool(eop, "eop"), batch_size=self._batch_size,
                         vocab_limit=tok.vocab_size)
    self.dispatch = Dispatcher(self.engine)
    self._rank, self._world_size = 0, 1  # the harness itself runs on process 0 only
    if self.serve_in_constructor and self.dispatch.multi:
      if jax.process_index() != 0:
        self.dispatch.serve()
        sys.exit(0)
      atexit.register(self.dispatch.stop)

  # ---- what TemplateLM asks of a model
  @property
  def eot_token_id(self) -> int:
    return int(self.glm_tokenizer.special_ids["eos"])

  @property
  def batch_size(self) -> int:
    return self._batch_size

  def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
    del add_special_tokens, kwargs
    return [int(t) for t in self.glm_tokenizer.encode(string)]

  def tok_decode(self, ids) -> str:
    return self.glm_tokenizer.decode([int(t) for t in ids])

  def _chunks(self, kind: str, items: list, order: list[int]) -> list:
    """Dispatches `items` (sorted by `order`, longest last) in chunks; results in input order."""
    results = [None] * len(items)
    for start in range(0, len(order), REQUESTS_PER_BROADCAST):
      chunk = order[start:start + REQUESTS_PER_BROADCAST]
      for i, r in zip(chunk, self.dispatch(kind, [items[i] for i in chunk])):
        results[i] = r
    return results

  def loglikelihood(self, requests, disable_tqdm: bool = False):
    pairs = []
    for context, continuation in [req.args for req in requests]:
      if context == "":
        pairs.append(((context, continuation), [], self.tok_encode(continuation)))
      else:
        pairs.append(((context, continuation), *self._encode_pair(context, continuation)))
    return self._loglikelihood_tokens(pairs, disable_tqdm=disable_tqdm)

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
    del disable_tqdm, kwargs
    items = [[list(map(int, c)), list(map(int, x))] for _, c, x in requests]
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]) + len(items[i][1]))
    results = self._chunks("loglikelihood", items, order)
    out = []
    for (cache_key, _, _), (logprob, greedy) in zip(requests, results):
      out.append((logprob, greedy))
      if cache_key is not None:
        self.cache_hook.add_partial("loglikelihood", cache_key, (logprob, greedy))
    return out

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
    del disable_tqdm
    docs = [self.tok_encode(req.args[0]) for req in requests]
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    results = self._chunks("rolling", docs, order)
    for req, r in zip(requests, results):
      self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), r)
    return results

  def _prompt(self, context: str) -> list[int]:
    """`generate.build_prompt`'s ids, cut on the left (after [CLS]) to the position table."""
    ids = generate.build_prompt(self.glm_tokenizer, context,
                                task_mask=self.mask_token == "gMASK")
    limit = int(self.config.max_sequence_length) + 1
    return ids if len(ids) <= limit else ids[:1] + ids[len(ids) - limit + 1:]

  def _options(self, gen_kwargs: dict) -> tuple[dict, list[str]]:
    """(fill_blanks options, stop sequences) of one request's gen_kwargs."""
    gen_kwargs = check_gen_kwargs(gen_kwargs, "a generate_until request")
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    budget = min(_as_int(gen_kwargs.get("max_gen_toks"), "max_gen_toks", self.max_gen_toks),
                 int(self.config.max_sequence_length))
    sample = _as_bool(gen_kwargs.get("do_sample", False), "do_sample") and \
        float(gen_kwargs.get("temperature", 1.0) or 0.0) > 0.0
    options = {"max_new_tokens": budget, "strategy": "sample" if sample else "greedy"}
    if sample:
      options.update(temperature=float(gen_kwargs.get("temperature", 1.0)),
                     top_k=int(gen_kwargs.get("top_k", 0) or 0),
                     top_p=float(gen_kwargs.get("top_p", 0.0) or 0.0))
    return options, until

  def generate_until(self, requests, disable_tqdm: bool = False):
    del disable_tqdm
    groups: dict[str, list[int]] = {}
    prepared = []
    for i, req in enumerate(requests):
      context, gen_kwargs = req.args
      options, until = self._options(gen_kwargs)
      prepared.append((self._prompt(context), options, until))
      groups.setdefault(json.dumps(options, sort_keys=True), []).append(i)
    out = [""] * len(requests)
    for indices in groups.values():
      indices.sort(key=lambda i: len(prepared[i][0]))
      for start in range(0, len(indices), self._batch_size):
        batch = indices[start:start + self._batch_size]
        prompts = [prepared[i][0] for i in batch]
        prompts += [prompts[-1]] * (self._batch_size - len(prompts))  # one compiled shape
        tokens = self.dispatch("generate", {"prompts": prompts,
                                            "options": prepared[batch[0]][1]})
        for i, ids in zip(batch, tokens):
          out[i] = cut_at_stop(self.tok_decode(ids), prepared[i][2])
          self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
    return out

  def apply_chat_template(self, chat_history, add_generation_prompt=True):
    raise EvaluationError("glm_jax has no chat template (GLM is not a chat model); run without "
                          "--apply_chat_template.")

  @property
  def tokenizer_name(self) -> str:
    return f"glm_jax-{type(self.glm_tokenizer).__name__}-{self.glm_tokenizer.vocab_size}"


def model_class():
  """`GLMJaxLM`, built (and registered as `glm_jax`) on first use so importing this module does
  not need lm_eval."""
  global _MODEL_CLASS
  if _MODEL_CLASS is None:
    harness_lib = import_lm_eval()
    from lm_eval.api import registry  # pylint: disable=g-import-not-at-top
    cls = type("GLMJaxLM", (_Model, harness_lib.api.model.TemplateLM),
               {"__module__": __name__, "__doc__": "lm_eval's model for a glm_jax checkpoint."})
    if MODEL_NAME not in registry.model_registry or not isinstance(
        registry.model_registry._objs.get(MODEL_NAME), type):  # pylint: disable=protected-access
      registry.model_registry._objs.pop(MODEL_NAME, None)  # pylint: disable=protected-access
      registry.register_model(MODEL_NAME)(cls)
    _MODEL_CLASS = cls
  return _MODEL_CLASS


_MODEL_CLASS = None


def __getattr__(name):  # `glm_jax.harness:GLMJaxLM` (the entry point) builds the class lazily
  if name == "GLMJaxLM":
    return model_class()
  raise AttributeError(name)


# ----------------------------------------------------------------------------- task checks, runs


def check_tasks(tasks) -> None:
  """Refuses, in one line, a task that needs what glm_jax does not do (images, audio, other
  request types, generation options it does not implement). `tasks`: lm_eval Task objects."""
  for task in tasks:
    config = task.config
    name = getattr(config, "task", None) or type(task).__name__
    if getattr(config, "doc_to_image", None) or getattr(config, "doc_to_audio", None):
      raise EvaluationError(f"harness task {name!r} is multimodal (images / audio); glm_jax "
                            "models read text only.")
    kind = getattr(task, "OUTPUT_TYPE", None) or config.output_type
    if kind not in REQUEST_TYPES:
      raise EvaluationError(f"harness task {name!r} needs {kind!r} requests; glm_jax answers "
                            f"{list(REQUEST_TYPES)}.")
    if kind == "generate_until":
      check_gen_kwargs(config.generation_kwargs, f"harness task {name!r}")


def _agree(error: BaseException | None):
  """Process 0's verdict on the tasks, on every process (so no process waits on a failed one)."""
  if jax.process_count() > 1:
    verdict = broadcast({"kind": "start" if error is None else "stop",
                          "payload": None if error is None else str(error)})
    if verdict["kind"] == "stop" and error is None:
      raise EvaluationError(f"process 0 refused the harness run: {verdict['payload']}")
  if error is not None:
    raise error


def summarize(results: dict) -> dict:
  """{task: {metric: value}} of the harness's results (numbers only; 'alias' and the like out)."""
  summary = {}
  for task, metrics in (results or {}).get("results", {}).items():
    summary[task] = {k: float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
  return summary


def evaluate_tasks(tasks: Sequence[str], checkpoint: str, *, include_path=None, num_fewshot=None,
                   limit=None, output=None, model_args: dict | None = None,
                   include_defaults: bool = True, **evaluate_kwargs):
  """The harness's tasks on a glm_jax checkpoint: (the harness's results dict on process 0, None
  elsewhere). Task names and capabilities are checked before the checkpoint is read.

  model_args: what `--model_args` would hold (tokenizer, mask_token, unidirectional, eop,
    seq_length, batch_size, dtype, mesh_*, coordinator_address, ...).
  output: write the harness's results JSON here (process 0 only; never over an existing file).
  evaluate_kwargs: more `lm_eval.simple_evaluate` arguments (log_samples, bootstrap_iters, ...).
  """
  from etils import epath  # pylint: disable=g-import-not-at-top
  harness_lib = import_lm_eval()
  from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top
  from lm_eval.utils import handle_non_serializable  # pylint: disable=g-import-not-at-top
  model_args = dict(model_args or {})
  hosts.initialize(model_args.get("coordinator_address"), model_args.get("num_processes"),
                   model_args.get("process_id"))
  tasks = [t.strip() for t in tasks if t and t.strip()]
  if not epath.Path(checkpoint).is_dir():  # what can be checked cheaply goes first
    raise FileNotFoundError(f"No params checkpoint at {checkpoint}; pass --checkpoint=DIR "
                            "(written by `convert import`, extract_params or training).")
  tokenizer_path(checkpoint, model_args.get("tokenizer"))
  if output and epath.Path(output).exists():
    raise EvaluationError(f"--output={output} exists; choose a new file (it is never "
                          "overwritten).")
  if not tasks:
    raise EvaluationError("no harness task given; pass --harness_tasks=NAME[,NAME...].")
  manager = TaskManager(include_path=include_path, include_defaults=include_defaults)
  error = None
  unknown = [t for t in tasks if t not in manager.all_tasks]
  if unknown:
    error = EvaluationError(
        f"unknown harness task(s) {unknown}; `lm_eval ls tasks` lists them (add "
        "--harness_include_path=DIR for your own task YAMLs).")
  if error is None and jax.process_index() == 0:
    try:
      check_tasks(manager.load(tasks)["tasks"].values())
    except EvaluationError as e:
      error = e
  _agree(error)
  lm = model_class()(checkpoint=checkpoint, **model_args)
  if jax.process_index() != 0:
    lm.dispatch.serve()
    return None
  try:
    results = harness_lib.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager,
                                          num_fewshot=num_fewshot, limit=limit,
                                          **{"log_samples": False, **evaluate_kwargs})
  finally:
    lm.dispatch.stop()
  if output:
    from glm_jax.storage import paths  # pylint: disable=g-import-not-at-top
    paths.write_text_atomic(output, json.dumps(results, indent=2,
                                               default=handle_non_serializable) + "\n")
  return results


def main(argv=None) -> None:
  """`python -m glm_jax.harness ARGS`: the `lm_eval` command line with `glm_jax` registered.

  Processes other than 0 of a multi-host run serve process 0 from inside the model's constructor
  and exit there; process 0 releases them when the harness is done.
  """
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  cli.exit_on_user_error(_lm_eval_command_line)(sys.argv[1:] if argv is None else argv)


def _lm_eval_command_line(args: Sequence[str]) -> None:
  """lm_eval's own command line on `args`, with the glm_jax model registered."""
  import_lm_eval()
  from lm_eval.__main__ import cli_evaluate  # pylint: disable=g-import-not-at-top
  model_class().serve_in_constructor = True
  sys.argv = [sys.argv[0]] + list(args)
  cli_evaluate()


if __name__ == "__main__":
  main()

"""glm_jax.harness: lm-evaluation-harness tasks score exactly as the project's own scorers.

The tasks are local (tests/data/harness: YAML + JSONL, `dataset_path: json`, read offline) and the
model is the original's random-weight GLM converted from tests/data/thudm_eval_scoring.npz, with a
BERT-style word tokenizer (tests/data/harness/tokenizer). Each harness response is compared with
the scorer the project already checks against the original: `cloze.multi_token_scores`,
`lm_eval.lambada_correct` / its rows, `lm_eval.windowed_nll`, `generate.generate_text`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ["HF_DATASETS_OFFLINE"] = "1"  # a local json task must never reach for the network
pytest.importorskip("lm_eval")

# pylint: disable=g-import-not-at-top,wrong-import-position
from glm_jax.evaluation import cloze, lm_eval, scoring
from glm_jax import generate, harness
from glm_jax.storage import params_io
from glm_jax.errors import EvaluationError
from input_pipeline import tokenizer as tokenizer_lib
from tests import fresh_interpreter, original_fixtures
from tests.test_train_cli import _free_port

ROOT = fresh_interpreter.ROOT
TASKS_DIR = os.path.join(ROOT, "tests", "data", "harness")


@pytest.fixture(scope="module")
def glm():
  """(config, params, tokenizer): the converted random THUDM model and the word tokenizer."""
  cfg, params = original_fixtures.converted_model(original_fixtures.load("thudm_eval_scoring.npz"))
  tok = tokenizer_lib.load_pretrained(os.path.join(TASKS_DIR, "tokenizer"), "bert-uncased",
                                      task_mask=True)
  return cfg, params, tok


@pytest.fixture
def offline_tasks(monkeypatch, tmp_path):
  """The task YAMLs name their JSONL relative to the repository root; datasets caches in tmp."""
  import datasets
  monkeypatch.chdir(ROOT)
  monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _samples(lm, tasks):
  """Per task, per document, the harness's responses (log_samples)."""
  import lm_eval as harness_lib
  from lm_eval.tasks import TaskManager
  results = harness_lib.simple_evaluate(
      model=lm, tasks=list(tasks), log_samples=True, bootstrap_iters=0,
      task_manager=TaskManager(include_path=TASKS_DIR, include_defaults=False))
  return {t: [s for s in results["samples"][t]] for t in tasks}


def _model(glm, **model_args):
  return harness.model_class()(loaded=glm, **model_args)


def _docs(name):
  with open(os.path.join(TASKS_DIR, f"{name}.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def mc_rolling_gen(glm, tmp_path_factory):
  """One harness run of the multiple-choice, rolling and generation tasks (eop, as the cloze
  scorer scores candidates; windows of 32 moving by 5, so a document spans several)."""
  import datasets
  with pytest.MonkeyPatch.context() as mp:  # what offline_tasks does, for a module fixture
    mp.chdir(ROOT)
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    lm = _model(glm, seq_length=32, overlap=5, eop=True)
    samples = _samples(lm, ["glm_mc", "glm_rolling", "glm_gen"])
  return {t: sorted(s, key=lambda x: x["doc_id"]) for t, s in samples.items()}


@pytest.mark.slow
def test_multiple_choice_loglikelihoods_equal_the_cloze_scorer(glm, mc_rolling_gen):
  cfg, params, tok = glm
  samples, docs = mc_rolling_gen["glm_mc"], _docs("glm_mc")
  assert len(samples) == len(docs)
  examples = [cloze.ClozeExample(tok.encode(d["question"]) + [tok.special_ids["MASK"]], None,
                                 [tok.encode(" " + c) for c in d["choices"]]) for d in docs]
  want, truncated = cloze.multi_token_scores_batch(cfg, params, examples,
                                                   special_ids=tok.special_ids, seq_length=32)
  assert truncated == 0
  for sample, scores in zip(samples, want):
    np.testing.assert_allclose([resp[0][0] for resp in sample["resps"]], scores, rtol=0,
                               atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("offline_tasks")
@pytest.mark.parametrize("mask_token,unidirectional,seq_length",
                         [("MASK", False, 32), ("gMASK", False, 32), ("MASK", True, 64)])
def test_lambada_loglikelihoods_and_greedy_equal_lambada_correct(glm, mask_token, unidirectional,
                                                                 seq_length):
  cfg, params, tok = glm
  lm = _model(glm, seq_length=seq_length, mask_token=mask_token, unidirectional=unidirectional)
  samples = sorted(_samples(lm, ["glm_lambada"])["glm_lambada"], key=lambda s: s["doc_id"])
  examples = []
  for doc in _docs("glm_lambada"):
    words = doc["text"].split(" ")
    examples.append((tok.encode(" ".join(words[:-1])), tok.encode(" " + words[-1])))
  options = dict(special_ids=tok.special_ids, seq_length=seq_length, mask_token=mask_token,
                 unidirectional=unidirectional)
  rows, truncated = lm_eval.lambada_rows(examples, **options)
  assert truncated == (0 if unidirectional else 1)  # the long document is cut on the left
  logprob = scoring.score_rows(cfg, params, rows, eos_id=tok.special_ids["eos"])["logprob"]
  correct = lm_eval.lambada_correct(cfg, params, examples, **options)
  np.testing.assert_allclose([s["resps"][0][0][0] for s in samples], logprob, rtol=0, atol=1e-5)
  assert [s["resps"][0][0][1] for s in samples] == correct.tolist()


@pytest.mark.slow
def test_rolling_loglikelihood_equals_windowed_nll(glm, mc_rolling_gen):
  cfg, params, tok = glm
  samples = mc_rolling_gen["glm_rolling"]
  want = []
  for doc in _docs("glm_rolling"):
    nll, _ = lm_eval.windowed_nll(cfg, params, tok.encode(doc["page"]),
                                  special_ids=tok.special_ids, seq_length=32, overlap=5)
    want.append(-nll)
  assert lm_eval.num_windows(len(tok.encode(_docs("glm_rolling")[1]["page"])), 32, 5) > 3
  np.testing.assert_allclose([s["resps"][0][0] for s in samples], want, rtol=1e-6, atol=1e-5)


@pytest.mark.slow
def test_generate_until_equals_generate_text_greedy_with_the_same_stop(glm, mc_rolling_gen):
  cfg, params, tok = glm
  samples, docs = mc_rolling_gen["glm_gen"], _docs("glm_gen")
  budget = {s["arguments"][0][1]["max_gen_toks"] for s in samples}
  assert len(budget) == 1
  texts = generate.generate_text(cfg, params, tok, [s["arguments"][0][0] for s in samples],
                                 strategy="greedy", max_new_tokens=budget.pop())
  cut = 0
  for sample, doc, full in zip(samples, docs, texts):
    prefix = tok.decode(tok.encode(doc["question"]))
    assert full.startswith(prefix)
    continuation = full[len(prefix) + 1:]  # the decoder puts one space between the two
    want = harness.cut_at_stop(continuation, sample["arguments"][0][1]["until"])
    cut += want != continuation
    assert sample["resps"][0][0] == want
  assert cut > 0  # the stop sequences did stop something


@pytest.mark.slow
def test_generation_options_follow_the_request(glm):
  lm = _model(glm, max_gen_toks=7)
  assert lm._options({"until": "x", "do_sample": False})[0] == {  # pylint: disable=protected-access
      "max_new_tokens": 7, "strategy": "greedy"}
  options, until = lm._options(  # pylint: disable=protected-access
      {"until": ["a", "b"], "do_sample": True, "temperature": 0.5, "top_p": 0.9,
       "max_gen_toks": 10_000})
  assert until == ["a", "b"]
  assert options == {"max_new_tokens": glm[0].max_sequence_length, "strategy": "sample",
                     "temperature": 0.5, "top_k": 0, "top_p": 0.9}
  with pytest.raises(EvaluationError, match="num_beams"):
    lm._options({"num_beams": 4})  # pylint: disable=protected-access


def test_cut_at_stop_takes_the_earliest_stop():
  assert harness.cut_at_stop("a b. c on d", [" on", "."]) == "a b"
  assert harness.cut_at_stop("a b", ["x", ""]) == "a b"


@pytest.fixture(scope="module")
def checkpoint(glm, tmp_path_factory):
  """The converted model as a params checkpoint with its tokenizer stored inside."""
  _, params, tok = glm
  root = tmp_path_factory.mktemp("harness_ckpt")
  params_io.save_for_inference(str(root / "ckpt"), params)
  tok.save(root / "ckpt" / "tokenizer")
  params_io.save_for_inference(str(root / "no_tokenizer"), params)
  return root


@pytest.mark.slow
@pytest.mark.usefixtures("offline_tasks")
def test_bad_input_is_one_user_error_each(checkpoint):
  def refuse(tasks, ckpt, error=EvaluationError, **kwargs):
    with pytest.raises(error) as e:
      harness.evaluate_tasks(tasks, str(ckpt), include_path=TASKS_DIR, include_defaults=False,
                             **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)

  ckpt = checkpoint / "ckpt"
  assert "glm_nope" in refuse(["glm_mc", "glm_nope"], ckpt)
  assert "repetition_penalty" in refuse(["glm_needs_repetition_penalty"], ckpt)
  assert "No tokenizer" in refuse(["glm_mc"], checkpoint / "no_tokenizer")
  assert "No params checkpoint" in refuse(["glm_mc"], checkpoint / "missing", FileNotFoundError)
  (checkpoint / "taken.json").write_text("mine")
  assert "never overwritten" in refuse(["glm_mc"], ckpt, output=str(checkpoint / "taken.json"))
  assert (checkpoint / "taken.json").read_text() == "mine"
  with pytest.raises(EvaluationError, match="pretrained"):
    harness.model_class()(checkpoint=str(ckpt), pretrained="gpt2")


@pytest.mark.slow
@pytest.mark.usefixtures("offline_tasks")
def test_run_harness_gives_the_metrics_line_and_writes_the_harness_results(checkpoint):
  from glm_jax import evaluate
  out = checkpoint / "results" / "harness.json"
  line = evaluate.run_harness("glm_mc,glm_lambada", str(checkpoint / "ckpt"), seq_length=32,
                              eop=True, include_path=TASKS_DIR, include_defaults=False,
                              output=str(out), bootstrap_iters=0)
  assert line["task"] == "harness" and line["harness_tasks"] == ["glm_mc", "glm_lambada"]
  assert set(line["results"]) == {"glm_mc", "glm_lambada"}
  json.dumps(line)  # one JSON line
  written = json.loads(out.read_text())
  assert written["results"]["glm_mc"]["acc,none"] == line["results"]["glm_mc"]["acc,none"]
  assert written["results"]["glm_lambada"]["perplexity,none"] == \
      line["results"]["glm_lambada"]["perplexity,none"]


@pytest.mark.slow
def test_evaluate_cli_refuses_a_checkpoint_without_tokenizer_in_one_line_exit_2(checkpoint):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run(
      [sys.executable, "-m", "glm_jax.evaluate", "--task=harness", "--harness_tasks=glm_mc",
       f"--harness_include_path={TASKS_DIR}", f"--checkpoint={checkpoint / 'no_tokenizer'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: No tokenizer is stored with"), lines
  assert "Traceback" not in proc.stderr


def test_lm_eval_command_line_names_a_missing_checkpoint_in_one_line_exit_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    harness.main(["--model", "glm_jax", "--model_args", f"checkpoint={tmp_path / 'none'}",
                  "--tasks", "lambada_openai"])
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines[-1].startswith(f"error: No params checkpoint at {tmp_path / 'none'}"), lines
  assert not any("Traceback" in l for l in lines)


@pytest.mark.slow
@pytest.mark.usefixtures("offline_tasks")
def test_lm_eval_command_line_runs_the_glm_jax_model(checkpoint, tmp_path, monkeypatch):
  monkeypatch.setattr(harness.model_class(), "serve_in_constructor", False)
  harness.main(["--model", "glm_jax", "--model_args",
                f"checkpoint={checkpoint / 'ckpt'},seq_length=32", "--tasks", "glm_lambada",
                "--include_path", TASKS_DIR, "--batch_size", "4",
                "--output_path", str(tmp_path / "out")])
  results = list((tmp_path / "out").rglob("results_*.json"))
  assert len(results) == 1
  assert "perplexity,none" in json.loads(results[0].read_text())["results"]["glm_lambada"]


@pytest.mark.slow
def test_two_processes_of_four_devices_equal_one_process_of_eight(checkpoint):
  ckpt = checkpoint / "ckpt"
  env = {"HF_DATASETS_OFFLINE": "1"}
  one = fresh_interpreter.run("harness_processes", ckpt, 1, 0, 0, devices=8, env=env)
  assert one.returncode == 0, one.stderr[-3000:]
  port = _free_port()
  procs = fresh_interpreter.run_together(
      [[sys.executable, "-m", "tests.fresh_interpreter.harness_processes", ckpt, 2, i, port]
       for i in range(2)],
      dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
           XLA_FLAGS="--xla_force_host_platform_device_count=4", **env), 600)
  for p in procs:
    assert p.returncode == 0, p.stderr[-3000:]
  single = fresh_interpreter.last_json(one)
  multi = json.loads([l for l in procs[0].stdout.splitlines() if l.startswith("{")][-1])
  assert (single["devices"], single["processes"]) == (8, 1)
  assert (multi["devices"], multi["processes"]) == (8, 2)
  assert not [l for l in procs[1].stdout.splitlines() if l.startswith("{")]  # written once
  for task, responses in single["responses"].items():
    if task == "glm_gen":
      assert multi["responses"][task] == responses
    else:
      np.testing.assert_allclose(_flat(multi["responses"][task]), _flat(responses), rtol=1e-6,
                                 atol=1e-5)


def _flat(nested):
  """Every number of nested response lists (log-likelihoods, is_greedy flags), in order."""
  if isinstance(nested, (list, tuple)):
    return [x for item in nested for x in _flat(item)]
  return [float(nested)]

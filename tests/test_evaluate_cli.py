"""`python -m glm_jax.evaluate` end to end: a tiny model trained here, a released-style BERT vocab.

The model is trained for a few dozen steps on the evaluation text's own windows, so it must beat
its untrained self on every task: a real signal that the CLI reads, scores and reports correctly.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glm_jax.evaluation import cloze, eval_data, lm_eval, scoring
from glm_jax import evaluate
from glm_jax.modeling import model
from glm_jax.storage import params_io
from glm_jax.evaluation.eval_rows import EvaluationError
from input_pipeline import tokenizer as tokenizer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCES = [
    "the cat sat on the mat and the dog sat on the rug .",
    "the dog ran in the park and the cat ran to the house .",
    "a bird sang in the tree and the sun was warm .",
    "the children played in the park until the sun went down .",
    "the old man read a book by the fire in the house .",
    "the girl gave the dog a bone and the dog was happy .",
]
WIKITEXT = (" = Park = \n \n The cat sat on the mat , and the dog sat on the rug . The dog ran in "
            "the park @-@ house and the cat ran to the house . \n A bird sang in the tree , and "
            "the sun was warm . The children played in the park until the sun went down . \n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """BERT-style tokenizer dir, a trained and an untrained checkpoint, and the data files."""
  root = tmp_path_factory.mktemp("eval_cli")
  words = sorted({w for s in SENTENCES for w in s.split()} | {",", "=", "-", "@"})
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
  (root / "tok").mkdir()
  (root / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
  tokenizer = tokenizer_lib.load_pretrained(root / "tok", "bert-uncased")
  cfg = model.GLMConfig(vocab_size=128, num_layers=2, hidden_size=64, num_heads=4,
                        max_sequence_length=64, dtype="float32")
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  params_io.save_for_inference(str(root / "untrained"), params)
  params_io.save_for_inference(str(root / "trained"), _train(cfg, params, tokenizer))
  (root / "lambada.jsonl").write_text("".join(json.dumps({"text": s[:-2]}) + "\n"
                                              for s in SENTENCES))
  (root / "wiki.test.tokens").write_text(WIKITEXT)
  cloze_lines = [
      {"text_a": "the cat sat on the [MASK] and the dog sat on the rug .", "text_b": None,
       "candidates": ["mat", "tree"], "label": 0},
      {"text_a": "a bird sang in the [MASK] and the sun was warm .",
       "candidates": ["house", "tree"], "label": "tree"},
      {"text_a": "the girl gave the dog a bone", "text_b": "and the [MASK] was happy .",
       "candidates": ["dog", "sun"], "label": 0},
  ]
  (root / "cloze.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cloze_lines))
  return root, tokenizer, cfg


def _train(cfg, params, tokenizer):
  """60 Adam steps on the sentences laid out as each task evaluates them."""
  ids = [t for s in SENTENCES for t in tokenizer.encode(s)]
  rows = lm_eval.window_rows(ids, special_ids=tokenizer.special_ids, seq_length=24, overlap=8)
  for s in SENTENCES:  # also the LAMBADA layout: context -> last word
    context, last = eval_data.lambada_split(s[:-2])
    rows += lm_eval.lambada_rows([(tokenizer.encode(context), tokenizer.encode(" " + last))],
                                 special_ids=tokenizer.special_ids, seq_length=32)[0]
    words = s.split()
    for i in range(1, len(words) - 1, 2):  # and the cloze layout: a word blanked
      text = " ".join(words[:i] + ["[MASK]"] + words[i + 1:])
      example = cloze.ClozeExample(eval_data.text_encoder(tokenizer)(text), None,
                                   [tokenizer.encode(words[i])])
      rows += cloze.multi_token_rows([example], special_ids=tokenizer.special_ids,
                                     seq_length=32)[0]
  batch = scoring._pack(rows, range(len(rows)), 32, len(rows), tokenizer.special_ids["eos"], None)
  glm = model.GLM(cfg)

  def loss_fn(p):
    logits = glm.apply({"params": p}, batch["ids"], batch["position_ids"], batch["sep"])
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["slots"][..., None], axis=1)
    picked = jnp.take_along_axis(logp, batch["slot_targets"][..., None], -1)[..., 0]
    return -jnp.sum(picked * batch["slot_valid"]) / jnp.sum(batch["slot_valid"])

  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(p, state):
    grads = jax.grad(loss_fn)(p)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state

  state = optimizer.init(params)
  for _ in range(60):
    params, state = step(params, state)
  return jax.tree_util.tree_map(np.asarray, params)


def _run(root, task, data, checkpoint="trained", **kwargs):
  return evaluate.run(task, str(root / data), str(root / checkpoint), str(root / "tok"),
                      tokenizer_kind="bert-uncased", **kwargs)


def test_trained_model_beats_untrained_on_every_task(workdir):
  root, _, _ = workdir
  wiki = {c: _run(root, "wikitext103", "wiki.test.tokens", c, seq_length=24, overlap=8)
          for c in ("trained", "untrained")}
  assert wiki["trained"]["ppl"] < wiki["untrained"]["ppl"] / 3
  lambada = {c: _run(root, "lambada", "lambada.jsonl", c, seq_length=32)
             for c in ("trained", "untrained")}
  assert lambada["trained"]["accuracy"] > lambada["untrained"]["accuracy"]
  assert lambada["trained"]["num_correct"] >= 4
  trained_cloze = _run(root, "cloze", "cloze.jsonl", seq_length=32)
  assert trained_cloze["accuracy"] == 100.0 and trained_cloze["num_examples"] == 3


def test_wikitext_metrics_are_the_windowed_nll_of_the_detokenized_file(workdir):
  root, tokenizer, _ = workdir
  metrics = _run(root, "wikitext2", "wiki.test.tokens", seq_length=24, overlap=8)
  ids = tokenizer.encode(eval_data.wikitext_detokenize(WIKITEXT))
  cfg, params = params_io.load_for_inference(str(root / "trained"))
  nll, count = lm_eval.windowed_nll(cfg, params, ids, special_ids=tokenizer.special_ids,
                                    seq_length=24, overlap=8)
  words = len(WIKITEXT.strip().split(" "))
  assert count == len(ids) - 1 == metrics["num_tokenized"] - 1
  assert metrics["num_original_words"] == words
  np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-6)
  np.testing.assert_allclose(metrics["adjusted_ppl"],
                             np.exp(nll / (len(ids) - 1) * (len(ids) - 1) / (words - 1)),
                             rtol=1e-6)


def test_lambada_counts_left_truncated_examples(workdir):
  root, _, _ = workdir
  full = _run(root, "lambada", "lambada.jsonl", seq_length=32)
  short = _run(root, "lambada", "lambada.jsonl", seq_length=10)
  assert full["num_truncated"] == 0
  assert short["num_truncated"] == short["num_examples"] == 6


def test_single_token_cloze_scoring_uses_sop_logits(workdir):
  root, _, _ = workdir
  metrics = _run(root, "cloze", "cloze.jsonl", seq_length=32, cloze_scoring="single")
  assert metrics["num_examples"] == 3 and metrics["accuracy"] >= 2 / 3 * 100


def test_cli_prints_progress_and_one_json_line_and_writes_output(workdir):
  root, _, _ = workdir
  out = root / "out" / "metrics.json"
  result = subprocess.run(
      [sys.executable, "-m", "glm_jax.evaluate", "--task=lambada",
       f"--data={root / 'lambada.jsonl'}", f"--checkpoint={root / 'trained'}",
       f"--tokenizer={root / 'tok'}", "--tokenizer_kind=bert-uncased", "--seq_length=32",
       "--batch_size=4", f"--output={out}"],
      cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1
  metrics = json.loads(lines[0])
  assert metrics["task"] == "lambada" and metrics["num_examples"] == 6
  assert json.loads(out.read_text()) == metrics
  assert "ETA" in result.stderr and "6/6 examples" in result.stderr


def test_cli_reports_a_bad_line_with_file_and_number(workdir):
  root, _, _ = workdir
  bad = root / "bad.jsonl"
  bad.write_text('{"text": "the cat sat"}\n{"text": "unterminated\n')
  result = subprocess.run(
      [sys.executable, "-m", "glm_jax.evaluate", "--task=lambada", f"--data={bad}",
       f"--checkpoint={root / 'trained'}", f"--tokenizer={root / 'tok'}",
       "--tokenizer_kind=bert-uncased"],
      cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:2: not valid JSON")
  assert "Traceback" not in result.stderr


def test_cloze_without_mask_is_a_clear_error(workdir):
  root, _, _ = workdir
  (root / "nomask.jsonl").write_text(json.dumps(
      {"text_a": "the cat sat on the mat .", "candidates": ["a", "b"], "label": 0}) + "\n")
  with pytest.raises(EvaluationError, match=r"nomask.jsonl:1: no \[MASK\]"):
    _run(root, "cloze", "nomask.jsonl")
  with pytest.raises(EvaluationError, match="has no \\[MASK\\]"):
    cloze.multi_token_scores(*params_io.load_for_inference(str(root / "trained")), [5, 6], None,
                             [[7]], special_ids=workdir[1].special_ids, seq_length=16)


def test_checkpoint_with_a_smaller_vocabulary_than_the_tokenizer_is_refused(workdir, tmp_path):
  root, tokenizer, _ = workdir
  small = model.GLMConfig(vocab_size=16, num_layers=1, hidden_size=64, num_heads=4,
                          max_sequence_length=64, dtype="float32")
  params_io.save_for_inference(str(tmp_path / "small"),
                            model.init_params(small, jax.random.PRNGKey(1)))
  assert tokenizer.vocab_size > 16
  with pytest.raises(EvaluationError, match="embedding rows"):
    evaluate.run("lambada", str(root / "lambada.jsonl"), str(tmp_path / "small"),
                 str(root / "tok"), tokenizer_kind="bert-uncased")


def test_wikitext_detokenizer_matches_original():
  with open(os.path.join(ROOT, "tests", "data", "thudm_eval_scoring.json")) as f:
    case = json.load(f)["wikitext_detokenizer"]
  assert case["detokenized"] != case["raw"]
  assert eval_data.wikitext_detokenize(case["raw"]) == case["detokenized"]



def test_lambada_split_matches_original_strict_mode():
  with open(os.path.join(ROOT, "tests", "data", "thudm_eval_scoring.json")) as f:
    cases = json.load(f)["lambada_strict_split"]
  assert any(c["text"].split()[-1] in c["context"] for c in cases)  # last word seen earlier too
  for case in cases:
    context, last = eval_data.lambada_split(case["text"])
    assert (context, " " + last) == (case["context"], case["answer"])


def test_without_tokenizer_flag_evaluate_uses_the_tokenizer_stored_with_the_checkpoint(
    workdir, tmp_path):
  root, tokenizer, _ = workdir
  checkpoint = tmp_path / "trained_with_tokenizer"
  shutil.copytree(root / "trained", checkpoint)
  tokenizer.save(checkpoint / "tokenizer")  # as `convert import --tokenizer` and training store it
  stored = evaluate.run("lambada", str(root / "lambada.jsonl"), str(checkpoint), seq_length=32)
  explicit = _run(root, "lambada", "lambada.jsonl", seq_length=32)
  timing = {k for k in explicit if "second" in k or "per_s" in k}
  assert {k: v for k, v in stored.items() if k not in timing} == \
         {k: v for k, v in explicit.items() if k not in timing}

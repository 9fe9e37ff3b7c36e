"""`glm_jax.finetune`: a tiny GLM finetuned as a cloze model on a synthetic BoolQ-format task
learns it; interrupted + resumed finetuning reproduces the uninterrupted losses; bad input."""

import json
import os
import random

import flax.linen as nn
import jax
import pytest

from configs.finetune import superglue as sg_config
from glm_jax.storage import params_io
from glm_jax import finetune
from glm_jax import run_checks
from glm_jax.modeling import sharding
from glm_jax.tasks.superglue import examples as examples_lib
from input_pipeline import tokenizer as tokenizer_lib

TOKENIZER = os.path.join(os.path.dirname(__file__), "data", "superglue")
FILLER = ["the", "king", "went", "up", "to", "city", "and", "man", "river", "house", "land"]


def write_synthetic_boolq(directory, seed=0, sizes=(64, 32, 8)):
  """BoolQ files whose answer is whether the passage says 'light' (vs 'darkness')."""
  rng = random.Random(seed)
  for split, size in zip(("train", "val", "test"), sizes):
    lines = []
    for i in range(size):
      label = i % 2 == 0
      words = [rng.choice(FILLER) for _ in range(rng.randint(4, 9))]
      words.insert(rng.randint(0, len(words)), "light" if label else "darkness")
      rec = {"idx": i, "question": "is there light", "passage": " ".join(words) + "."}
      if split != "test":
        rec["label"] = label
      lines.append(json.dumps(rec))
    (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def tiny_config(data_dir, **overrides):
  config = sg_config.get_config()
  config.task = "boolq"
  config.data_dir = str(data_dir)
  config.tokenizer = TOKENIZER
  config.tokenizer_kind = "bert-uncased"
  config.model.update(vocab_size=1280, num_layers=2, hidden_size=64, num_heads=2,
                      max_sequence_length=64, dtype="float32", embedding_dropout=0.0,
                      attention_dropout=0.0, hidden_dropout=0.0)
  config.seq_length = 32
  config.global_batch_size = 16
  config.epochs = 8
  config.learning_rate = 3e-3
  config.log_every_steps = 1
  config.tensorboard = False
  config.eval_batch_size = 32
  config.from_scratch = True   # these tests finetune random tiny models on purpose
  config.update(overrides)
  return finetune.prepare_config(config)


def run(config, workdir):
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    return finetune.run(config, str(workdir), mesh)


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.mark.slow
def test_tiny_model_learns_a_synthetic_cloze_task(tmp_path):
  write_synthetic_boolq(tmp_path)
  best = run(tiny_config(tmp_path), tmp_path / "work")
  assert best["metric"] == "accuracy" and best["value"] >= 90.0
  config, params = params_io.load_for_inference(str(tmp_path / "work" / "best_params"))
  assert config.num_layers == 2 and config.vocab_size == 1280
  assert tokenizer_lib.load_tokenizer(str(tmp_path / "work" / "best_params")).vocab_size == 1216
  records = [json.loads(l) for l in (tmp_path / "work" / "predictions" / "BoolQ.jsonl").open()]
  assert [r["idx"] for r in records] == list(range(8))
  assert {r["label"] for r in records} <= {"true", "false"}
  logged = [json.loads(l) for l in (tmp_path / "work" / "metrics.jsonl").open()]
  assert sum("dev_accuracy" in r for r in logged) == 8  # one dev evaluation per epoch


@pytest.mark.slow
def test_interrupted_finetuning_resumes_with_the_same_losses(tmp_path):
  write_synthetic_boolq(tmp_path, sizes=(40, 8, 0))
  run(tiny_config(tmp_path, epochs=3, checkpoint_every_steps=2), tmp_path / "straight")
  run(tiny_config(tmp_path, epochs=3, checkpoint_every_steps=2, stop_at_step=4),
      tmp_path / "resumed")
  assert max(losses(tmp_path / "resumed")) == 4
  run(tiny_config(tmp_path, epochs=3, checkpoint_every_steps=2), tmp_path / "resumed")
  want, got = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
  assert sorted(got) == sorted(want) == list(range(1, 10))
  for step in want:
    assert got[step] == pytest.approx(want[step], rel=1e-5, abs=1e-6), step


def test_unknown_task_lists_the_tasks(tmp_path):
  with pytest.raises(examples_lib.TaskDataError, match="the tasks are boolq, cb, copa"):
    tiny_config(tmp_path, task="mnli")


@pytest.mark.slow
def test_cli_reports_a_bad_line_with_file_and_line(tmp_path):
  import subprocess, sys
  write_synthetic_boolq(tmp_path)
  (tmp_path / "train.jsonl").write_text('{"idx": 0, "question": "q", "passage": "p", "label": true}\n'
                                        '{"idx": 1, "question": \n')
  proc = subprocess.run(
      [sys.executable, "-m", "glm_jax.finetune", "--config=configs/finetune/superglue.py",
       "--config.task=boolq", f"--config.data_dir={tmp_path}", f"--config.tokenizer={TOKENIZER}",
       "--config.tokenizer_kind=bert-uncased", "--config.model.vocab_size=1280",
       "--config.model.num_layers=1", "--config.model.hidden_size=32",
       "--config.model.num_heads=2", "--config.seq_length=32", "--config.from_scratch=True",
       f"--workdir={tmp_path / 'w'}"],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "train.jsonl:2: not valid JSON" in proc.stderr
  assert "Traceback" not in proc.stderr


def write_synthetic_copa(directory, seed=0, sizes=(32, 16, 4)):
  """COPA files whose right choice is the one about 'light' (either position, either question)."""
  rng = random.Random(seed)
  for split, size in zip(("train", "val", "test"), sizes):
    lines = []
    for i in range(size):
      words = " ".join(rng.choice(FILLER) for _ in range(4))
      right, wrong = "The light came.", f"The {rng.choice(FILLER[1:])} came."
      label = i % 2
      choices = (right, wrong) if label == 0 else (wrong, right)
      rec = {"idx": i, "premise": f"The {words}.", "choice1": choices[0],
             "choice2": choices[1], "question": rng.choice(["cause", "effect"])}
      if split != "test":
        rec["label"] = label
      lines.append(json.dumps(rec))
    (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_multi_token_task_batches_choices_and_writes_the_submission_file(tmp_path):
  write_synthetic_copa(tmp_path)
  config = tiny_config(tmp_path, task="copa", epochs=4, global_batch_size=8)
  best = run(config, tmp_path / "work")
  assert best["value"] >= 90.0
  records = [json.loads(l) for l in (tmp_path / "work" / "predictions" / "COPA.jsonl").open()]
  assert [r["idx"] for r in records] == [0, 1, 2, 3] and {r["label"] for r in records} <= {0, 1}


def test_examples_longer_than_seq_length_are_cut_and_counted(tmp_path, capsys):
  write_synthetic_boolq(tmp_path, sizes=(8, 4, 0))
  config = tiny_config(tmp_path, seq_length=20)
  tokenizer = finetune.load_task_tokenizer(config)
  task = finetune.build_task(config, tokenizer)
  err = capsys.readouterr().err            # a warning: stderr, not the results on stdout
  assert "boolq train: 8 of 8 examples longer than seq_length=20 were truncated" in err
  assert all(len(row) <= 20 for enc in task.train_encoded for row in enc.rows)


def test_a_batch_that_cannot_split_over_the_mesh_is_refused(tmp_path):
  write_synthetic_boolq(tmp_path, sizes=(8, 4, 0))
  config = tiny_config(tmp_path, global_batch_size=6, grad_accum_steps=4)
  with pytest.raises(run_checks.ConfigError, match="global_batch_size=6 must be divisible by "
                     "grad_accum_steps"):
    run(config, tmp_path / "work")

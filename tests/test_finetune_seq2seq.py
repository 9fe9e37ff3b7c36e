"""`glm_jax.finetune` on a seq2seq task: a tiny GLM learns a synthetic copy task (files in the
original's train/val/test .source/.target format) to high dev ROUGE through the shared loop, with
dev ROUGE every eval_every_epochs, the best params kept, and test predictions one per line."""

import json
import os
import random

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs.finetune import seq2seq as s2s_config
from glm_jax import finetune
from glm_jax.modeling import sharding
from glm_jax.tasks.seq2seq import task as task_lib

TOKENIZER = os.path.join(os.path.dirname(__file__), "data", "released_tokenizers", "bert-uncased")
# Each one token in the test vocabulary.
WORDS = ["house", "land", "people", "lord", "earth", "day", "water", "son", "god", "man", "unto",
         "said", "israel", "children", "come", "hand"]


def write_copy_task(directory, seed=0, sizes=(384, 16, 8)):
  rng = random.Random(seed)
  for split, n in zip(("train", "val", "test"), sizes):
    sources, targets = [], []
    for _ in range(n):
      words = [rng.choice(WORDS) for _ in range(6)]
      sources.append(" ".join(words))
      targets.append(" ".join(words))
    (directory / f"{split}.source").write_text("\n".join(sources) + "\n")
    (directory / f"{split}.target").write_text("\n".join(targets) + "\n")


def tiny_config(data_dir, **overrides):
  config = s2s_config.get_config()
  config.task = "cnn_dm_original"
  config.data_dir = str(data_dir)
  config.tokenizer = TOKENIZER
  config.tokenizer_kind = "bert-uncased"
  config.model.update(vocab_size=1280, num_layers=2, hidden_size=64, num_heads=2,
                      max_sequence_length=32, dtype="float32", embedding_dropout=0.0,
                      attention_dropout=0.0, hidden_dropout=0.0)
  config.src_seq_length = 12
  config.tgt_seq_length = 8
  config.min_tgt_length = 0
  config.num_beams = 2
  config.global_batch_size = 16
  config.epochs = 10
  config.eval_every_epochs = 5
  config.eval_batch_size = 8
  config.learning_rate = 3e-3
  config.decay_style = "constant"   # the copy task's jump comes after ~150 steps at full lr
  config.log_every_steps = 4
  config.tensorboard = False
  config.from_scratch = True   # these tests finetune random tiny models on purpose
  config.update(overrides)
  return finetune.prepare_config(config)


def run(config, workdir):
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    return finetune.run(config, str(workdir), mesh)


@pytest.mark.slow
def test_tiny_model_learns_a_copy_task_to_high_rouge(tmp_path):
  write_copy_task(tmp_path)
  config = tiny_config(tmp_path)
  assert (config.num_beams, config.length_penalty, config.no_repeat_ngram_size) == (2, 0.7, 3)
  best = run(config, tmp_path / "work")
  assert best["metric"] == "rouge-1" and best["value"] >= 90.0, best
  assert set(best["results"]) == {"rouge-1", "rouge-2", "rouge-l"}
  assert os.path.isdir(tmp_path / "work" / "best_params")
  logged = [json.loads(line) for line in open(tmp_path / "work" / "metrics.jsonl")]
  assert sum("dev_rouge-1" in r for r in logged) == 2          # epochs 5 and 10
  hyps = (tmp_path / "work" / "predictions" / "test.jsonl.hyps").read_text().splitlines()
  refs = (tmp_path / "work" / "predictions" / "test.jsonl.refs").read_text().splitlines()
  sources = (tmp_path / "test.source").read_text().splitlines()
  assert len(hyps) == len(refs) == 8 and refs == sources
  assert sum(h == s for h, s in zip(hyps, sources)) >= 6


def test_label_smoothed_loss_is_the_originals_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
  targets = rng.integers(0, 11, (2, 5))
  mask = (rng.random((2, 5)) > 0.3).astype(np.float32)
  got = task_lib.smoothed_token_sums(logits, targets, mask, 0.1)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  want = ((0.9 * nll + 0.1 * -logp.mean(-1)) * mask).sum()
  assert float(got["loss_sum"]) == pytest.approx(want, rel=1e-5)
  assert float(got["tokens"]) == mask.sum()


def test_seq2seq_task_needs_the_seq2seq_config(tmp_path):
  from configs.finetune import superglue as sg_config
  config = sg_config.get_config()
  config.task = "xsum"
  with pytest.raises(finetune.FinetuneError, match="configs/finetune/seq2seq.py"):
    finetune.prepare_config(config)


def test_source_longer_than_the_position_table_is_refused(tmp_path):
  write_copy_task(tmp_path, sizes=(4, 2, 0))
  with pytest.raises(finetune.FinetuneError, match="src_seq_length=40 .* lower them"):
    tiny_config(tmp_path, src_seq_length=40)


def test_position_tables_are_extended_for_long_sources_as_the_original(tmp_path):
  from glm_jax.modeling import model
  from glm_jax.storage import params_io
  write_copy_task(tmp_path, sizes=(4, 2, 0))
  base = tiny_config(tmp_path)
  params = model.init_params(model.as_glm_config(base.model), jax.random.PRNGKey(1))
  params_io.save_params(str(tmp_path / "init"), params)
  config = tiny_config(tmp_path, init_from=str(tmp_path / "init"), src_seq_length=40)
  assert config.model.max_sequence_length == 40          # was 32: the table grows to 41 rows
  finetune.extend_position_tables(config, str(tmp_path / "work"))
  assert config.init_from == str(tmp_path / "work" / "init_params_41")
  extended = params_io.load_params(config.init_from)
  for name in ("position_embeddings", "block_position_embeddings"):
    old, new = np.asarray(params[name]["embedding"]), np.asarray(extended[name]["embedding"])
    assert new.shape == (41, old.shape[1])
    np.testing.assert_array_equal(new[:33], old)
    assert 0.01 < new[33:].std() < 0.03                   # fresh N(0, 0.02) rows
  np.testing.assert_array_equal(np.asarray(extended["word_embeddings"]["embedding"]),
                                np.asarray(params["word_embeddings"]["embedding"]))


@pytest.mark.slow
def test_cli_names_both_files_when_their_line_counts_differ(tmp_path):
  import subprocess, sys
  write_copy_task(tmp_path, sizes=(6, 2, 0))
  (tmp_path / "train.target").write_text("one\ntwo\n")
  proc = subprocess.run(
      [sys.executable, "-m", "glm_jax.finetune", "--config=configs/finetune/seq2seq.py",
       "--config.task=xsum", f"--config.data_dir={tmp_path}", f"--config.tokenizer={TOKENIZER}",
       "--config.tokenizer_kind=bert-uncased", "--config.model.vocab_size=1280",
       "--config.model.num_layers=1", "--config.model.hidden_size=32",
       "--config.model.num_heads=2", "--config.model.max_sequence_length=64",
       "--config.src_seq_length=32", "--config.tgt_seq_length=16", "--config.from_scratch=True",
       f"--workdir={tmp_path / 'w'}"],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert f"{tmp_path}/train.source has 6 lines but {tmp_path}/train.target has 2" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_objective_equals_the_loss_on_full_logits():
  from glm_jax.modeling import model
  from glm_jax.tasks.seq2seq import data as data_lib
  from input_pipeline import tokenizer as tokenizer_lib
  tok = tokenizer_lib.load_pretrained(TOKENIZER, "bert-uncased")
  layout = data_lib.make_layout(tok, 12, 8, False)
  examples = data_lib.make_examples("xsum", "train", ["house land people", "god man"],
                                    ["lord earth day", "water"], tok)
  rows = data_lib.train_rows("xsum", examples, tok, layout)
  batch = task_lib.pack_rows(rows, [0, 1, None])
  cfg = model.GLMConfig(vocab_size=1280, num_layers=2, hidden_size=64, num_heads=2,
                        max_sequence_length=32, dtype="float32")
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  glm = model.GLM(cfg)
  got = task_lib.make_objective(0.1, 12).sums(glm, params, batch, jax.random.PRNGKey(1), True)
  logits = glm.apply({"params": params}, batch["input_ids"], batch["position_ids"], batch["sep"])
  want = task_lib.smoothed_token_sums(logits, batch["target_ids"], batch["loss_mask"], 0.1)
  for key in ("loss_sum", "correct_sum", "tokens"):
    assert float(got[key]) == pytest.approx(float(want[key]), rel=1e-5), key
  assert float(got["tokens"]) == 4 + 2        # targets + [eop]; the padding row has no loss


@pytest.mark.slow
def test_rows_longer_than_the_position_table_pass_when_their_positions_fit(tmp_path):
  # src 24 + tgt 16 = 40-token rows on a 33-row table: positions reach only 24, blocks 17.
  write_copy_task(tmp_path, sizes=(16, 4, 0))
  config = tiny_config(tmp_path, src_seq_length=24, tgt_seq_length=16, epochs=1,
                       eval_every_epochs=1)
  assert config.seq_length == 40 > config.model.max_sequence_length + 1
  best = run(config, tmp_path / "work")
  assert set(best["results"]) == {"rouge-1", "rouge-2", "rouge-l"}

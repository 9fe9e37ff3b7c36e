"""Inference export (params only, optionally bf16) and the `python -m glm_jax.generate` CLI."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax.training import checkpoint
from glm_jax import generate
from glm_jax.modeling import model
from glm_jax.storage import params_io
from input_pipeline import tokenizer as tokenizer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ["In the beginning God created the heaven and the earth.",
        "And the earth was without form, and void; and darkness was upon the face of the deep.",
        "And God said, Let there be light: and there was light."] * 30


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "spm.model"
  tokenizer_lib.train(TEXT, str(path), vocab_size=300)
  return tokenizer_lib.Tokenizer(str(path))


def _params(vocab=384, seed=0):
  cfg = model.GLMConfig(vocab_size=vocab, num_layers=2, hidden_size=64, num_heads=4,
                        max_sequence_length=64, dtype="float32", init_std=0.2)
  return cfg, model.init_params(cfg, jax.random.PRNGKey(seed))


@pytest.mark.slow
def test_export_round_trip_infers_the_model_shape_and_generates_the_same(tmp_path, tokenizer):
  cfg, params = _params()
  params_io.save_for_inference(str(tmp_path / "fp32"), params)
  loaded_cfg, loaded = params_io.load_for_inference(str(tmp_path / "fp32"))
  assert loaded_cfg.replace(init_std=cfg.init_std, embedding_dropout=0.1, attention_dropout=0.1,
                            hidden_dropout=0.1) == cfg
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
  prompt = generate.build_prompt(tokenizer, "And God said, Let there be [MASK] and there was")
  kw = dict(special_ids=tokenizer.special_ids, max_new_tokens=5)
  assert (generate.fill_blanks(loaded_cfg, loaded, prompt, **kw)
          == generate.fill_blanks(cfg, params, prompt, **kw))


@pytest.mark.slow
def test_bf16_export_halves_params_and_still_generates(tmp_path, tokenizer):
  _, params = _params()
  params_io.save_for_inference(str(tmp_path / "bf16"), params, dtype="bfloat16")
  cfg, loaded = params_io.load_for_inference(str(tmp_path / "bf16"))
  assert cfg.dtype == cfg.param_dtype == "bfloat16"
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(loaded))
  prompt = generate.build_prompt(tokenizer, "In the [MASK] God created")
  (blank,) = generate.fill_blanks(cfg, loaded, prompt, special_ids=tokenizer.special_ids,
                                  max_new_tokens=4)
  assert len(blank) <= 4


def test_training_checkpoint_exports_params_without_optimizer_state(tmp_path):
  _, params = _params()
  state = {"step": jnp.int32(7), "params": params,
           "opt_state": {"mu": params, "nu": params}, "rng": jax.random.PRNGKey(0)}
  ckpt = checkpoint.Checkpointer(str(tmp_path / "work"), keep=1)
  ckpt.save(7, state, {"position": 0})
  ckpt.wait()
  ckpt.close()
  restored = checkpoint.params_from_training_checkpoint(str(tmp_path / "work"))
  assert set(restored) == set(params)
  params_io.save_for_inference(str(tmp_path / "out"), restored)
  stored = params_io.load_params(str(tmp_path / "out"))
  assert "opt_state" not in stored and "mu" not in stored
  jax.tree_util.tree_map(np.testing.assert_array_equal, stored, params)


@pytest.mark.slow
def test_cli_prints_filled_text_for_each_prompt(tmp_path, tokenizer):
  _, params = _params()
  params_io.save_for_inference(str(tmp_path / "ckpt"), params)
  (tmp_path / "prompts.txt").write_text("And the earth was [MASK] and void.\nLet there be [gMASK]\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-m", "glm_jax.generate", f"--checkpoint={tmp_path / 'ckpt'}",
       f"--tokenizer={tokenizer.model_path}", "--prompt=In the [MASK] God created the earth.",
       f"--prompt_file={tmp_path / 'prompts.txt'}", "--max_new_tokens=3", "--strategy=sample",
       "--seed=1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 3
  assert lines[0].startswith("In the") and lines[0].endswith("God created the earth.")
  assert "[MASK]" not in lines[0] and lines[2].startswith("Let there be")


@pytest.mark.slow
def test_cli_continues_a_prompt_without_a_blank_as_the_original(tmp_path, tokenizer):
  """generate_samples.read_context appends ' [MASK]' (no --task-mask) to a blank-less prompt."""
  _, params = _params()
  params_io.save_for_inference(str(tmp_path / "ckpt"), params)
  result = subprocess.run(
      [sys.executable, "-m", "glm_jax.generate", f"--checkpoint={tmp_path / 'ckpt'}",
       f"--tokenizer={tokenizer.model_path}", "--prompt=No blank here.", "--max_new_tokens=2"],
      cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().startswith("No blank here.")


def test_prompt_gets_eos_unless_it_ends_in_gmask_as_the_original(tokenizer):
  special = tokenizer.special_ids
  cls, eos = special["CLS"], special["eos"]
  for text in ("In the [MASK] God created", "Let there be [MASK]", "Let there be [sMASK]"):
    assert generate.build_prompt(tokenizer, text) == [cls] + tokenizer.encode(text) + [eos]
  text = "Let there be [gMASK]"
  assert generate.build_prompt(tokenizer, text, task_mask=True) == [cls] + tokenizer.encode(text)


def test_prompt_without_a_blank_gets_the_generation_mask_appended(tokenizer):
  special = tokenizer.special_ids
  cls, eos = special["CLS"], special["eos"]
  plain = generate.build_prompt(tokenizer, "Let there be light")
  assert plain == [cls] + tokenizer.encode("Let there be light [MASK]") + [eos]
  assert special["MASK"] in plain
  task = generate.build_prompt(tokenizer, "Let there be light", task_mask=True)
  assert task == [cls] + tokenizer.encode("Let there be light [gMASK]")
  assert task[-1] == special["gMASK"]

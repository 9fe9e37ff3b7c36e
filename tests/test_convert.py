"""Checkpoint conversion: THUDM naming <-> our params, bit-exact, with clear errors."""

import builtins
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from glm_jax import convert
from tests import original_fixtures, reference_glm

DATA = os.path.join(os.path.dirname(__file__), "data")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fixture_state_dict():
  return original_fixtures.thudm_state_dict(original_fixtures.load("forward_small.npz"))


def test_import_then_export_reproduces_every_tensor_bit_for_bit(tmp_path):
  sd = _fixture_state_dict()
  convert.import_checkpoint(os.path.join(DATA, "forward_small.npz"), 4, str(tmp_path / "ckpt"))
  out = tmp_path / "glm.safetensors"
  assert convert.export_checkpoint(str(tmp_path / "ckpt"), str(out)) == len(sd)
  back = convert.load_state_dict(str(out))
  assert set(back) == set(sd)
  for name, value in sd.items():
    assert back[name].dtype == value.dtype, name
    np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_bfloat16_checkpoints_round_trip_without_rounding(tmp_path):
  rng = np.random.default_rng(0)
  sd = reference_glm.random_state_dict(rng, num_layers=2, hidden=32, vocab=40, positions=9)
  sd = {k: v.astype(ml_dtypes.bfloat16) for k, v in sd.items()}
  src = tmp_path / "in.safetensors"
  convert.save_safetensors(sd, str(src))
  cfg = convert.import_checkpoint(str(src), 2, str(tmp_path / "ckpt"))
  assert cfg.param_dtype == "bfloat16"
  convert.export_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "out.safetensors"))
  back = convert.load_state_dict(str(tmp_path / "out.safetensors"))
  for name, value in sd.items():
    assert back[name].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(back[name].view(np.uint16), value.view(np.uint16), err_msg=name)


@pytest.mark.slow
def test_cli_import_and_export_round_trip_with_hugging_face_prefix(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  ckpt, out = tmp_path / "ckpt", tmp_path / "hf.safetensors"
  subprocess.run([sys.executable, "-m", "glm_jax.convert", "import",
                  f"--input={os.path.join(DATA, 'forward_small.npz')}", "--num_heads=4",
                  f"--output={ckpt}"], check=True, env=env, cwd=ROOT, capture_output=True)
  result = subprocess.run([sys.executable, "-m", "glm_jax.convert", "export",
                           f"--checkpoint={ckpt}", f"--output={out}", "--prefix=glm."],
                          check=True, env=env, cwd=ROOT, capture_output=True, text=True)
  assert "THUDM naming" in result.stdout
  back = convert.load_state_dict(str(out))
  sd = _fixture_state_dict()
  assert set(back) == {"glm." + k for k in sd}
  np.testing.assert_array_equal(back["glm.word_embeddings.weight"], sd["word_embeddings.weight"])


def test_missing_and_extra_keys_are_listed():
  sd = _fixture_state_dict()
  del sd["transformer.layers.1.mlp.dense_4h_to_h.bias"]
  sd["transformer.layers.0.attention.rotary.inv_freq"] = np.zeros(3)
  with pytest.raises(convert.ConversionError) as err:
    convert.from_thudm(sd, 4)
  assert "transformer.layers.1.mlp.dense_4h_to_h.bias" in str(err.value)
  assert "transformer.layers.0.attention.rotary.inv_freq" in str(err.value)


def test_disagreeing_shapes_are_named():
  sd = _fixture_state_dict()
  sd["transformer.layers.1.attention.dense.weight"] = np.zeros((64, 60), np.float32)
  with pytest.raises(convert.ConversionError, match=r"layers\.1\.attention\.dense\.weight"):
    convert.from_thudm(sd, 4)


def test_head_count_that_does_not_divide_hidden_is_refused():
  with pytest.raises(convert.ConversionError, match="does not divide the hidden size 64"):
    convert.from_thudm(_fixture_state_dict(), 5)


def test_unreadable_and_unknown_files_get_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    convert.load_state_dict(str(tmp_path / "nope.safetensors"))
  bad = tmp_path / "corrupt.safetensors"
  bad.write_bytes(b"not a safetensors file")
  with pytest.raises(convert.ConversionError, match="Could not read"):
    convert.load_state_dict(str(bad))
  other = tmp_path / "weights.h5"
  other.write_bytes(b"")
  with pytest.raises(convert.ConversionError, match="Unknown checkpoint extension"):
    convert.load_state_dict(str(other))


def test_torch_files_without_torch_installed_say_how_to_fix(tmp_path, monkeypatch):
  path = tmp_path / "mp_rank_00_model_states.pt"
  path.write_bytes(b"")
  real_import = builtins.__import__

  def no_torch(name, *args, **kwargs):
    if name == "torch":
      raise ImportError("No module named 'torch'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_torch)
  with pytest.raises(ImportError, match="needs PyTorch"):
    convert.load_state_dict(str(path))


def test_head_count_may_be_a_numpy_scalar_as_read_from_a_file():
  data = np.load(os.path.join(DATA, "forward_small.npz"))
  cfg, _ = convert.from_thudm(_fixture_state_dict(), data["num_attention_heads"])
  assert cfg.num_heads == 4 and type(cfg.num_heads) is int

"""Inference at pod scale on 8 fake CPU devices: params-only extraction on any device count,
sharded loading by logical axes, and decoding on a mesh equal to one device's."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from glm_jax.storage import params_io
from tests import fresh_interpreter

ROOT = fresh_interpreter.ROOT


def _extract(workdir, output, devices: int) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.run([sys.executable, "-m", "glm_jax.extract_params", f"--workdir={workdir}",
                         f"--output={output}"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


@pytest.mark.slow
def test_fsdp8_checkpoint_extracts_on_1_4_and_8_devices_to_identical_params(tmp_path):
  made = fresh_interpreter.run("fsdp_train_checkpoint", tmp_path / "work")
  assert made.returncode == 0, made.stderr[-3000:]
  assert fresh_interpreter.last_json(made)["mesh"]["fsdp"] == 8
  extracted = {}
  for devices in (1, 4, 8):
    proc = _extract(tmp_path / "work", tmp_path / f"out{devices}", devices)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    extracted[devices] = params_io.load_params(str(tmp_path / f"out{devices}"))
  stored = params_io.load_params(str(tmp_path / "out8"))
  assert "opt_state" not in stored and "word_embeddings" in stored
  for devices in (1, 4):
    jax.tree_util.tree_map(np.testing.assert_array_equal, extracted[devices], extracted[8])


@pytest.mark.slow
def test_load_for_inference_on_a_mesh_places_every_leaf_by_its_logical_axes(tmp_path):
  """With the devices this process has: every leaf is a global array on
  the mesh, with the sharding its logical axes give, and equal to the saved values."""
  from glm_jax.modeling import model, sharding
  cfg = model.GLMConfig(vocab_size=128, num_layers=2, hidden_size=32, num_heads=4,
                        max_sequence_length=16, dtype="float32")
  params = model.init_params(cfg, jax.random.PRNGKey(0))
  params_io.save_for_inference(str(tmp_path / "p"), params)
  mesh = sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  loaded_cfg, loaded = params_io.load_for_inference(str(tmp_path / "p"), "bfloat16", mesh)
  assert loaded_cfg.dtype == "bfloat16" and loaded_cfg.param_dtype == "float32"
  expected = sharding.param_shardings(cfg, params, mesh)
  jax.tree_util.tree_map(lambda x, s: x.sharding == s or pytest.fail(f"{x.sharding} != {s}"),
                         loaded, expected)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)


@pytest.mark.slow
def test_load_for_inference_on_8_devices_splits_embedding_and_layer_kernels_over_fsdp():
  proc = fresh_interpreter.run("sharded_inference_load")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = fresh_interpreter.last_json(proc)
  assert report["devices"] == 8 and report["equal"]
  assert report["specs"]["word_embeddings/embedding"][1] == "fsdp"          # [vocab, embed]
  assert report["specs"]["layers/mlp/dense_h_to_4h/kernel"][1] == "fsdp"    # [L, embed, mlp]
  assert report["specs"]["layers/attention/query_key_value/kernel"][1] == "fsdp"
  assert report["replicated_but_ruled"] == []
  assert report["shard_bytes"] < report["total_bytes"] / 6  # only biases of split heads stay whole


@pytest.mark.slow
def test_greedy_sampled_and_beam_outputs_with_fsdp8_and_tensor2_equal_one_devices():
  proc = fresh_interpreter.run("sharded_generation", timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = fresh_interpreter.last_json(proc)
  assert report["devices"] == 8 and report["reference_nonempty"]
  for mesh in ("fsdp8", "tensor2"):
    assert report[mesh]["equal"] == {"greedy": True, "sample": True, "beam": True,
                                     "seq2seq_beam": True}, mesh

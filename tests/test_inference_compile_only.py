"""`generate --compile_only` and `evaluate --compile_only`: the decode loop and the scoring step
compiled for a small TPU topology (tiny model), with train --compile_only's report keys.

Needs libtpu (`pip install -r requirements-tpu.txt`; skipped cleanly without it); no TPU."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu not installed (pip install -r requirements-tpu.txt)")
TRAIN_KEYS = {"topology", "num_slices", "chips", "hosts", "device_kind", "mesh", "hbm_gib",
              "per_chip_gib", "arguments_gib", "temporaries_gib", "outputs_gib", "fits",
              "collectives", "compile_seconds"}


def _compile_only(command, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", f"glm_jax.{command}", "--compile_only",
                         "--config=configs/tiny.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)


@needs_libtpu
@pytest.mark.slow
def test_generate_compile_only_reports_the_decode_loop_on_a_tensor_split_slice():
  proc = _compile_only("generate", "--topology=v5e:2x2", "--mesh_fsdp=2", "--mesh_tensor=2",
                       "--batch_size=4", "--prompt_length=32", "--max_new_tokens=8")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert TRAIN_KEYS <= set(report)
  assert report["program"] == "generate" and report["fits"] and report["chips"] == 4
  assert report["mesh"] == {"data": 1, "fsdp": 2, "tensor": 2}
  assert report["dtype"] == "bfloat16" and 0 < report["per_chip_gib"] < report["hbm_gib"]


@needs_libtpu
@pytest.mark.slow
def test_evaluate_compile_only_reports_lambada_scoring_and_rejects_a_missing_topology():
  proc = _compile_only("evaluate", "--topology=v5e:2x2", "--task=lambada", "--seq_length=64",
                       "--batch_size=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert TRAIN_KEYS <= set(report)
  assert report["program"] == "evaluate" and report["task"] == "lambada" and report["fits"]
  assert report["mesh"]["fsdp"] == 4 and report["batch_size"] == 4
  bad = _compile_only("evaluate", "--task=lambada", "--topology=v9:1x1")
  assert bad.returncode == 2 and "v9:1x1" in bad.stderr and "Traceback" not in bad.stderr

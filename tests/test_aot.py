"""Sharding without ambient context, collective counting, and --compile_only for TPU topologies.

The context checks compile the real train and eval steps on 8 fake CPU devices (a fresh
interpreter each, as JAX fixes its device count at import). The topology checks need libtpu
(`pip install -r requirements-tpu.txt`) and are skipped cleanly without it; no TPU is needed.
"""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests import fresh_interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu not installed "
                                  "(pip install -r requirements-tpu.txt)")

def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def cpu8_results():
  proc = fresh_interpreter.run("aot_step_footprints", devices=8)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return fresh_interpreter.last_json(proc)


@pytest.mark.slow
def test_train_step_compiled_without_rules_context_matches_the_cli_sharding(cpu8_results):
  bare, context = cpu8_results["bare"]["train"], cpu8_results["context"]["train"]
  assert bare == context
  assert bare["collectives"].get("all-gather", 0) > 0  # FSDP gathers the sharded weights


@pytest.mark.slow
def test_eval_step_compiled_without_rules_context_matches_the_cli_sharding(cpu8_results):
  assert cpu8_results["bare"]["eval"] == cpu8_results["context"]["eval"]


@pytest.mark.slow
def test_collective_counts_multiply_a_loop_body_by_its_trip_count(cpu8_results):
  assert cpu8_results["scan5"] == {"all-reduce": 5}


def _compile_only(*args, timeout=900):
  return subprocess.run(
      [sys.executable, "-m", "glm_jax.train", "--compile_only", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=timeout, env=_env())


SMALL_FSDP = ["--config=configs/tiny.py", "--config.model.vocab_size=1024",
              "--config.model.hidden_size=256", "--config.model.num_heads=4",
              "--config.model.num_layers=3", "--config.model.dtype=bfloat16",
              "--config.model.remat_policy=full", "--config.global_batch_size=16",
              "--config.mesh.data=1", "--config.mesh.fsdp=-1"]


@needs_libtpu
@pytest.mark.slow
def test_compile_only_reports_per_chip_memory_and_collectives_for_a_topology():
  proc = _compile_only(*SMALL_FSDP, "--topology=v5p:2x2x1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["topology"] == "v5p:2x2x1" and report["chips"] == 4 and report["fits"] is True
  assert report["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
  assert report["hbm_gib"] == 95.0 and report["device_kind"] == "TPU v5"
  parts = (report["arguments_gib"] + report["temporaries_gib"] + report["outputs_gib"]
           - report["aliased_gib"])
  assert 0 < report["per_chip_gib"] == pytest.approx(parts, abs=2e-3)
  assert report["collectives"]["all-gather"] >= 3  # at least one weight gather per layer
  assert report["compile_seconds"] > 0


@needs_libtpu
@pytest.mark.slow
def test_compile_only_batch_that_cannot_fit_reports_fits_false_and_exits_nonzero():
  # Two layers of width 16384 are 6.4B params: fp32 params and both Adam moments alone are
  # 77 GiB, far more than 4 v5e chips (16 GiB each) hold however they are split. (Full-vocabulary
  # logits no longer make a step too big: the loss runs over the sequence in blocks.)
  proc = _compile_only("--config=configs/tiny.py", "--config.model.hidden_size=16384",
                       "--config.model.num_heads=128", "--config.model.num_layers=2",
                       "--topology=v5e:2x2")
  assert proc.returncode == 1, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["fits"] is False and report["hbm_gib"] == 16.0
  assert report["needed_gib"] > report["hbm_gib"]
  assert "does not fit" in proc.stderr and "Traceback" not in proc.stderr


def test_compile_only_unknown_topology_is_one_clear_error():
  proc = _compile_only("--config=configs/tiny.py", "--topology=v5p-128", timeout=300)
  assert proc.returncode == 2
  assert "expected <generation>:<chip grid>" in proc.stderr and "Traceback" not in proc.stderr


@needs_libtpu
@pytest.mark.skipif(bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")),
                    reason="a TPU is attached here")
def test_jax_defaults_to_cpu_with_libtpu_installed_and_no_tpu():
  env = _env()
  env.pop("JAX_PLATFORMS", None)
  proc = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == "cpu"


@needs_libtpu
@pytest.mark.slow
def test_compile_only_spans_slices_and_never_imports_tensorflow():
  proc = fresh_interpreter.run("compile_only_without_tensorflow", devices=None, timeout=900)
  lines = proc.stdout.strip().splitlines()
  assert lines and lines[-1] == "tensorflow imported: False exit: 0", proc.stderr[-3000:]
  report = json.loads(lines[-2])
  assert report["num_slices"] == 2 and report["chips"] == 8 and report["hosts"] == 2
  assert report["mesh"]["data"] == 8 and report["fits"] is True


@needs_libtpu
@pytest.mark.slow
def test_compile_only_released_large_recipe_with_attention_dropout_runs_the_kernel_under_auto():
  """GLM-Large's released recipe (attention_dropout 0.1, backend auto; one layer, 4 rows of 256
  to keep the compile short) compiled for a v5e-4 runs the Pallas kernel: forward, dK/dV, dQ."""
  from configs import large
  config = large.get_config()
  assert config.model.attention_dropout == 0.1 and config.model.attention_backend == "auto"
  proc = _compile_only("--config=configs/large.py", "--config.model.num_layers=1",
                       "--config.global_batch_size=4", "--config.seq_length=256",
                       "--topology=v5e:2x2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["mosaic_kernels"] >= 3, report


@needs_libtpu
@pytest.mark.slow
def test_compile_only_over_two_slices_reports_the_mesh_training_builds():
  proc = fresh_interpreter.run("multislice_mesh", devices=None, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = fresh_interpreter.last_json(proc)
  assert result["compile_only"] == {"mesh": result["train"]["mesh"], "dcn": result["train"]["dcn"]}
  assert result["train"]["mesh"] == {"data": 4, "fsdp": 2, "tensor": 1}
  assert result["train"]["dcn"] == {"data": 2, "fsdp": 1, "tensor": 1}
  assert result["train"]["data_slices"] == [0, 0, 1, 1] and result["train"]["auto"]

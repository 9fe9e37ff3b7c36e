"""`python -m glm_jax.train` end to end on tiny synthetic runs: resume, preemption, multi-process.

Every run is a subprocess (device counts are fixed per interpreter); runs are small (one layer,
width 64, 32 tokens) so the whole file stays around two minutes on 2 CPU cores.
"""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import fresh_interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL = 200
SMALL = [
    "--config=configs/tiny.py", "--config.synthetic_data=True", "--config.tensorboard=False",
    "--config.sample_tokens=0", "--config.model.vocab_size=256", "--config.model.hidden_size=64",
    "--config.model.num_layers=1", "--config.model.max_sequence_length=32",
    "--config.seq_length=32", "--config.global_batch_size=8", "--config.log_every_steps=1",
    "--config.eval_every_steps=0", f"--config.total_steps={TOTAL}",
    "--config.checkpoint_every_steps=1000",
]


def _env(devices=1):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


def _command(workdir, *extra):
  return [sys.executable, "-m", "glm_jax.train", *SMALL, f"--workdir={workdir}", *extra]


def train(workdir, *extra, devices=1, expect_rc=0):
  proc = subprocess.run(_command(workdir, *extra), cwd=ROOT, env=_env(devices),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == expect_rc, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  train(workdir)
  return losses(workdir)


def test_resumed_run_reproduces_the_uninterrupted_losses(straight_run, tmp_path):
  workdir = str(tmp_path)
  train(workdir, f"--config.stop_at_step={TOTAL // 2}")
  assert checkpoint_steps(workdir) == [TOTAL // 2]
  assert max(losses(workdir)) == TOTAL // 2
  train(workdir)   # the same command again resumes
  assert losses(workdir) == straight_run
  assert len(straight_run) == TOTAL


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_matches(straight_run, tmp_path):
  workdir = str(tmp_path)
  proc = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 3:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-4000:]
  assert "Preempted" in out
  (saved,) = checkpoint_steps(workdir)
  assert 3 <= saved < TOTAL
  train(workdir)
  assert losses(workdir) == straight_run


def test_checkpoint_of_another_model_shape_is_refused_with_the_differing_params(tmp_path):
  workdir = str(tmp_path)
  train(workdir, "--config.total_steps=2", "--config.checkpoint_every_steps=1")
  proc = train(workdir, "--config.total_steps=4", "--config.model.hidden_size=128",
               expect_rc=2)
  assert "another shape" in proc.stderr
  assert "word_embeddings" in proc.stderr and "(256, 64)" in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("--config.global_batch_size=6", "divisible"),
    ("--config.seq_length=64", "position tables"),
    ("--config.mesh.tensor=3", "mesh"),
    ("--config.no_such_key=1", "no_such_key"),
    ("--config.total_steps=ten", "total_steps"),
])
def test_bad_override_gets_one_clear_message_before_compiling(tmp_path, override, message):
  proc = subprocess.run(_command(str(tmp_path), override), cwd=ROOT, env=_env(devices=4),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints"))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_of_four_devices_match_one_process_of_eight(tmp_path):
  common = ["--config.total_steps=3", "--config.global_batch_size=16", "--config.mesh.fsdp=2"]
  single = str(tmp_path / "single")
  train(single, *common, devices=8)
  multi = str(tmp_path / "multi")
  port = _free_port()
  procs = fresh_interpreter.run_together(
      [_command(multi, *common, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                f"--process_id={i}", "--initialization_timeout=120") for i in range(2)],
      _env(devices=4), 300)
  for p in procs:
    assert p.returncode == 0, p.stderr[-4000:]
  want, got = losses(single), losses(multi)
  assert sorted(got) == [1, 2, 3]
  for step, loss in want.items():
    assert abs(got[step] - loss) <= 1e-5 * abs(loss)
  assert checkpoint_steps(multi) == [3]
  with open(os.path.join(multi, "checkpoints", "3", "data", "metadata")) as f:
    assert json.load(f) == {"synthetic_step": 3}  # inside the step: committed with it
  assert not os.path.exists(os.path.join(multi, "data_state"))


def test_resume_on_the_real_input_pipeline_reproduces_losses(tmp_path):
  real = ["--config.synthetic_data=False", "--config.vocab_from_tokenizer=True",
          "--config.total_steps=12", "--config.log_every_steps=2"]
  straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
  train(straight, *real)
  train(split, *real, "--config.stop_at_step=6")
  train(split, *real)
  assert losses(split) == losses(straight)
  assert sorted(losses(straight)) == list(range(2, 13, 2))


def test_init_from_loads_converted_params_before_the_first_step(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from glm_jax.modeling import model  # pylint: disable=g-import-not-at-top
  from glm_jax.storage import params_io
  cfg = model.GLMConfig(vocab_size=256, num_layers=1, hidden_size=64, num_heads=2,
                        max_sequence_length=32)
  params = model.init_params(cfg, jax.random.PRNGKey(7))
  params["final_layernorm"]["scale"] = params["final_layernorm"]["scale"] * 0  # logits all 0
  params_io.save_params(str(tmp_path / "converted"), params)
  workdir = str(tmp_path / "run")
  proc = train(workdir, f"--config.init_from={tmp_path / 'converted'}", "--config.total_steps=1")
  assert "Initialised params from" in proc.stdout
  # Zero logits give exactly ln(vocab) on the first step: the loaded params were used.
  assert abs(losses(workdir)[1] - math.log(256)) < 1e-4


def test_unreadable_data_is_one_clear_message_not_a_traceback(tmp_path):
  empty = tmp_path / "corpus"
  empty.mkdir()
  (empty / "a.txt").write_text("")
  for override, message in [(f"--config.data.files={tmp_path}/missing/*.txt", "no files match"),
                            (f"--config.data.files={empty}/*.txt", "no text")]:
    result = subprocess.run(
        [sys.executable, "-m", "glm_jax.train", "--config=configs/tiny.py",
         f"--workdir={tmp_path / 'run'}", "--config.data.source=files",
         f"--config.data.tokenizer_cache_dir={tmp_path / 'tok'}", override],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "glm_jax.train: bad data:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr

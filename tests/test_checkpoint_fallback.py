"""A checkpoint whose blobs were truncated after the commit (an interrupted copy to or from a
bucket) is named in one line, moved aside (never deleted), and the run resumes from the older one."""

import os
import shutil

import pytest

from tests import fresh_interpreter
from tests.test_train_cli import (_command, _env, _free_port, checkpoint_steps, losses,
                                  train)

RUN = ["--config.total_steps=6", "--config.checkpoint_every_steps=2"]


def _truncate_blobs(checkpoint_dir):
  """Cuts every data blob of an Orbax checkpoint to 10 bytes, leaving its commit markers."""
  cut = 0
  for root, _, files in os.walk(checkpoint_dir):
    if os.path.basename(root) == "d":
      for name in files:
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(10)
        cut += 1
  assert cut, f"no blobs under {checkpoint_dir}"


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A workdir stopped at step 4 with checkpoints 2 and 4, and its logged losses."""
  workdir = str(tmp_path_factory.mktemp("two") / "run")
  train(workdir, *RUN, "--config.stop_at_step=4")
  assert checkpoint_steps(workdir) == [2, 4]
  return workdir, losses(workdir)


def _corrupted_copy(two_checkpoints, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(two_checkpoints[0], workdir)
  _truncate_blobs(os.path.join(workdir, "checkpoints", "4"))
  return workdir


@pytest.mark.slow
def test_unreadable_latest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_older(
    two_checkpoints, tmp_path):
  workdir = _corrupted_copy(two_checkpoints, tmp_path)
  proc = train(workdir, *RUN)
  warning = [l for l in proc.stderr.splitlines() if "cannot be read" in l]
  assert len(warning) == 1, proc.stderr[-3000:]              # a warning: stderr
  assert "step 4" in warning[0] and os.path.join(workdir, "checkpoints", "4") in warning[0]
  assert "Error reading" in warning[0]          # TensorStore's own reason, not a traceback
  assert f"Resumed from {os.path.join(workdir, 'checkpoints')}/2." in proc.stdout
  assert "Done at step 6" in proc.stdout
  # Kept for inspection, out of the way: step 4 was saved again by the resumed run.
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "4.unreadable", "state"))
  assert os.path.isfile(os.path.join(workdir, "checkpoints", "4.unreadable", "data", "metadata"))
  assert checkpoint_steps(workdir) == [2, 4, 6]
  resumed, before = losses(workdir), two_checkpoints[1]
  assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
  for step in (3, 4):                           # the same steps again, from the same state
    assert resumed[step] == before[step]


@pytest.mark.slow
def test_without_restore_fallback_the_bad_checkpoint_is_one_line_and_nothing_moves(
    two_checkpoints, tmp_path):
  workdir = _corrupted_copy(two_checkpoints, tmp_path)
  proc = train(workdir, *RUN, "--config.restore_fallback=False", expect_rc=2)
  lines = [l for l in proc.stderr.splitlines() if l.startswith("glm_jax.train:")]
  assert len(lines) == 1 and "Checkpoint step 4" in lines[0] and "Error reading" in lines[0]
  assert "restore_fallback" in lines[0]
  assert "Traceback" not in proc.stderr
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]


@pytest.mark.slow
def test_two_processes_agree_to_set_the_bad_checkpoint_aside_and_resume(tmp_path):
  workdir = str(tmp_path / "run")
  two = ["--config.global_batch_size=16", "--config.mesh.fsdp=2"]

  def run_two(*extra):
    port = _free_port()
    procs = fresh_interpreter.run_together(
        [_command(workdir, *RUN, *two, *extra, f"--coordinator_address=127.0.0.1:{port}",
                  "--num_processes=2", f"--process_id={i}", "--initialization_timeout=120")
         for i in range(2)], _env(devices=2), 240)
    for p in procs:
      assert p.returncode == 0, p.stderr[-4000:]
    return procs[0].stdout + procs[0].stderr

  run_two("--config.stop_at_step=4")
  _truncate_blobs(os.path.join(workdir, "checkpoints", "4"))
  out = run_two()
  assert "Checkpoint step 4" in out and "cannot be read" in out
  assert "Done at step 6" in out
  assert checkpoint_steps(workdir) == [2, 4, 6]
  assert os.path.isfile(os.path.join(workdir, "checkpoints", "4.unreadable", "data", "metadata"))

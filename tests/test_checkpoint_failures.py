"""A full disk during a save, and Ctrl-C: one line each, the previous checkpoint restorable, the
next run resumes from it, metrics.jsonl only appended to."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests import fresh_interpreter
from tests.test_train_cli import ROOT, _command, _env, checkpoint_steps, losses

RUN = ["--config.total_steps=6", "--config.checkpoint_every_steps=2"]


def _mount_small_tmpfs(folder, size):
  """Mounts a tmpfs of `size` at `folder`; False where this machine does not allow it."""
  if os.geteuid() != 0 or not shutil.which("mount"):
    return False
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                        capture_output=True).returncode == 0


def _stderr_lines(proc):
  return [l for l in proc.stderr.splitlines() if l.strip()]


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_and_the_next_run_resumes(tmp_path):
  disk = tempfile.mkdtemp(dir=tmp_path)
  real_disk = _mount_small_tmpfs(disk, "1300k")   # one checkpoint (~0.9 MB) fits, two do not
  try:
    workdir = os.path.join(disk, "run")
    if real_disk:
      proc = subprocess.run(_command(workdir, *RUN), cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=300)
    else:   # no tmpfs here: every write of step 4's checkpoint fails with ENOSPC
      proc = fresh_interpreter.run("train_on_a_full_disk", "4",
                                   *_command(workdir, *RUN)[3:], devices=1, timeout=300)
    lines = _stderr_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-4000:]
    assert "step 4" in lines[0] and "no space left on device" in lines[0]
    assert "free there" in lines[0] and "step 2 is intact" in lines[0]
    assert os.path.join(workdir, "checkpoints") in lines[0]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]   # partial removed
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2", "data"))   # its iterator state
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      logged = f.read()
    if real_disk:
      subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
    proc = subprocess.run(_command(workdir, *RUN), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"Resumed from {os.path.join(workdir, 'checkpoints')}/2." in proc.stdout
    assert checkpoint_steps(workdir) == [2, 4, 6]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      assert f.read().startswith(logged)          # appended to, never truncated
    assert sorted(losses(workdir)) == [1, 2, 3, 4, 5, 6]
  finally:
    if real_disk:
      subprocess.run(["umount", disk], check=False)


def _wait_for_logged_steps(proc, metrics, n, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= n:
      return
    time.sleep(0.02)
  raise AssertionError("the run did not log its first steps")


@pytest.mark.slow
def test_ctrl_c_saves_like_sigterm_and_a_second_ctrl_c_stops_at_once(tmp_path):
  workdir = str(tmp_path / "run")
  steps = ["--config.total_steps=100000", "--config.checkpoint_every_steps=100000"]
  proc = subprocess.Popen(_command(workdir, *steps), cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for_logged_steps(proc, os.path.join(workdir, "metrics.jsonl"), 3)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-2000:] + err[-4000:]
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1 and "Interrupted" in lines[0] and "Ctrl-C again" in lines[0], err
  assert "Interrupted: saved a checkpoint at step" in out
  (saved,) = checkpoint_steps(workdir)
  assert saved >= 3


def test_a_second_ctrl_c_stops_at_once_in_one_line(monkeypatch, capsys):
  """Two SIGINTs sent together reach Python as one, so the second is the handler's own test."""
  from glm_jax.training import train_loop  # pylint: disable=g-import-not-at-top

  class Exited(Exception):
    pass

  def exit_now(code):
    raise Exited(code)

  monkeypatch.setattr(train_loop.os, "_exit", exit_now)
  preemption = train_loop.Preemption(checkpointer=None)
  try:
    preemption._interrupt(signal.SIGINT, None)  # pylint: disable=protected-access
    assert preemption.reached(1) and preemption.interrupted
    with pytest.raises(Exited) as exited:
      preemption._interrupt(signal.SIGINT, None)  # pylint: disable=protected-access
  finally:
    preemption.restore()
  assert exited.value.args == (130,)
  lines = capsys.readouterr().err.splitlines()
  assert lines[-1] == "Interrupted again: stopped without saving; the last checkpoint is kept."
  assert len(lines) == 2 and "Ctrl-C again" in lines[0]
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_saves_even_when_a_library_imported_ipython():
  """IPython imported (by some dependency) but no shell running: the command line's Ctrl-C
  still saves; only a live IPython shell or kernel keeps its own."""
  IPython = pytest.importorskip("IPython")
  from glm_jax.training import train_loop  # pylint: disable=g-import-not-at-top
  assert IPython.get_ipython() is None
  preemption = train_loop.Preemption(checkpointer=None)
  try:
    assert signal.getsignal(signal.SIGINT) == preemption._interrupt  # pylint: disable=protected-access
  finally:
    preemption.restore()

"""Multi-process training on the real default corpus ends cleanly on every process.

The end-of-run sample runs over params spread across both processes; if only process 0 ran it,
process 0 would wait for the other forever (the hang this guards against).
"""

import sys

import pytest

from tests import fresh_interpreter
from tests.test_train_cli import _env, _free_port


@pytest.mark.slow
def test_two_processes_on_the_default_corpus_with_the_sample_both_exit_zero(tmp_path):
  port = _free_port()
  workdir = str(tmp_path / "run")
  procs = fresh_interpreter.run_together(
      [[sys.executable, "-m", "glm_jax.train", "--config=configs/tiny.py", f"--workdir={workdir}",
        "--config.total_steps=2", "--config.log_every_steps=1", "--config.eval_every_steps=0",
        "--config.mesh.fsdp=2", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
        f"--process_id={i}", "--initialization_timeout=120"] for i in range(2)],
      _env(devices=2), 240)
  for p in procs:
    assert p.returncode == 0, p.stderr[-4000:]
  out0 = procs[0].stdout
  assert "Done at step 2" in out0
  assert "Sample: In the beginning God created the [[" in out0

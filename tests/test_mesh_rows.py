"""Rows follow the mesh: 2 processes x 4 fake devices train and evaluate exactly as 1 x 8.

One 2-process launch and one 1-process launch each run three layouts in sequence
(tests/fresh_interpreter/mesh_rows_runs.py): tensor=8 (both processes hold, so both read, the same
rows), data=2,tensor=4 (each process holds one row block) and fsdp=8. The corpus is two files of
5000 and 100 lines with 5% held out: on data=2,tensor=4 process 1's eval block runs out after one
batch while process 0's has many, so eval must pad with zero-weight rows to stay in step.
"""

import os
import sys

import pytest

from tests import fresh_interpreter
from tests.test_train_cli import _env, _free_port

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  from input_pipeline import config as config_lib, sources, tokenizer as tokenizer_lib
  root = tmp_path_factory.mktemp("two_files")
  words = " ".join(sources.kjv_chapters()).split()
  lines = [" ".join(words[i * 25:(i + 1) * 25]) for i in range(5100)]
  (root / "big.txt").write_text("\n".join(lines[:5000]) + "\n")
  (root / "small.txt").write_text("\n".join(lines[5000:]) + "\n")
  cfg = config_lib.default_data_config()
  cfg.source, cfg.files, cfg.vocab_size = "files", str(root / "*.txt"), 400
  tok = tokenizer_lib.load_or_train(cfg, str(tmp_path_factory.mktemp("tok")))
  return cfg.files, tok.model_path


def _launch(args, processes, devices):
  port = _free_port()
  extra = [[str(i), str(processes), str(port)] for i in range(processes)] if processes > 1 else [[]]
  procs = fresh_interpreter.run_together(
      [[sys.executable, "-m", "tests.fresh_interpreter.mesh_rows_runs", *args, *e] for e in extra],
      _env(devices), 900)
  for p in procs:
    assert p.returncode == 0, p.stderr[-4000:]
  return fresh_interpreter.last_json(procs[0])


@pytest.mark.slow
def test_two_processes_log_the_losses_and_eval_losses_of_one(corpus, tmp_path):
  files, model = corpus
  two = _launch([str(tmp_path / "two"), files, model], processes=2, devices=4)
  one = _launch([str(tmp_path / "one"), files, model], processes=1, devices=8)
  assert set(two) == set(one) == {"tensor8", "data2_tensor4", "fsdp8"}
  for layout in one:
    for key in ("loss", "eval_loss"):
      want, got = one[layout][key], two[layout][key]
      assert sorted(want) == sorted(got) and len(want) == (5 if key == "loss" else 2), (layout, key)
      for step in want:
        assert abs(got[step] - want[step]) <= TOLERANCE * abs(want[step]), (layout, key, got, want)


@pytest.mark.slow
def test_a_mesh_the_batch_cannot_fill_is_one_line_and_exit_2_on_both_processes(tmp_path):
  port = _free_port()
  procs = fresh_interpreter.run_together(
      [[sys.executable, "-m", "glm_jax.train", "--config=configs/tiny.py",
        "--config.synthetic_data=True", "--config.model.vocab_size=256",
        "--config.global_batch_size=4", "--config.mesh.fsdp=8", "--config.mesh.data=1",
        f"--workdir={tmp_path}", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
        f"--process_id={i}", "--initialization_timeout=120"] for i in range(2)],
      _env(devices=4), 240)
  for p in procs:
    err = p.stderr
    lines = [l for l in err.strip().splitlines() if not l.startswith("[Gloo]")]
    assert p.returncode == 2, err[-3000:]
    assert len(lines) == 1 and "mesh" in lines[0] and "global_batch_size" in lines[0], err
    assert "Traceback" not in err
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))

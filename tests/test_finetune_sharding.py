"""Finetuning shards like pretraining: on 8 (fake) devices with data x fsdp x tensor = 2 x 2 x 2
and 2 micro-batches, the first steps' losses equal a 1-device run's; on 2 processes x 4 devices
with the tensor axis across them, the losses and the dev score equal 1 process x 8 devices'."""

import json
import os
import sys

import pytest

from tests import fresh_interpreter

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(tmp_path, name, devices, d, f, t_, accum):
  proc = fresh_interpreter.run("finetune_losses", tmp_path, tmp_path / name, d, f, t_, accum,
                               devices=devices)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return _losses_and_best(proc.stdout)[0]


def _losses_and_best(stdout):
  losses, best = [json.loads(l) for l in stdout.strip().splitlines()[-2:]]
  return {int(k): v for k, v in losses.items()}, best


def _write_data(tmp_path, task="boolq"):
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import test_finetune, test_finetune_seq2seq  # pylint: disable=g-import-not-at-top
  if task == "boolq":
    test_finetune.write_synthetic_boolq(tmp_path, sizes=(32, 8, 0))
  else:
    test_finetune_seq2seq.write_copy_task(tmp_path, sizes=(32, 8, 0))


def test_sharded_finetune_steps_equal_one_device(tmp_path):
  _write_data(tmp_path)
  one = run_script(tmp_path, "one", 1, 0, 0, 0, 1)
  sharded = run_script(tmp_path, "sharded", 8, 2, 2, 2, 2)
  assert sorted(one) == sorted(sharded) == [1, 2]
  for step in one:
    assert sharded[step] == pytest.approx(one[step], rel=2e-4), step


@pytest.mark.parametrize("task", ["boolq", "seq2seq"])
def test_two_processes_with_the_tensor_axis_across_them_finetune_and_score_like_one(tmp_path,
                                                                                    task):
  """tensor=8 over 2 x 4 devices: both processes hold every row, so both must build the same
  16 rows (not 8 each); dev scoring (cloze) and beam decoding (seq2seq, ROUGE) run the same
  batches on both."""
  from tests.test_train_cli import _env, _free_port  # pylint: disable=g-import-not-at-top
  _write_data(tmp_path, task)
  one, one_best = _losses_and_best(fresh_interpreter.run(
      "finetune_losses", tmp_path, tmp_path / "one", 1, 1, 8, 1, devices=8).stdout)
  port = _free_port()
  procs = fresh_interpreter.run_together(
      [[sys.executable, "-m", "tests.fresh_interpreter.finetune_losses", tmp_path,
        tmp_path / "two", 1, 1, 8, 1, i, 2, port] for i in range(2)], _env(devices=4), 600)
  for p in procs:
    assert p.returncode == 0, p.stderr[-3000:]
  two, two_best = _losses_and_best(procs[0].stdout)
  assert sorted(one) == sorted(two) == [1, 2]
  for step in one:
    assert two[step] == pytest.approx(one[step], rel=1e-5), step
  assert two_best["metric"] == one_best["metric"] and two_best["value"] == one_best["value"]

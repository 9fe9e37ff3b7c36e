"""Finetuning shards like pretraining: on 8 (fake) devices with data x fsdp x tensor = 2 x 2 x 2
and 2 micro-batches, the first steps' losses equal a 1-device run's."""

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
  return {int(k): v for k, v in fresh_interpreter.last_json(proc).items()}


def test_sharded_finetune_steps_equal_one_device(tmp_path):
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import test_finetune  # pylint: disable=g-import-not-at-top
  test_finetune.write_synthetic_boolq(tmp_path, sizes=(32, 8, 0))
  one = run_script(tmp_path, "one", 1, 0, 0, 0, 1)
  sharded = run_script(tmp_path, "sharded", 8, 2, 2, 2, 2)
  assert sorted(one) == sorted(sharded) == [1, 2]
  for step in one:
    assert sharded[step] == pytest.approx(one[step], rel=2e-4), step

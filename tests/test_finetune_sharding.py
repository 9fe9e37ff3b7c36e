"""Finetuning shards like pretraining: on 8 (fake) devices with data x fsdp x tensor = 2 x 2 x 2
and 2 micro-batches, the first steps' losses equal a 1-device run's."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import test_finetune as t
import pathlib
data = pathlib.Path({data!r})
mesh = dict(data={d}, fsdp={f}, tensor={t_}) if {d} else None
overrides = dict(epochs=1, grad_accum_steps={accum})
config = t.tiny_config(data, **overrides)
if mesh:
  config.mesh.update(mesh)
t.run(config, pathlib.Path({work!r}))
print(json.dumps(t.losses({work!r})))
"""


def run_script(tmp_path, name, devices, d, f, t_, accum):
  code = SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"), data=str(tmp_path),
                       work=str(tmp_path / name), d=d, f=f, t_=t_, accum=accum)
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def test_sharded_finetune_steps_equal_one_device(tmp_path):
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import test_finetune  # pylint: disable=g-import-not-at-top
  test_finetune.write_synthetic_boolq(tmp_path, sizes=(32, 8, 0))
  one = run_script(tmp_path, "one", 1, 0, 0, 0, 1)
  sharded = run_script(tmp_path, "sharded", 8, 2, 2, 2, 2)
  assert sorted(one) == sorted(sharded) == [1, 2]
  for step in one:
    assert sharded[step] == pytest.approx(one[step], rel=2e-4), step

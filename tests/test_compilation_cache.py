"""The persistent compilation cache: a second start of the same tiny run loads its compiled
programs (time to first step at most half the first start's); a changed config compiles anew
and trains exactly as it does with the cache off."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_train_cli import ROOT, _env

TINY = ["--config=configs/tiny.py", "--config.synthetic_data=True", "--config.tensorboard=False",
        "--config.sample_tokens=0", "--config.total_steps=2", "--config.log_every_steps=1",
        "--config.eval_every_steps=0", "--config.warmup_ratio=0.0"]


def _train(workdir, cache, *extra):
  proc = subprocess.run(
      [sys.executable, "-m", "glm_jax.train", *TINY, f"--workdir={workdir}",
       f"--config.compilation_cache_dir={cache}", *extra],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r["loss"] for r in records], records[0]["time_to_first_step_s"]


def _programs(cache):
  return sorted(os.listdir(cache))


@pytest.mark.slow
def test_second_start_compiles_from_the_cache_and_a_changed_config_does_not_reuse_it(tmp_path):
  cache = str(tmp_path / "cache")
  cold_losses, cold = _train(tmp_path / "cold", cache)
  programs = _programs(cache)
  assert any(p.startswith("jit_train_step-") for p in programs), programs
  warm_losses, warm = _train(tmp_path / "warm", cache)
  assert warm_losses == cold_losses
  assert _programs(cache) == programs  # nothing new compiled
  assert warm <= 0.5 * cold, (warm, cold)

  changed_losses, _ = _train(tmp_path / "changed", cache, "--config.learning_rate=3e-3")
  new = set(_programs(cache)) - set(programs)
  assert any(p.startswith("jit_train_step-") for p in new), new  # a new step, not the stale one
  uncached_losses, _ = _train(tmp_path / "uncached", "", "--config.learning_rate=3e-3")
  assert changed_losses == uncached_losses
  assert changed_losses[1] != cold_losses[1]
  assert not os.path.exists(tmp_path / "uncached" / "compilation_cache")


def test_default_cache_lives_in_the_workdir_and_empty_is_off():
  from configs import tiny
  from glm_jax.storage import compilation_cache
  default = tiny.get_config().compilation_cache_dir
  assert compilation_cache.resolve(default, "/runs/a") == "/runs/a/compilation_cache"
  assert compilation_cache.resolve("", "/runs/a") == ""

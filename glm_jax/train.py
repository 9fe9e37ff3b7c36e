"""GLM pretraining:
`python -m glm_jax.train --config=configs/base.py [--config.key=value] [--workdir=DIR]`.

The command line only (the loop is glm_jax.training.train_loop): start the processes -> check the
config -> build the mesh -> `train_loop.train_and_evaluate`. Re-running the same command in the same
workdir resumes from the last checkpoint; SIGTERM (a preemption) saves a checkpoint and exits
cleanly.

`--compile_only --topology=v5p:4x4x4` only compiles the step for a TPU slice and reports its
per-chip memory (glm_jax/training/aot.py); `train_loop.run(config, workdir)` is the same run from
Python.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
import flax.linen as nn
import jax
from ml_collections import config_flags

from glm_jax import cli
from glm_jax import hosts
from glm_jax import run_flags
from glm_jax.modeling import sharding
from glm_jax.training import train_loop

flags.adopt_module_key_flags(run_flags)  # --config, --workdir, --compile_only, ...: train's own


def default_workdir() -> str:
  """/tmp/glm_jax/<config name>: where a run writes when --workdir is not given."""
  name = os.path.splitext(
      os.path.basename(config_flags.get_config_filename(flags.FLAGS["config"])))[0]
  return os.path.join("/tmp/glm_jax", name)


def main(argv) -> None:
  """The train CLI: flags -> config checks -> `train_and_evaluate` (or --compile_only)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  if run_flags.COMPILE_ONLY.value:
    compile_only(cli.loaded_config(run_flags.CONFIG, "configs/tiny.py"), run_flags.TOPOLOGY.value,
                 run_flags.NUM_SLICES.value, run_flags.HLO_DUMP.value)
  hosts.initialize()
  config = cli.loaded_config(run_flags.CONFIG, "configs/tiny.py")
  config = train_loop.prepare_config(config)  # a bad config or data source: one line from cli.run
  workdir = run_flags.WORKDIR.value or default_workdir()
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    train_loop.train_and_evaluate(config, workdir, mesh)


def compile_only(config, topology: str | None, num_slices: int = 1,
                 hlo_dump: str | None = None) -> None:
  """--compile_only: one JSON report line, then exit (0 fits, 1 does not, 2 bad input)."""
  if config is None:
    raise app.UsageError("Pass --config=configs/<name>.py (e.g. configs/tiny.py).")
  if not topology:
    raise app.UsageError("--compile_only needs --topology, e.g. --topology=v5p:4x4x4.")
  from glm_jax.training import aot  # pylint: disable=g-import-not-at-top
  sys.exit(aot.main(config, topology, num_slices, hlo_dump))


def parse_flags(argv):
  """absl parsing with the error contract (cli.parse_flags): one line, exit status 2."""
  return cli.parse_flags(argv, "glm_jax.train")


if __name__ == "__main__":
  cli.run(main, program="glm_jax.train")

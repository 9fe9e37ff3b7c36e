"""Scripts the tests run in a fresh Python interpreter, and the one runner that starts them.

A fresh interpreter is needed where JAX must start with another device count (fake CPU devices are
fixed by XLA_FLAGS before JAX imports), where the check is about what a clean process imports, or
where the process needs an environment of its own (a storage emulator). Each script is a module here
with a `main()` that prints its result (JSON on its last line where it reports numbers).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script, *args, devices=8, env=None, timeout=600) -> subprocess.CompletedProcess:
  """Runs `python -m tests.fresh_interpreter.<script> *args` from the repository root.

  `devices` fake CPU devices (JAX_PLATFORMS=cpu); `devices=None` leaves the platform and XLA_FLAGS
  as they are (for scripts that compile for a TPU topology). `env` replaces variables last.
  """
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  if devices is not None:
    environment.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                       JAX_PLATFORMS="cpu")
  environment.update(env or {})
  return subprocess.run([sys.executable, "-m", f"{__name__}.{script}", *map(str, args)], cwd=ROOT,
                        env=environment, capture_output=True, text=True, timeout=timeout)


def last_json(proc: subprocess.CompletedProcess):
  """The JSON a script printed on its last line of output."""
  return json.loads(proc.stdout.strip().splitlines()[-1])

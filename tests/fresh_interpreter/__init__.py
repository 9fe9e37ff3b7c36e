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


def run_together(commands, env, timeout) -> list[subprocess.CompletedProcess]:
  """Starts every command at once (the processes of one multi-process run, which wait for each
  other), waits for all up to `timeout` seconds each, and kills any left running, so a hung
  peer never outlives the test. Returns one CompletedProcess per command, in order."""
  procs = [subprocess.Popen(list(map(str, c)), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for c in commands]
  done = []
  try:
    for p, command in zip(procs, commands):
      out, err = p.communicate(timeout=timeout)
      done.append(subprocess.CompletedProcess(command, p.returncode, out, err))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return done


def last_json(proc: subprocess.CompletedProcess):
  """The JSON a script printed on its last line of output."""
  return json.loads(proc.stdout.strip().splitlines()[-1])

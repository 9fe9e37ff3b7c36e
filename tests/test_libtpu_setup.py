"""`import glm_jax` gives libtpu its stack flags before JAX loads, keeping flags the user set."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed")
def test_import_glm_jax_adds_the_stack_flags_and_keeps_the_users():
  code = ("import os, sys, glm_jax; print('jax' in sys.modules); "
          "print(os.environ['LIBTPU_INIT_ARGS'])")
  env = dict(os.environ, PYTHONPATH=ROOT,
             LIBTPU_INIT_ARGS="--default_thread_stack_size=1234 --xla_tpu_foo=1")
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                        timeout=60, check=True)
  jax_loaded, flags = proc.stdout.splitlines()
  assert jax_loaded == "False"  # set before JAX (and libtpu) load
  flags = flags.split()
  assert "--default_thread_stack_size=1234" in flags and "--xla_tpu_foo=1" in flags
  assert "--fibers_default_thread_stack_size=268435456" in flags
  assert "--xla_internal_thread_stack_size_bytes=268435456" in flags
  assert not any(f.startswith("--default_thread_stack_size=2") for f in flags)

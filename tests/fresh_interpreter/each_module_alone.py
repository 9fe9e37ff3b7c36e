"""Imports each of our modules alone, in a child forked from an interpreter that has loaded
only third-party libraries: what a fresh interpreter would do, without paying for JAX and
TensorFlow once per module (80 fresh interpreters took minutes). Prints one `module: error` line
per failure, then `done N failures F`. Run by tests/test_imports.py."""

import os
import sys
import traceback

import absl.flags  # noqa: F401  third-party only: none of these imports a module of ours
import etils.epath  # noqa: F401
import flax.linen  # noqa: F401
import jax  # noqa: F401
import ml_collections  # noqa: F401
import numpy  # noqa: F401
import optax  # noqa: F401
import orbax.checkpoint  # noqa: F401
import sentencepiece  # noqa: F401
import tensorflow  # noqa: F401


def main(modules):
  failures = 0
  for module in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
      os.close(read)
      code = 0
      try:
        __import__(module)
      except BaseException:  # pylint: disable=broad-except
        os.write(write, traceback.format_exc().strip().splitlines()[-1].encode())
        code = 1
      os._exit(code)
    os.close(write)
    message = os.read(read, 4096).decode()
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if status != 0:
      failures += 1
      print(f"{module}: {message or f'exit status {status}'}", flush=True)
  print("done", len(modules), "failures", failures)


if __name__ == "__main__":
  main(sys.argv[1:])

"""Runs `glm_jax.train --compile_only` for two v5e:2x2 slices; says whether TensorFlow got imported.

Prints the command's JSON report, then `tensorflow imported: <bool> exit: <code>` as the last line.
Needs a clean interpreter (nothing imported TensorFlow before) and libtpu; run by tests/test_aot.py.
"""

import runpy
import sys


def main():
  sys.argv = ["glm_jax.train", "--compile_only", "--config=configs/tiny.py", "--topology=v5e:2x2",
              "--num_slices=2"]
  try:
    runpy.run_module("glm_jax.train", run_name="__main__")
  except SystemExit as e:
    print("tensorflow imported:", "tensorflow" in sys.modules, "exit:", e.code)


if __name__ == "__main__":
  main()

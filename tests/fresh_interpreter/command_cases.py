"""Runs many command lines of the glm_jax CLIs in one interpreter, as `python -m` would run them.

Usage: python -m tests.fresh_interpreter.command_cases CASES.json
CASES.json: a list of [module, argv...] (module: glm_jax.generate, glm_jax.evaluate,
glm_jax.extract_params, glm_jax.convert, glm_jax.train, glm_jax.finetune). Each case defines the
command's flags exactly as its `__main__` block does, runs `cli.run(main)`, and records the exit
status, stdout and stderr; then its flags are removed so the next case starts clean (JAX and
TensorFlow are imported once: a case costs its own work, not an interpreter start).
train and finetune define their flags at import, so they cannot share a run with extract_params
(both have --workdir): pass them in a CASES file of their own.
Prints one JSON list of {"rc", "stdout", "stderr"}.
"""

import contextlib
import importlib
import io
import json
import sys

from absl import app
from absl import flags

from glm_jax import cli


def _define(module: str):
  """Defines the command's flags as `python -m module` does; returns (main, program)."""
  if module == "glm_jax.generate":
    from glm_jax import generate
    generate._define_flags()  # pylint: disable=protected-access
    return generate.main, ""
  if module == "glm_jax.evaluate":
    from glm_jax import evaluate
    evaluate._define_flags()  # pylint: disable=protected-access
    return evaluate.main, ""
  if module == "glm_jax.extract_params":
    from glm_jax import extract_params
    extract_params.define_flags()
    return extract_params.main, ""
  lib = importlib.import_module(module)   # train / finetune: flags defined at import
  return lib.main, module


def run_case(module: str, argv: list[str]) -> dict:
  if module in ("glm_jax.train", "glm_jax.finetune"):
    importlib.import_module(module)   # its flags stay: they are defined once, at import
  before = set(flags.FLAGS)
  out, err = io.StringIO(), io.StringIO()
  rc = 0
  sys.argv = [module.replace(".", "/") + ".py", *argv]
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      if module == "glm_jax.convert":
        from glm_jax import convert  # pylint: disable=g-import-not-at-top
        convert.command_line()
      else:
        main, program = _define(module)
        cli.run(main, program=program)
    except SystemExit as e:
      rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except (what `python -m` would print)
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
      rc = 1
  for name in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main():
  app.define_help_flags()   # absl defines --help at its first run; here, before any case
  with open(sys.argv[1]) as f:
    cases = json.load(f)
  print(json.dumps([run_case(case[0], case[1:]) for case in cases]))


if __name__ == "__main__":
  main()

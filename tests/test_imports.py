"""The import graph of glm_jax and input_pipeline: no cycles, leaves that stay leaves."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

from tests import fresh_interpreter

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("glm_jax", "input_pipeline")


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(module: str) -> set[str]:
  """Our modules that `module` imports anywhere in its body (top level or inside a function)."""
  found = set()
  for node in ast.walk(ast.parse(MODULES[module].read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    else:
      continue
    found.update(n for n in names if n in MODULES and n != module)
  return found


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle through `start` (as a path of module names), or None."""
  stack, seen = [(start, [start])], set()
  while stack:
    module, path = stack.pop()
    for dep in sorted(graph[module]):
      if dep == start:
        return path + [start]
      if dep not in seen:
        seen.add(dep)
        stack.append((dep, path + [dep]))
  return None


def test_no_module_imports_itself_back_even_through_a_deferred_import():
  # A cycle that only works because one side imports inside a function still breaks when the
  # modules are imported in another order (or run with python -m); the graph counts those too.
  graph = {m: _imports(m) for m in MODULES}
  cycles = [c for c in (_cycle_from(m, graph) for m in MODULES) if c]
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_errors_is_a_leaf_and_cli_needs_only_errors():
  # glm_jax.errors builds on the data package's errors (UserError lives there), itself a leaf.
  assert _imports("glm_jax.errors") == {"input_pipeline.errors"}
  assert _imports("input_pipeline.errors") == set()
  assert _imports("glm_jax.cli") - {"glm_jax"} == {"glm_jax.errors"}


PIPELINE_MODULES = sorted(m for m in MODULES if m.split(".")[0] == "input_pipeline")


def test_no_input_pipeline_module_names_a_glm_jax_module():
  # Statically, anywhere in the body (deferred imports included): the data package stands alone.
  offenders = {}
  for module in PIPELINE_MODULES:
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module or ""]
      else:
        continue
      bad = [n for n in names if n.split(".")[0] == "glm_jax"]
      if bad:
        offenders.setdefault(module, []).extend(bad)
  assert not offenders, f"input_pipeline modules importing glm_jax: {offenders}"


@pytest.mark.slow  # a fresh interpreter: about 6 s
def test_importing_every_input_pipeline_module_loads_no_glm_jax_module():
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
  code = (f"import sys; import {', '.join(PIPELINE_MODULES)}; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'glm_jax'))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_each_module_imports_alone_in_a_fresh_interpreter():
  # Each in its own child of an interpreter holding only third-party libraries (see the script).
  proc = fresh_interpreter.run("each_module_alone", *MODULES, devices=1, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  failures = lines[:-1]
  assert not failures, "\n".join(failures)
  assert lines[-1] == f"done {len(MODULES)} failures 0"

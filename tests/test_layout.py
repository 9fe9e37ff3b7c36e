"""The README's layout block names every module, each module stays under 600 lines, and the
modules of the two packages appear in the block under their own package."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("glm_jax", "input_pipeline")
MAX_LINES = 600


def _layout_sections() -> dict:
  """{top-level folder: the layout block's text for it}, from README.md's `## Layout`."""
  readme = (ROOT / "README.md").read_text()
  block = re.search(r"## Layout\s+```\n(.*?)```", readme, re.S).group(1)
  sections, current = {}, None
  for line in block.splitlines():
    head = re.match(r"([a-z_]+)/ ", line)
    if head:
      current = head.group(1)
    sections[current] = sections.get(current, "") + line + "\n"
  return sections


def _modules(package: str):
  for path in sorted((ROOT / package).rglob("*.py")):
    relative = path.relative_to(ROOT / package).as_posix()
    if relative.endswith("__init__.py") and len(path.read_text().splitlines()) < 10:
      continue  # a package's docstring only
    yield path, relative


def test_the_layout_block_lists_every_module_under_its_package():
  sections = _layout_sections()
  missing = [f"{package}/{relative}" for package in PACKAGES for _, relative in _modules(package)
             if not re.search(rf"(^|[\s(]){re.escape(relative)}\b", sections.get(package, ""), re.M)]
  assert not missing, f"README.md's layout block does not list: {missing}"


def test_no_module_is_over_600_lines():
  long = {f"{package}/{relative}": n for package in PACKAGES for path, relative in _modules(package)
          if (n := len(path.read_text().splitlines())) > MAX_LINES}
  assert not long, long


def test_no_benchmark_script_can_shadow_a_project_package():
  """`python benchmarks/X.py` puts benchmarks/ on sys.path: a script named like a package of ours
  (benchmarks/input_pipeline.py did) would be imported in its place by every glm_jax module that
  needs the package, and a script that moves its own folder ahead of the root makes it so."""
  packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
  scripts = {p.stem: p.read_text() for p in (ROOT / "benchmarks").glob("*.py")}
  assert not packages & set(scripts), packages & set(scripts)
  own_folder_first = [name for name, text in scripts.items()
                      if "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))" in text]
  assert not own_folder_first, own_folder_first

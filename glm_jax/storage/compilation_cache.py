"""The persistent compilation cache: a restarted run loads its compiled steps instead of
recompiling them (200-400 s for GLM-10B after every preemption otherwise).

JAX keys each entry by the program, its shardings, the compiler options and the JAX/XLA versions,
so a changed config (shapes, mesh, a constant folded into the step) compiles anew and never reuses
a stale program. Every command calls `enable` once, before it compiles anything.
"""

from __future__ import annotations

import jax
from jax.experimental.compilation_cache import compilation_cache

from glm_jax.storage import paths

# Where generate and evaluate (no workdir) keep it; training keeps it in its workdir.
TOOLS_DEFAULT = "~/.cache/glm_jax/compilation_cache"


def resolve(directory: str, workdir: str | None = None) -> str:
  """`directory` with `{workdir}` filled in and `~` expanded ('' stays '': off)."""
  if not directory:
    return ""
  if "{workdir}" in directory:
    if workdir is None:
      raise ValueError(f"compilation_cache_dir={directory!r} names {{workdir}} but there is none")
    directory = directory.replace("{workdir}", str(workdir).rstrip("/"))
  return str(paths.as_path(directory))


def enable(directory: str, workdir: str | None = None) -> str:
  """Turns the cache on in `directory` ('' turns it off); returns the folder used ('' = off).

  Every compiled program is cached, however quick it compiled: on a pod the small ones add up.
  """
  directory = resolve(directory, workdir)
  if directory:
    paths.as_path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_enable_compilation_cache", bool(directory))
  compilation_cache.reset_cache()  # the next compile reads the settings above, not earlier ones
  return directory


def define_flag() -> None:
  """--compilation_cache_dir for the commands without a config (generate, evaluate)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("compilation_cache_dir", TOOLS_DEFAULT, "Persistent compilation cache: a "
                      "rerun loads its compiled programs instead of compiling them ('' = off).")

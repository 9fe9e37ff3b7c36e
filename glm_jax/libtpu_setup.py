"""Big stacks for libtpu's compiler, set before JAX loads libtpu (on `import glm_jax`).

libtpu's convolution cost model (`xla::jellyfish::...ConvWindowsCost`, run on fibers and worker
threads) overflows their default stacks on large steps: a GLM-10B compile for v5p:4x4x4 ends in
SIGSEGV without these. libtpu reads `LIBTPU_INIT_ARGS` once, when it loads, so the package sets
them on import, for every command and for notebooks; a flag the user already gave wins.
This module imports nothing but the standard library (it runs before JAX is imported).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

COMPILE_STACK_BYTES = 512 * 1024 ** 2

# Stack sizes for libtpu's threads and fibers (bytes; libtpu caps stacks at 256 MiB).
LIBTPU_STACK_FLAGS = ("--fibers_default_thread_stack_size=268435456",
                      "--default_thread_stack_size=268435456",
                      "--xla_internal_thread_stack_size_bytes=268435456")


def set_stack_flags() -> None:
  """Adds LIBTPU_STACK_FLAGS to LIBTPU_INIT_ARGS, keeping every flag the user set there."""
  args = os.environ.get("LIBTPU_INIT_ARGS", "").split()
  given = {a.split("=")[0] for a in args}
  args += [f for f in LIBTPU_STACK_FLAGS if f.split("=")[0] not in given]
  os.environ["LIBTPU_INIT_ARGS"] = " ".join(args)


def raise_default_thread_stack(stack_bytes: int = COMPILE_STACK_BYTES) -> bool:
  """Gives threads created from now on (libtpu's compiler workers too) a `stack_bytes` stack.

  libtpu compiles on its own worker threads, which take the process's default pthread stack
  (8 MiB): a big Python thread alone does not cover them. glibc only; False where unsupported.
  Only address space is reserved; pages are touched as a thread's stack grows.
  """
  try:
    libc = ctypes.CDLL(None)
    attr = ctypes.create_string_buffer(256)  # > sizeof(pthread_attr_t) on every glibc ABI
    if libc.pthread_attr_init(attr) != 0:
      return False
    try:
      ok = (libc.pthread_attr_setstacksize(attr, ctypes.c_size_t(stack_bytes)) == 0
            and libc.pthread_setattr_default_np(attr) == 0)
    finally:
      libc.pthread_attr_destroy(attr)
    return ok
  except (AttributeError, OSError):
    return False


def libtpu_available() -> bool:
  """Whether libtpu (the TPU compiler) is installed here."""
  return importlib.util.find_spec("libtpu") is not None


def prepare() -> None:
  """Where libtpu is installed: its stack flags, and big default stacks for new threads."""
  if libtpu_available():
    set_stack_flags()
    raise_default_thread_stack()

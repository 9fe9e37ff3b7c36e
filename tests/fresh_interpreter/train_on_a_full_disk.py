"""`python -m glm_jax.train` whose writes of step N's checkpoint fail with ENOSPC.

Usage: python -m tests.fresh_interpreter.train_on_a_full_disk STEP TRAIN_FLAGS...
For machines where a test cannot mount a small tmpfs: the disk is "full" for every file of
checkpoint STEP (its iterator state and Orbax's own metadata writes), as a full disk would refuse
them; everything else is the real command.
"""

import errno
import os
import sys

from etils import epath


def main():
  step = sys.argv.pop(1)
  marker = f"{os.sep}{step}"
  write_text, write_bytes = epath.Path.write_text, epath.Path.write_bytes

  def full(path):
    parts = os.fspath(path)
    if f"checkpoints{marker}." in parts or f"data_state{marker}{os.sep}" in parts:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), parts)

  def refusing_text(self, *args, **kwargs):
    full(self)
    return write_text(self, *args, **kwargs)

  def refusing_bytes(self, *args, **kwargs):
    full(self)
    return write_bytes(self, *args, **kwargs)

  for cls in {type(epath.Path("/")), epath.Path}:
    cls.write_text, cls.write_bytes = refusing_text, refusing_bytes
  from glm_jax import cli, train  # pylint: disable=g-import-not-at-top
  cli.run(train.main, program="glm_jax.train")


if __name__ == "__main__":
  main()

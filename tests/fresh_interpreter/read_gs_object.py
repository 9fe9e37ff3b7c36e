"""Prints a gs:// object's text, read the way the project reads it (etils.epath over gcsfs).

Usage: python -m tests.fresh_interpreter.read_gs_object gs://bucket/path. Run by
tests/test_remote_workdir.py in the storage emulator's environment.
"""

import sys

from etils import epath


def main():
  print(epath.Path(sys.argv[1]).read_text(), end="")


if __name__ == "__main__":
  main()

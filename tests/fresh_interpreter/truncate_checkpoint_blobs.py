"""Cuts a checkpoint's data blobs to 10 bytes, as an interrupted copy would leave them.

Usage: python -m tests.fresh_interpreter.truncate_checkpoint_blobs CHECKPOINT (a gs:// or local step
folder). Prints how many blobs it cut. Run by tests/test_remote_workdir.py in the storage emulator's
environment.
"""

import sys

from etils import epath


def main():
  state = epath.Path(sys.argv[1]) / "state"
  blobs = [f for d in (state / "d", state / "ocdbt.process_0" / "d") if d.exists()
           for f in d.iterdir()]
  for f in blobs:
    f.write_bytes(f.read_bytes()[:10])
  print(len(blobs))


if __name__ == "__main__":
  main()

"""What every command-line entry point shares."""

from absl import flags
from absl import logging


def quiet_logs() -> None:
  """Orbax logs every read and write at INFO; show warnings only unless --verbosity was given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)

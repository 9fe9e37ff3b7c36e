"""What every command-line entry point shares."""

from absl import flags
from absl import logging


def quiet_logs() -> None:
  """Orbax logs every read and write at INFO; show warnings only unless --verbosity was given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def user_errors() -> tuple[type[Exception], ...]:
  """Errors whose message already says what is wrong and how to fix it: no traceback needed."""
  from glm_jax import checkpoint, convert, generate  # pylint: disable=g-import-not-at-top
  from input_pipeline.errors import DataSourceError  # pylint: disable=g-import-not-at-top
  from glm_jax.eval_rows import EvaluationError  # pylint: disable=g-import-not-at-top
  return (FileNotFoundError, checkpoint.CheckpointMismatchError, convert.ConversionError,
          generate.GenerationError, DataSourceError,
          EvaluationError)


def exit_on_user_error(main):
  """Wraps an absl `main` so a user error ends with one line on stderr (exit status 1)."""
  def wrapped(argv):
    try:
      return main(argv)
    except user_errors() as e:
      raise SystemExit(f"error: {e}") from None
  return wrapped

"""Every error a user can fix, in one module that imports only the data package's errors.

Each class derives from `UserError` (defined in `input_pipeline.errors` with the data errors, so
the data package needs nothing of ours), so an entry point needs one `except` (see
`glm_jax.cli.run`): the message already names the problem and the fix, so the user sees one line,
not a traceback. Each class also derives from the built-in it was before this module existed
(ValueError, ...), so `except ValueError` in callers keeps working.
"""

from input_pipeline.errors import DataSourceError, UserError


class ConfigError(UserError, ValueError):
  """A run-config value that cannot work, with the key to change."""

  kind = "bad config"


class TopologyError(ConfigError):
  """A TPU topology name libtpu does not know, or libtpu is missing."""


class FinetuneError(DataSourceError):
  """A finetuning setup that cannot run; the message says what to change."""


class CheckpointMismatchError(UserError, ValueError):
  """A checkpoint whose parameter shapes do not match the configured model."""


class MissingDataStateError(UserError, FileNotFoundError):
  """A checkpoint without iterator state for this process (another process count wrote it)."""


class UnreadableCheckpointError(UserError, RuntimeError):
  """The latest checkpoint cannot be read and restore_fallback is off (one-line message)."""


class ConversionError(UserError, ValueError):
  """A checkpoint that does not describe a GLM model we can map."""


class GenerationError(UserError, ValueError):
  """A prompt or decoding option that cannot work; the message names the fix."""


class EvaluationError(UserError, ValueError):
  """Input that cannot be scored; the message names the problem and the fix."""


class MissingDependencyError(UserError, ImportError):
  """An optional package (e.g. PyTorch) that this command needs is not installed."""


class OutputExistsError(UserError, FileExistsError):
  """An --output (or workdir) that holds something this command did not write (or needs
  --overwrite); nothing was written."""


class SaveError(UserError, OSError):
  """A write that failed (disk full, permissions, I/O); the message says where and what is free."""

  kind = "save failed"


class InterruptedByUser(UserError):
  """A second Ctrl-C: stop at once (the first one saves at the next step)."""

"""The user-facing errors of the data package, in a leaf module (no TensorFlow, nothing of ours).

`UserError` is the base of every error a user can fix, here rather than in `glm_jax.errors` so
that the data package never imports the model package; `glm_jax.errors` builds its own error
types on it and the command-line runner (`glm_jax.cli`) prints any of them as one line, exit 2.
"""


class UserError(Exception):
  """Input the user can fix (a flag, a config key, a file); the message says what to change."""

  kind = ""  # a short label some entry points put before the message ("bad config", "bad data")


class DataSourceError(UserError, ValueError):
  """A data source that cannot be read; the message says what to change."""

  kind = "bad data"


class TokenizerError(DataSourceError):
  """Tokenizer files or options that cannot be used; the message names the problem and the fix."""

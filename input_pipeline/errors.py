"""The pipeline's user-facing error, importable without TensorFlow (the trainer catches it)."""


class DataSourceError(ValueError):
  """A data source that cannot be read; the message says what to change."""

"""The pipeline's user-facing errors, importable without TensorFlow (defined in glm_jax.errors)."""

from glm_jax.errors import DataSourceError, TokenizerError, UserError  # pylint: disable=unused-import

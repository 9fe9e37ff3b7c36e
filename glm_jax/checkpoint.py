"""`glm_jax.checkpoint.load_for_inference(path, dtype, mesh)`: the name the pod-inference issue
fixed for loading params-only checkpoints, kept callable at that path. Everything else about
checkpoints lives in glm_jax/storage/params_io.py and glm_jax/training/checkpoint.py."""

# pylint: disable=unused-import
from glm_jax.storage.params_io import load_for_inference  # noqa: F401

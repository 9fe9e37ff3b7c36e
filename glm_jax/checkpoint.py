"""`glm_jax.checkpoint`: the 0.2 path that issues, tools and users call for checkpoints, kept
stable: the train checkpointer (glm_jax/training/checkpoint.py) and the params-only I/O
(glm_jax/storage/params_io.py), e.g. `checkpoint.load_for_inference(path, dtype, mesh)`."""

# pylint: disable=unused-import
from glm_jax.storage.params_io import (load_for_inference, load_params,  # noqa: F401
                                       save_for_inference, save_params, stored_config,
                                       write_for_inference)
from glm_jax.training.checkpoint import (Checkpointer, latest_step,  # noqa: F401
                                         params_from_training_checkpoint, read_newest)

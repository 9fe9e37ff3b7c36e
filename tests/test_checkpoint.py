"""Params checkpoints (what convert writes and init_from / generate read) and shape checks."""

import jax
import numpy as np
import pytest

from glm_jax.training import checkpoint
from glm_jax.storage import params_io
from glm_jax.modeling import model as model_lib


def _cfg(hidden=64):
  return model_lib.GLMConfig(vocab_size=128, num_layers=1, hidden_size=hidden, num_heads=2,
                             max_sequence_length=16)


def test_saved_params_load_back_bit_exact_with_a_shape_target(tmp_path):
  params = model_lib.init_params(_cfg(), jax.random.PRNGKey(1))
  params_io.save_params(str(tmp_path / "p"), params)
  loaded = params_io.load_params(str(tmp_path / "p"), model_lib.param_shapes(_cfg()))
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
  untargeted = params_io.load_params(str(tmp_path / "p"))
  jax.tree_util.tree_map(np.testing.assert_array_equal, untargeted, params)


def test_params_of_another_shape_are_refused_naming_the_parameters(tmp_path):
  params_io.save_params(str(tmp_path / "p"), model_lib.init_params(_cfg(), jax.random.PRNGKey(1)))
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"word_embeddings.*\(128, 64\)"):
    params_io.load_params(str(tmp_path / "p"), model_lib.param_shapes(_cfg(hidden=32)))


def test_missing_params_directory_says_what_was_expected(tmp_path):
  with pytest.raises(FileNotFoundError, match="save_params"):
    params_io.load_params(str(tmp_path / "nothing"))

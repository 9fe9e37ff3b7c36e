"""GLM in JAX/Flax. Quiets TensorFlow (used on host for tf.data) and gives libtpu's compiler big
stacks (glm_jax/libtpu_setup.py) before anything imports them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from glm_jax import libtpu_setup as _libtpu_setup  # pylint: disable=g-import-not-at-top

_libtpu_setup.prepare()

"""Host-side GLM data: no JAX here. Quiets TensorFlow's C++ start-up chatter first."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

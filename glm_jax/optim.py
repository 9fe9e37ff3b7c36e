"""`glm_jax.optim` is `glm_jax.training.optim`: the path the 0.2 tools and issues call, kept
stable."""

import sys

from glm_jax.training import optim

sys.modules[__name__] = optim

"""`glm_jax.train_state` is `glm_jax.training.train_state`: the path the 0.2 tools and issues call,
kept stable."""

import sys

from glm_jax.training import train_state

sys.modules[__name__] = train_state

"""`glm_jax.aot` is `glm_jax.training.aot`: the path the 0.2 tools and issues call, kept stable."""

import sys

from glm_jax.training import aot

sys.modules[__name__] = aot

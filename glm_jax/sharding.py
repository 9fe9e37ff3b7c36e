"""`glm_jax.sharding` is `glm_jax.modeling.sharding`: the path the 0.2 tools and issues call, kept
stable."""

import sys

from glm_jax.modeling import sharding

sys.modules[__name__] = sharding

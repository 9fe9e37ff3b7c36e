"""Every released size config has the released parameter count (computed without allocating);
the helpers that set released values name what they cannot set."""

import importlib

import pytest

from configs import common
from glm_jax.modeling import model

# GLM_SPEC's table; Base and Large are exact counts from the released checkpoints.
RELEASED = {
    "base": 109_338_624,
    "large": 334_688_256,
    "glm_410m": 410.3e6,
    "glm_515m": 514.6e6,
    "glm_roberta": 354.9e6,
    "glm_large_chinese": 355.7e6,
    "glm_2b": 1.92e9,
    "glm_10b": 9.88e9,
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_size_config_has_the_released_parameter_count(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  count = model.count_params(model.as_glm_config(config))
  expected = RELEASED[name]
  if isinstance(expected, int):
    assert count == expected
  else:  # the table rounds to 0.1M, and to 0.01B for the billions
    tolerance = 0.005e9 if expected > 1e9 else 0.05e6
    assert abs(count - expected) <= tolerance, (count, expected)


def test_tiny_config_builds_a_model():
  config = importlib.import_module("configs.tiny").get_config()
  cfg = model.as_glm_config(config)
  assert cfg.head_dim == 64 and model.count_params(cfg) > 0


def test_unknown_model_key_is_named():
  config = importlib.import_module("configs.base").get_config()
  config.model.hidden_sise = 4  # a typo a user could make in a config file
  with pytest.raises(ValueError, match="hidden_sise"):
    model.as_glm_config(config)


def test_every_released_flag_and_json_field_sets_an_existing_key():
  """A typo in the tables would add a new, unused key to the unlocked config instead."""
  config = common.get_base_config()
  json_keys = [k for keys in common.DEEPSPEED_JSON_KEYS.values()
               for k in (keys if isinstance(keys, tuple) else [keys])]
  for key in [*common.SCRIPT_FLAG_KEYS.values(), *json_keys]:
    section, _, name = key.rpartition(".")
    assert name in (config[section] if section else config), key


def test_unknown_released_flag_or_json_field_is_named():
  config = common.get_base_config()
  with pytest.raises(ValueError, match="lr_decay_iter'"):
    common.set_from_script_flags(config, lr_decay_iter=1000)   # a typo of lr_decay_iters
  with pytest.raises(ValueError, match="beta'"):
    common.set_from_deepspeed_json(config, beta=[0.9, 0.95])

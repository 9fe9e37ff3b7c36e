"""Run-config checks for the schedule and precision: one message naming the key and the fix."""

import pytest

from configs import tiny
from glm_jax import run_checks


def _validate(config):
  run_checks.validate(config, num_devices=1, process_count=1)


def test_float16_training_is_refused_naming_bfloat16():
  config = tiny.get_config()
  config.model.dtype = "float16"
  with pytest.raises(run_checks.ConfigError, match="float16.*loss scaling.*dtype=bfloat16"):
    _validate(config)
  config.model.dtype = "bfloat16"
  _validate(config)


@pytest.mark.parametrize("key,value,message", [
    ("decay_style", "exponential", "decay_style must be one of"),
    ("lr_decay_steps", -1, "lr_decay_steps must be an integer >= 0"),
    ("warmup_ratio", 0.6, "warmup_ratio=0.6 exceeds 0.5"),
])
def test_bad_schedule_values_are_named(key, value, message):
  config = tiny.get_config()
  config[key] = value
  with pytest.raises(run_checks.ConfigError, match=message):
    _validate(config)


def test_raw_length_mode_checks_positions_against_raw_length_not_the_row():
  config = tiny.get_config()  # position tables of 129 rows
  config.data.length_mode, config.data.raw_length, config.seq_length = "raw", 128, 160
  _validate(config)
  config.data.raw_length = 150
  with pytest.raises(run_checks.ConfigError, match="data.raw_length=150 exceeds the position tables"):
    _validate(config)

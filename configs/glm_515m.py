"""GLM-515M: 30 layers, hidden 1152, 18 heads, vocab 30592, position tables of 513 rows."""

from configs import glm_410m


def get_config():
  """The run config `--config=configs/glm_515m.py` loads (see the module docstring)."""
  # GLM-410M's recipe and tokenizer (the same GLM-Doc family), wider: 1152 hidden, 18 heads.
  config = glm_410m.get_config()
  config.model.hidden_size = 1152
  config.model.num_heads = 18
  return config

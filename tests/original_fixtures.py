"""Reads the fixtures made by running the original THUDM/GLM code (tests/data/README.md).

Their npz files store the original's random weights as `param/<THUDM name>` arrays (with
`num_attention_heads` beside them); the greedy-generation one also stores its prompts, special
ids and per-prompt budgets.
"""

import functools
import os

import numpy as np

from glm_jax import convert

DATA = os.path.join(os.path.dirname(__file__), "data")


def load(name: str):
  """The arrays of `tests/data/<name>` (an npz)."""
  return np.load(os.path.join(DATA, name))


def thudm_state_dict(data) -> dict:
  """The original's weights in a fixture: its `param/` arrays, under their THUDM names."""
  return {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}


def converted_model(data):
  """`(GLMConfig, params)` of a fixture's weights, through `convert.from_thudm`."""
  return convert.from_thudm(thudm_state_dict(data), int(data["num_attention_heads"]))


@functools.lru_cache(maxsize=None)
def greedy_generation():
  """thudm_greedy_generation.npz: (arrays, cfg, params, special ids, prompts, budgets)."""
  data = load("thudm_greedy_generation.npz")
  cfg, params = converted_model(data)
  special = {k[len("special/"):]: int(data[k]) for k in data.files if k.startswith("special/")}
  prompts = [[int(t) for t in row[:n]] for row, n in zip(data["prompts"], data["prompt_lengths"])]
  budgets = [int(b) for b in data["max_new_tokens"]]
  return data, cfg, params, special, prompts, budgets

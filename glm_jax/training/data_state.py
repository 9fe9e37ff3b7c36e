"""The input iterators' state of all processes as one small JSON value, saved inside the Orbax
checkpoint step (so a step and its data position become visible together), and each process's
part of it on restore.

Pipelines keyed by row block (train_data.BlockIterator: {"blocks": {block: state}}) merge into
one dict that any process layout with the same mesh can resume from; states equal on every
process (synthetic data) are kept once; anything else is kept per process.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from glm_jax.errors import MissingDataStateError


def _allgather_json(value) -> list:
  """Every process's `value` (JSON-serializable), in process order; a collective."""
  raw = np.frombuffer(json.dumps(value).encode("utf-8"), np.uint8)
  lengths = np.asarray(multihost_utils.process_allgather(np.int32(raw.size))).reshape(-1)
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:raw.size] = raw
  rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
  return [json.loads(bytes(row[:n]).decode("utf-8")) for row, n in zip(rows, lengths)]


def combine(state: Any) -> Any:
  """This process's iterator state -> the state of all (every process calls it at a save)."""
  states = _allgather_json(state) if jax.process_count() > 1 else [state]
  if all(isinstance(s, dict) and set(s) == {"blocks"} for s in states):
    blocks = {}
    for s in states:
      blocks.update(s["blocks"])
    return {"blocks": dict(sorted(blocks.items(), key=lambda kv: int(kv[0])))}
  if all(s == states[0] for s in states):
    return states[0]
  return {"per_process": states}


def own_part(saved: Any, step: int) -> Any:
  """The part of a combined state this process resumes from."""
  if isinstance(saved, dict) and set(saved) == {"per_process"}:
    states = saved["per_process"]
    if len(states) != jax.process_count():
      raise MissingDataStateError(
          f"Checkpoint step {step} holds the data-iterator states of {len(states)} processes, "
          f"not {jax.process_count()}; resume with the process count it was written with.")
    return states[jax.process_index()]
  return saved

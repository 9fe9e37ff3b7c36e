"""The token-level work of glm_jax.harness, and running it on every process of a multi-host run.

`Engine` answers the harness's three requests on token ids with the project's scorers (rows of
`lm_eval.lambada_rows` / `lm_eval.window_rows` through `scoring.score_rows`;
`generate.fill_blanks`); it is a pure function of its inputs, so every process computes the same
thing. `Dispatcher` makes every process run each batch: process 0 broadcasts it (token ids as JSON
bytes, through `jax.experimental.multihost_utils`) and runs it; the others `serve()` until process 0
says stop.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from jax.experimental import multihost_utils

from glm_jax import generate
from glm_jax.errors import EvaluationError
from glm_jax.evaluation import lm_eval, scoring


class Engine:
  """The token-level requests on one model; a pure function of its inputs on every process."""

  def __init__(self, config, params, special_ids, *, mesh, seq_length: int, overlap: int,
               mask_token: str = "MASK", unidirectional: bool = False, eop: bool = False,
               batch_size: int = scoring.DEFAULT_BATCH_SIZE, vocab_limit: int | None = None):
    self.config, self.params, self.mesh = config, params, mesh
    self.special = dict(special_ids)
    self.seq_length, self.overlap = int(seq_length), int(overlap)
    self.mask_token, self.unidirectional, self.eop = mask_token, bool(unidirectional), bool(eop)
    self.batch_size, self.vocab_limit = int(batch_size), vocab_limit

  def _score(self, rows):
    return scoring.score_rows(self.config, self.params, rows, eos_id=int(self.special["eos"]),
                              batch_size=self.batch_size, mesh=self.mesh)

  def loglikelihood(self, pairs) -> list[list]:
    """[(context ids, continuation ids)] -> [[log-probability, is_greedy]]."""
    out = [[0.0, True] for _ in pairs]  # an empty continuation: probability 1
    scored = [i for i, (_, continuation) in enumerate(pairs) if continuation]
    suffix = [int(self.special["eop"])] if self.eop else []
    examples = [(pairs[i][0], list(pairs[i][1]) + suffix) for i in scored]
    rows, _ = lm_eval.lambada_rows(examples, special_ids=self.special, seq_length=self.seq_length,
                                   mask_token=self.mask_token, unidirectional=self.unidirectional)
    stats = self._score(rows)
    for k, i in enumerate(scored):
      out[i] = [float(stats["logprob"][k]), bool(stats["correct"][k])]
    return out

  def rolling(self, docs) -> list[float]:
    """[document ids] -> the summed log-probability of each document's windows."""
    rows, owner = [], []
    for d, doc in enumerate(docs):
      windows = lm_eval.window_rows(doc, special_ids=self.special, seq_length=self.seq_length,
                                    overlap=self.overlap, mask_token=self.mask_token)
      rows += windows
      owner += [d] * len(windows)
    logprob = self._score(rows)["logprob"]
    totals = np.zeros(len(docs), np.float64)
    np.add.at(totals, np.asarray(owner, np.int64), logprob)
    return totals.tolist()

  def generate(self, prompts, options: dict) -> list[list[int]]:
    """[prompt ids with one blank] -> each prompt's generated ids (end token excluded)."""
    with jax.set_mesh(self.mesh):
      filled = generate.fill_blanks(self.config, self.params, prompts, special_ids=self.special,
                                    vocab_limit=self.vocab_limit, **options)
    return [blanks[0] if blanks else [] for blanks in filled]

  def run(self, kind: str, payload):
    if kind == "loglikelihood":
      return self.loglikelihood(payload)
    if kind == "rolling":
      return self.rolling(payload)
    if kind == "generate":
      return self.generate(payload["prompts"], payload["options"])
    raise EvaluationError(f"unknown request kind {kind!r}")


def broadcast(message):
  """Process 0's JSON-able `message` on every process (others pass None)."""
  source = jax.process_index() == 0
  data = np.frombuffer(json.dumps(message).encode(), np.uint8) if source else None
  size = int(multihost_utils.broadcast_one_to_all(np.int64(data.size if source else 0)))
  buffer = data if source else np.zeros(size, np.uint8)
  buffer = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
  return json.loads(buffer.tobytes().decode())


class Dispatcher:
  """Runs each batch on every process: process 0 broadcasts it, the others `serve()`."""

  def __init__(self, engine: Engine):
    self.engine = engine
    self.multi = jax.process_count() > 1

  def __call__(self, kind: str, payload):
    if self.multi:
      broadcast({"kind": kind, "payload": payload})
    return self.engine.run(kind, payload)

  def serve(self) -> None:
    """Processes other than 0: run what process 0 sends until it says stop."""
    while True:
      message = broadcast(None)
      if message["kind"] == "stop":
        return
      self.engine.run(message["kind"], message["payload"])

  def stop(self) -> None:
    """Process 0: release the serving processes (once)."""
    if self.multi and jax.process_index() == 0:
      broadcast({"kind": "stop", "payload": None})
      self.multi = False

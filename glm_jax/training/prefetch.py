"""Batches built and placed on the devices ahead of the step that uses them.

A background thread takes the next host batch from the iterator (packing and blank infilling run
there, not on the step thread) and puts it on the mesh (`sharding.put_batch`) while the current
step runs, so the step thread only waits when the data side is truly slower than the step.
"""

from __future__ import annotations

import queue
import threading
import time

from glm_jax.modeling import sharding
from input_pipeline.bounded_queue import put_unless_stopped

_END = object()


class DevicePrefetcher:
  """`next()` -> the next batch as global arrays; `get_state()` -> the iterator's state after
  the batches handed out so far (not after the ones prefetched), for checkpoints.

  `wait_seconds` adds up the time `next()` spent waiting for a batch (benchmarks/train_step.py
  reports it as data_wait_fraction). The thread starts at the first `next()`, so `set_state` on
  the iterator before that still counts; `close()` stops it.
  """

  def __init__(self, iterator, mesh, depth: int = 2):
    self.iterator, self.mesh = iterator, mesh
    self._queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._thread = None
    self._state = iterator.get_state() if hasattr(iterator, "get_state") else None
    self.wait_seconds = 0.0

  def _put(self, item) -> bool:
    return put_unless_stopped(self._queue, item, self._stop)

  def _run(self):
    try:
      while not self._stop.is_set():
        try:
          batch = next(self.iterator)
        except StopIteration:
          self._put(_END)
          return
        state = self.iterator.get_state() if hasattr(self.iterator, "get_state") else None
        if not self._put((sharding.put_batch(batch, self.mesh), state)):
          return
    except Exception as e:  # pylint: disable=broad-except  (re-raised on the step thread)
      self._put(e)

  def __iter__(self):
    return self

  def __next__(self):
    if self._thread is None:
      self._thread = threading.Thread(target=self._run, daemon=True, name="glm_jax-prefetch")
      self._thread.start()
    start = time.perf_counter()
    item = self._queue.get()
    self.wait_seconds += time.perf_counter() - start
    if item is _END:
      self._queue.put(_END)
      raise StopIteration
    if isinstance(item, Exception):
      raise item
    batch, self._state = item
    return batch

  def get_state(self):
    """The wrapped iterator's state after the last batch `next()` returned."""
    return self._state

  def close(self) -> None:
    """Stops the thread (batches prefetched past the last one returned are dropped)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=30)

"""A bounded queue's put that gives up when told to stop: no TensorFlow, no JAX.

Both the host reader thread (pipeline.py) and the device prefetcher (glm_jax/training/prefetch.py)
feed a consumer that may go away; `--compile_only` imports the prefetcher and must not load
TensorFlow.
"""

import queue
import threading


def put_unless_stopped(q: queue.Queue, item, stop: threading.Event) -> bool:
  """Puts `item` on a bounded queue, waiting while it is full, until `stop` is set: a reader
  thread never blocks forever on a consumer that went away. Returns whether it was put."""
  while not stop.is_set():
    try:
      q.put(item, timeout=0.1)
      return True
    except queue.Full:
      continue
  return False

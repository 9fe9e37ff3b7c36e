"""Timing shared by the benchmarks: the median wall time of a jitted call after its compile."""

import statistics
import time

import jax


def median_seconds(fn, repeats: int) -> float:
  """Median seconds of `fn()` over `repeats` runs, after one untimed run that compiles it.

  Blocks on the result each time, so asynchronous dispatch does not hide the work.
  """
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)

"""`config.profile_steps` ("first:last"): a jax.profiler trace of those training steps.

The trace lands in `workdir/profile/plugins/profile/<run>/<host>.xplane.pb`, the layout that
TensorBoard's profiler plugin reads (`tensorboard --logdir=WORKDIR/profile`). Each step runs under a
`StepTraceAnnotation`, so the profiler's step view splits the trace per training step.
"""

from __future__ import annotations

import contextlib

import jax

from glm_jax.storage import paths


def parse_steps(spec: str) -> tuple[int, int] | None:
  """"10:15" -> (10, 15): trace steps 10 through 15 (1-based, as logged); "" -> None."""
  spec = str(spec or "").strip()
  if not spec:
    return None
  try:
    first, last = (int(x) for x in spec.split(":"))
  except ValueError:
    raise ValueError(f"profile_steps={spec!r} must be 'first:last' (e.g. '10:15') or '' to "
                     "disable.") from None
  if not 1 <= first <= last:
    raise ValueError(f"profile_steps={spec!r} needs 1 <= first <= last (e.g. '10:15').")
  return first, last


def step_annotation(step: int):
  """Marks one training step (numbered as logged) in a running trace; free when none runs."""
  return jax.profiler.StepTraceAnnotation("train", step_num=step)


class StepProfiler:
  """Starts the trace before step `first`, stops it once step `last` has finished on device."""

  def __init__(self, spec: str, workdir: str):
    self.steps = parse_steps(spec)
    self.directory = paths.as_path(workdir) / "profile"
    self.active = False

  def before_step(self, step: int) -> None:
    """Call with the number of the step about to run."""
    if self.steps and step == self.steps[0] and not self.active:
      self.directory.mkdir(parents=True, exist_ok=True)
      jax.profiler.start_trace(str(self.directory))
      self.active = True

  def after_step(self, step: int, outputs) -> None:
    """Call with the step just run and its outputs (waited for, so the trace holds the work)."""
    if self.active and step >= self.steps[1]:
      self.stop(outputs)

  def stop(self, outputs=None) -> None:
    """Ends a running trace (also at a preemption or an early stop inside the window)."""
    if not self.active:
      return
    if outputs is not None:
      jax.block_until_ready(outputs)
    jax.profiler.stop_trace()
    self.active = False


@contextlib.contextmanager
def profiled(spec: str, workdir: str):
  """A StepProfiler that is always stopped, even if the loop raises."""
  profiler = StepProfiler(spec, workdir)
  try:
    yield profiler
  finally:
    profiler.stop()

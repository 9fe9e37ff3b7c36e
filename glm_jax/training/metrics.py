"""Throughput, MFU, and where metrics go: TensorBoard, `workdir/metrics.jsonl`, a progress line.

Only process 0 writes. TensorFlow is imported lazily (only for TensorBoard), so benchmarks and
notebooks that never write summaries do not need it.
"""

from __future__ import annotations

import json
import math
import time

import jax

from glm_jax.storage import paths

# Dense bf16 peak per chip, TFLOP/s. Keys are matched against `device.device_kind` in order,
# case-insensitively (more specific names first).
PEAK_BF16_TFLOPS = (
    ("v6 lite", 918.0), ("v6e", 918.0),
    ("v5 lite", 197.0), ("v5e", 197.0),
    ("v5p", 459.0), ("tpu v5", 459.0),
    ("tpu v4", 275.0),
    ("h200", 989.0), ("h100", 989.0),
)


def peak_tflops(config=None, device=None) -> float | None:
  """config.peak_tflops if set, else the table entry for this chip, else None (e.g. CPUs)."""
  if config is not None and float(config.get("peak_tflops", 0.0)) > 0:
    return float(config.peak_tflops)
  kind = (device or jax.devices()[0]).device_kind.lower()
  for key, value in PEAK_BF16_TFLOPS:
    if key in kind:
      return value
  return None


def flops_per_token(model_cfg, seq_length: int, num_params: int) -> float:
  """Training FLOPs per token, 6·N + 12·L·h·S (PaLM appendix B).

  N counts the matmul parameters: everything but the two position tables (the word embedding is
  counted once, for the tied output projection; lookups are free).
  """
  position_tables = 2 * (model_cfg.max_sequence_length + 1) * model_cfg.hidden_size
  n = num_params - position_tables
  return 6.0 * n + 12.0 * model_cfg.num_layers * model_cfg.hidden_size * seq_length


def throughput(tokens: float, seconds: float, flops_token: float, peak: float | None,
               num_devices: int) -> dict:
  """tokens/s and MFU (None without a known peak) for `tokens` processed in `seconds`."""
  tokens_per_s = tokens / max(seconds, 1e-9)
  mfu = None
  if peak:
    mfu = tokens_per_s * flops_token / (peak * 1e12 * num_devices)
  return {"tokens_per_s": tokens_per_s, "mfu": mfu}


def _fmt_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_line(step: int, total: int, values: dict, seconds_per_step: float) -> str:
  """One human-readable log line per logged step (loss, accuracy, speed, ...)."""
  parts = [f"step {step}/{total}"]
  for key, fmt in (("loss", "{:.4f}"), ("accuracy", "{:.3f}"), ("learning_rate", "{:.2e}"),
                   ("grad_norm", "{:.3f}"), ("tokens_per_s", "{:,.0f}"), ("mfu", "{:.3f}")):
    if values.get(key) is not None:
      parts.append(f"{key.replace('learning_rate', 'lr').replace('tokens_per_s', 'tok/s')} "
                   + fmt.format(values[key]))
  parts.append(f"eta {_fmt_duration((total - step) * seconds_per_step)}")
  return " | ".join(parts)


class MetricsWriter:
  """Appends one JSON object per logged step to metrics.jsonl and mirrors it to TensorBoard.

  metrics.jsonl is only ever appended to: a run resumed from an earlier checkpoint logs its
  steps again after the lines of the run that died, so a reader keeps the last record per step."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = paths.as_path(workdir) / "metrics.jsonl"
    self._summary = None
    self._remote_text = None   # metrics.jsonl's content, kept when it lives on Cloud Storage
    if self.enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      if tensorboard:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top
        self._tf = tf
        # tf.summary.scalar needs the tensorboard package; this is the same record without it.
        self._scalar_metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._summary = tf.summary.create_file_writer(str(self.path.parent / "tensorboard"))

  def write(self, step: int, values: dict) -> None:
    """Appends one step's metrics to metrics.jsonl (and TensorBoard), on process 0 only."""
    if not self.enabled:
      return
    record = {"step": int(step)}
    record.update({k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                   for k, v in values.items()})
    line = json.dumps(record) + "\n"
    if paths.is_remote(self.path):
      # Cloud Storage objects cannot be appended to: rewrite the (small) file whole each time.
      if self._remote_text is None:
        self._remote_text = self.path.read_text() if self.path.exists() else ""
      self._remote_text += line
      self.path.write_text(self._remote_text)
    else:
      with self.path.open("a") as f:
        f.write(line)
    if self._summary is not None:
      with self._summary.as_default(step=int(step)):
        for k, v in values.items():
          if isinstance(v, (int, float)):
            self._tf.summary.write(k, self._tf.constant(float(v), self._tf.float32),
                                   metadata=self._scalar_metadata)
      self._summary.flush()

  def close(self) -> None:
    """Flushes and closes the TensorBoard writer, if any."""
    if self._summary is not None:
      self._summary.close()


class StepTimer:
  """Wall time per step between two log points (measured when metrics are read, one step late)."""

  def __init__(self, step: int):
    self.step, self.time = step, time.perf_counter()

  def lap(self, step: int) -> float:
    """Seconds per step since the last lap: the speed the log reports."""
    now = time.perf_counter()
    per_step = (now - self.time) / max(step - self.step, 1)
    self.step, self.time = step, now
    return per_step

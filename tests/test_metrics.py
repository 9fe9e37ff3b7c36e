"""MFU: 6N + 12 L h S FLOPs per token against the per-chip bf16 peak."""

import numpy as np
import pytest

from glm_jax.training import metrics
from glm_jax.modeling import model as model_lib


def _cfg(hidden=64):
  return model_lib.GLMConfig(vocab_size=128, num_layers=1, hidden_size=hidden, num_heads=2,
                             max_sequence_length=16)


def test_mfu_uses_6n_plus_attention_flops_against_the_chip_peak():
  cfg = _cfg()
  n = 1_000_000
  flops = metrics.flops_per_token(cfg, 16, n)
  assert flops == 6 * (n - 2 * 17 * 64) + 12 * 1 * 64 * 16
  out = metrics.throughput(tokens=1000, seconds=1.0, flops_token=flops, peak=989.0, num_devices=2)
  assert out["tokens_per_s"] == 1000
  np.testing.assert_allclose(out["mfu"], 1000 * flops / (2 * 989e12))
  assert metrics.throughput(10, 1.0, flops, None, 1)["mfu"] is None


class _Device:
  def __init__(self, kind):
    self.device_kind = kind


@pytest.mark.parametrize("kind, peak", [("TPU v4", 275), ("TPU v5 lite", 197), ("TPU v5p", 459),
                                        ("TPU v6 lite", 918), ("NVIDIA H100 80GB HBM3", 989),
                                        ("NVIDIA H200", 989), ("cpu", None)])
def test_peak_table_matches_device_kinds(kind, peak):
  assert metrics.peak_tflops(device=_Device(kind)) == peak

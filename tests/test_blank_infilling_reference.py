"""build_sample against a plain transcription of the original layout rule, on random spans.

The fixture holds a dozen layouts from the original code; this covers the many it does not: any
number of spans, spans touching [CLS]'s neighbour or the last token, every Part-B order.
"""

import json
import os

import numpy as np
import pytest

from input_pipeline import sample_layout

MASK, SOP, EOP = 2, 3, 4


def original_layout(tokens, spans):
  """THUDM make_block_data (bert task, no sentinels): Part A with one mask per span, positions
  counted as if each span were one token; Part B = [sop] span / span [eop] in the given order."""
  tokens = list(tokens)
  position = np.ones(len(tokens), int)
  for start, end in spans:
    position[start + 1:end] = 0
  position = np.cumsum(position) - 1
  b_in, b_tgt, b_pos, b_block = [], [], [], []
  for start, end in spans:
    b_in += [SOP] + tokens[start:end]
    b_tgt += tokens[start:end] + [EOP]
    b_pos += list(position[start:end]) + [position[start]]
    b_block += list(range(1, end - start + 2))
  a_in, a_pos, last = [], [], 0
  for start, end in sorted(spans):
    a_in += tokens[last:start] + [MASK]
    a_pos += list(position[last:start]) + [position[start]]
    last = end
  a_in += tokens[last:]
  a_pos += list(position[last:])
  sep = len(a_in)
  return {"input_ids": a_in + b_in, "target_ids": a_in + b_tgt,
          "loss_mask": [0] * sep + [1] * len(b_in), "position_ids": a_pos + b_pos,
          "block_position_ids": [0] * sep + b_block, "sep": sep}


def random_spans(rng, n):
  """Non-overlapping spans in (1, n], separated by at least one token, in random order."""
  spans, i = [], 1
  while True:
    i += int(rng.integers(0, 4))
    length = int(rng.integers(1, 6))
    if i + length > n:
      break
    spans.append((i, i + length))
    i += length + 1
  order = rng.permutation(len(spans))
  return [spans[j] for j in order]


@pytest.mark.parametrize("seed", range(40))
def test_build_sample_equals_the_original_rule_on_random_spans(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(4, 60))
  tokens = np.concatenate([[1], rng.integers(10, 100, n - 1)])
  spans = random_spans(rng, n)
  if not spans:
    spans = [(1, 2)]
  got = sample_layout.build_sample(tokens, spans, mask_id=MASK, sop_id=SOP, eop_id=EOP)
  want = original_layout(tokens, spans)
  assert got["sep"] == want["sep"]
  for key in ("input_ids", "target_ids", "loss_mask", "position_ids", "block_position_ids"):
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_the_transcription_agrees_with_the_original_fixture_layouts():
  with open(os.path.join(os.path.dirname(__file__), "data", "block_layouts.json")) as f:
    fixture = json.load(f)
  cases = [c for c in fixture["cases"] if c["mask_token"] == "MASK"]
  assert cases and fixture["special_ids"]["MASK"] == MASK and fixture["special_ids"]["sop"] == SOP
  for case in cases:
    want = original_layout(case["tokens"], [tuple(s) for s in case["spans_in_part_b_order"]])
    for key, value in case["expected"].items():
      np.testing.assert_array_equal(want[key], value, err_msg=key)

"""blank_infilling's named index helpers and its typo-proof knobs."""

import numpy as np
import pytest

from input_pipeline import blank_infilling, sample_layout

IDS = {"CLS": 1, "MASK": 2, "sMASK": 3, "gMASK": 4, "sop": 5, "eop": 6, "eos": 0}


def test_exclusive_cumsum_gives_where_each_group_starts():
  assert sample_layout.exclusive_cumsum([3, 0, 2, 4]).tolist() == [0, 3, 3, 5]


def test_ranges_within_counts_inside_each_group():
  assert sample_layout.ranges_within([2, 0, 3]).tolist() == [0, 1, 0, 1, 2]
  assert sample_layout.ranges_within(np.zeros(0, np.int64)).tolist() == []


def test_a_misspelled_knob_is_an_error_naming_it():
  with pytest.raises(TypeError, match="mask_ratoi"):
    blank_infilling.BlankInfilling(IDS, 64, mask_ratoi=0.1)

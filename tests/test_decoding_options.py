"""DecodingOptions: one frozen, checked set of decoding options instead of loose keywords."""

import dataclasses

import pytest

from glm_jax import generate
from glm_jax.errors import GenerationError


def test_a_misspelled_option_is_an_error_naming_it():
  with pytest.raises(GenerationError, match="num_beam"):
    generate.fill_blanks(None, None, [2, 3, 1], special_ids={}, num_beam=4)


def test_options_are_checked_when_built_and_cannot_change_afterwards():
  with pytest.raises(GenerationError, match="temperature must be > 0"):
    generate.DecodingOptions(strategy="sample", temperature=0.0)
  options = generate.DecodingOptions(strategy="beam", num_beams=2)
  with pytest.raises(dataclasses.FrozenInstanceError):
    options.num_beams = 3  # type: ignore[misc]


def test_options_and_keywords_together_are_refused():
  with pytest.raises(GenerationError, match="not both"):
    generate.fill_blanks(None, None, [2, 3, 1], special_ids={},
                         options=generate.DecodingOptions(), max_new_tokens=4)

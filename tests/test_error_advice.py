"""Messages that name the fix that works (issue 21): the position table of an init_from model, a
verbalizer that is several tokens, a corpus too small for the tokenizer's vocabulary."""

import pytest

from configs.finetune import superglue as sg_config
from glm_jax import run_checks
from glm_jax.errors import ConfigError, DataSourceError
from glm_jax.tasks import superglue
from input_pipeline import tokenizer as tokenizer_lib


def test_seq_length_beyond_an_init_from_models_positions_says_lower_it(tmp_path):
  config = sg_config.get_config()
  config.model.update(vocab_size=256, num_layers=1, hidden_size=64, num_heads=2,
                      max_sequence_length=32)
  config.seq_length, config.global_batch_size, config.total_steps = 64, 8, 10
  config.init_from = str(tmp_path)
  with pytest.raises(ConfigError, match="lower seq_length") as error:
    run_checks.validate(config, 1, 1)
  assert "raise model.max_sequence_length" not in str(error.value)   # ignored with init_from
  assert str(tmp_path) in str(error.value)


class _WordTokenizer:
  """Words of `vocab` are one token each; any other word is three."""

  def __init__(self, vocab):
    self.ids = {w: i + 10 for i, w in enumerate(vocab)}
    self.special_ids = {"MASK": 1, "CLS": 2, "eos": 3, "sop": 4, "eop": 5, "pad": 3}

  def encode(self, text):
    return [t for w in text.split() for t in ([self.ids[w]] if w in self.ids else [7, 8, 9])]


def test_a_verbalizer_of_several_tokens_names_pattern_id_and_the_patterns_that_fit():
  tokenizer = _WordTokenizer(["true", "false", "passage", "question"])   # no "Yes" / "No"
  with pytest.raises(DataSourceError) as error:
    superglue.make_encoder("boolq", tokenizer, 64, 0)
  message = str(error.value)
  assert "--config.pattern_id=1" in message and "[1, 3, 5]" in message


def test_a_corpus_too_small_for_vocab_size_is_told_to_raise_it(tmp_path):
  with pytest.raises(DataSourceError, match="raise --config.data.vocab_size"):
    tokenizer_lib.train(["hello world."] * 20, str(tmp_path / "t.model"), vocab_size=100)
  with pytest.raises(DataSourceError, match="lower --config.data.vocab_size"):
    tokenizer_lib.train(["hello world."] * 20, str(tmp_path / "t.model"), vocab_size=5000)

"""GLM-RoBERTa: 24 layers, hidden 1024, 16 heads, vocab 50304, position tables of 513 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 24
  config.model.hidden_size = 1024
  config.model.num_heads = 16
  config.model.vocab_size = 50304
  config.model.max_sequence_length = 512
  config.learning_rate = 2e-4
  # Released tokenizer: RoBERTa's byte-level BPE; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "roberta"
  config.data.task_mask = False
  return config

"""GLM-Base: 12 layers, hidden 768, 12 heads, vocab 30592, position tables of 513 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 12
  config.model.hidden_size = 768
  config.model.num_heads = 12
  config.model.vocab_size = 30592
  config.model.max_sequence_length = 512
  config.learning_rate = 4e-4
  # Released tokenizer: BERT uncased WordPiece (bert-base-uncased vocab.txt); files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "bert-uncased"
  config.data.task_mask = False
  return config

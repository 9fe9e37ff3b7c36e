"""GLM-Large: 24 layers, hidden 1024, 16 heads, vocab 30592, position tables of 513 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 24
  config.model.hidden_size = 1024
  config.model.num_heads = 16
  config.model.vocab_size = 30592
  config.model.max_sequence_length = 512
  config.learning_rate = 2e-4
  # Released tokenizer: BERT uncased WordPiece (bert-large-uncased vocab.txt); files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "bert-uncased"
  config.data.task_mask = False
  return config

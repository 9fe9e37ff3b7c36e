"""GLM-Large-Chinese: 24 layers, hidden 1024, 16 heads, vocab 50048, position tables of 1025 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 24
  config.model.hidden_size = 1024
  config.model.num_heads = 16
  config.model.vocab_size = 50048
  config.model.max_sequence_length = 1024
  config.learning_rate = 2e-4
  # Released tokenizer: cog-pretrain SentencePiece, fixed command ids; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "chinese-sp"
  config.data.task_mask = True
  config.data.fix_command_token = True
  return config

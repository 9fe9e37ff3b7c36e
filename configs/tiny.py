"""A tiny GLM that trains on the embedded corpus on a 2-core CPU in a few minutes."""

from configs import common


def get_config():
  """The run config `--config=configs/tiny.py` loads (see the module docstring)."""
  config = common.get_base_config()
  config.model.num_layers = 2
  config.model.hidden_size = 128
  config.model.num_heads = 2
  config.model.max_sequence_length = 128
  config.model.embedding_dropout = 0.0
  config.model.attention_dropout = 0.0
  config.model.hidden_dropout = 0.0
  config.model.dtype = "float32"       # CPUs have no fast bf16 matmul
  config.vocab_from_tokenizer = True   # vocab comes from the sentencepiece model trained on the corpus
  config.seq_length = 128
  config.global_batch_size = 16
  config.learning_rate = 1e-3
  config.warmup_ratio = 0.05
  config.total_steps = 500             # about 3 minutes on 2 CPU cores, tokenizer included
  config.log_every_steps = 25
  config.eval_every_steps = 250
  config.eval_steps = 4
  config.checkpoint_every_steps = 250
  return config

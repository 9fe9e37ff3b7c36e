"""GLM-10B: 48 layers, hidden 4096, 64 heads, vocab 50304, position tables of 1025 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 48
  config.model.hidden_size = 4096
  config.model.num_heads = 64
  config.model.vocab_size = 50304
  config.model.max_sequence_length = 1024
  config.learning_rate = 1e-4
  # Released 10B recipe: mixed objectives, betas (0.9, 0.95), eps 1e-8, 4% warmup.
  config.adam_b2 = 0.95
  config.adam_eps = 1e-8
  config.warmup_ratio = 0.04
  config.data.bert_prob = 0.5
  config.data.gap_sentence_prob = 0.3
  config.data.gpt_min_ratio = 0.25
  config.model.remat_policy = "full"
  config.mesh.data = 1
  config.mesh.fsdp = -1
  # Released tokenizer: GPT-2's byte-level BPE with [gMASK]/[sMASK]; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "gpt2"
  config.data.task_mask = True
  return config

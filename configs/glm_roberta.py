"""GLM-RoBERTa: 24 layers, hidden 1024, 16 heads, vocab 50304, position tables of 513 rows."""

from configs import common


def get_config():
  """The run config `--config=configs/glm_roberta.py` loads (see the module docstring)."""
  config = common.get_base_config()
  common.set_model_shape(config, num_layers=24, hidden_size=1024, num_heads=16, vocab_size=50304,
                         max_sequence_length=512)
  # Released recipe (THUDM/GLM 4f61ed7), values as written in config/config_blockta_large.json ...
  common.set_from_deepspeed_json(config, lr=0.0004, weight_decay=0.01,
                                 gradient_accumulation_steps=8)
  config.global_batch_size = 8192       # not in the script (16 per GPU x 8 x GPUs): RoBERTa-Large's 8K batch
  # ... and in config/ds_blockta_large.sh.
  common.set_from_script_flags(config, task_mask=True, bert_prob=1.0, avg_block_length=3,
                               train_iters=500000, lr_decay_style="linear", lr_decay_iters=500000,
                               lr_decay_ratio=0.025, warmup=.06)
  # Released tokenizer: RoBERTa's byte-level BPE; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "roberta"
  return config

"""GLM-Base: 12 layers, hidden 768, 12 heads, vocab 30592, position tables of 513 rows."""

from configs import common


def get_config():
  """The run config `--config=configs/base.py` loads (see the module docstring)."""
  config = common.get_base_config()
  common.set_model_shape(config, num_layers=12, hidden_size=768, num_heads=12, vocab_size=30592,
                         max_sequence_length=512)
  # Released recipe (THUDM/GLM 4f61ed7), values as written in config/config_block_base.json ...
  common.set_from_deepspeed_json(config, lr=0.0004, weight_decay=0.1)
  # ... and in config/ds_block_base.sh (no --task-mask there).
  common.set_from_script_flags(config, bert_prob=1.0, train_iters=150000, lr_decay_style="cosine",
                               lr_decay_iters=120000, lr_decay_ratio=0.05, warmup=.05,
                               task_mask=False)
  # Released tokenizer: BERT uncased WordPiece (bert-base-uncased vocab.txt); files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "bert-uncased"
  return config

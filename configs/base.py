"""GLM-Base: 12 layers, hidden 768, 12 heads, vocab 30592, position tables of 513 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 12
  config.model.hidden_size = 768
  config.model.num_heads = 12
  config.model.vocab_size = 30592
  config.model.max_sequence_length = 512
  # Released recipe: config/ds_block_base.sh + config/config_block_base.json (THUDM/GLM 4f61ed7).
  config.learning_rate = 4e-4           # config_block_base.json: "lr": 0.0004
  config.weight_decay = 0.1             # config_block_base.json: "weight_decay": 0.1
  config.total_steps = 150_000          # ds_block_base.sh: --train-iters 150000
  config.lr_decay_steps = 120_000       # ds_block_base.sh: --lr-decay-iters 120000
  config.decay_style = "cosine"         # ds_block_base.sh: --lr-decay-style cosine
  config.min_learning_rate_ratio = 0.05  # ds_block_base.sh: --lr-decay-ratio 0.05
  config.warmup_ratio = 0.05            # ds_block_base.sh: --warmup .05
  config.data.bert_prob = 1.0           # ds_block_base.sh: --bert-prob 1.0
  config.data.task_mask = False         # ds_block_base.sh: no --task-mask
  # Released tokenizer: BERT uncased WordPiece (bert-base-uncased vocab.txt); files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "bert-uncased"
  return config

"""GLM-Large: 24 layers, hidden 1024, 16 heads, vocab 30592, position tables of 513 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 24
  config.model.hidden_size = 1024
  config.model.num_heads = 16
  config.model.vocab_size = 30592
  config.model.max_sequence_length = 512
  # Released recipe: config/ds_block_large.sh + config/config_block_large.json (THUDM/GLM 4f61ed7).
  config.learning_rate = 2e-4           # config_block_large.json: "lr": 0.0002
  config.weight_decay = 0.1             # config_block_large.json: "weight_decay": 0.1
  config.total_steps = 200_000          # ds_block_large.sh: --train-iters 200000
  config.lr_decay_steps = 160_000       # ds_block_large.sh: --lr-decay-iters 160000
  config.decay_style = "cosine"         # ds_block_large.sh: --lr-decay-style cosine
  config.min_learning_rate_ratio = 0.05  # ds_block_large.sh: --lr-decay-ratio 0.05
  config.warmup_ratio = 0.05            # ds_block_large.sh: --warmup .05
  config.data.bert_prob = 1.0           # ds_block_large.sh: --bert-prob 1.0
  config.data.poisson_lambda = 3.0      # ds_block_large.sh: --avg-block-length 3
  config.data.task_mask = False         # ds_block_large.sh: no --task-mask
  # Released tokenizer: BERT uncased WordPiece (bert-large-uncased vocab.txt); files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "bert-uncased"
  return config

"""GLM-RoBERTa: 24 layers, hidden 1024, 16 heads, vocab 50304, position tables of 513 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 24
  config.model.hidden_size = 1024
  config.model.num_heads = 16
  config.model.vocab_size = 50304
  config.model.max_sequence_length = 512
  # Released recipe: config/ds_blockta_large.sh + config/config_blockta_large.json (THUDM/GLM 4f61ed7).
  config.learning_rate = 4e-4           # config_blockta_large.json: "lr": 0.0004
  config.weight_decay = 0.01            # config_blockta_large.json: "weight_decay": 0.01
  config.grad_accum_steps = 8           # config_blockta_large.json: "gradient_accumulation_steps": 8
  config.global_batch_size = 8192       # not in the script (16 per GPU x 8 x GPUs): RoBERTa-Large's 8K batch
  config.total_steps = 500_000          # ds_blockta_large.sh: --train-iters 500000
  config.lr_decay_steps = 500_000       # ds_blockta_large.sh: --lr-decay-iters 500000
  config.decay_style = "linear"         # ds_blockta_large.sh: --lr-decay-style linear
  config.min_learning_rate_ratio = 0.025  # ds_blockta_large.sh: --lr-decay-ratio 0.025
  config.warmup_ratio = 0.06            # ds_blockta_large.sh: --warmup .06
  config.data.bert_prob = 1.0           # ds_blockta_large.sh: --bert-prob 1.0
  config.data.poisson_lambda = 3.0      # ds_blockta_large.sh: --avg-block-length 3
  config.data.task_mask = True          # ds_blockta_large.sh: --task-mask
  # Released tokenizer: RoBERTa's byte-level BPE; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "roberta"
  return config

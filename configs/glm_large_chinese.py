"""GLM-Large-Chinese: 24 layers, hidden 1024, 16 heads, vocab 50048, position tables of 1025 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 24
  config.model.hidden_size = 1024
  config.model.num_heads = 16
  config.model.vocab_size = 50048
  config.model.max_sequence_length = 1024
  # Released recipe: config/ds_block_large_chinese.sh + config/config_block_large_chinese.json
  # (THUDM/GLM 4f61ed7).
  config.learning_rate = 4e-4           # config_block_large_chinese.json: "lr": 0.0004
  config.weight_decay = 0.01            # config_block_large_chinese.json: "weight_decay": 0.01
  config.total_steps = 250_000          # ds_block_large_chinese.sh: --train-iters 250000
  config.lr_decay_steps = 200_000       # ds_block_large_chinese.sh: --lr-decay-iters 200000
  config.decay_style = "cosine"         # ds_block_large_chinese.sh: --lr-decay-style cosine
  config.min_learning_rate_ratio = 0.1  # ds_block_large_chinese.sh: --lr-decay-ratio 0.1
  config.warmup_ratio = 0.04            # ds_block_large_chinese.sh: --warmup 0.04
  config.data.bert_prob = 0.4           # ds_block_large_chinese.sh: --bert-prob 0.4
  config.data.gap_sentence_prob = 0.3   # ds_block_large_chinese.sh: --gap-sentence-prob 0.3
  config.data.gpt_min_ratio = 0.25      # ds_block_large_chinese.sh: --gpt-min-ratio 0.25
  config.data.poisson_lambda = 3.0      # ds_block_large_chinese.sh: --avg-block-length 3
  config.data.task_mask = True          # ds_block_large_chinese.sh: --task-mask
  config.data.block_mask_prob = 0.1     # ds_block_large_chinese.sh: --block-mask-prob 0.1 (the tokenizer needs [dBLOCK])
  config.data.short_seq_prob = 0.02     # ds_block_large_chinese.sh: --short-seq-prob 0.02
  # Released tokenizer: cog-pretrain SentencePiece, fixed command ids; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "chinese-sp"
  config.data.fix_command_token = True
  return config

"""GLM-10B: 48 layers, hidden 4096, 64 heads, vocab 50304, position tables of 1025 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 48
  config.model.hidden_size = 4096
  config.model.num_heads = 64
  config.model.vocab_size = 50304
  config.model.max_sequence_length = 1024
  # Released recipe: config/ds_block_10B.sh + config/config_block_10B.json (THUDM/GLM 4f61ed7).
  config.learning_rate = 1e-4           # config_block_10B.json: "lr": 0.0001
  config.weight_decay = 0.1             # config_block_10B.json: "weight_decay": 1e-1
  config.adam_b2 = 0.95                 # config_block_10B.json: "betas": [0.9, 0.95]
  config.adam_eps = 1e-8                # config_block_10B.json: "eps": 1e-8
  config.total_steps = 250_000          # ds_block_10B.sh: --train-iters 250000
  config.lr_decay_steps = 175_000       # ds_block_10B.sh: --lr-decay-iters 175000
  config.decay_style = "cosine"         # ds_block_10B.sh: --lr-decay-style cosine
  config.min_learning_rate_ratio = 0.1  # ds_block_10B.sh: --lr-decay-ratio 0.1
  config.warmup_ratio = 0.04            # ds_block_10B.sh: --warmup 0.04
  config.data.bert_prob = 0.5           # ds_block_10B.sh: --bert-prob 0.5
  config.data.gap_sentence_prob = 0.3   # ds_block_10B.sh: --gap-sentence-prob 0.3
  config.data.gpt_min_ratio = 0.25      # ds_block_10B.sh: --gpt-min-ratio 0.25
  config.data.poisson_lambda = 3.0      # ds_block_10B.sh: --avg-block-length 3
  config.data.task_mask = True          # ds_block_10B.sh: --task-mask
  config.data.block_mask_prob = 0.1     # ds_block_10B.sh: --block-mask-prob 0.1 (the tokenizer needs [dBLOCK])
  config.data.short_seq_prob = 0.02     # ds_block_10B.sh: --short-seq-prob 0.02
  config.model.remat_policy = "full"
  config.mesh.data = 1
  config.mesh.fsdp = -1
  # Released tokenizer: GPT-2's byte-level BPE with [gMASK]/[sMASK]; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "gpt2"
  config.data.task_mask = True
  return config

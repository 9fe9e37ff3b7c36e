"""GLM-10B: 48 layers, hidden 4096, 64 heads, vocab 50304, position tables of 1025 rows."""

from configs import common


def get_config():
  """The run config `--config=configs/glm_10b.py` loads (see the module docstring)."""
  config = common.get_base_config()
  common.set_model_shape(config, num_layers=48, hidden_size=4096, num_heads=64, vocab_size=50304,
                         max_sequence_length=1024)
  # Released recipe (THUDM/GLM 4f61ed7), values as written in config/config_block_10B.json ...
  common.set_from_deepspeed_json(config, lr=0.0001, betas=[0.9, 0.95], eps=1e-8, weight_decay=1e-1)
  # ... and config/ds_block_10B.sh: the multi-task recipe it shares with ds_block_large_chinese.sh,
  # with its own --bert-prob 0.5 and --lr-decay-iters 175000.
  common.set_multitask_recipe(config, bert_prob=0.5, lr_decay_iters=175000)
  config.model.remat_policy = "full"
  common.shard_over_all_devices(config)
  # Released tokenizer: GPT-2's byte-level BPE with [gMASK]/[sMASK]; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "gpt2"
  return config

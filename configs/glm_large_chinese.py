"""GLM-Large-Chinese: 24 layers, hidden 1024, 16 heads, vocab 50048, position tables of 1025 rows."""

from configs import common


def get_config():
  """The run config `--config=configs/glm_large_chinese.py` loads (see the module docstring)."""
  config = common.get_base_config()
  common.set_model_shape(config, num_layers=24, hidden_size=1024, num_heads=16, vocab_size=50048,
                         max_sequence_length=1024)
  # Released recipe (THUDM/GLM 4f61ed7): config/config_block_large_chinese.json ...
  common.set_from_deepspeed_json(config, lr=0.0004, weight_decay=0.01)
  # ... and config/ds_block_large_chinese.sh: the multi-task recipe it shares with ds_block_10B.sh,
  # with its own --bert-prob 0.4 and --lr-decay-iters 200000.
  common.set_multitask_recipe(config, bert_prob=0.4, lr_decay_iters=200000)
  # Released tokenizer: cog-pretrain SentencePiece, fixed command ids (ds_block_large_chinese.sh:
  # --fix-command-token); files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "chinese-sp"
  common.set_from_script_flags(config, fix_command_token=True)
  return config

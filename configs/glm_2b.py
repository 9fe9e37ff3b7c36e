"""GLM-2B: 36 layers, hidden 2048, 32 heads, vocab 50304, position tables of 1025 rows."""

from configs import common


def get_config():
  """The run config `--config=configs/glm_2b.py` loads (see the module docstring)."""
  config = common.get_base_config()
  common.set_model_shape(config, num_layers=36, hidden_size=2048, num_heads=32, vocab_size=50304,
                         max_sequence_length=1024)
  config.learning_rate = 1e-4
  # No pretraining script was released for GLM-2B. README: Token+Sent+Doc; config_tasks/
  # model_blocklm_2B.sh: --task-mask. The mix is taken from ds_block_10B.sh (same Pile corpus):
  # --bert-prob 0.5 --gap-sentence-prob 0.3 --gpt-min-ratio 0.25.
  common.set_from_script_flags(config, task_mask=True, bert_prob=0.5, gap_sentence_prob=0.3,
                               gpt_min_ratio=0.25)
  config.model.remat_policy = "dots_no_batch"
  common.shard_over_all_devices(config)
  # Released tokenizer: GPT-2's byte-level BPE with [gMASK]/[sMASK]; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "gpt2"
  return config

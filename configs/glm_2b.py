"""GLM-2B: 36 layers, hidden 2048, 32 heads, vocab 50304, position tables of 1025 rows."""

from configs import common


def get_config():
  config = common.get_base_config()
  config.model.num_layers = 36
  config.model.hidden_size = 2048
  config.model.num_heads = 32
  config.model.vocab_size = 50304
  config.model.max_sequence_length = 1024
  config.learning_rate = 1e-4
  # No pretraining script was released for GLM-2B. README: Token+Sent+Doc; config_tasks/
  # model_blocklm_2B.sh: --task-mask. The mix is taken from ds_block_10B.sh (same Pile corpus).
  config.data.bert_prob = 0.5           # as ds_block_10B.sh: --bert-prob 0.5
  config.data.gap_sentence_prob = 0.3   # as ds_block_10B.sh: --gap-sentence-prob 0.3
  config.data.gpt_min_ratio = 0.25      # as ds_block_10B.sh: --gpt-min-ratio 0.25
  config.data.task_mask = True          # config_tasks/model_blocklm_2B.sh: --task-mask
  config.model.remat_policy = "dots_no_batch"
  config.mesh.data = 1
  config.mesh.fsdp = -1
  # Released tokenizer: GPT-2's byte-level BPE with [gMASK]/[sMASK]; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "gpt2"
  config.data.task_mask = True
  return config

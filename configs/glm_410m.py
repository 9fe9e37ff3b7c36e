"""GLM-410M: 30 layers, hidden 1024, 16 heads, vocab 30592, position tables of 513 rows."""

from configs import common


def get_config():
  """The run config `--config=configs/glm_410m.py` loads (see the module docstring)."""
  config = common.get_base_config()
  common.set_model_shape(config, num_layers=30, hidden_size=1024, num_heads=16, vocab_size=30592,
                         max_sequence_length=512)
  config.learning_rate = 2e-4
  # No pretraining script was released for the GLM-Doc family (GLM-Doc, GLM-410M, GLM-515M).
  # README: objective Token+Doc; config_tasks/model_blocklm_1.*_generation.sh: no --task-mask.
  # The mix is the original's argument defaults (arguments.py: --bert-prob 0.5, half token, half
  # document; --gap-sentence-prob 0.0, no sentence objective).
  common.set_from_script_flags(config, bert_prob=0.5, gap_sentence_prob=0.0, task_mask=False)
  # Released tokenizer: BERT uncased WordPiece; files from --config.data.tokenizer_path=DIR.
  config.data.tokenizer_kind = "bert-uncased"
  return config

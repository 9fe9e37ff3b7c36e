"""Seq2seq finetuning (summarization, question generation) for any released GLM (the shape comes
from `init_from`): `python -m glm_jax.finetune --config=configs/finetune/seq2seq.py
--config.task=xsum --config.data_dir=DIR --config.init_from=CKPT --workdir=DIR`.

Setting `task` fills the per-task values of THUDM/GLM's `config_tasks/seq_<task>.sh` (commit
4f61ed7) below unless they were set explicitly. Decoding is the original's DecoderEvaluater with
--select-topk (glm_jax/decode/seq2seq_beams.py); ROUGE as its rouge_metric
(glm_jax/tasks/seq2seq/rouge.py).
"""

import ml_collections

from configs import common

# Per task, from config_tasks/seq_<task>.sh (TRAIN_ARGS / COMMON_ARGS / TASK_ARGS, line numbers).
# Batch size: the README's launcher scripts/ds_finetune_seq2seq.sh runs 2 workers x 8 GPUs with
# config_tasks/config_blocklm_10B_cnndm.json's train_micro_batch_size_per_gpu 4: 64 per step.
# eval_epoch: arguments.py --eval-epoch default 1 (l.234) unless the script sets it.
TASK_FIELDS = ("epochs", "learning_rate", "eval_epoch", "src_seq_length", "tgt_seq_length",
               "min_tgt_length", "length_penalty", "no_repeat_ngram_size", "num_beams",
               "eval_batch_size")
_TASK_ROWS = {  # one row per task, its values in TASK_FIELDS' order
    # seq_cnndm_org.sh: --epochs 10 (l.5), --lr 1e-5 (l.6), --eval-epoch 2 (l.16),
    # --src-seq-length 608 --tgt-seq-length 160 --min-tgt-length 55 --length-penalty 0.7
    # --no-repeat-ngram-size 3 --num-beams 5 (l.18-23), --eval-batch-size 1 (l.25)
    "cnn_dm_original": (10, 1e-5, 2, 608, 160, 55, 0.7, 3, 5, 1),
    # seq_cnndm.sh: --epochs 15 (l.5), --lr 3e-5 (l.6), --src-seq-length 608
    # --tgt-seq-length 160 --min-tgt-length 55 --length-penalty 0.7 --no-repeat-ngram-size 3
    # --num-beams 5 (l.17-22), --eval-batch-size 4 (l.24)
    "cnn_dm": (15, 3e-5, 1, 608, 160, 55, 0.7, 3, 5, 4),
    # seq_xsum.sh: --epochs 6 (l.5), --lr 1e-5 (l.6), --eval-epoch 2 (l.16), --src-seq-length 608
    # --tgt-seq-length 60 --min-tgt-length 10 --length-penalty 1.0 --no-repeat-ngram-size 3
    # --num-beams 6 (l.18-23), --eval-batch-size 1 (l.25)
    "xsum": (6, 1e-5, 2, 608, 60, 10, 1.0, 3, 6, 1),
    # seq_gigaword.sh: --epochs 10 (l.5), --lr 3e-5 (l.6), --src-seq-length 192
    # --tgt-seq-length 32 --min-tgt-length 0 --length-penalty 0.6 --no-repeat-ngram-size 3
    # --num-beams 5 (l.17-22), --eval-batch-size 4 (l.24)
    "gigaword": (10, 3e-5, 1, 192, 32, 0, 0.6, 3, 5, 4),
    # seq_squad_generation.sh: --epochs 10 (l.5), --lr 2e-5 (l.6), --eval-epoch 10 (l.16),
    # --src-seq-length 464 --tgt-seq-length 48 --min-tgt-length 0 --length-penalty 0.7
    # --num-beams 5 (l.18-22), --eval-batch-size 4 (l.24); no --no-repeat-ngram-size
    "squad_generation": (10, 2e-5, 10, 464, 48, 0, 0.7, 0, 5, 4),
}
TASK_DEFAULTS = {task: dict(zip(TASK_FIELDS, row, strict=True))
                 for task, row in _TASK_ROWS.items()}


def get_config():
  """The run config `--config=configs/finetune/seq2seq.py` loads (see the module docstring)."""
  config = common.get_base_config()
  config.task = ""                   # cnn_dm_original | cnn_dm | xsum | gigaword | squad_generation
  config.data_dir = ""               # folder with train/val/test .source and .target (one example a line)
  config.data_source = "files"       # files (the original's) | tfds (cnn_dailymail / xsum / gigaword; data_dir = TFDS data_dir or empty)
  config.tokenizer = ""              # released tokenizer dir (empty: the one stored beside init_from)
  config.tokenizer_kind = ""         # bert-uncased | gpt2 | ... (empty: from the tokenizer's tokenizer_config.json)
  config.task_mask = -1              # 1: the blank is [sMASK], 0: [MASK] (-1: the tokenizer's task_mask)
  config.epochs = 0                  # passes over the training set (0: the task's default)
  config.eval_every_epochs = 0       # --eval-epoch: dev ROUGE every this many epochs (0: the task's)
  config.eval_batch_size = 0         # --eval-batch-size (0: the task's)
  config.predict_test = True         # after training, decode the test set, one prediction per line
  config.export_best = True          # at the end, export the best checkpoint's params (workdir/best_params)

  # Decoding (TASK_ARGS); -1 / 0 markers mean the task's value.
  config.src_seq_length = 0          # --src-seq-length
  config.tgt_seq_length = 0          # --tgt-seq-length (training target and decoding budget)
  config.min_tgt_length = -1         # --min-tgt-length: no [eop] before this many tokens
  config.length_penalty = -1.0       # --length-penalty: hypothesis score / length ** this
  config.no_repeat_ngram_size = -1   # --no-repeat-ngram-size (0 = off)
  config.num_beams = 0               # --num-beams (with --select-topk)

  # Shared schedule of TRAIN_ARGS: --lr-decay-style linear --warmup 0.06 --weight-decay 1.0e-1
  # --label-smoothing 0.1; arguments.py: --lr-decay-ratio 0.1, Adam (0.9, 0.999, 1e-8).
  config.learning_rate = 0.0         # --lr (0: the task's)
  config.warmup_ratio = 0.06
  config.decay_style = "linear"      # --lr-decay-style linear
  config.min_learning_rate_ratio = 0.1
  config.weight_decay = 0.1
  config.label_smoothing = 0.1
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.global_batch_size = 64      # 4 per GPU x 16 GPUs (see above)
  config.seq_length = 0              # derived: src_seq_length + tgt_seq_length
  config.total_steps = 0             # derived: epochs * ceil(train examples / batch)
  config.eval_every_steps = 0
  config.log_every_steps = 50        # --log-interval 50
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 1
  config.sample_tokens = 0
  config.data.tokenizer_kind = ""    # unused: the tokenizer comes from `tokenizer` / init_from
  return config


def apply_task_defaults(config):
  """Fills the values left at their 'task default' markers from TASK_DEFAULTS[config.task]."""
  defaults = TASK_DEFAULTS[config.task.lower()]
  markers = dict(epochs=0, learning_rate=0.0, eval_every_epochs=0, eval_batch_size=0,
                 src_seq_length=0, tgt_seq_length=0, min_tgt_length=-1, length_penalty=-1.0,
                 no_repeat_ngram_size=-1, num_beams=0)
  names = dict(eval_every_epochs="eval_epoch")
  with config.unlocked():
    for key, marker in markers.items():
      if config[key] == marker:
        config[key] = type(marker)(defaults[names.get(key, key)])
    config.seq_length = config.src_seq_length + config.tgt_seq_length
  return config

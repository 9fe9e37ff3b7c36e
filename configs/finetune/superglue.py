"""Cloze finetuning on one SuperGLUE task, for any released GLM size (the shape comes from
`init_from`): `python -m glm_jax.finetune --config=configs/finetune/superglue.py
--config.task=copa --config.data_dir=DIR --config.init_from=CKPT --workdir=DIR`.

Setting `task` fills the per-task values of THUDM/GLM's `config_tasks/task_<task>.sh` (commit
4f61ed7) below unless they were set explicitly; the shared values are those of
`scripts/finetune_superglue.sh` and the task scripts' TRAIN_ARGS (lr 1e-5, batch 16 unless
the task says otherwise, warmup 10% then linear decay, weight decay 0.1, dropout on).
"""

from configs import common

# Per task: the values of config_tasks/task_<task>.sh (EPOCH_SINGLE, MAX_SEQ_LEN, BATCH_SIZE,
# --pattern-id, and WSC's --loss-func mix --length-penalty 1).
TASK_DEFAULTS = {
    # task_copa.sh: MAX_SEQ_LEN=256 (l.4), EPOCH_SINGLE=50 (l.7), --pattern-id 0 (l.13), BATCH_SIZE=16 (l.24)
    "copa": dict(epochs=50, seq_length=256, batch_size=16, pattern_id=0),
    # task_wsc.sh: MAX_SEQ_LEN=128 (l.4), EPOCH_SINGLE=50 (l.7), --loss-func mix (l.13),
    # --wsc-negative (l.14), --length-penalty 1 (l.15), --pattern-id 2 (l.16), BATCH_SIZE=16 (l.27)
    "wsc": dict(epochs=50, seq_length=128, batch_size=16, pattern_id=2, loss="mix",
                length_penalty=1.0),
    # task_rte.sh: MAX_SEQ_LEN=256 (l.4), EPOCH_SINGLE=50 (l.7), --pattern-id 0 (l.13), BATCH_SIZE=16 (l.24)
    "rte": dict(epochs=50, seq_length=256, batch_size=16, pattern_id=0),
    # task_boolq.sh: MAX_SEQ_LEN=256 (l.4), EPOCH_SINGLE=20 (l.7), --pattern-id 4 (l.13), BATCH_SIZE=16 (l.24)
    "boolq": dict(epochs=20, seq_length=256, batch_size=16, pattern_id=4),
    # task_wic.sh: MAX_SEQ_LEN=256 (l.4), EPOCH_SINGLE=30 (l.7), --pattern-id 1 (l.13), BATCH_SIZE=16 (l.24)
    "wic": dict(epochs=30, seq_length=256, batch_size=16, pattern_id=1),
    # task_cb.sh: MAX_SEQ_LEN=256 (l.4), EPOCH_SINGLE=50 (l.7), --pattern-id 3 (l.13), BATCH_SIZE=16 (l.24)
    "cb": dict(epochs=50, seq_length=256, batch_size=16, pattern_id=3),
    # task_multirc.sh: MAX_SEQ_LEN=512 (l.4), EPOCH_SINGLE=15 (l.7), --pattern-id 0 (l.14), BATCH_SIZE=64 (l.25)
    "multirc": dict(epochs=15, seq_length=512, batch_size=64, pattern_id=0),
    # task_record.sh: MAX_SEQ_LEN=512 (l.4), EPOCH_SINGLE=5 (l.7), --pattern-id 0 (l.13), BATCH_SIZE=64 (l.25)
    "record": dict(epochs=5, seq_length=512, batch_size=64, pattern_id=0),
}


def get_config():
  """The run config `--config=configs/finetune/superglue.py` loads (see the module docstring)."""
  config = common.get_base_config()
  config.task = ""                   # copa | wsc | rte | boolq | wic | cb | multirc | record
  config.data_dir = ""               # folder with the official train.jsonl / val.jsonl / test.jsonl
  config.data_source = "jsonl"       # jsonl (the official files) | tfds (super_glue/<task>; data_dir = TFDS data_dir or empty)
  config.tokenizer = ""              # released tokenizer dir (empty: the one stored beside init_from)
  config.tokenizer_kind = ""         # bert-uncased | gpt2 | ... (empty: from the tokenizer's tokenizer_config.json)
  config.pattern_id = -1             # the original's pattern id (-1: the task's default below)
  config.epochs = 0                  # passes over the training set (0: the task's default)
  config.loss = ""                   # cross_entropy | mix (WSC: -log p(referent) + cross-entropy); empty: task default
  config.length_penalty = -1.0       # multi-token scores / (answer tokens) ** this (-1: task default, 0 = off)
  config.eval_every_epochs = 1       # dev-set evaluation after every this many epochs
  config.eval_batch_size = 16        # examples per evaluation batch (the original's --eval-batch-size)
  config.predict_test = True         # after training, write test-set predictions in the submission format

  # Shared schedule of scripts/finetune_superglue.sh + TRAIN_ARGS.
  config.learning_rate = 1e-5        # LR_SINGLE
  config.warmup_ratio = 0.1          # --warmup 0.1
  config.decay_style = "linear"      # --lr-decay-style linear: linear warmup, then linear decay to the floor below
  config.min_learning_rate_ratio = 0.1  # decay ends at this fraction of the peak (arguments.py --lr-decay-ratio 0.1)
  config.weight_decay = 0.1          # --weight-decay 1.0e-1
  config.adam_b2 = 0.999             # the original's Adam defaults (arguments.py: --adam-beta2 0.999)
  config.adam_eps = 1e-8             # arguments.py: --adam-eps 1e-8
  config.global_batch_size = 0       # examples per step (0: the task's BATCH_SIZE)
  config.seq_length = 0              # MAX_SEQ_LEN (0: the task's)
  config.total_steps = 0             # derived: epochs * ceil(train examples / batch)
  config.eval_every_steps = 0        # also evaluate every this many steps (0: per epoch only)
  config.log_every_steps = 20        # --log-interval
  config.checkpoint_every_steps = 1000  # steps between resumable checkpoints
  config.keep_checkpoints = 1        # resumable checkpoints kept (the best one is kept apart)
  config.sample_tokens = 0           # no blank-filling sample at the end
  return config


def apply_task_defaults(config):
  """Fills the values left at their 'task default' markers from TASK_DEFAULTS[config.task]."""
  defaults = TASK_DEFAULTS[config.task.lower()]
  with config.unlocked():
    if config.pattern_id < 0:
      config.pattern_id = defaults["pattern_id"]
    if config.epochs <= 0:
      config.epochs = defaults["epochs"]
    if config.seq_length <= 0:
      config.seq_length = defaults["seq_length"]
    if config.global_batch_size <= 0:
      config.global_batch_size = defaults["batch_size"]
    if not config.loss:
      config.loss = defaults.get("loss", "cross_entropy")
    if config.length_penalty < 0:
      config.length_penalty = defaults.get("length_penalty", 0.0)
  return config

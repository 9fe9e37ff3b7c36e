"""The shared run config: every key on its own line, with its meaning and unit.

Size configs (`tiny.py`, `base.py`, `large.py`, ...) call `get_base_config()` and override a few
lines; the released sizes through the helpers at the end, which take the original's script flags
and json fields as written there. Override from the command line with `--config.key=value`.
"""

import ml_collections

from input_pipeline import config as data_config


def model_config(**overrides) -> ml_collections.ConfigDict:
  """GLM shape and numerics (fields of glm_jax.modeling.model.GLMConfig)."""
  model = ml_collections.ConfigDict()
  model.vocab_size = 30592           # word-embedding rows; a multiple of 128
  model.num_layers = 12              # transformer blocks
  model.hidden_size = 768            # model width
  model.num_heads = 12               # attention heads (head dim 64 in every release)
  model.max_sequence_length = 512    # position tables hold max_sequence_length + 1 rows
  model.mlp_ratio = 4                # FFN width / hidden size
  model.embedding_dropout = 0.1      # dropout after the embedding sum
  model.attention_dropout = 0.1      # dropout on attention probabilities
  model.hidden_dropout = 0.1         # dropout after each residual projection
  model.layernorm_epsilon = 1e-5     # LayerNorm epsilon
  model.init_std = 0.02              # init N(0, std); residual outputs std / sqrt(2 * layers)
  model.dtype = "bfloat16"           # compute dtype (softmax, LayerNorm, logits, loss stay fp32)
  model.param_dtype = "float32"      # parameter and optimizer-state dtype
  model.remat_policy = "none"        # activation checkpointing: none | full | dots | dots_no_batch
  model.attention_backend = "auto"   # auto | xla | cudnn | pallas (cudnn: GPU, bf16, no attention dropout; pallas: TPU kernel)
  model.attention_block_q = 512      # Pallas kernel, forward: query rows per block (TPU: a multiple of 128)
  model.attention_block_k = 512      # Pallas kernel, forward: key rows per block
  model.attention_block_q_backward = 512  # Pallas kernel, both backward passes: query rows per block
  model.attention_block_k_backward = 512  # Pallas kernel, both backward passes: key rows per block
  model.update(overrides)
  return model


def get_base_config() -> ml_collections.ConfigDict:
  """Every run key with its default; the size and finetuning configs override a few."""
  config = ml_collections.ConfigDict()
  config.model = model_config()
  config.data = data_config.default_data_config()     # corpus, tokenizer, span-sampling knobs
  config.vocab_from_tokenizer = False  # True: set model.vocab_size from the tokenizer (rounded up to 128)

  # Batch and length.
  config.seq_length = 512            # tokens per sample (Part A + Part B + padding)
  config.global_batch_size = 1024    # samples per optimizer step, over all hosts
  config.grad_accum_steps = 1        # micro-batches per optimizer step
  config.shard_state_over_data = True  # ZeRO: fp32 params, optimizer state and update split over mesh.data; each step gathers bf16 weights once

  # Optimizer (AdamW, linear warmup then decay: the original's AnnealingLR), the released GLM-Base recipe.
  config.learning_rate = 4e-4        # peak learning rate
  config.min_learning_rate_ratio = 0.1  # the decay ends at this fraction of the peak (--lr-decay-ratio)
  config.warmup_ratio = 0.05         # warmup steps as a fraction of lr_decay_steps (--warmup)
  config.lr_decay_steps = 0          # optimizer steps of warmup + decay; the floor holds after (0 = total_steps; --lr-decay-iters)
  config.decay_style = "cosine"      # cosine | linear | constant (--lr-decay-style)
  config.adam_b1 = 0.9               # Adam beta1
  config.adam_b2 = 0.98              # Adam beta2
  config.adam_eps = 1e-6             # Adam epsilon
  config.weight_decay = 0.1          # decoupled weight decay (not on biases or LayerNorm)
  config.grad_clip_norm = 1.0        # global-norm gradient clipping (0 disables)

  # Schedule of the run.
  config.total_steps = 200_000       # optimizer steps
  config.log_every_steps = 100       # steps between metric logs
  config.eval_every_steps = 2_000    # steps between held-out evaluations (0 disables)
  config.eval_steps = 20             # batches per evaluation
  config.checkpoint_every_steps = 2_000  # steps between checkpoints
  config.keep_checkpoints = 3        # checkpoints kept on disk
  config.seed = 0                    # seeds params, dropout and the data order
  config.stop_at_step = 0            # end this invocation at this step, with a checkpoint (0 = total_steps); the schedule still spans total_steps
  config.synthetic_data = False      # random batches in the GLM layout (tests, benchmarks): no tokenizer, no TensorFlow
  config.tensorboard = True          # also write metrics as TensorBoard summaries (workdir/tensorboard)
  config.restore_fallback = True     # latest checkpoint unreadable: move it aside, resume from the newest older one that reads (False = exit)
  config.profile_steps = ""          # "first:last" (e.g. "10:15"): jax.profiler trace of those steps into workdir/profile ("" = off)
  config.compilation_cache_dir = "{workdir}/compilation_cache"  # persistent XLA cache: a restart loads its compiled steps ('' = off; {workdir} = this run's workdir)
  config.sample_tokens = 24          # at the end, print one blank filled with up to this many tokens (0 = skip)

  # Parallelism: mesh axes (data, fsdp, tensor); -1 takes the remaining devices.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1              # data parallelism (params computed replicated; stored split by shard_state_over_data)
  config.mesh.fsdp = 1               # params and optimizer state sharded, batch split too
  config.mesh.tensor = 1             # heads / FFN / vocab split (Megatron-style)

  config.init_from = ""              # params checkpoint (from `glm_jax.convert import`) to start from
  config.from_scratch = False        # finetune only: start from random params on purpose (else init_from is required)
  config.peak_tflops = 0.0           # per-chip bf16 peak for MFU; 0 = look up the chip
  return config


def set_model_shape(config, *, num_layers: int, hidden_size: int, num_heads: int,
                    vocab_size: int, max_sequence_length: int) -> None:
  """Sets the five model fields that tell GLM's released sizes apart (the rest is shared)."""
  config.model.update(num_layers=num_layers, hidden_size=hidden_size, num_heads=num_heads,
                      vocab_size=vocab_size, max_sequence_length=max_sequence_length)


# The released pretraining flags our configs take (THUDM/GLM 4f61ed7, config/ds_block_*.sh;
# arguments.py defines them), spelled as there (`--lr-decay-iters` -> lr_decay_iters), and the key
# each sets. `task_mask=False` stands for a script without --task-mask.
SCRIPT_FLAG_KEYS = {
    "train_iters": "total_steps",
    "lr_decay_iters": "lr_decay_steps",
    "lr_decay_style": "decay_style",
    "lr_decay_ratio": "min_learning_rate_ratio",
    "warmup": "warmup_ratio",
    "bert_prob": "data.bert_prob",
    "gap_sentence_prob": "data.gap_sentence_prob",
    "gpt_min_ratio": "data.gpt_min_ratio",
    "avg_block_length": "data.poisson_lambda",
    "task_mask": "data.task_mask",
    "block_mask_prob": "data.block_mask_prob",
    "short_seq_prob": "data.short_seq_prob",
    "fix_command_token": "data.fix_command_token",
}

# The optimizer fields of the released DeepSpeed configs (config/config_block_*.json: "optimizer"
# "params", and top-level "gradient_accumulation_steps") our configs take, and the keys they set
# ("betas" is one field for two keys).
DEEPSPEED_JSON_KEYS = {
    "lr": "learning_rate",
    "weight_decay": "weight_decay",
    "betas": ("adam_b1", "adam_b2"),
    "eps": "adam_eps",
    "gradient_accumulation_steps": "grad_accum_steps",
}


def _set_released_values(config, table, kind: str, values) -> None:
  """Sets the keys `table` maps each released name to (a dotted key is in a section; a tuple of
  keys takes a sequence value, one item each); an unknown name is a ValueError naming it."""
  for name, value in values.items():
    if name not in table:
      raise ValueError(f"no config key for the {kind} {name!r}; "
                       f"known {kind}s: {', '.join(table)}.")
    keys = table[name]
    for key, item in zip(keys, value, strict=True) if isinstance(keys, tuple) else [(keys, value)]:
      section, _, leaf = key.rpartition(".")
      (config[section] if section else config)[leaf] = item


def set_from_script_flags(config, **flags) -> None:
  """Sets our keys from a released pretraining script's flags, each value written as in the
  script (the config line then cites itself); see SCRIPT_FLAG_KEYS."""
  _set_released_values(config, SCRIPT_FLAG_KEYS, "pretraining flag", flags)


def set_from_deepspeed_json(config, **fields) -> None:
  """Sets our optimizer keys from a released config_block_*.json's fields, written as in the
  json; see DEEPSPEED_JSON_KEYS."""
  _set_released_values(config, DEEPSPEED_JSON_KEYS, "DeepSpeed json field", fields)


def set_multitask_recipe(config, *, bert_prob: float, lr_decay_iters: int) -> None:
  """The flags config/ds_block_10B.sh and config/ds_block_large_chinese.sh (THUDM/GLM 4f61ed7)
  share: GLM's multi-task objective (token, sentence and document blanks, --task-mask,
  --block-mask-prob: the tokenizer needs [dBLOCK], --short-seq-prob) and its schedule. Of these
  flags the two scripts differ only in --bert-prob (0.5 / 0.4) and --lr-decay-iters
  (175000 / 200000): the caller's."""
  set_from_script_flags(
      config, task_mask=True, bert_prob=bert_prob, gap_sentence_prob=0.3, avg_block_length=3,
      gpt_min_ratio=0.25, block_mask_prob=0.1, short_seq_prob=0.02, train_iters=250000,
      lr_decay_style="cosine", lr_decay_ratio=0.1, lr_decay_iters=lr_decay_iters, warmup=0.04)


def shard_over_all_devices(config) -> None:
  """Mesh for the sizes whose params and optimizer state do not fit one chip: all of it FSDP."""
  config.mesh.data = 1
  config.mesh.fsdp = -1

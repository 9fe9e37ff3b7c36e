"""Checks a run config before anything compiles; each problem is one message naming the key."""

from __future__ import annotations

from glm_jax.errors import ConfigError
from glm_jax.modeling import attention
from glm_jax.modeling import model as model_lib
from glm_jax.modeling import sharding
from glm_jax.storage import paths
from glm_jax.training import optim


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _check_schedule(config) -> None:
  for key in ("total_steps", "log_every_steps", "checkpoint_every_steps", "eval_steps",
              "keep_checkpoints", "global_batch_size", "grad_accum_steps", "seq_length"):
    value = config[key]
    _require(isinstance(value, int) and value > 0,
             f"{key} must be a positive integer, got {value!r}.")
  for key in ("eval_every_steps", "stop_at_step", "seed", "sample_tokens"):
    _require(isinstance(config[key], int) and config[key] >= 0,
             f"{key} must be an integer >= 0, got {config[key]!r}.")


def _check_profile_steps(config) -> None:
  from glm_jax.training import profiling  # pylint: disable=g-import-not-at-top
  try:
    profiling.parse_steps(config.get("profile_steps", ""))
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _check_optimizer(config) -> None:
  optim.check_schedule(config)
  for key in ("adam_b1", "adam_b2"):
    _require(0 <= config[key] < 1, f"{key} must be in [0, 1), got {config[key]}.")
  _require(config.adam_eps > 0, f"adam_eps must be > 0, got {config.adam_eps}.")
  _require(config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}.")
  _require(config.grad_clip_norm >= 0,
           f"grad_clip_norm must be >= 0 (0 disables), got {config.grad_clip_norm}.")


def model_config(config) -> model_lib.GLMConfig:
  """The config's model with GLMConfig's own rules (sizes, dtypes, names) as a ConfigError."""
  try:
    return model_lib.as_glm_config(config)
  except (TypeError, ValueError) as e:
    raise ConfigError(str(e)) from None


def mesh_shape(mesh_config, num_devices: int, keys: str = "config.mesh") -> tuple[int, ...]:
  """`sharding.mesh_shape`; a refusal is a ConfigError naming `keys` (where the sizes came from)."""
  try:
    return sharding.mesh_shape(mesh_config, num_devices)
  except ValueError as e:
    raise ConfigError(f"{keys}: {e}") from None


def _check_batch(config, num_devices: int, process_count: int) -> None:
  data, fsdp, tensor = mesh_shape(config.mesh, num_devices)
  batch, accum = config.global_batch_size, config.grad_accum_steps
  shards = data * fsdp
  del process_count  # rows follow the mesh (sharding.held_row_blocks), not the process count
  _require(batch % (shards * accum) == 0,
           f"global_batch_size={batch} must be divisible by grad_accum_steps ({accum}) x the "
           f"batch-sharding devices (mesh data x fsdp = {data} x {fsdp} = {shards}); e.g. use "
           "--config.global_batch_size="
           f"{max(1, round(batch / (shards * accum))) * shards * accum}.")
  del tensor


def validate(config, num_devices: int, process_count: int) -> None:
  """Raises ConfigError on the first value that cannot work on these devices."""
  _check_schedule(config)
  _check_profile_steps(config)
  _check_optimizer(config)
  model_cfg = model_config(config)
  # Positions count raw tokens: the row in length_mode 'fit', data.raw_length in 'raw'.
  raw_mode = config.data.get("length_mode", "fit") == "raw"
  key = "data.raw_length" if raw_mode else "seq_length"
  positions = config.data.raw_length if raw_mode else config.seq_length
  fix = (f"lower {key} (the position tables come with init_from={config.init_from})"
         if config.get("init_from") else f"lower {key} or raise model.max_sequence_length")
  _require(positions <= model_cfg.max_sequence_length + 1,
           f"{key}={positions} exceeds the position tables "
           f"(model.max_sequence_length + 1 = {model_cfg.max_sequence_length + 1} rows); {fix}.")
  _require(model_cfg.dtype != "float16",
           "model.dtype='float16' is refused: training here has no dynamic loss scaling, so "
           "float16 gradients underflow or overflow; use --config.model.dtype=bfloat16 (float32's "
           "range, no loss scaling needed) or float32.")
  _check_batch(config, num_devices, process_count)
  try:  # e.g. cudnn on a machine without a GPU: refused here, not as a traceback of the step
    attention.resolve_backend(model_cfg.attention_backend, dtype=model_cfg.dtype,
                              training_with_dropout=model_cfg.attention_dropout > 0)
  except ValueError as e:
    raise ConfigError(str(e).replace("attention_backend=", "model.attention_backend=")) from None
  _require(not config.init_from or paths.as_path(config.init_from).is_dir(),
           f"init_from={config.init_from!r} is not a directory (expected a params checkpoint "
           "from `python -m glm_jax.convert import`).")


def check_vocab(config, tokenizer_vocab: int | None) -> None:
  """The word embedding must have a row for every token id the tokenizer emits."""
  if tokenizer_vocab is not None:
    _require(tokenizer_vocab <= config.model.vocab_size,
             f"The tokenizer has {tokenizer_vocab} tokens but model.vocab_size="
             f"{config.model.vocab_size}; set --config.vocab_from_tokenizer=True or a larger "
             "model.vocab_size.")

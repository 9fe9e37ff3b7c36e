"""Params-only checkpoints for inference: take the params out of a training checkpoint (no
optimizer state), optionally cast them to bfloat16, and read them back with their model shape.

The exported directory is a plain `checkpoint.save_params` checkpoint, so `glm_jax.generate`,
`--config.init_from` and `python -m glm_jax.convert export` all read it. The model's shape is
not stored beside it: every `GLMConfig` shape field follows from the parameter shapes
(`infer_config`), so a file cannot disagree with its config.

CLI:
  python -m glm_jax.export --workdir=WORKDIR [--step=N] --output=DIR [--dtype=bfloat16]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from glm_jax import checkpoint as checkpoint_lib
from glm_jax import paths
from glm_jax.model import GLMConfig, strip_boxes


def infer_config(params, dtype: str | None = None) -> GLMConfig:
  """The model shape of a params tree (inference config: no dropout).

  dtype: compute dtype; default the params' own dtype (bf16 params compute in bf16)."""
  try:
    vocab, hidden = params["word_embeddings"]["embedding"].shape
    positions = params["position_embeddings"]["embedding"].shape[0]
    qkv = params["layers"]["attention"]["query_key_value"]["kernel"].shape  # [L, h, 3, H, d]
    ffn = params["layers"]["mlp"]["dense_h_to_4h"]["kernel"].shape[-1]
  except (KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"Not a GLM params tree (missing {e}); export one with "
                     "glm_jax.export or convert it with `python -m glm_jax.convert import`.") from e
  param_dtype = jnp.dtype(params["word_embeddings"]["embedding"].dtype).name
  return GLMConfig(vocab_size=int(vocab), num_layers=int(qkv[0]), hidden_size=int(hidden),
                   num_heads=int(qkv[3]), max_sequence_length=int(positions) - 1,
                   mlp_ratio=int(ffn) // int(hidden), embedding_dropout=0.0,
                   attention_dropout=0.0, hidden_dropout=0.0, dtype=dtype or param_dtype,
                   param_dtype=param_dtype)


def cast_params(params, dtype):
  """Floating-point leaves to `dtype` (e.g. bfloat16 halves the file); others unchanged."""
  dtype = jnp.dtype(dtype)
  return jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
      else x, params)


def save_for_inference(path: str, params, dtype: str | None = None) -> None:
  """Writes a params-only checkpoint, cast to `dtype` when given."""
  params = strip_boxes(params)
  infer_config(params)  # refuse to write something generate could not read back
  if dtype is not None:
    params = cast_params(params, dtype)
  checkpoint_lib.save_params(path, params)


def load_for_inference(path: str, dtype: str | None = None):
  """(GLMConfig, params) from a params-only checkpoint; `dtype` sets the compute dtype."""
  params = strip_boxes(checkpoint_lib.load_params(path))
  return infer_config(params, dtype), params


def latest_step(workdir: str) -> int:
  directory = paths.as_path(workdir) / "checkpoints"
  steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) \
      if directory.is_dir() else []
  if not steps:
    raise FileNotFoundError(f"No training checkpoints under {directory}; pass the --workdir "
                            "that `python -m glm_jax.train` wrote.")
  return steps[-1]


def params_from_training_checkpoint(workdir: str, step: int | None = None):
  """The params of a training checkpoint (`workdir/checkpoints/<step>/state`), as numpy.

  The optimizer state is read with the rest (Orbax restores the stored tree) and dropped here.
  """
  import orbax.checkpoint as ocp
  step = latest_step(workdir) if step is None else int(step)
  path = paths.as_path(workdir) / "checkpoints" / str(step) / "state"
  if not path.is_dir():
    raise FileNotFoundError(f"No train state at {path}; choose a step under {path.parent.parent}.")
  state = ocp.StandardCheckpointer().restore(path)
  params = state["params"] if isinstance(state, dict) else state.params
  return jax.tree_util.tree_map(np.asarray, params)


def main(argv):
  del argv
  from absl import flags
  from glm_jax import cli
  cli.quiet_logs()
  f = flags.FLAGS
  params = params_from_training_checkpoint(f.workdir, f.step)
  save_for_inference(f.output, params, f.dtype)
  from input_pipeline import tokenizer as tokenizer_lib  # the run's tokenizer goes along
  tokenizer = tokenizer_lib.tokenizer_beside(f.workdir)
  if tokenizer is not None:
    tokenizer_lib.store_beside(tokenizer, f.output)
  cfg = infer_config(params)
  print(f"Wrote inference params ({cfg.num_layers} layers, hidden {cfg.hidden_size}, "
        f"{f.dtype or cfg.param_dtype}) to {paths.as_path(f.output)}")


if __name__ == "__main__":
  from glm_jax import cli
  from absl import flags
  flags.DEFINE_string("workdir", None, "Training workdir (holds checkpoints/<step>/state).")
  flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
  flags.DEFINE_string("output", None, "Directory to write the params-only checkpoint to.")
  flags.DEFINE_string("dtype", None, "Cast params to this dtype (e.g. bfloat16); default keep.")
  flags.mark_flags_as_required(["workdir", "output"])
  cli.run(main)

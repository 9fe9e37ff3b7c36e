"""The model shape a params tree implies, and the check that a tree has the shape a config wants.

Every `GLMConfig` shape field follows from the parameter shapes (`infer_config`), so a params
checkpoint needs no config file beside it; `check_param_shapes` names every parameter that
differs. Pure functions of shapes: nothing here reads or writes a file.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from glm_jax.errors import CheckpointMismatchError
from glm_jax.modeling import quantization as quantization_lib
from glm_jax.modeling.model import GLMConfig

PARAM_DTYPES = ("float32", "bfloat16", "float16")  # what params may be stored / computed in


def _leaf_shapes(tree) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(getattr(leaf, "shape", ())) for path, leaf in flat}


def check_param_shapes(stored, expected, where: str) -> None:
  """Raises CheckpointMismatchError naming every parameter whose shape (or presence) differs."""
  stored, expected = _leaf_shapes(stored), _leaf_shapes(expected)
  problems = [f"  {k}: checkpoint {stored[k]} vs config {expected[k]}"
              for k in sorted(set(stored) & set(expected)) if stored[k] != expected[k]]
  problems += [f"  {k}: missing from the checkpoint" for k in sorted(set(expected) - set(stored))]
  problems += [f"  {k}: in the checkpoint, not in the model"
               for k in sorted(set(stored) - set(expected))]
  if problems:
    shown = "\n".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
    raise CheckpointMismatchError(
        f"The checkpoint at {where} holds a model of another shape than the config:\n{shown}\n"
        "Use the config the checkpoint was trained with (model.* keys), or a fresh --workdir.")


def infer_config(params, dtype: str | None = None, quantization: str | None = None) -> GLMConfig:
  """The model shape of a params tree (inference config: no dropout).

  Every `GLMConfig` shape field follows from the parameter shapes, so a params checkpoint needs no
  config file beside it and cannot disagree with one. `params` may be arrays or Orbax metadata.
  dtype: compute dtype; default the params' own dtype (bf16 params compute in bf16).
  quantization: what the checkpoint records (`params_io.read_quantization`); it must match the tree
  (int8 kernels with scales, or float ones). None: taken from the tree.
  """
  try:
    vocab, hidden = params["word_embeddings"]["embedding"].shape
    positions = params["position_embeddings"]["embedding"].shape[0]
    qkv = params["layers"]["attention"]["query_key_value"]["kernel"].shape  # [L, h, 3, H, d]
    ffn = params["layers"]["mlp"]["dense_h_to_4h"]["kernel"].shape[-1]
  except (KeyError, TypeError, AttributeError) as e:
    raise CheckpointMismatchError(
        f"Not a GLM params tree (missing {e}); extract one with `python -m "
        "glm_jax.extract_params` or convert it with `python -m glm_jax.convert import`.") from e
  param_dtype = jnp.dtype(params["word_embeddings"]["embedding"].dtype).name
  if param_dtype not in PARAM_DTYPES:
    raise CheckpointMismatchError(
        f"the params are stored as {param_dtype}; generate, evaluate and finetune read "
        f"{', '.join(PARAM_DTYPES)}: extract them again with --dtype=bfloat16 (or no --dtype).")
  in_tree = quantization_lib.params_method(params)
  if quantization is not None and quantization != in_tree:
    raise CheckpointMismatchError(
        f"The checkpoint records quantization {quantization or 'none'!r} but its kernels are "
        f"{in_tree or 'float'}; it was altered after writing: extract or convert it again.")
  return GLMConfig(vocab_size=int(vocab), num_layers=int(qkv[0]), hidden_size=int(hidden),
                   num_heads=int(qkv[3]), max_sequence_length=int(positions) - 1,
                   mlp_ratio=int(ffn) // int(hidden), embedding_dropout=0.0,
                   attention_dropout=0.0, hidden_dropout=0.0, dtype=dtype or param_dtype,
                   param_dtype=param_dtype, quantization=in_tree)

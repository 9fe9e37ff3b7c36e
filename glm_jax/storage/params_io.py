"""Params-only checkpoints: a plain nested dict of arrays in one Orbax folder (plus
`quantization.json` when its dense kernels are int8), read and written only here.

`glm_jax.convert` and `glm_jax.extract_params` write them (`save_params`, `save_for_inference`);
`--config.init_from`, `generate`, `evaluate` and `finetune` read them (`load_params`,
`load_for_inference`, `stored_config`), the model shape coming from the params
(glm_jax.modeling.model_shape). `restore_sharded` reads any params tree straight into its shardings.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from glm_jax.errors import CheckpointMismatchError
from glm_jax.modeling import quantization as quantization_lib
from glm_jax.modeling import sharding
from glm_jax.modeling.model import GLMConfig, strip_boxes
from glm_jax.modeling.model_shape import check_param_shapes, infer_config
from glm_jax.storage import io_failures
from glm_jax.storage import outputs
from glm_jax.storage import paths


def write_params(path, params) -> None:
  """Writes a params-only Orbax checkpoint (a plain nested dict of arrays) to the new folder
  `path` (see `save_params` for writing a user's --output)."""
  io_failures.quiet_failed_writes()
  checkpointer = ocp.StandardCheckpointer()
  try:
    checkpointer.save(paths.as_path(path), params)
    checkpointer.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    if io_failures.write_failure(e) is not None:
      raise io_failures.save_error(e, "params", path) from None
    raise


def save_params(path: str, params, *, command: str = "save_params",
                overwrite: bool = False) -> None:
  """Writes a params-only checkpoint to `path` through `outputs.directory`: a folder that holds
  anything but a previous `command` output is refused, and with `overwrite` only that is
  replaced."""
  with outputs.directory(path, command, overwrite) as tmp:
    write_params(tmp, params)


def params_directory(path):
  """`path` as a Path when it is a params checkpoint's folder; one line otherwise (nothing there,
  or a training workdir, which `extract_params` turns into one)."""
  path = paths.as_path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"No params checkpoint at {path} (expected a directory written by "
                            "glm_jax.storage.params_io.save_params / `python -m glm_jax.convert "
                            "import`).")
  if (path / "checkpoints").is_dir() and not (path / "_METADATA").exists():
    raise FileNotFoundError(
        f"{path} is a training workdir, not a params checkpoint: extract one with `python -m "
        f"glm_jax.extract_params --workdir={path} --output=DIR` and pass DIR.")
  return path


def load_params(path: str, target_shapes=None, shardings=None):
  """Reads a `save_params` checkpoint; with `target_shapes`, checks shapes and places shards.

  target_shapes: tree of ShapeDtypeStructs (e.g. `model.param_shapes(config)`); shardings: a
  matching tree of `jax.sharding.Sharding` (optional). Without a target, arrays come back as
  they were saved, on this process's default device.
  """
  path = params_directory(path)
  checkpointer = ocp.StandardCheckpointer()
  if target_shapes is None:  # on this process's first device, whatever mesh wrote it
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    stored = shapes_of(stored_tree(checkpointer, path))
    return checkpointer.restore(path, sharding.abstract_arrays(
        stored, jax.tree_util.tree_map(lambda _: device, stored)))
  check_param_shapes(stored_tree(checkpointer, path), target_shapes, path)
  return checkpointer.restore(path, sharding.abstract_arrays(target_shapes, shardings))


def stored_tree(checkpointer, path):
  """The stored tree of shapes and dtypes (nothing is read but the metadata)."""
  stored = checkpointer.metadata(path)
  stored = getattr(stored, "item_metadata", stored)
  return getattr(stored, "tree", stored)



QUANTIZATION_FILE = "quantization.json"


def read_quantization(path: str) -> str:
  """The quantization recorded in a params checkpoint: 'int8', or '' when none is recorded.

  A recorded method this version does not know is refused (its kernels would be misread).
  """
  record = paths.as_path(path) / QUANTIZATION_FILE
  if not record.exists():
    return ""
  method = json.loads(record.read_text()).get("method", "")
  if method not in quantization_lib.METHODS:
    raise CheckpointMismatchError(
        f"{record} records quantization {method!r}, which this glm_jax cannot read (it knows "
        f"{sorted(quantization_lib.METHODS)}); use a newer glm_jax or re-extract the params.")
  return method


def _record_quantization(path: str, method: str) -> None:
  record = {"method": method, "scheme": quantization_lib.METHODS[method],
            "scale_dtype": jnp.dtype(quantization_lib.SCALE_DTYPE).name,
            "kernels": ["layers/" + "/".join(k) + "/kernel"
                        for k in quantization_lib.DENSE_KERNELS]}
  paths.write_text_atomic(paths.as_path(path) / QUANTIZATION_FILE, json.dumps(record, indent=1))


def stored_config(path: str) -> GLMConfig:
  """The model shape of the params checkpoint at `path`, from its metadata (nothing is loaded).

  Lets finetuning size its model from `--config.init_from` before any array is read.
  """
  return infer_config(stored_tree(ocp.StandardCheckpointer(), paths.as_path(path)),
                      quantization=read_quantization(path))


def cast_params(params, dtype):
  """Floating-point leaves to `dtype` (e.g. bfloat16 halves the file); others unchanged."""
  dtype = jnp.dtype(dtype)
  return jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
      else x, params)


def for_inference(params, dtype: str | None = None, quantize: str | None = None):
  """The params as inference reads them: unboxed, checked to be a GLM tree, then cast to `dtype`
  or, with quantize="int8", int8 dense kernels with per-output-channel scales and everything
  else bfloat16 (glm_jax.modeling.quantization)."""
  params = strip_boxes(params)
  infer_config(params)  # refuse to write something generate could not read back
  quantize = quantization_lib.check_method(quantize, dtype)
  if quantize:
    if quantization_lib.params_method(params):
      raise quantization_lib.QuantizationError(
          "these params are quantized already; quantize the float params they came from.")
    return quantization_lib.quantize_params(params, quantize)
  return cast_params(params, dtype) if dtype is not None else params


def write_for_inference(directory, params, quantize: str | None = None) -> None:
  """`write_params` of `for_inference` params into the new folder `directory`, with
  `quantization.json` recording how they were quantized (process 0 writes it; every process
  writes its shards)."""
  write_params(directory, params)
  if quantize and jax.process_index() == 0:
    _record_quantization(directory, quantize)


def save_for_inference(path: str, params, dtype: str | None = None,
                       quantize: str | None = None, **output) -> None:
  """Writes a params-only checkpoint, cast to `dtype` or quantized (`for_inference`; inference
  needs no optimizer) through `outputs.directory`; `output`: save_params' command / overwrite."""
  params = for_inference(params, dtype, quantize)
  command, overwrite = output.get("command", "save_params"), output.get("overwrite", False)
  with outputs.directory(path, command, overwrite) as tmp:
    write_for_inference(tmp, params, quantize)


def load_for_inference(path: str, dtype: str | None = None, mesh=None):
  """(GLMConfig, params) from a params-only checkpoint; `dtype` sets the compute dtype.

  The one way generate, evaluate and finetune read a model: the shape comes from the params, the
  quantization from what the checkpoint records (checked against the params).
  With a `mesh`, every leaf is read straight into the NamedSharding its logical axes give on that
  mesh (each process reads only the shards its devices hold; no whole copy anywhere). Without
  one, arrays come back as they were saved, on this process's default device.
  """
  quantization = read_quantization(path)
  if mesh is None:
    params = strip_boxes(load_params(path))
    return infer_config(params, dtype, quantization=quantization), params
  path = params_directory(path)
  stored = stored_tree(ocp.StandardCheckpointer(), path)
  config = infer_config(stored, dtype, quantization=quantization)
  return config, restore_sharded(path, shapes_of(stored), mesh, config)


def shapes_of(stored):
  """ShapeDtypeStructs of a stored (metadata) tree."""
  return jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), stored)


def restore_sharded(path, shapes, mesh, config, subtree: str | None = None, dtype=None):
  """The params at `path` (or its `subtree`, e.g. the train state's 'params': nothing else is
  read) placed on `mesh` by their logical axes; floating leaves cast to `dtype` as they are read."""
  shardings = sharding.param_shardings(config, shapes, mesh)
  cast = jnp.dtype(dtype) if dtype is not None else None
  target = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(
          s.shape, cast if cast is not None and jnp.issubdtype(s.dtype, jnp.floating) else s.dtype,
          sharding=sh), shapes, shardings)
  if subtree is not None:
    target = {subtree: target}
  restore_args = ocp.checkpoint_utils.construct_restore_args(target)
  restored = ocp.PyTreeCheckpointer().restore(
      paths.as_path(path), args=ocp.args.PyTreeRestore(
          item=target, restore_args=restore_args, partial_restore=subtree is not None))
  return restored[subtree] if subtree is not None else restored

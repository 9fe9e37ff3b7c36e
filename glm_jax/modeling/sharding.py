"""Device mesh from config, the logical-axis rules, and placing params and batches on the mesh.

Parameters and activations carry logical axis names (see model.py); one small table maps them to
the mesh axes ('data', 'fsdp', 'tensor'). Changing the parallelism is a config change.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from glm_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axes. Params: FSDP shards the embed dimension, tensor parallelism splits
# heads, FFN width and vocabulary. Activations: batch over data x fsdp, heads/FFN over tensor.
LOGICAL_RULES: tuple[tuple[str, object], ...] = (
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_vocab", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("qkv", None),
    ("position", None),
    ("layers", None),
    # the KV cache [layers, batch, length, heads, head_dim]: rows like activations,
    # heads over tensor
    ("cache_layers", None),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
    ("cache_heads", "tensor"),
    ("cache_kv", None),
)


def mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves the one -1 entry (if any) so the axes multiply to the device count."""
  sizes = [int(mesh_config[a]) for a in MESH_AXES]
  free = [i for i, s in enumerate(sizes) if s == -1]
  if len(free) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))}: give positive sizes and at most one "
                     "-1 (which takes the remaining devices).")
  known = math.prod(s for s in sizes if s != -1)
  if free:
    if num_devices % known:
      raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))}: the fixed axes ({known} devices) do "
                       f"not divide the {num_devices} devices.")
    sizes[free[0]] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices but "
                     f"{num_devices} are available; set one axis to -1 or match the count.")
  return tuple(sizes)


def slice_count(devices: Sequence[jax.Device]) -> int:
  """How many TPU slices (joined over DCN) the devices span; 1 for devices without slices."""
  return len({getattr(d, "slice_index", 0) for d in devices})


def device_grid(mesh_config: Mapping[str, int], devices: Sequence[jax.Device]) -> np.ndarray:
  """The devices as a `(data, fsdp, tensor)` array laid out on their physical links.

  Inside a slice the axes follow the ICI torus; over several slices the slower DCN links carry
  the first axis the slice count divides (data, else fsdp), so only its collectives cross slices.
  """
  from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
  shape = mesh_shape(mesh_config, len(devices))
  slices = slice_count(devices)
  if slices == 1:
    return mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
  dcn_axis = next((i for i, s in enumerate(shape[:2]) if s % slices == 0), None)
  if dcn_axis is None:
    raise ConfigError(
        f"config.mesh {dict(zip(MESH_AXES, shape))}: neither data nor fsdp is a multiple of the "
        f"{slices} slices; make data (or fsdp) divisible by num_slices.")
  dcn = [slices if i == dcn_axis else 1 for i in range(len(shape))]
  ici = [s // d for s, d in zip(shape, dcn)]
  return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, allow_split_physical_axes=True)


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[jax.Device] | None = None):
  """The one mesh builder of every command (train, finetune, evaluate, generate, the harness,
  --compile_only): `(data, fsdp, tensor)` over `devices` (default: every process's; a TPU
  topology's for compile-only), with Auto axis types (GSPMD propagates the rest)."""
  devices = list(devices) if devices is not None else jax.devices()
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.sharding.Mesh(device_grid(mesh_config, devices), MESH_AXES, axis_types=axis_types)


def slices_per_axis(mesh) -> dict[str, int]:
  """How many slices each mesh axis crosses (its DCN part; 1 everywhere on one slice)."""
  grid = np.vectorize(lambda d: getattr(d, "slice_index", 0), otypes=[int])(mesh.devices)
  return {axis: len(np.unique(np.moveaxis(grid, i, 0)[(slice(None),) + (0,) * (grid.ndim - 1)]))
          for i, axis in enumerate(mesh.axis_names)}


def logical_to_sharding(logical_tree, shapes_tree, mesh, rules=LOGICAL_RULES):
  """NamedShardings for a tree of logical axis specs.

  A dimension that a mesh axis does not divide evenly (e.g. a vocabulary of 100 over tensor=2)
  stays replicated along that dimension rather than failing.
  """
  def one(spec, shape):
    mesh_spec = nn.logical_to_mesh_axes(tuple(spec) if spec is not None else (), rules)
    dims = []
    for size, axes in zip(shape.shape, tuple(mesh_spec) + (None,) * len(shape.shape)):
      names = (axes,) if isinstance(axes, str) else tuple(axes or ())
      width = math.prod(mesh.shape[a] for a in names)
      dims.append(axes if names and size % width == 0 else None)
    return NamedSharding(mesh, P(*dims))

  return jax.tree_util.tree_map(one, logical_tree, shapes_tree,
                                is_leaf=lambda x: isinstance(x, P) or x is None)


@functools.lru_cache(maxsize=None)
def _param_logical_axes(cfg):
  # (model does not import us)
  from glm_jax.modeling import model  # pylint: disable=g-import-not-at-top
  return model.logical_axes(cfg)


def param_shardings(config, shapes, mesh):
  """NamedShardings of a GLM params tree (`shapes`: arrays or ShapeDtypeStructs) on `mesh`,
  from the params' logical axes: the one place every command places a model."""
  from glm_jax.modeling import model  # pylint: disable=g-import-not-at-top
  return logical_to_sharding(_param_logical_axes(model.as_glm_config(config)), shapes, mesh)


def replicated(mesh) -> NamedSharding:
  """Every device holds the whole value (small inputs and outputs of a jitted call)."""
  return NamedSharding(mesh, P())


def put_replicated(value, mesh):
  """A host value (the same on every process) as a global array replicated over `mesh`."""
  host = np.asarray(value)
  if jax.process_count() == 1:
    return jax.device_put(host, replicated(mesh))
  return jax.make_array_from_callback(host.shape, replicated(mesh), lambda index: host[index])


def spread_over_data(shardings, shapes, mesh):
  """ZeRO: each sharding also split over the `data` axis, on its first dimension that is not
  sharded yet (or only over axes of size 1) and that `data` divides (arrays with none stay as
  they are). For params, optimizer state and the update on data-parallel meshes, so each chip
  updates only its slice."""
  if "data" not in mesh.axis_names or mesh.shape["data"] == 1:
    return shardings
  width = mesh.shape["data"]

  def names(axes):
    return (axes,) if isinstance(axes, str) else tuple(axes or ())

  def one(named, shape):
    spec = tuple(named.spec) + (None,) * (len(shape.shape) - len(named.spec))
    if any("data" in names(axes) for axes in spec):
      return named
    for i, (size, axes) in enumerate(zip(shape.shape, spec)):
      # A dimension is free when its mesh axes (if any) all have size 1.
      if math.prod(mesh.shape[a] for a in names(axes)) == 1 and size % width == 0:
        return NamedSharding(named.mesh, P(*spec[:i], "data", *spec[i + 1:]))
    return named

  return jax.tree_util.tree_map(one, shardings, shapes)


def batch_sharding(mesh, ndim: int = 2) -> NamedSharding:
  """Batches split their leading dimension over data x fsdp."""
  return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def num_row_blocks(mesh) -> int:
  """How many distinct blocks of rows a batch splits into: one per (data, fsdp) coordinate."""
  return int(mesh.shape["data"]) * int(mesh.shape["fsdp"])


def held_row_blocks(mesh) -> tuple[int, ...]:
  """The row blocks this process's devices hold, in order (from the batch sharding's
  addressable indices): the only rows it has to build. Processes whose devices share a
  (data, fsdp) coordinate (a tensor axis across hosts) hold, and so build, the same blocks."""
  indices = batch_sharding(mesh, 1).addressable_devices_indices_map((num_row_blocks(mesh),))
  return tuple(sorted({int(index[0].start or 0) for index in indices.values()}))


def fed_row_blocks(mesh) -> tuple[tuple[int, ...], int]:
  """(the row blocks this process builds, how many blocks a batch has): `held_row_blocks` on a
  mesh; every row as one block without one (a single-process caller that places rows itself)."""
  if mesh is None:
    return (0,), 1
  return held_row_blocks(mesh), num_row_blocks(mesh)


def check_feedable(mesh, global_batch: int) -> None:
  """Raises ValueError (one line: the mesh and the fix) unless every device of this process
  holds whole, non-empty row blocks of a `global_batch`-row batch. Run before compiling."""
  blocks = num_row_blocks(mesh)
  if global_batch < blocks or global_batch % blocks:
    raise ValueError(
        f"mesh {dict(mesh.shape)} splits the batch into data x fsdp = {blocks} row blocks, which "
        f"global_batch_size={global_batch} cannot fill evenly; use a multiple of {blocks} "
        f"(e.g. --config.global_batch_size={max(1, round(global_batch / blocks)) * blocks}) or "
        "move devices from data/fsdp to tensor")
  rows = global_batch // blocks
  shape = (global_batch,)
  for device, index in batch_sharding(mesh, 1).addressable_devices_indices_map(shape).items():
    start, stop = index[0].indices(global_batch)[:2]
    if start % rows or stop - start != rows:
      raise ValueError(f"mesh {dict(mesh.shape)}: device {device} holds rows {start}:{stop}, not "
                       f"one block of {rows}; build the mesh with sharding.make_mesh")


def put_batch(batch: Mapping[str, np.ndarray], mesh):
  """This process's rows -> global arrays. `batch` holds the rows of `held_row_blocks(mesh)`,
  block after block; each device takes its block from them (replicas read the same rows)."""
  blocks = held_row_blocks(mesh)
  slot = {block: i for i, block in enumerate(blocks)}
  def place(v):
    v = np.asarray(v)
    rows = v.shape[0] // len(blocks)
    global_shape = (rows * num_row_blocks(mesh),) + v.shape[1:]
    def rows_of(index):
      start, stop = index[0].indices(global_shape[0])[:2]
      local = slot[start // rows] * rows + start % rows
      return v[(slice(local, local + stop - start),) + tuple(index[1:])]
    return jax.make_array_from_callback(global_shape, batch_sharding(mesh, v.ndim), rows_of)
  return {k: place(v) for k, v in batch.items()}


def to_host(x) -> np.ndarray:
  """A device array as numpy on every process: gathered across processes when this one holds
  only part of it (np.asarray on such an array fails in multi-host runs); a replicated one is
  read from this process's own copy, with no collective."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable and x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def abstract_arrays(shapes, shardings=None):
  """`shapes` (a tree of arrays or ShapeDtypeStructs) as ShapeDtypeStructs placed by `shardings`.

  What `jax.jit(..., out_shardings)` and Orbax restores take to create arrays already sharded.
  """
  if shardings is None:
    return shapes
  return jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def decode_rules(mesh, rows: int) -> tuple[tuple[str, object], ...]:
  """The rules for decoding `rows` rows on `mesh`: rows (and their KV cache) over data x fsdp
  when that divides them, else over data when it does, else replicated; params stay split by
  fsdp / tensor (gathered layer by layer), cache heads over tensor."""
  data, fsdp = mesh.shape["data"], mesh.shape["fsdp"]
  batch = (("data", "fsdp") if rows % (data * fsdp) == 0 else
           "data" if rows % data == 0 else None)
  return tuple((name, batch if name in ("act_batch", "cache_batch") else axes)
               for name, axes in LOGICAL_RULES)


def place(tree, shardings):
  """`tree`'s leaves on `shardings` (leaves already there pass untouched; a host value must be
  the same on every process)."""
  def one(leaf, target):
    if isinstance(leaf, jax.Array) and leaf.sharding == target:
      return leaf
    if jax.process_count() == 1:
      return jax.device_put(leaf, target)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, target, lambda index: host[index])
  return jax.tree_util.tree_map(one, tree, shardings)


def mesh_jit(fn, static_argnames: Sequence[str], rows):
  """`fn(params, *inputs, **static)` jitted; called with `mesh=` it runs with explicit shardings.

  Without a mesh: plain `jax.jit` under the rules (an ambient mesh, if any, decides). With one:
  params in the NamedShardings their logical axes give (placed there first if they are not),
  inputs and outputs replicated, traced under `decode_rules(mesh, rows(inputs, static))`; one
  compile per (mesh, static values). `static["cfg"]` is the model config.
  """
  plain = jax.jit(with_rules(fn), static_argnames=tuple(static_argnames))

  @functools.lru_cache(maxsize=64)
  def compiled(mesh, num_inputs: int, n_rows: int, static_items):
    static = dict(static_items)
    shardings = param_shardings(static["cfg"], _param_shapes(static["cfg"]), mesh)
    traced = with_rules(functools.partial(fn, **static), mesh, decode_rules(mesh, n_rows))
    return jax.jit(traced, in_shardings=(shardings,) + (replicated(mesh),) * num_inputs,
                   out_shardings=replicated(mesh)), shardings

  @functools.wraps(fn)
  def call(params, *inputs, mesh=None, **static):
    if mesh is None:
      return plain(params, *inputs, **static)
    step, shardings = compiled(mesh, len(inputs), int(rows(inputs, static)),
                               tuple(sorted(static.items())))
    return step(place(params, shardings), *(put_replicated(x, mesh) for x in inputs))

  def lower(param_shapes, *inputs, mesh, **static):
    """The call lowered for abstract params and inputs (ShapeDtypeStructs; nothing is read),
    e.g. on a TPU topology's mesh for `--compile_only`."""
    step, shardings = compiled(mesh, len(inputs), int(rows(inputs, static)),
                               tuple(sorted(static.items())))
    return step.lower(abstract_arrays(param_shapes, shardings),
                      *(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated(mesh))
                        for x in inputs))

  call.lower = lower
  return call


@functools.lru_cache(maxsize=None)
def _param_shapes(cfg):
  from glm_jax.modeling import model  # pylint: disable=g-import-not-at-top
  return model.param_shapes(cfg)


def with_rules(fn, mesh=None, rules=LOGICAL_RULES):
  """`fn` traced under the project's logical-axis rules (and `mesh`, if given).

  The model annotates activations with logical names; those constraints only act inside a rules
  context and a mesh. Wrapping a step before `jax.jit` makes it shard the same whether it is
  called from the CLI or from a notebook that never entered `nn.logical_axis_rules`.
  """
  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with contextlib.ExitStack() as stack:
      if mesh is not None:
        use_abstract = getattr(jax.sharding, "use_abstract_mesh", None)  # guard for later JAX
        stack.enter_context(use_abstract(mesh.abstract_mesh) if use_abstract
                            else jax.set_mesh(mesh))
      stack.enter_context(nn.logical_axis_rules(rules))
      return fn(*args, **kwargs)
  return traced

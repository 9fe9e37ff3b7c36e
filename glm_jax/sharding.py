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


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[jax.Device] | None = None):
  """A `(data, fsdp, tensor)` mesh with Auto axis types (GSPMD propagates the rest)."""
  devices = list(devices) if devices is not None else jax.devices()
  shape = mesh_shape(mesh_config, len(devices))
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if devices == jax.devices():
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types)
  return jax.sharding.Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=axis_types)


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


def put_batch(batch: Mapping[str, np.ndarray], mesh):
  """Host-local numpy batch -> global arrays (each process passes only its own rows)."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
          for k, v in batch.items()}


def abstract_arrays(shapes, shardings=None):
  """`shapes` (a tree of arrays or ShapeDtypeStructs) as ShapeDtypeStructs placed by `shardings`.

  What `jax.jit(..., out_shardings)` and Orbax restores take to create arrays already sharded.
  """
  if shardings is None:
    return shapes
  return jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def with_rules(fn, mesh=None):
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
      stack.enter_context(nn.logical_axis_rules(LOGICAL_RULES))
      return fn(*args, **kwargs)
  return traced

"""The train state, its shardings, and the jitted train / eval steps.

One state tree (step, params, optimizer state, RNG key) lives on the mesh with shardings derived
from the params' logical axis names, so FSDP / tensor / data parallelism is only a mesh change.
The step is a single `jax.jit` with explicit in/out shardings and the state donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from glm_jax.modeling import model as model_lib
from glm_jax.modeling import sharding
from glm_jax.training import objective
from glm_jax.training import optim

BATCH_KEYS = ("input_ids", "target_ids", "loss_mask", "position_ids", "sep")


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds about the model: step, params, optimizer state, RNG."""
  step: jax.Array       # int32 scalar: optimizer steps taken
  params: Any           # fp32 (param_dtype) parameter tree
  opt_state: Any        # optax state (AdamW moments mirror the params' sharding)
  rng: jax.Array        # raw uint32[2] key; dropout key of step t = fold_in(rng, t)


def _boxed_state(config, optimizer) -> TrainState:
  params = model_lib.init_boxed_params(model_lib.as_glm_config(config), jax.random.PRNGKey(0))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), rng=jax.random.PRNGKey(0))


def state_shardings(config, mesh, optimizer):
  """(abstract state of ShapeDtypeStructs, matching tree of NamedShardings).

  The optimizer is initialised on logically-annotated params under eval_shape, so its moments
  inherit the params' logical axes; scalars (step, counts, the RNG key) are replicated.
  """
  boxed = jax.eval_shape(lambda: _boxed_state(config, optimizer))
  shapes = model_lib.strip_boxes(boxed)
  specs = nn.get_partition_spec(boxed)
  shardings = sharding.logical_to_sharding(specs, shapes, mesh)
  if config.get("shard_state_over_data", True):
    shardings = shardings.replace(
        params=sharding.spread_over_data(shardings.params, shapes.params, mesh),
        opt_state=sharding.spread_over_data(shardings.opt_state, shapes.opt_state, mesh))
  return sharding.abstract_arrays(shapes, shardings), shardings


def compute_params(config, mesh):
  """`prepare(params)` for the train step: the scanned layers' Dense weights in the compute
  dtype (the cast each Dense makes anyway, so the result is bit-identical, done once per step
  rather than stacked per layer), every param in its logical (compute) sharding: with the state
  split over `data` (ZeRO), this is the one gather of the step's weights, in bf16."""
  logical = sharding.logical_to_sharding(model_lib.logical_axes(config),
                                         model_lib.param_shapes(config), mesh)
  dtype = jnp.dtype(model_lib.as_glm_config(config).dtype)

  def cast(path, x):
    names = [str(getattr(k, "key", k)) for k in path]
    dense = names[0] == "layers" and not any("layernorm" in n for n in names)
    return x.astype(dtype) if dense else x

  def prepare(params):
    return jax.lax.with_sharding_constraint(
        jax.tree_util.tree_map_with_path(cast, params), logical)
  return prepare


def batch_shardings(mesh, batch_ndims=None) -> dict[str, NamedSharding]:
  """Each batch array split over data x fsdp; `batch_ndims` (key -> rank) for a task's batch."""
  if batch_ndims is None:
    batch_ndims = {k: 3 if k == "position_ids" else (1 if k == "sep" else 2) for k in BATCH_KEYS}
  return {k: sharding.batch_sharding(mesh, n) for k, n in batch_ndims.items()}


def init_state(config, optimizer, shardings) -> TrainState:
  """Fresh params (seeded by config.seed) and optimizer state, created already sharded."""
  def init():
    params_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(int(config.seed)))
    params = model_lib.init_params(model_lib.as_glm_config(config), params_rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), rng=dropout_rng)
  return jax.jit(init, out_shardings=shardings)()


def _split_micro_batches(batch, accum: int, mesh):
  """[B, ...] -> [accum, B/accum, ...] so that every micro-batch is spread over all devices.

  Rows are interleaved (micro-batch i = rows i, i+accum, ...): a device holding a contiguous
  block of rows then holds its share of every micro-batch, and no data moves.
  """
  def split(x):
    x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:]).swapaxes(0, 1)
    spec = P(None, ("data", "fsdp"), *([None] * (x.ndim - 2)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
  return jax.tree_util.tree_map(split, batch)


def _forward_sums(glm, params, batch, dropout_rng, deterministic):
  """The pretraining sums from the final hidden states, the head run block by block over the
  sequence (never `[B, S, vocab]` fp32 logits)."""
  hidden = glm.apply({"params": params}, batch["input_ids"], batch["position_ids"], batch["sep"],
                     deterministic=deterministic, rngs={"dropout": dropout_rng},
                     return_hidden=True)
  return objective.blocked_token_sums(lambda h: model_lib.head(glm.config, params, h), hidden,
                                      batch["target_ids"], batch["loss_mask"])


@dataclasses.dataclass(frozen=True)
class Objective:
  """What a train step minimises: `sums(glm, params, batch, rng, deterministic)` ->
  {loss_sum, correct_sum, tokens}; the loss is loss_sum / `count(batch)` over the whole batch
  (so micro-batches add up exactly); `batch_ndims` gives each batch array's rank (None: the
  pretraining batch). Pretraining is LM_OBJECTIVE; a finetuning task supplies its own."""
  sums: Callable
  count: Callable
  batch_ndims: dict | None = None


LM_OBJECTIVE = Objective(_forward_sums,
                         lambda batch: jnp.sum(batch["loss_mask"].astype(jnp.float32)))


def _gradients(glm, params, batch, rng, accum, mesh, task_objective: Objective = LM_OBJECTIVE,
               grad_shardings=None, prepare=lambda p: p):
  """Gradient of (summed loss / the batch's count, e.g. all loss tokens), micro-batch by
  micro-batch, with respect to the stored params (`prepare` maps them to what the model
  computes with); the accumulated gradients are kept in `grad_shardings` (the params') so the
  carry never changes layout between micro-batches."""
  total_tokens = jnp.maximum(task_objective.count(batch), 1.0)

  def loss_fn(p, micro, key):
    sums = task_objective.sums(glm, prepare(p), micro, key, deterministic=False)
    return sums["loss_sum"] / total_tokens, sums

  grad_fn = jax.grad(loss_fn, has_aux=True)
  if accum == 1:
    return grad_fn(params, batch, rng)

  def constrain(grads):
    return grads if grad_shardings is None else jax.lax.with_sharding_constraint(
        grads, grad_shardings)

  def body(carry, xs):
    micro, index = xs
    grads, sums = grad_fn(params, micro, jax.random.fold_in(rng, index))
    grads, total = constrain(grads), carry[0]
    return (constrain(jax.tree_util.tree_map(jnp.add, total, grads)),
            jax.tree_util.tree_map(jnp.add, carry[1], sums)), None

  zero_sums = {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct_sum", "tokens")}
  init = (constrain(jax.tree_util.tree_map(jnp.zeros_like, params)), zero_sums)
  (grads, sums), _ = jax.lax.scan(
      body, init, (_split_micro_batches(batch, accum, mesh), jnp.arange(accum)))
  return grads, sums


def make_train_step(config, mesh, optimizer, shardings,
                    task_objective: Objective = LM_OBJECTIVE) -> Callable:
  """`train_step(state, batch) -> (state, metrics)`; jitted, state donated, metrics replicated.

  `task_objective`: the loss (pretraining's Part-B cross-entropy unless a task gives another).
  The step traces under the logical-axis rules and `mesh` itself, so it shards the same with or
  without an ambient `nn.logical_axis_rules` / `jax.set_mesh` context (e.g. from a notebook).
  """
  glm = model_lib.GLM(model_lib.as_glm_config(config))
  schedule = optim.learning_rate_schedule(config)
  accum = int(config.grad_accum_steps)
  # Gradients, the update and the params live in the stored params' shardings: with the state
  # split over `data` (state_shardings, ZeRO) each chip reduces, updates and keeps only its
  # slice; `prepare` gathers the compute-dtype weights once per step.
  prepare = compute_params(config, mesh)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    grads, sums = _gradients(glm, state.params, batch, rng, accum, mesh, task_objective,
                             shardings.params, prepare)
    grads = jax.lax.with_sharding_constraint(grads, shardings.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(objective.mean_metrics(sums), grad_norm=optax.tree.norm(grads),
                   learning_rate=schedule(state.step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  replicated = NamedSharding(mesh, P())
  return jax.jit(sharding.with_rules(train_step, mesh),
                 in_shardings=(shardings, batch_shardings(mesh, task_objective.batch_ndims)),
                 out_shardings=(shardings, replicated), donate_argnums=0)


def make_eval_step(config, mesh, param_shardings) -> Callable:
  """`eval_step(params, batch, groups) -> {loss_sum, correct_sum, tokens, group_loss_sum,
  group_tokens}` without dropout, under its own rules; `groups` `[B, G]` marks each row's objective
  (one-hot)."""
  glm = model_lib.GLM(model_lib.as_glm_config(config))

  def eval_step(params, batch, groups):
    logits = glm.apply({"params": params}, batch["input_ids"], batch["position_ids"], batch["sep"],
                       deterministic=True)
    per_group = objective.group_sums(logits, batch["target_ids"], batch["loss_mask"], groups)
    return dict(objective.token_sums(logits, batch["target_ids"], batch["loss_mask"]),
                group_loss_sum=per_group["loss_sum"], group_tokens=per_group["tokens"])

  return jax.jit(sharding.with_rules(eval_step, mesh),
                 in_shardings=(param_shardings, batch_shardings(mesh),
                               sharding.batch_sharding(mesh, 2)),
                 out_shardings=NamedSharding(mesh, P()))

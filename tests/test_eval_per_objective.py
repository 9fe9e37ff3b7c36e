"""Evaluation reports the loss of each pretraining objective too (as pretrain_glm.py), on the
real input pipeline with mixed objectives."""

import types

import jax
import numpy as np
import pytest

from configs import tiny
from glm_jax.modeling import model, sharding
from glm_jax.training import objective, optim, train_loop, train_state
from input_pipeline import pipeline

from tests.test_pipeline import setup  # pylint: disable=unused-import  (the shared corpus fixture)

SEQ, BATCH = 64, 8


@pytest.mark.slow
def test_eval_reports_each_objectives_loss_and_they_combine_to_the_total(setup):
  data_cfg, tok, _ = setup
  data_cfg = data_cfg.copy_and_resolve_references()
  data_cfg.bert_prob, data_cfg.gap_sentence_prob, data_cfg.task_mask = 0.4, 0.3, True
  config = tiny.get_config()
  config.model.update(vocab_size=512, num_layers=1, hidden_size=64, num_heads=1,
                      max_sequence_length=SEQ)
  config.seq_length, config.global_batch_size = SEQ, BATCH
  config.mesh.data = 1
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])

  def make_eval():
    return pipeline.make_iterator(data_cfg, tok, split='train', seq_length=SEQ, per_host_batch=BATCH,
                                  seed=1, objective_batch_size=2)

  data = types.SimpleNamespace(make_eval=make_eval)
  _, shardings = train_state.state_shardings(config, mesh, optim.make_optimizer(config))
  params = model.init_params(model.as_glm_config(config), jax.random.PRNGKey(0))
  eval_step = train_state.make_eval_step(config, mesh, shardings.params)
  results = train_loop.evaluate(eval_step, params, data, mesh, num_batches=4)

  # The same numbers row by row, from the objectives the iterator reports.
  glm = model.GLM(model.as_glm_config(config))
  forward = jax.jit(lambda ids, pos, sep: glm.apply({'params': params}, ids, pos, sep,
                                                    deterministic=True))
  loss_sum, tokens = {}, {}
  it = make_eval()
  for _ in range(4):
    batch = next(it)
    logits = np.asarray(forward(batch['input_ids'], batch['position_ids'], batch['sep']))
    for row, name in enumerate(it.last_objectives):
      sums = objective.token_sums(logits[row:row + 1], batch['target_ids'][row:row + 1],
                                  batch['loss_mask'][row:row + 1])
      loss_sum[name] = loss_sum.get(name, 0.0) + float(sums['loss_sum'])
      tokens[name] = tokens.get(name, 0.0) + float(sums['tokens'])
  assert len(tokens) >= 2  # the four batches mix objectives
  for name in tokens:
    np.testing.assert_allclose(results[f'eval_loss_{name}'], loss_sum[name] / tokens[name], rtol=1e-5)
  np.testing.assert_allclose(results['eval_loss'], sum(loss_sum.values()) / sum(tokens.values()),
                             rtol=1e-5)
  assert set(results) == {'eval_loss', 'eval_accuracy'} | {f'eval_loss_{n}' for n in tokens}

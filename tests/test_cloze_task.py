"""Cloze finetuning batches: the training-side scores of [batch, choices, length] rows equal the
evaluation scorers', missing choices are masked, and the losses are the original's."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax.modeling import model as model_lib
from glm_jax.tasks import cloze_task
from glm_jax.tasks import superglue
from input_pipeline import tokenizer as tokenizer_lib

DATA = os.path.join(os.path.dirname(__file__), "data", "superglue")
CFG = model_lib.GLMConfig(vocab_size=1280, num_layers=2, hidden_size=32, num_heads=2,
                          max_sequence_length=64, embedding_dropout=0.0, attention_dropout=0.0,
                          hidden_dropout=0.0, dtype="float32")


@pytest.fixture(scope="module")
def setup():
  tok = tokenizer_lib.load_pretrained(DATA, "bert-uncased")
  params = model_lib.init_params(CFG, jax.random.PRNGKey(3))
  return tok, params


def _encoded(tok, task, pattern, seq):
  exs = superglue.load_split(task, os.path.join(DATA, task), "dev")
  enc = superglue.make_encoder(task, tok, seq, pattern)
  return [enc.encode(ex) for ex in exs]


@pytest.mark.slow
@pytest.mark.parametrize("task,pattern,multi", [("wsc", 2, True), ("rte", 0, False)])
def test_training_scores_equal_the_evaluation_scorers(setup, task, pattern, multi):
  tok, params = setup
  encoded = _encoded(tok, task, pattern, 64)
  num_choices = max(len(e.rows) for e in encoded)
  slots = max(sum(r.loss_mask) for e in encoded for r in e.rows)
  batch = cloze_task.pack(encoded + [None], seq_length=64, num_choices=num_choices,
                          num_slots=slots, eos_id=tok.special_ids["eos"],
                          num_labels=0 if multi else 2)
  glm = model_lib.GLM(CFG)
  logits = cloze_task.slot_logits(glm, params, jax.tree_util.tree_map(jnp.asarray, batch),
                                  jax.random.PRNGKey(0), True)
  scores = np.asarray(cloze_task.choice_scores(logits, batch, multi, 1.0 if multi else 0.0))
  want = cloze_task.score_examples(CFG, params, encoded, eos_id=tok.special_ids["eos"],
                                   multi_token=multi, length_penalty=1.0 if multi else 0.0,
                                   batch_size=4)
  for i, w in enumerate(want):
    np.testing.assert_allclose(scores[i, :len(w)], w, rtol=1e-4, atol=1e-4)
  assert batch["choice_mask"].sum(1).tolist() == [len(e.rows) if multi else 1
                                                  for e in encoded] + [0]


def test_missing_choices_do_not_count_and_mix_adds_the_generative_term():
  scores = jnp.array([[-1.0, -2.0, 5.0], [-3.0, -1.0, -2.0]])
  batch = {"choice_mask": jnp.array([[1, 1, 0], [1, 1, 1]]), "label": jnp.array([0, 2]),
           "example_mask": jnp.array([1, 1])}
  ce = cloze_task.choice_loss_sums(scores, batch, "cross_entropy")
  want0 = -(-1.0 - np.log(np.exp(-1.0) + np.exp(-2.0)))
  want1 = -(-2.0 - np.log(np.exp(-3.0) + np.exp(-1.0) + np.exp(-2.0)))
  np.testing.assert_allclose(float(ce["loss_sum"]), want0 + want1, rtol=1e-6)
  assert float(ce["correct_sum"]) == 1.0 and float(ce["tokens"]) == 2.0
  mix = cloze_task.choice_loss_sums(scores, batch, "mix")
  np.testing.assert_allclose(float(mix["loss_sum"]), want0 + want1 + 1.0 + 2.0, rtol=1e-6)
  padded = dict(batch, example_mask=jnp.array([1, 0]))
  np.testing.assert_allclose(float(cloze_task.choice_loss_sums(scores, padded, "cross_entropy")
                                   ["loss_sum"]), want0, rtol=1e-6)


def test_epoch_batches_reshuffle_per_epoch_and_resume_exactly():
  items = list(range(10))
  make = lambda xs: np.array([-1 if x is None else x for x in xs])
  it = cloze_task.EpochBatches(items, 4, seed=5, make_batch=make)
  first = [next(it) for _ in range(6)]
  assert it.steps_per_epoch == 3
  assert sorted(np.concatenate(first[:3]).tolist()) == [-1, -1] + items
  assert np.concatenate(first[:3]).tolist() != np.concatenate(first[3:]).tolist()
  again = cloze_task.EpochBatches(items, 4, seed=5, make_batch=make)
  again.set_state({"position": 4})
  assert [next(again).tolist() for _ in range(2)] == [b.tolist() for b in first[4:6]]

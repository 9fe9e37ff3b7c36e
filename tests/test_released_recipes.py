"""The released pretraining recipes: our schedule equals the original's AnnealingLR step by step,
and every fact of THUDM/GLM's config/ds_block_*.sh / config_block_*.json we encode is in our configs."""

import importlib
import json
import pathlib

import ml_collections
import numpy as np
import pytest

from glm_jax.training import optim

REFERENCE = pathlib.Path(__file__).parent / "data" / "annealing_lr_reference.npz"

# Facts of the released scripts (THUDM/GLM 4f61ed7), one row each: (our config, key, value, source line).
RELEASED_FACTS = [
    ("base", "learning_rate", 4e-4, 'config_block_base.json: "lr": 0.0004'),
    ("base", "weight_decay", 0.1, 'config_block_base.json: "weight_decay": 0.1'),
    ("base", "adam_b2", 0.98, 'config_block_base.json: "betas": [0.9, 0.98]'),
    ("base", "adam_eps", 1e-6, 'config_block_base.json: "eps": 1e-6'),
    ("base", "grad_clip_norm", 1.0, 'config_block_base.json: "gradient_clipping": 1.0'),
    ("base", "total_steps", 150_000, "ds_block_base.sh: --train-iters 150000"),
    ("base", "lr_decay_steps", 120_000, "ds_block_base.sh: --lr-decay-iters 120000"),
    ("base", "decay_style", "cosine", "ds_block_base.sh: --lr-decay-style cosine"),
    ("base", "min_learning_rate_ratio", 0.05, "ds_block_base.sh: --lr-decay-ratio 0.05"),
    ("base", "warmup_ratio", 0.05, "ds_block_base.sh: --warmup .05"),
    ("base", "seq_length", 512, "ds_block_base.sh: --seq-length 512"),
    ("base", "data.bert_prob", 1.0, "ds_block_base.sh: --bert-prob 1.0"),
    ("base", "data.task_mask", False, "ds_block_base.sh: no --task-mask"),
    ("large", "learning_rate", 2e-4, 'config_block_large.json: "lr": 0.0002'),
    ("large", "weight_decay", 0.1, 'config_block_large.json: "weight_decay": 0.1'),
    ("large", "adam_b2", 0.98, 'config_block_large.json: "betas": [0.9, 0.98]'),
    ("large", "adam_eps", 1e-6, 'config_block_large.json: "eps": 1e-6'),
    ("large", "total_steps", 200_000, "ds_block_large.sh: --train-iters 200000"),
    ("large", "lr_decay_steps", 160_000, "ds_block_large.sh: --lr-decay-iters 160000"),
    ("large", "decay_style", "cosine", "ds_block_large.sh: --lr-decay-style cosine"),
    ("large", "min_learning_rate_ratio", 0.05, "ds_block_large.sh: --lr-decay-ratio 0.05"),
    ("large", "warmup_ratio", 0.05, "ds_block_large.sh: --warmup .05"),
    ("large", "data.bert_prob", 1.0, "ds_block_large.sh: --bert-prob 1.0"),
    ("large", "data.poisson_lambda", 3.0, "ds_block_large.sh: --avg-block-length 3"),
    ("large", "data.task_mask", False, "ds_block_large.sh: no --task-mask"),
    ("glm_large_chinese", "learning_rate", 4e-4, 'config_block_large_chinese.json: "lr": 0.0004'),
    ("glm_large_chinese", "weight_decay", 0.01, 'config_block_large_chinese.json: "weight_decay": 0.01'),
    ("glm_large_chinese", "total_steps", 250_000, "ds_block_large_chinese.sh: --train-iters 250000"),
    ("glm_large_chinese", "lr_decay_steps", 200_000, "ds_block_large_chinese.sh: --lr-decay-iters 200000"),
    ("glm_large_chinese", "decay_style", "cosine", "ds_block_large_chinese.sh: --lr-decay-style cosine"),
    ("glm_large_chinese", "min_learning_rate_ratio", 0.1, "ds_block_large_chinese.sh: --lr-decay-ratio 0.1"),
    ("glm_large_chinese", "warmup_ratio", 0.04, "ds_block_large_chinese.sh: --warmup 0.04"),
    ("glm_large_chinese", "seq_length", 512, "ds_block_large_chinese.sh: --seq-length 512"),
    ("glm_large_chinese", "model.max_sequence_length", 1024,
     "ds_block_large_chinese.sh: --max-position-embeddings 1024"),
    ("glm_large_chinese", "data.bert_prob", 0.4, "ds_block_large_chinese.sh: --bert-prob 0.4"),
    ("glm_large_chinese", "data.gap_sentence_prob", 0.3, "ds_block_large_chinese.sh: --gap-sentence-prob 0.3"),
    ("glm_large_chinese", "data.gpt_min_ratio", 0.25, "ds_block_large_chinese.sh: --gpt-min-ratio 0.25"),
    ("glm_large_chinese", "data.task_mask", True, "ds_block_large_chinese.sh: --task-mask"),
    ("glm_large_chinese", "data.block_mask_prob", 0.1, "ds_block_large_chinese.sh: --block-mask-prob 0.1"),
    ("glm_large_chinese", "data.short_seq_prob", 0.02, "ds_block_large_chinese.sh: --short-seq-prob 0.02"),
    ("glm_10b", "learning_rate", 1e-4, 'config_block_10B.json: "lr": 0.0001'),
    ("glm_10b", "weight_decay", 0.1, 'config_block_10B.json: "weight_decay": 1e-1'),
    ("glm_10b", "adam_b2", 0.95, 'config_block_10B.json: "betas": [0.9, 0.95]'),
    ("glm_10b", "adam_eps", 1e-8, 'config_block_10B.json: "eps": 1e-8'),
    ("glm_10b", "total_steps", 250_000, "ds_block_10B.sh: --train-iters 250000"),
    ("glm_10b", "lr_decay_steps", 175_000, "ds_block_10B.sh: --lr-decay-iters 175000"),
    ("glm_10b", "decay_style", "cosine", "ds_block_10B.sh: --lr-decay-style cosine"),
    ("glm_10b", "min_learning_rate_ratio", 0.1, "ds_block_10B.sh: --lr-decay-ratio 0.1"),
    ("glm_10b", "warmup_ratio", 0.04, "ds_block_10B.sh: --warmup 0.04"),
    ("glm_10b", "seq_length", 512, "ds_block_10B.sh: --seq-length 512"),
    ("glm_10b", "model.max_sequence_length", 1024, "ds_block_10B.sh: --max-position-embeddings 1024"),
    ("glm_10b", "data.bert_prob", 0.5, "ds_block_10B.sh: --bert-prob 0.5"),
    ("glm_10b", "data.gap_sentence_prob", 0.3, "ds_block_10B.sh: --gap-sentence-prob 0.3"),
    ("glm_10b", "data.gpt_min_ratio", 0.25, "ds_block_10B.sh: --gpt-min-ratio 0.25"),
    ("glm_10b", "data.task_mask", True, "ds_block_10B.sh: --task-mask"),
    ("glm_10b", "data.block_mask_prob", 0.1, "ds_block_10B.sh: --block-mask-prob 0.1"),
    ("glm_10b", "data.short_seq_prob", 0.02, "ds_block_10B.sh: --short-seq-prob 0.02"),
    ("glm_roberta", "learning_rate", 4e-4, 'config_blockta_large.json: "lr": 0.0004'),
    ("glm_roberta", "weight_decay", 0.01, 'config_blockta_large.json: "weight_decay": 0.01'),
    ("glm_roberta", "grad_accum_steps", 8, 'config_blockta_large.json: "gradient_accumulation_steps": 8'),
    ("glm_roberta", "total_steps", 500_000, "ds_blockta_large.sh: --train-iters 500000"),
    ("glm_roberta", "lr_decay_steps", 500_000, "ds_blockta_large.sh: --lr-decay-iters 500000"),
    ("glm_roberta", "decay_style", "linear", "ds_blockta_large.sh: --lr-decay-style linear"),
    ("glm_roberta", "min_learning_rate_ratio", 0.025, "ds_blockta_large.sh: --lr-decay-ratio 0.025"),
    ("glm_roberta", "warmup_ratio", 0.06, "ds_blockta_large.sh: --warmup .06"),
    ("glm_roberta", "data.bert_prob", 1.0, "ds_blockta_large.sh: --bert-prob 1.0"),
    ("glm_roberta", "data.task_mask", True, "ds_blockta_large.sh: --task-mask"),
    # No pretraining script released: README objectives and config_tasks/model_blocklm_*.sh.
    ("glm_2b", "data.task_mask", True, "config_tasks/model_blocklm_2B.sh: --task-mask"),
    ("glm_2b", "data.gap_sentence_prob", 0.3, "README: Token+Sent+Doc (mix as ds_block_10B.sh)"),
    ("glm_410m", "data.task_mask", False, "config_tasks/model_blocklm_1.25_generation.sh: no --task-mask"),
    ("glm_410m", "data.bert_prob", 0.5, "README: Token+Doc; arguments.py: --bert-prob default 0.5"),
    ("glm_410m", "data.gap_sentence_prob", 0.0, "README: Token+Doc (no sentence objective)"),
    ("glm_515m", "data.task_mask", False, "config_tasks/model_blocklm_1.5_generation.sh: no --task-mask"),
    ("glm_515m", "data.bert_prob", 0.5, "README: Token+Doc; arguments.py: --bert-prob default 0.5"),
    ("glm_515m", "data.gap_sentence_prob", 0.0, "README: Token+Doc (no sentence objective)"),
]

# Our config for each released script whose schedule it reproduces.
CONFIG_OF_SCRIPT = {"ds_block_base": "base", "ds_block_large": "large",
                    "ds_block_large_chinese": "glm_large_chinese", "ds_block_10B": "glm_10b",
                    "ds_blockta_large": "glm_roberta"}


def _reference():
  data = np.load(REFERENCE)
  recipes = {r["script"].replace(".sh", ""): r for r in json.loads(str(data["recipes"]))}
  return {name: (r, data[name + "/steps"], data[name + "/lr"]) for name, r in recipes.items()}


def _lookup(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


@pytest.mark.parametrize("module,key,value,source", RELEASED_FACTS,
                         ids=[f"{m}.{k}" for m, k, _, _ in RELEASED_FACTS])
def test_size_config_carries_the_released_script_fact(module, key, value, source):
  config = importlib.import_module(f"configs.{module}").get_config()
  assert _lookup(config, key) == value, f"configs/{module}.py {key} differs from {source}"


def _schedule_config(recipe):
  return ml_collections.ConfigDict(dict(
      learning_rate=recipe["lr"], total_steps=recipe["train_iters"],
      lr_decay_steps=recipe["lr_decay_iters"], decay_style=recipe["lr_decay_style"],
      min_learning_rate_ratio=recipe["lr_decay_ratio"], warmup_ratio=recipe["warmup"]))


@pytest.mark.parametrize("script", sorted(_reference()))
def test_schedule_equals_original_annealing_lr_for_each_released_script(script):
  recipe, steps, expected = _reference()[script]
  ours = np.asarray(optim.learning_rate_schedule(_schedule_config(recipe))(steps))
  decaying = steps <= recipe["lr_decay_iters"]
  np.testing.assert_allclose(ours[decaying], expected[decaying], rtol=2e-5, atol=1e-12)
  # Past lr_decay_iters the original's cosine holds its floor; its linear keeps falling (only
  # ds_block_10B_longer.sh gets there): we hold the floor for both.
  floor = recipe["lr"] * recipe["lr_decay_ratio"]
  np.testing.assert_allclose(ours[~decaying], floor, rtol=2e-5)
  if recipe["lr_decay_style"] == "cosine":
    np.testing.assert_allclose(expected[~decaying], floor, rtol=1e-12)


@pytest.mark.parametrize("script,module", sorted(CONFIG_OF_SCRIPT.items()))
def test_size_config_schedule_equals_original_annealing_lr(script, module):
  _, steps, expected = _reference()[script]
  config = importlib.import_module(f"configs.{module}").get_config()
  ours = np.asarray(optim.learning_rate_schedule(config)(steps))
  assert steps[-1] == config.total_steps
  np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=1e-12)


def test_linear_decay_reaches_the_floor_at_lr_decay_steps_and_holds_it():
  config = ml_collections.ConfigDict(dict(learning_rate=1.0, total_steps=300, lr_decay_steps=200,
                                          decay_style="linear", min_learning_rate_ratio=0.1,
                                          warmup_ratio=0.1))
  lr = np.asarray(optim.learning_rate_schedule(config)(np.arange(301)))
  np.testing.assert_allclose(lr[[0, 10, 20, 110, 200, 300]], [0.0, 0.5, 1.0, 0.55, 0.1, 0.1], rtol=1e-6)


def test_constant_style_holds_the_peak_after_warmup():
  config = ml_collections.ConfigDict(dict(learning_rate=2.0, total_steps=100, lr_decay_steps=0,
                                          decay_style="constant", min_learning_rate_ratio=0.1,
                                          warmup_ratio=0.1))
  lr = np.asarray(optim.learning_rate_schedule(config)(np.arange(101)))
  np.testing.assert_allclose(lr[[5, 10, 11, 100]], [1.0, 2.0, 2.0, 2.0], rtol=1e-6)


def test_unknown_decay_style_is_named():
  config = ml_collections.ConfigDict(dict(learning_rate=1.0, total_steps=100, lr_decay_steps=0,
                                          decay_style="exponential", min_learning_rate_ratio=0.1,
                                          warmup_ratio=0.1))
  with pytest.raises(ValueError, match="decay_style='exponential'"):
    optim.learning_rate_schedule(config)

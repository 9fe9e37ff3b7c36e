"""Weight-only int8 export: a model trained by configs/tiny.py and converted random weights of
GLM-Large's per-layer shape, each run in int8 against its bf16 export.

Tolerances (measured on this machine, see the README's int8 section): log-probabilities of the
int8 model within MAX_LOGPROB_DIFF (max) / MEAN_LOGPROB_DIFF (mean) of the bf16 model's; greedy
generation identical on at least 9 of 10 prompts; LAMBADA-style accuracy within 1 point.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from glm_jax import convert, evaluate, generate
from glm_jax.evaluation import eval_data, lm_eval, scoring
from glm_jax.modeling import model, quantization
from glm_jax.storage import params_io
from glm_jax.training import checkpoint, train_loop
from input_pipeline import sources
from input_pipeline import tokenizer as tokenizer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_STEPS = 200
MAX_LOGPROB_DIFF = 0.5    # nats, over every position and vocabulary entry
MEAN_LOGPROB_DIFF = 0.05
QUICKSTART_PROMPTS = [  # the README's Quickstart prompt, and nine more in its style
    "And God said, Let there be [MASK] and there was light.",
    "In the beginning God created the [MASK] and the earth.",
    "And the earth was without form, and [MASK] upon the face of the deep.",
    "And God called the light Day, and the darkness he called [MASK].",
    "And God made the firmament, and divided the [MASK] from the waters.",
    "And the evening and the morning were the [MASK] day.",
    "And God saw every thing that he had made, and, behold, it was [MASK].",
    "These are the generations of the heavens and of the [MASK] when they were created.",
    "And the LORD God formed man of the [MASK] of the ground.",
    "And a river went out of Eden to water the [MASK]; and from thence it was parted.",
]


def _dir_bytes(path) -> int:
  """Bytes of a params checkpoint's files (the tokenizer copied beside them left out)."""
  path = pathlib.Path(path)
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not any(
      part.startswith("tokenizer") for part in p.relative_to(path).parts))


def _check_files_hold_int8(root) -> float:
  """The int8 checkpoint's files are no bigger than its arrays at their dtypes (Orbax compresses
  with zstd; a kernel written widened would be 2x); returns the int8 / bf16 file-byte ratio."""
  _, int8 = params_io.load_for_inference(str(root / "int8"))
  assert _dir_bytes(root / "int8") < 1.02 * _expected_bytes(int8) + 50_000
  return _dir_bytes(root / "int8") / _dir_bytes(root / "bf16")


def _expected_bytes(params) -> int:
  return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(params))


def _logprob_diff(cfg_a, params_a, cfg_b, params_b, ids, sep):
  """(max, mean) |log p_a - log p_b| over every position and vocabulary entry."""
  batch, length = ids.shape
  pos = np.stack([np.broadcast_to(np.arange(length), (batch, length)),
                  np.zeros((batch, length), np.int64)], axis=1)
  def logprobs(cfg, params):
    return jax.nn.log_softmax(model.GLM(cfg).apply({"params": params}, ids, pos, sep))
  diff = np.abs(np.asarray(logprobs(cfg_a, params_a)) - np.asarray(logprobs(cfg_b, params_b)))
  return float(diff.max()), float(diff.mean())


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
  """configs/tiny.py trained TRAIN_STEPS steps on KJV chapters, exported as bf16 (the API) and as
  int8 (the `extract_params --quantize=int8` command)."""
  root = tmp_path_factory.mktemp("tiny_int8")
  (root / "kjv.txt").write_text("\n".join(c[:2000] for c in sources.kjv_chapters()[:200]) + "\n")
  config = tiny.get_config()
  config.data.source, config.data.files, config.data.vocab_size = "files", str(root / "kjv.txt"), 1000
  config.total_steps, config.seq_length, config.global_batch_size = TRAIN_STEPS, 64, 8
  config.eval_every_steps, config.checkpoint_every_steps = 0, TRAIN_STEPS
  config.tensorboard, config.log_every_steps = False, TRAIN_STEPS
  train_loop.run(config, str(root / "work"))
  params = checkpoint.params_from_training_checkpoint(str(root / "work"))
  params_io.save_for_inference(str(root / "bf16"), params, "bfloat16")
  proc = subprocess.run(
      [sys.executable, "-m", "glm_jax.extract_params", f"--workdir={root / 'work'}",
       f"--output={root / 'int8'}", "--quantize=int8"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "int8" in proc.stdout
  tokenizer = tokenizer_lib.Tokenizer(str(root / "work" / "tokenizer.model"))
  return root, tokenizer


@pytest.mark.slow
def test_tiny_int8_log_probs_agree_with_bf16(tiny_exports):
  root, tokenizer = tiny_exports
  cfg_bf16, bf16 = params_io.load_for_inference(str(root / "bf16"))
  cfg_int8, int8 = params_io.load_for_inference(str(root / "int8"))
  assert (cfg_bf16.quantization, cfg_int8.quantization) == ("", "int8")
  assert cfg_int8.dtype == cfg_bf16.dtype == "bfloat16"
  texts = [t.replace("[MASK]", "light") for t in QUICKSTART_PROMPTS]
  ids = np.full((len(texts), 32), tokenizer.special_ids["eos"], np.int32)
  for i, t in enumerate(texts):
    row = [tokenizer.special_ids["CLS"]] + tokenizer.encode(t)[:31]
    ids[i, :len(row)] = row
  worst, mean = _logprob_diff(cfg_bf16, bf16, cfg_int8, int8, ids, np.full((len(texts),), 8))
  print(f"tiny int8 vs bf16 log-prob |diff|: max {worst:.4f} mean {mean:.5f}")
  assert worst < MAX_LOGPROB_DIFF and mean < MEAN_LOGPROB_DIFF
  assert worst > 0  # the kernels really are int8: the two models are not the same numbers


@pytest.mark.slow
def test_tiny_int8_greedy_generation_matches_bf16_on_9_of_10_prompts(tiny_exports):
  """int8 weights with a bf16 KV cache, and with an int8 one."""
  root, tokenizer = tiny_exports
  outputs = {}
  for name, kv_cache_dtype in (("bf16", ""), ("int8", ""), ("int8", "int8")):
    cfg, params = params_io.load_for_inference(str(root / name))
    cfg = generate.with_kv_cache_dtype(cfg, kv_cache_dtype)
    outputs[name, kv_cache_dtype] = generate.generate_text(cfg, params, tokenizer,
                                                           QUICKSTART_PROMPTS, max_new_tokens=8)
  base = outputs["bf16", ""]
  for key in (("int8", ""), ("int8", "int8")):
    same = sum(a == b for a, b in zip(base, outputs[key]))
    print(f"greedy generation, {key[0]} weights, {key[1] or 'bf16'} KV cache: identical to bf16 "
          f"on {same}/10 prompts")
    assert same >= 9, list(zip(base, outputs[key]))


@pytest.mark.slow
def test_tiny_int8_lambada_accuracy_within_one_point_of_bf16(tiny_exports, tmp_path):
  """Through `evaluate.run` (what `python -m glm_jax.evaluate --task=lambada` does)."""
  root, tokenizer = tiny_exports
  lines = []  # 15 words of held-out chapters, then a next word that is one token
  for chapter in sources.kjv_chapters()[200:300]:
    words = chapter.split()
    for i in range(0, len(words) - 16, 16):
      if words[i + 15].isalpha() and len(tokenizer.encode(" " + words[i + 15])) == 1:
        lines.append(json.dumps({"text": " ".join(words[i:i + 16])}))
  (tmp_path / "lambada.jsonl").write_text("\n".join(lines[:200]) + "\n")
  accuracy, answer_logprob = {}, {}
  examples = eval_data.read_lambada(str(tmp_path / "lambada.jsonl"),
                                    eval_data.text_encoder(tokenizer))
  rows, _ = lm_eval.lambada_rows(examples, special_ids=tokenizer.special_ids, seq_length=64)
  for name in ("bf16", "int8"):
    metrics = evaluate.run("lambada", str(tmp_path / "lambada.jsonl"), str(root / name),
                           str(root / "work" / "tokenizer.model"), seq_length=64, batch_size=200)
    assert metrics["num_examples"] == 200
    accuracy[name] = metrics["accuracy"]
    cfg, params = params_io.load_for_inference(str(root / name))
    answer_logprob[name] = scoring.score_rows(cfg, params, rows,
                                              eos_id=tokenizer.special_ids["eos"])["logprob"]
  diff = np.abs(answer_logprob["bf16"] - answer_logprob["int8"])
  print(f"LAMBADA-style accuracy on 200 held-out windows: {accuracy}; answer log-prob "
        f"bf16 mean {answer_logprob['bf16'].mean():.3f}, |int8 - bf16| max {diff.max():.4f} "
        f"mean {diff.mean():.4f}")
  # The 200-step model has learned the answers' distribution (beats uniform over the vocabulary
  # by a wide margin), so the scores compared are a trained model's, not noise; a tiny model's
  # argmax is often one frequent token, so its accuracy alone may be 0 and compare nothing.
  assert answer_logprob["bf16"].mean() < 0 and \
      answer_logprob["bf16"].mean() > -np.log(cfg.vocab_size) + 1.0
  assert diff.mean() < 0.05 and diff.max() < 0.5
  assert abs(accuracy["bf16"] - accuracy["int8"]) <= 1.0


@pytest.mark.slow
def test_tiny_int8_checkpoint_holds_int8_kernels_and_records_it(tiny_exports):
  root, _ = tiny_exports
  print(f"tiny int8 / bf16 checkpoint file bytes: {_check_files_hold_int8(root):.3f}")
  record = json.loads((root / "int8" / params_io.QUANTIZATION_FILE).read_text())
  assert record["method"] == "int8" and len(record["kernels"]) == 4
  (root / "int8" / params_io.QUANTIZATION_FILE).rename(root / "record.json")
  try:  # the record is what the reader trusts: without it the int8 tree is refused
    with pytest.raises(checkpoint.CheckpointMismatchError, match="records quantization"):
      params_io.load_for_inference(str(root / "int8"))
  finally:
    (root / "record.json").rename(root / "int8" / params_io.QUANTIZATION_FILE)


# ----------------------------------------------------------------------------- GLM-Large shape


@pytest.fixture(scope="module")
def large_shaped(tmp_path_factory):
  """Random THUDM-named weights with GLM-Large's per-layer shape (hidden 1024, 16 heads, FFN 4096,
  513 positions) but 2 layers and 2048 vocabulary rows (to stay fast), through `convert import`
  with and without --quantize=int8."""
  root = tmp_path_factory.mktemp("large_int8")
  rng = np.random.default_rng(0)
  hidden, ffn, layers = 1024, 4096, 2
  shapes = {"word_embeddings.weight": (2048, hidden),
            "transformer.position_embeddings.weight": (513, hidden),
            "transformer.block_position_embeddings.weight": (513, hidden),
            "transformer.final_layernorm.weight": (hidden,),
            "transformer.final_layernorm.bias": (hidden,)}
  per_layer = {"input_layernorm.weight": (hidden,), "input_layernorm.bias": (hidden,),
               "attention.query_key_value.weight": (3 * hidden, hidden),
               "attention.query_key_value.bias": (3 * hidden,),
               "attention.dense.weight": (hidden, hidden), "attention.dense.bias": (hidden,),
               "post_attention_layernorm.weight": (hidden,),
               "post_attention_layernorm.bias": (hidden,),
               "mlp.dense_h_to_4h.weight": (ffn, hidden), "mlp.dense_h_to_4h.bias": (ffn,),
               "mlp.dense_4h_to_h.weight": (hidden, ffn), "mlp.dense_4h_to_h.bias": (hidden,)}
  for i in range(layers):
    shapes.update({f"transformer.layers.{i}.{k}": s for k, s in per_layer.items()})
  state = {}
  for name, shape in shapes.items():
    if name.endswith("layernorm.weight"):
      state[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    else:
      state[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
  np.savez(root / "large.npz", **state)
  convert.import_checkpoint(str(root / "large.npz"), 16, str(root / "f32"))
  convert.import_checkpoint(str(root / "large.npz"), 16, str(root / "int8"), quantize="int8")
  _, params = params_io.load_for_inference(str(root / "f32"))
  params_io.save_for_inference(str(root / "bf16"), params, "bfloat16")
  return root


@pytest.mark.slow
def test_large_shaped_int8_log_probs_agree_with_bf16(large_shaped):
  root = large_shaped
  cfg_bf16, bf16 = params_io.load_for_inference(str(root / "bf16"))
  cfg_int8, int8 = params_io.load_for_inference(str(root / "int8"))
  assert cfg_int8.quantization == "int8" and cfg_int8.hidden_size == 1024
  assert cfg_int8.num_heads == 16 and cfg_int8.mlp_ratio == 4
  ids = np.random.default_rng(1).integers(10, 2048, (4, 64)).astype(np.int32)
  worst, mean = _logprob_diff(cfg_bf16, bf16, cfg_int8, int8, ids, np.array([0, 16, 32, 64]))
  print(f"GLM-Large-shaped int8 vs bf16 log-prob |diff|: max {worst:.4f} mean {mean:.5f}")
  assert 0 < worst < MAX_LOGPROB_DIFF and mean < MEAN_LOGPROB_DIFF
  print(f"GLM-Large-shaped (2 layers) int8 / bf16: file bytes {_check_files_hold_int8(root):.3f}"
        f", array bytes {_expected_bytes(int8) / _expected_bytes(bf16):.3f}")


@pytest.mark.parametrize("config_name", ["large", "glm_10b"])
def test_full_size_int8_params_are_at_most_0_55x_bf16(config_name):
  """The array bytes (what a chip holds) at the released sizes; GLM-Large's embedding tables keep
  it just at 0.55. The files compress (zstd) int8 less than bf16: see the README's int8 section."""
  import importlib  # pylint: disable=g-import-not-at-top
  cfg = model.as_glm_config(importlib.import_module(f"configs.{config_name}").get_config())
  bf16 = _expected_bytes(model.param_shapes(cfg.replace(param_dtype="bfloat16")))
  int8 = _expected_bytes(model.param_shapes(cfg.replace(param_dtype="bfloat16",
                                                        quantization="int8")))
  assert int8 / bf16 <= 0.55, int8 / bf16


# ----------------------------------------------------------------------------- the pieces


def test_quantize_is_per_output_channel_and_round_trips_within_half_a_step():
  w = np.random.default_rng(0).standard_normal((3, 8, 5)).astype(np.float32)
  w[:, :, 2] *= 100.0  # one loud channel must not cost the others their precision
  q, scale = quantization.quantize(w, (0, 1))
  assert q.dtype == jnp.int8 and scale.shape == (5,) and scale.dtype == jnp.bfloat16
  restored = np.asarray(q, np.float32) * np.asarray(scale, np.float32)
  step = np.asarray(scale, np.float32)
  assert np.all(np.abs(restored - w) <= 0.5 * step + 1e-6)
  assert np.abs(np.asarray(q)).max() == 127


@pytest.mark.slow
def test_int8_kv_cache_holds_a_scale_per_layer_row_position_and_head():
  cfg = model.GLMConfig(vocab_size=128, num_layers=2, hidden_size=64, num_heads=4,
                        max_sequence_length=64, kv_cache_dtype="int8")
  cache = model.init_kv_cache(cfg, 3, 10)
  assert cache["k"].dtype == cache["v"].dtype == jnp.int8 and cache["k"].shape == (2, 3, 10, 4, 16)
  assert cache["k_scale"].shape == cache["v_scale"].shape == (2, 3, 10, 4)
  assert set(model.init_kv_cache(cfg.replace(kv_cache_dtype="bfloat16"), 3, 10)) == {"k", "v"}
  x = np.random.default_rng(0).standard_normal((3, 5, 4, 16)).astype(np.float32)
  q, scale = quantization.quantize_kv(x)
  restored = np.asarray(quantization.dequantize_kv(q, scale, jnp.float32))
  assert np.all(np.abs(restored - x) <= 0.5 * np.asarray(scale, np.float32)[..., None] + 1e-6)


@pytest.mark.slow
def test_unknown_quantize_values_are_refused_in_one_line(tmp_path):
  for module in (["glm_jax.extract_params", f"--workdir={tmp_path}"],
                 ["glm_jax.convert", "import", f"--input={tmp_path}/x.npz", "--num_heads=2"]):
    proc = subprocess.run([sys.executable, "-m", *module, f"--output={tmp_path}/out",
                           "--quantize=int4"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "--quantize=int4" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
  assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu")
def test_generate_compile_only_with_int8_on_one_v5e_chip_halves_the_param_bytes():
  """`generate --compile_only --topology=v5e:1x1 --quantize=int8 --kv_cache_dtype=int8` (tiny
  config, libtpu compile, nothing runs): the report names the quantization, the arguments shrink."""
  reports = {}
  for extra in ([], ["--quantize=int8", "--kv_cache_dtype=int8"]):
    proc = subprocess.run(
        [sys.executable, "-m", "glm_jax.generate", "--compile_only", "--topology=v5e:1x1",
         "--config=configs/tiny.py", "--config.model.vocab_size=1024",
         "--config.model.hidden_size=512", "--config.model.num_heads=8",
         "--config.model.num_layers=4", "--config.model.max_sequence_length=512",
         "--batch_size=8", "--prompt_length=256", "--max_new_tokens=8", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports[bool(extra)] = json.loads(proc.stdout.strip().splitlines()[-1])
  assert reports[True]["quantize"] == "int8" and reports[True]["kv_cache_dtype"] == "int8"
  assert reports[True]["chips"] == 1 and reports[True]["fits"]
  assert reports[True]["arguments_gib"] < 0.7 * reports[False]["arguments_gib"]
  assert reports[True]["kv_cache_gib"] < 0.6 * reports[False]["kv_cache_gib"]

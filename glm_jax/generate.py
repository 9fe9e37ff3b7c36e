"""The public way to fill blanks (`fill_blanks`, `generate_text`) and the `generate` CLI.

The procedure is the original GLM's (THUDM/GLM generate_samples.py):
  * the prompt (`[CLS] text-with-blanks [eos]`, or ending in `[gMASK]`) runs once with
    `sep = len(prompt)`, positions `0..len-1`, block positions 0;
  * blanks ([MASK], [sMASK], [gMASK]) are filled left to right: feed `sop` at (position of the
    blank, block position 1), then each generated token at block positions 2, 3, ...; the blank
    ends at eop / eos (not fed) or after `max_new_tokens` tokens (the last one is then not fed);
  * every fed token stays in the cache, so later blanks see earlier answers.

This module checks the inputs and the `DecodingOptions`, lays prompts out (`make_batch`) and
hands them to `glm_jax.decode.loop` (greedy / sampling, one jitted `lax.while_loop` over a KV
cache) or `glm_jax.decode.blank_beams` (beam search).

CLI:
  python -m glm_jax.generate --checkpoint=DIR --tokenizer=MODEL --prompt="Text with a [MASK]."
  (--tokenizer may be omitted when DIR came from `convert import --tokenizer=...`.)
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from glm_jax import special_ids as special_ids_lib
from glm_jax.decode import blank_beams
from glm_jax.decode import cache as cache_lib
from glm_jax.decode import loop
from glm_jax.errors import GenerationError
from glm_jax.modeling import sharding
from glm_jax.modeling.model import as_glm_config

STRATEGIES = ("greedy", "sample", "beam")
BLANK_KEYS = ("MASK", "sMASK", "gMASK")
END_KEYS = ("eop", "eos")
REQUIRED_SPECIAL_KEYS = BLANK_KEYS + END_KEYS + ("sop",)
# A tokenizer without task masks (GLM-Base/Large): [MASK] is every blank.
MASK_FALLBACK = {"sMASK": "MASK", "gMASK": "MASK"}


# ----------------------------------------------------------------------------- input checks


def _as_prompt_list(prompt_ids) -> tuple[list[list[int]], bool]:
  """One prompt (ints) or a batch (lists of ints) -> (batch, was_single)."""
  if isinstance(prompt_ids, np.ndarray):
    prompt_ids = prompt_ids.tolist()
  if not isinstance(prompt_ids, Sequence) or len(prompt_ids) == 0:
    raise GenerationError("prompt_ids is empty; pass a list of token ids or a list of them.")
  if all(isinstance(x, (int, np.integer)) for x in prompt_ids):
    return [[int(x) for x in prompt_ids]], True
  batch = []
  for i, p in enumerate(prompt_ids):
    p = list(np.asarray(p).reshape(-1).tolist())
    if not p:
      raise GenerationError(f"prompt {i} is empty; every prompt needs [CLS] text and a blank.")
    batch.append([int(x) for x in p])
  return batch, False


def _blank_positions(prompt: list[int], special: dict[str, int], index: int) -> list[int]:
  blank_ids = {special[k] for k in BLANK_KEYS}
  positions = [i for i, t in enumerate(prompt) if t in blank_ids]
  if not positions:
    raise GenerationError(
        f"prompt {index} has no blank: it contains none of [MASK] ({special['MASK']}), "
        f"[sMASK] ({special['sMASK']}), [gMASK] ({special['gMASK']}). Put a [MASK] where text "
        "should go, or end the prompt with [gMASK] to continue it.")
  return positions


@dataclasses.dataclass(frozen=True)
class Batch:
  """Prompts laid out for the device: right-padded ids and each row's blank positions."""
  ids: np.ndarray          # [B, P] int32, padded with eos
  lengths: np.ndarray      # [B] true prompt lengths (the sep of each row)
  blank_pos: np.ndarray    # [B, NB] positions of the blanks, left to right (padded with 0)
  num_blanks: np.ndarray   # [B]


def make_batch(config, prompts: list[list[int]], special: dict[str, int],
               max_new_tokens: int) -> Batch:
  """Checks prompts against the model's position table and pads them into one `Batch`."""
  cfg = as_glm_config(config)
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
    raise GenerationError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
  if max_new_tokens > cfg.max_sequence_length:
    raise GenerationError(
        f"max_new_tokens={max_new_tokens} exceeds the block-position table "
        f"(max_sequence_length={cfg.max_sequence_length}); ask for at most that many per blank.")
  positions = []
  for i, p in enumerate(prompts):
    if len(p) > cfg.max_sequence_length + 1:
      raise GenerationError(
          f"prompt {i} has {len(p)} tokens but the model's position table holds "
          f"{cfg.max_sequence_length + 1}; shorten the prompt to at most that many tokens.")
    bad = [t for t in p if not 0 <= t < cfg.vocab_size]
    if bad:
      raise GenerationError(f"prompt {i} holds ids {bad[:5]} outside the vocabulary "
                            f"[0, {cfg.vocab_size}); encode it with this model's tokenizer.")
    positions.append(_blank_positions(p, special, i))
  batch, max_len = len(prompts), max(len(p) for p in prompts)
  slots = cache_lib.padded_length(max_len)
  nb = max(len(b) for b in positions)
  ids = np.full((batch, slots), special["eos"], np.int32)
  blank_pos = np.zeros((batch, nb), np.int32)
  for i, (p, b) in enumerate(zip(prompts, positions)):
    ids[i, :len(p)] = p
    blank_pos[i, :len(b)] = b
  return Batch(ids, np.array([len(p) for p in prompts], np.int32), blank_pos,
               np.array([len(b) for b in positions], np.int32))



# ----------------------------------------------------------------------------- decoding options


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
  """How to fill blanks, checked once when built (a bad value is a GenerationError naming it).

  strategy: "greedy" | "sample" (temperature, top_k (0 = off), top_p (0 = off), seed) |
    "beam" (num_beams, length_penalty, beam_rule; prompts run one at a time).
  beam_rule: "bound" (stop when no live beam can beat the best finished one) | "original"
    (generate_samples.py's Hugging Face scorer, candidates by top-k); both: `decode.beam`.
  no_repeat_ngram_size: never repeat an n-gram inside one blank (0 = off).
  vocab_limit: ids at or above it are never generated (pass the tokenizer's size so the
    embedding's padding rows stay out); None = the whole vocabulary.
  max_new_tokens: budget per blank.
  """
  max_new_tokens: int = 32
  strategy: str = "greedy"
  temperature: float = 0.9
  top_k: int = 40
  top_p: float = 0.0
  num_beams: int = 4
  length_penalty: float = 1.0
  no_repeat_ngram_size: int = 0
  seed: int = 0
  vocab_limit: int | None = None
  beam_rule: str = "bound"

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise GenerationError(f"strategy={self.strategy!r} is unknown; use one of {STRATEGIES}.")
    if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
      raise GenerationError(f"no_repeat_ngram_size must be an integer >= 0 (0 = off), got "
                            f"{self.no_repeat_ngram_size!r}.")
    if self.strategy == "beam":
      if not isinstance(self.num_beams, int) or self.num_beams < 1:
        raise GenerationError(f"num_beams must be a positive integer, got {self.num_beams!r}.")
      if self.beam_rule not in ("bound", "original"):
        raise GenerationError(
            f"beam_rule={self.beam_rule!r} is unknown; use 'bound' or 'original'.")
    if self.strategy == "sample":
      if not self.temperature > 0:
        raise GenerationError(f"temperature must be > 0 for sampling, got {self.temperature!r}; "
                              "use strategy='greedy' for argmax decoding.")
      if not isinstance(self.top_k, int) or self.top_k < 0:
        raise GenerationError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}.")
    if not 0.0 <= self.top_p <= 1.0:
      raise GenerationError(f"top_p must be between 0 and 1 (0 = off), got {self.top_p!r}; "
                            "e.g. --top_p=0.9.")

  def vocab_limit_for(self, cfg, special: dict[str, int]) -> int:
    """The checked vocabulary limit for this model: above every special id, within its vocab."""
    ends = tuple(special[k] for k in END_KEYS)
    vocab_limit = cfg.vocab_size if self.vocab_limit is None else int(self.vocab_limit)
    if not max(ends + (special["sop"],)) < vocab_limit <= cfg.vocab_size:
      raise GenerationError(f"vocab_limit={vocab_limit} must lie in (the largest special id, "
                            f"vocab_size={cfg.vocab_size}]; pass the tokenizer's vocabulary size.")
    if self.strategy == "beam" and 2 * self.num_beams > cfg.vocab_size:
      raise GenerationError(f"num_beams={self.num_beams} needs 2 * num_beams <= vocab_size "
                            f"({cfg.vocab_size}); use fewer beams.")
    return vocab_limit


# ----------------------------------------------------------------------------- public entry


def fill_blanks(config, params, prompt_ids, *, special_ids: Mapping[str, int],
                options: DecodingOptions | None = None, mesh=None, **option_values):
  """Fills every blank of each prompt, left to right; returns each blank's tokens (end excluded).

  prompt_ids: one prompt (list of ints, e.g. `[CLS] ... [MASK] ... [eos]`, see `build_prompt`)
    -> `list[list[int]]` (one list per blank); or a batch of prompts -> a list of those.
  options: a `DecodingOptions`, or its fields as keywords (`max_new_tokens=16,
    strategy="beam", ...`); an unknown keyword is a GenerationError naming it.
  mesh: decode with the params sharded on it by their logical axes (`load_for_inference(...,
    mesh=)` reads them so), rows and KV cache over data, heads over tensor; None: as placed.
  """
  options = _decoding_options(options, option_values)
  cfg = as_glm_config(config)
  special = special_ids_lib.require(special_ids, REQUIRED_SPECIAL_KEYS, GenerationError,
                                    fill_from=MASK_FALLBACK)
  prompts, single = _as_prompt_list(prompt_ids)
  vocab_limit = options.vocab_limit_for(cfg, special)
  ends = tuple(special[k] for k in END_KEYS)
  if options.strategy == "beam":
    results = [_beam_one(cfg, params, p, special, options, vocab_limit, ends, mesh)
               for p in prompts]
    return results[0] if single else results
  b = make_batch(cfg, prompts, special, options.max_new_tokens)
  out = loop.fill(
      params, jnp.asarray(b.ids), jnp.asarray(b.lengths), jnp.asarray(b.blank_pos),
      jnp.asarray(b.num_blanks), jax.random.PRNGKey(options.seed),
      jnp.float32(options.temperature), jnp.float32(options.top_p), cfg=cfg,
      max_new_tokens=options.max_new_tokens, greedy=options.strategy == "greedy",
      top_k=options.top_k if options.strategy == "sample" else 0,
      no_repeat_ngram_size=options.no_repeat_ngram_size,
      sop=special["sop"], ends=ends, vocab_limit=vocab_limit, mesh=mesh)
  results = loop.to_lists(sharding.to_host(out), b.num_blanks)
  return results[0] if single else results


def _decoding_options(options, option_values) -> DecodingOptions:
  """`options` itself, or one built from keywords (never both, never an unknown keyword)."""
  if options is not None:
    if option_values:
      raise GenerationError(f"pass either options= or {sorted(option_values)}, not both.")
    return options
  known = {f.name for f in dataclasses.fields(DecodingOptions)}
  unknown = sorted(set(option_values) - known)
  if unknown:
    raise GenerationError(f"fill_blanks got unknown options {unknown}; the options are "
                          f"{sorted(known)}.")
  return DecodingOptions(**option_values)


def _beam_one(cfg, params, prompt, special, options: DecodingOptions, vocab_limit, ends, mesh):
  """Beam search over the blanks of one prompt (beams of different prompts do not batch)."""
  b = make_batch(cfg, [prompt], special, options.max_new_tokens)
  out = blank_beams.beam_fill(
      params, jnp.asarray(b.ids), jnp.int32(b.lengths[0]), jnp.asarray(b.blank_pos[0]),
      jnp.float32(options.length_penalty), cfg=cfg, max_new_tokens=options.max_new_tokens,
      num_beams=options.num_beams, no_repeat_ngram_size=options.no_repeat_ngram_size,
      sop=special["sop"], ends=ends, vocab_limit=vocab_limit, beam_rule=options.beam_rule,
      mesh=mesh)
  return loop.to_lists(sharding.to_host(out)[None], b.num_blanks)[0]


# ----------------------------------------------------------------------------- text in, text out


def build_prompt(tokenizer, text: str, task_mask: bool = False) -> list[int]:
  """`[CLS] text [eos]` as the original's `generate_samples.read_context` builds it.

  A text with no blank gets ` [gMASK]` appended (` [MASK]` for models pretrained without the
  original's --task-mask, its default), so it is continued; [eos] follows unless the text ends
  in `[gMASK]` (the original leaves it off only there, not after [MASK] or [sMASK]).
  """
  if "MASK]" not in text:
    text += " [gMASK]" if task_mask else " [MASK]"
  ids = [tokenizer.special_ids["CLS"]] + list(tokenizer.encode(text))
  if not text.endswith("[gMASK]"):
    ids.append(tokenizer.special_ids["eos"])
  return ids


def fill_text(tokenizer, prompt: list[int], blanks: list[list[int]]) -> str:
  """The prompt's text with each blank replaced by what was generated for it."""
  special = tokenizer.special_ids
  blank_ids = {special[k] for k in BLANK_KEYS if k in special}
  drop = {special["CLS"], special["eos"]}
  answers, out = iter(blanks), []
  for t in prompt:
    if t in blank_ids:
      out.extend(next(answers, []))
    elif t not in drop:
      out.append(t)
  return tokenizer.decode(out)


def generate_text(config, params, tokenizer, texts, task_mask: bool = False, **kwargs) -> list[str]:
  """Text prompts with [MASK] / [sMASK] / [gMASK] -> the filled texts (kwargs: `fill_blanks`)."""
  prompts = [build_prompt(tokenizer, t, task_mask) for t in texts]
  kwargs.setdefault("vocab_limit", tokenizer.vocab_size)
  filled = fill_blanks(config, params, prompts, special_ids=tokenizer.special_ids, **kwargs)
  return [fill_text(tokenizer, p, f) for p, f in zip(prompts, filled)]


def _read_prompts(prompts, prompt_file) -> list[str]:
  texts = list(prompts or [])
  if prompt_file:
    from glm_jax.storage import paths  # pylint: disable=g-import-not-at-top
    try:
      text = paths.as_path(prompt_file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
      raise GenerationError(f"--prompt_file={prompt_file} is not UTF-8 text (byte {e.start}); "
                            "save it as UTF-8, one prompt per line.") from None
    except IsADirectoryError:
      raise GenerationError(f"--prompt_file={prompt_file} is a directory; pass a text file, "
                            "one prompt per line.") from None
    texts += [line for line in text.splitlines() if line.strip()]
  if not texts:
    raise GenerationError("No prompt given; pass --prompt='Text with a [MASK].' or "
                          "--prompt_file=FILE (one prompt per line).")
  return texts


def with_kv_cache_dtype(config, kv_cache_dtype: str | None):
  """The config decoding with a bfloat16 or int8 KV cache (None / '': the compute dtype)."""
  from glm_jax.modeling import quantization  # pylint: disable=g-import-not-at-top
  kv_cache_dtype = quantization.check_kv_cache_dtype(kv_cache_dtype)
  return as_glm_config(config).replace(kv_cache_dtype=kv_cache_dtype) if kv_cache_dtype \
      else config


def main(argv):
  """The generate CLI: load params and tokenizer, fill each prompt, print the texts."""
  del argv
  from absl import flags
  from glm_jax import cli
  from glm_jax import hosts
  from glm_jax.storage import compilation_cache  # pylint: disable=g-import-not-at-top
  from glm_jax.storage import params_io
  cli.quiet_logs()
  compilation_cache.enable(flags.FLAGS.compilation_cache_dir)
  f = flags.FLAGS
  if f.compile_only:  # before anything initialises a JAX backend or imports TensorFlow
    import sys  # pylint: disable=g-import-not-at-top
    from glm_jax import inference_aot  # pylint: disable=g-import-not-at-top
    sys.exit(inference_aot.main(
        "glm_jax.generate", inference_aot.compile_generate, batch_size=f.batch_size,
        prompt_length=f.prompt_length, max_new_tokens=f.max_new_tokens, strategy=f.strategy,
        num_beams=f.num_beams, quantize=f.quantize or "", kv_cache_dtype=f.kv_cache_dtype or ""))
  if not f.checkpoint:
    raise GenerationError("pass --checkpoint=DIR (a params-only checkpoint), or --compile_only.")
  from input_pipeline import tokenizer as tokenizer_lib
  kwargs = dict(max_new_tokens=f.max_new_tokens, strategy=f.strategy, temperature=f.temperature,
                top_k=f.top_k, top_p=f.top_p, num_beams=f.num_beams,
                length_penalty=f.length_penalty, no_repeat_ngram_size=f.no_repeat_ngram_size,
                seed=f.seed, beam_rule=f.beam_rule)
  DecodingOptions(**kwargs)  # every decoding flag checked before anything is loaded
  texts = _read_prompts(f.prompt, f.prompt_file)
  mesh = hosts.start()  # every process runs every step; process 0 prints
  config, params = params_io.load_for_inference(f.checkpoint, hosts.compute_dtype(f.dtype),
                                                     mesh)
  config = with_kv_cache_dtype(config, f.kv_cache_dtype)
  tokenizer_path = f.tokenizer or tokenizer_lib.tokenizer_beside(f.checkpoint)
  if tokenizer_path is None:
    raise GenerationError(
        f"No tokenizer is stored with {f.checkpoint}; pass --tokenizer=FILE.model (ours) or "
        "--tokenizer=DIR (a released GLM tokenizer, with --tokenizer_kind if DIR has no "
        "tokenizer_config.json).")
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path, f.tokenizer_kind or None)
  if tokenizer.vocab_size > config.vocab_size:
    raise GenerationError(
        f"The tokenizer ({tokenizer_path}) has {tokenizer.vocab_size} pieces but the model only "
        f"{config.vocab_size} embeddings; pass the tokenizer the checkpoint was trained with.")
  kwargs["mesh"] = mesh
  for start in range(0, len(texts), f.batch_size):
    for text in generate_text(config, params, tokenizer, texts[start:start + f.batch_size],
                              task_mask=f.task_mask, **kwargs):
      if hosts.is_writer():
        print(text, flush=True)


def _define_flags():
  from absl import flags
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  from glm_jax.storage import compilation_cache  # pylint: disable=g-import-not-at-top
  cli.define_model_flags()
  hosts.define_flags()
  hosts.define_dtype_flag()
  flags.DEFINE_multi_string("prompt", [], "Prompt text with [MASK] / [sMASK] / [gMASK] blanks; "
                            "repeat the flag for several.")
  flags.DEFINE_string("prompt_file", None, "File with one prompt per line (a batch).")
  flags.DEFINE_integer("batch_size", 16, "Prompts decoded together.")
  flags.DEFINE_enum("strategy", "greedy", list(STRATEGIES), "Decoding strategy.")
  flags.DEFINE_integer("max_new_tokens", 32, "Token budget per blank.")
  flags.DEFINE_float("temperature", 0.9, "Sampling temperature (strategy=sample).")
  flags.DEFINE_integer("top_k", 40, "Sample from the k most likely tokens; 0 = all.")
  flags.DEFINE_float("top_p", 0.0, "Nucleus sampling mass; 0 = off.")
  flags.DEFINE_integer("num_beams", 4, "Beams (strategy=beam).")
  flags.DEFINE_float("length_penalty", 1.0, "Beam score = log-prob / length ** length_penalty.")
  flags.DEFINE_enum("beam_rule", "bound", ["bound", "original"],
                    "bound: stop when no live beam can win; original: generate_samples.py's "
                    "Hugging Face scorer (candidates by top-k).")
  flags.DEFINE_integer("no_repeat_ngram_size", 0, "Never repeat an n-gram inside a blank; 0 = off.")
  compilation_cache.define_flag()
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_string("kv_cache_dtype", None, "KV cache dtype: bfloat16 or int8 (one bfloat16 "
                      "scale per head and position); default the compute dtype.")
  flags.DEFINE_string("quantize", None, "--compile_only: int8 compiles the model with int8 "
                      "kernels (what `extract_params --quantize=int8` writes; a --checkpoint "
                      "records its own quantization).")
  flags.DEFINE_bool("task_mask", False, "The model was pretrained with [sMASK]/[gMASK] (the "
                    "original's --task-mask in config_tasks/model_blocklm_*.sh: "
                    "GLM-2B/10B/Large-Chinese): a prompt without a blank gets ' [gMASK]' "
                    "appended instead of ' [MASK]'.")
  flags.DEFINE_integer("prompt_length", 512, "--compile_only: prompt tokens per row.")
  from glm_jax import inference_aot  # pylint: disable=g-import-not-at-top
  inference_aot.define_flags()


if __name__ == "__main__":
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  _define_flags()
  cli.run(main)

"""THUDM / Hugging Face GLM checkpoints <-> our Flax params, and the CLI that moves them.

THUDM linear weights are stored (out, in); ours are DenseGeneral kernels (in, ..., out) with the
fused QKV split as (3, heads, head_dim) and per-layer tensors stacked on a leading layer axis.
Every mapping here is a transpose or a reshape, so import then export is bit-exact.

CLI:
  python -m glm_jax.convert import --input=mp_rank_00_model_states.pt --num_heads=16 --output=DIR
      [--quantize=int8]   (weight-only int8 dense kernels for inference:
                           glm_jax.modeling.quantization)
  python -m glm_jax.convert export --checkpoint=DIR --output=glm.safetensors [--torch_output=x.pt]
    (the .pt is written beside the .safetensors by default when torch is installed)
The import side writes an Orbax params checkpoint (`params_io.save_params`), the format that
`--config.init_from`, `glm_jax.generate` and `glm_jax.extract_params` read.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import numpy as np

from glm_jax.errors import ConversionError, MissingDependencyError, UserError

HF_PREFIX = "glm."
_LAYER = re.compile(r"^transformer\.layers\.(\d+)\.(.+)$")
_LAYER_KEYS = (
    "input_layernorm.weight", "input_layernorm.bias",
    "attention.query_key_value.weight", "attention.query_key_value.bias",
    "attention.dense.weight", "attention.dense.bias",
    "post_attention_layernorm.weight", "post_attention_layernorm.bias",
    "mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias",
    "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias",
)
_TOP_KEYS = (
    "word_embeddings.weight", "transformer.position_embeddings.weight",
    "transformer.block_position_embeddings.weight",
    "transformer.final_layernorm.weight", "transformer.final_layernorm.bias",
)


def _strip_prefix(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = {}
  for name, value in state_dict.items():
    if name.startswith(HF_PREFIX):
      name = name[len(HF_PREFIX):]
    out[name] = np.asarray(value)
  return out


def _expected_keys(num_layers: int) -> set[str]:
  keys = set(_TOP_KEYS)
  for i in range(num_layers):
    keys.update(f"transformer.layers.{i}.{k}" for k in _LAYER_KEYS)
  return keys


def _check_keys(sd: Mapping[str, np.ndarray]) -> int:
  layer_ids = {int(m.group(1)) for m in map(_LAYER.match, sd) if m}
  num_layers = max(layer_ids) + 1 if layer_ids else 0
  expected = _expected_keys(num_layers)
  missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
  if missing or extra or num_layers == 0:
    raise ConversionError(
        "The state dict is not a GLM checkpoint in THUDM naming "
        f"({num_layers} layers found).\n  missing keys: {missing or 'none'}\n"
        f"  unexpected keys: {extra or 'none'}\nPass the model's own weights "
        "(THUDM `mp_rank_00_model_states.pt['module']`, or a Hugging Face GLM state dict).")
  return num_layers


def _check_shape(name, array, shape):
  if tuple(array.shape) != tuple(shape):
    raise ConversionError(f"{name} has shape {tuple(array.shape)}, expected {tuple(shape)} "
                          "from the other tensors; the checkpoint is inconsistent or truncated.")


def from_thudm(state_dict: Mapping[str, np.ndarray], num_attention_heads: int, dtype=None):
  """Maps a THUDM-named state dict to `(GLMConfig, params)`.

  The config is `model_shape.infer_config` of the converted params (shapes from the arrays, no
  dropout: an inference config); it computes in `dtype` (default float32) and stores params in
  the checkpoint's own dtype.
  """
  import jax.numpy as jnp
  from glm_jax.modeling import model_shape

  sd = _strip_prefix(state_dict)
  num_layers = _check_keys(sd)
  try:
    num_attention_heads = int(num_attention_heads)  # also a numpy scalar / 0-d array
  except (TypeError, ValueError) as e:
    raise ConversionError(f"num_attention_heads must be an integer, got "
                          f"{num_attention_heads!r}.") from e
  hidden = sd["word_embeddings.weight"].shape[1]
  if num_attention_heads <= 0 or hidden % num_attention_heads:
    raise ConversionError(f"num_attention_heads={num_attention_heads} does not divide the hidden "
                          f"size {hidden}; GLM releases use head dim 64 (heads = {hidden // 64}).")
  heads, head_dim = num_attention_heads, hidden // num_attention_heads
  positions = sd["transformer.position_embeddings.weight"].shape[0]
  ffn = sd["transformer.layers.0.mlp.dense_h_to_4h.weight"].shape[0]
  if ffn % hidden:
    raise ConversionError(f"FFN width {ffn} is not a multiple of the hidden size {hidden}.")
  shapes = {
      "transformer.position_embeddings.weight": (positions, hidden),
      "transformer.block_position_embeddings.weight": (positions, hidden),
      "transformer.final_layernorm.weight": (hidden,),
      "transformer.final_layernorm.bias": (hidden,),
      "input_layernorm.weight": (hidden,), "input_layernorm.bias": (hidden,),
      "attention.query_key_value.weight": (3 * hidden, hidden),
      "attention.query_key_value.bias": (3 * hidden,),
      "attention.dense.weight": (hidden, hidden), "attention.dense.bias": (hidden,),
      "post_attention_layernorm.weight": (hidden,), "post_attention_layernorm.bias": (hidden,),
      "mlp.dense_h_to_4h.weight": (ffn, hidden), "mlp.dense_h_to_4h.bias": (ffn,),
      "mlp.dense_4h_to_h.weight": (hidden, ffn), "mlp.dense_4h_to_h.bias": (hidden,),
  }
  for name, array in sd.items():
    m = _LAYER.match(name)
    _check_shape(name, array, shapes[m.group(2)] if m else shapes.get(name, array.shape))

  def stack(key):
    return np.stack([sd[f"transformer.layers.{i}.{key}"] for i in range(num_layers)])

  def linear(key, in_shape, out_shape):
    w = stack(key + ".weight")  # [L, out, in]
    kernel = np.swapaxes(w, 1, 2).reshape((num_layers,) + in_shape + out_shape)
    bias = stack(key + ".bias").reshape((num_layers,) + out_shape)
    return {"kernel": kernel, "bias": bias}

  def norm(key):
    return {"scale": stack(key + ".weight"), "bias": stack(key + ".bias")}

  params = {
      "word_embeddings": {"embedding": sd["word_embeddings.weight"]},
      "position_embeddings": {"embedding": sd["transformer.position_embeddings.weight"]},
      "block_position_embeddings": {
          "embedding": sd["transformer.block_position_embeddings.weight"]},
      "layers": {
          "input_layernorm": norm("input_layernorm"),
          "attention": {
              "query_key_value": linear("attention.query_key_value", (hidden,),
                                        (3, heads, head_dim)),
              "dense": linear("attention.dense", (heads, head_dim), (hidden,)),
          },
          "post_attention_layernorm": norm("post_attention_layernorm"),
          "mlp": {
              "dense_h_to_4h": linear("mlp.dense_h_to_4h", (hidden,), (ffn,)),
              "dense_4h_to_h": linear("mlp.dense_4h_to_h", (ffn,), (hidden,)),
          },
      },
      "final_layernorm": {"scale": sd["transformer.final_layernorm.weight"],
                          "bias": sd["transformer.final_layernorm.bias"]},
  }
  config = model_shape.infer_config(params, dtype=jnp.dtype(dtype or jnp.float32).name)
  return config, params


def to_thudm(params, prefix: str = "") -> dict[str, np.ndarray]:
  """Inverse of `from_thudm`: our params -> THUDM names with (out, in) linear weights."""
  p = _to_numpy(params)
  layers = p["layers"]
  num_layers = layers["input_layernorm"]["scale"].shape[0]
  out = {
      "word_embeddings.weight": p["word_embeddings"]["embedding"],
      "transformer.position_embeddings.weight": p["position_embeddings"]["embedding"],
      "transformer.block_position_embeddings.weight": p["block_position_embeddings"]["embedding"],
      "transformer.final_layernorm.weight": p["final_layernorm"]["scale"],
      "transformer.final_layernorm.bias": p["final_layernorm"]["bias"],
  }

  def linear(tree, in_ndim):
    kernel = tree["kernel"]  # [L, *in, *out]
    n_in = int(np.prod(kernel.shape[1:1 + in_ndim]))
    flat = kernel.reshape(num_layers, n_in, -1)
    return np.swapaxes(flat, 1, 2), tree["bias"].reshape(num_layers, -1)

  pieces = {
      "input_layernorm": (layers["input_layernorm"]["scale"], layers["input_layernorm"]["bias"]),
      "attention.query_key_value": linear(layers["attention"]["query_key_value"], 1),
      "attention.dense": linear(layers["attention"]["dense"], 2),
      "post_attention_layernorm": (layers["post_attention_layernorm"]["scale"],
                                   layers["post_attention_layernorm"]["bias"]),
      "mlp.dense_h_to_4h": linear(layers["mlp"]["dense_h_to_4h"], 1),
      "mlp.dense_4h_to_h": linear(layers["mlp"]["dense_4h_to_h"], 1),
  }
  for i in range(num_layers):
    for key, (weight, bias) in pieces.items():
      out[f"transformer.layers.{i}.{key}.weight"] = np.ascontiguousarray(weight[i])
      out[f"transformer.layers.{i}.{key}.bias"] = np.ascontiguousarray(bias[i])
  return {prefix + k: np.ascontiguousarray(v) for k, v in out.items()}


def _to_numpy(tree):
  if isinstance(tree, Mapping):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


# ----------------------------------------------------------------------------- file formats


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads `.pt` / `.bin` (torch), `.safetensors` or `.npz` into numpy arrays."""
  from glm_jax.storage import paths
  source = paths.as_path(path)
  if not source.exists():
    raise FileNotFoundError(f"Checkpoint file {path!r} does not exist.")
  ext = source.suffix.lower()
  if ext in (".pt", ".bin"):
    try:
      import torch
    except ImportError as e:
      raise MissingDependencyError(
          f"Reading {path!r} needs PyTorch, which is not installed. Install it (pip install torch)"
          " or convert the file to .safetensors / .npz first.") from e
    try:
      with source.open("rb") as f:
        obj = torch.load(f, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt file
      raise ConversionError(f"Could not read {path!r} as a torch checkpoint: {e}") from e
    if isinstance(obj, Mapping) and "module" in obj and isinstance(obj["module"], Mapping):
      obj = obj["module"]  # THUDM mp_rank_00_model_states.pt
    return {k: _torch_to_numpy(v) for k, v in obj.items() if hasattr(v, "detach")}
  if ext == ".safetensors":
    from safetensors.numpy import load_file
    try:
      with paths.local_copy(source) as local:   # load_file (unlike load) knows bfloat16
        return dict(load_file(local))
    except Exception as e:
      raise ConversionError(f"Could not read {path!r} as safetensors: {e}") from e
  if ext == ".npz":
    try:
      with source.open("rb") as f, np.load(f) as data:
        prefix = "param/" if any(k.startswith("param/") for k in data.files) else ""
        return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
    except Exception as e:
      raise ConversionError(f"Could not read {path!r} as .npz: {e}") from e
  raise ConversionError(f"Unknown checkpoint extension {ext!r} for {path!r}; "
                        "use .pt, .bin, .safetensors or .npz.")


def save_safetensors(state_dict: Mapping[str, np.ndarray], path: str,
                     overwrite: bool = False) -> None:
  """Writes a THUDM-named state dict as .safetensors (bfloat16 kept; local or gs://), through
  `outputs.file`: an existing file needs `overwrite`; the file appears whole, mode 0644."""
  from safetensors.numpy import save_file
  from glm_jax.storage import outputs
  with outputs.file(path, EXPORT, overwrite) as local:   # save_file (unlike save) knows bfloat16
    save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, local)


def _torch_to_numpy(tensor):
  """numpy has no bfloat16; reinterpret its bits as ml_dtypes.bfloat16 so nothing is rounded."""
  import ml_dtypes
  import torch
  tensor = tensor.detach().cpu().contiguous()
  if tensor.dtype == torch.bfloat16:
    return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
  return tensor.numpy()


def save_torch(state_dict: Mapping[str, np.ndarray], path: str, overwrite: bool = False) -> None:
  """Writes a torch state dict (bfloat16 arrays stay bfloat16), through `outputs.file`."""
  import ml_dtypes
  import torch
  out = {}
  for name, value in state_dict.items():
    value = np.ascontiguousarray(value)
    if value.dtype == ml_dtypes.bfloat16:
      out[name] = torch.from_numpy(value.view(np.int16)).view(torch.bfloat16)
    else:
      out[name] = torch.from_numpy(value.copy())
  from glm_jax.storage import outputs
  with outputs.file(path, EXPORT, overwrite, flag="--torch_output") as local:
    torch.save(out, local)


# ----------------------------------------------------------------------------- CLI


def import_checkpoint(input_path: str, num_heads: int, output_dir: str, dtype=None,
                      tokenizer=None, mesh=None, overwrite: bool = False, quantize: str = ""):
  """File in THUDM naming -> Orbax params checkpoint. Returns the model config.

  With `tokenizer` (a released GLM tokenizer, or our sentencepiece one), its files (and kind)
  are stored in `output_dir`, so generation needs no tokenizer flags. With `mesh`, the params are
  placed on it by their logical axes and every process writes its own shards. `output_dir` is
  written through `outputs.directory`: a folder holding anything else (e.g. the input) is refused.
  quantize="int8" writes int8 dense kernels (`params_io.for_inference`).
  """
  from glm_jax import hosts
  from glm_jax.modeling import quantization, sharding
  from glm_jax.storage import outputs, params_io
  quantization.check_method(quantize)  # before the (possibly large) file is read
  outputs.check_directory(output_dir, IMPORT, overwrite)   # before reading anything
  config, params = from_thudm(load_state_dict(input_path), num_heads, dtype=dtype)
  if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
    raise ConversionError(
        f"the tokenizer ({getattr(tokenizer, 'kind', 'sentencepiece')}, task_mask="
        f"{getattr(tokenizer, 'task_mask', False)}) has "
        f"{tokenizer.vocab_size} ids but {input_path} has only {config.vocab_size} word "
        "embeddings; pass the tokenizer (kind, --task_mask) this checkpoint was trained with.")
  if mesh is not None:
    params = sharding.place(params, sharding.param_shardings(config, params, mesh))
  if quantize:
    params = params_io.for_inference(params, quantize=quantize)
    config = config.replace(quantization=quantize)
  with outputs.directory(output_dir, IMPORT, overwrite) as tmp:
    params_io.write_for_inference(tmp, params, quantize)   # every process writes its own shards
    if hosts.is_writer() and hasattr(tokenizer, "save"):   # a released tokenizer: files and kind
      tokenizer.save(os.fspath(tmp / "tokenizer"))
    elif hosts.is_writer() and tokenizer is not None:      # ours: the sentencepiece .model file
      from input_pipeline import tokenizer as tokenizer_lib
      tokenizer_lib.store_beside(tokenizer.model_path, tmp)
  return config


def load_import_tokenizer(path: str, kind: str, task_mask: bool | None,
                          fix_command_token: bool | None):
  """The released tokenizer named on the import command line (errors name the fix)."""
  from input_pipeline import tokenizer as tokenizer_lib
  return tokenizer_lib.load_tokenizer(path, kind or None, task_mask=task_mask,
                                      fix_command_token=fix_command_token)


def torch_available() -> bool:
  """Whether PyTorch imports here: .pt output is optional, so export checks first."""
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def default_torch_output(output_path: str) -> str:
  """Where `export` writes the .pt by default: beside the .safetensors, when torch is present."""
  return os.path.splitext(output_path)[0] + ".pt" if torch_available() else ""


def export_checkpoint(checkpoint_dir: str, output_path: str, torch_output: str = "",
                      prefix: str = "", overwrite: bool = False) -> int:
  """Orbax params checkpoint -> THUDM-named .safetensors (and .pt). Returns the tensor count.
  Existing files are refused unless `overwrite` (checked before anything is read)."""
  from glm_jax.storage import outputs, params_io
  if params_io.read_quantization(checkpoint_dir):
    raise ConversionError(f"{checkpoint_dir} holds int8-quantized kernels (for glm_jax inference "
                          "only); export the float checkpoint it was quantized from.")
  if torch_output and not torch_available():
    raise MissingDependencyError("--torch_output needs PyTorch, which is not installed; pass "
                                 "--torch_output='' to write the .safetensors file only.")
  outputs.check_file(output_path, EXPORT, overwrite)
  if torch_output:
    outputs.check_file(torch_output, EXPORT, overwrite, flag="--torch_output")
  params = params_io.load_params(checkpoint_dir)
  state_dict = to_thudm(params, prefix=prefix)
  save_safetensors(state_dict, output_path, overwrite)
  if torch_output:
    save_torch(state_dict, torch_output, overwrite)
  return len(state_dict)


USAGE = ("usage: python -m glm_jax.convert import --input=FILE --num_heads=N --output=DIR "
         "[--dtype=float32] [--tokenizer=DIR --tokenizer_kind=KIND [--task_mask]] "
         "[--quantize=int8]\n"
         "       python -m glm_jax.convert export --checkpoint=DIR --output=FILE.safetensors "
         "[--torch_output=FILE.pt] [--prefix=glm.]")


def define_import_flags() -> None:
  """`convert import`'s flags only (absl has no subcommands: each command defines its own set)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("input", None, ".pt / .bin / .safetensors / .npz in THUDM naming.")
  flags.DEFINE_integer("num_heads", None, "Attention heads (hidden / 64 in GLM releases).")
  flags.DEFINE_string("output", None, "Directory for the params-only checkpoint.")
  flags.DEFINE_string("dtype", "", "Compute dtype of the model config (default float32).")
  flags.DEFINE_string("tokenizer", "", "Directory with the released model's tokenizer files "
                      "(vocab.txt / vocab.json + merges.txt / cog-pretrain.model), copied to "
                      "OUTPUT/tokenizer/ with its kind.")
  flags.DEFINE_string("tokenizer_kind", "", "bert-uncased | bert-cased | gpt2 | roberta | "
                      "chinese-sp (see the README's table of released models).")
  flags.DEFINE_boolean("task_mask", False, "The tokenizer has [gMASK]/[sMASK] (GLM-2B, GLM-10B, "
                       "GLM-RoBERTa, the Chinese models).")
  flags.DEFINE_boolean("fix_command_token", False, "chinese-sp ids of GLM-Large-Chinese.")
  _define_overwrite_flag()
  flags.DEFINE_string("quantize", "", "int8: dense kernels int8 with per-output-channel scales, "
                      "the rest bfloat16, for inference; default: the file's own dtypes.")
  flags.mark_flags_as_required(["input", "num_heads", "output"])


def define_export_flags() -> None:
  """`convert export`'s flags only; `--output` is a file here, a directory for `import`."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("checkpoint", None, "Params-only checkpoint directory.")
  flags.DEFINE_string("output", None, "The .safetensors file to write.")
  flags.DEFINE_string("torch_output", "auto", "Also write a torch .pt state dict here; 'auto' = "
                      "beside --output when torch is installed, '' = never.")
  flags.DEFINE_string("prefix", "", "Prefix for every name ('glm.' for Hugging Face).")
  _define_overwrite_flag()
  flags.mark_flags_as_required(["checkpoint", "output"])


def _define_overwrite_flag() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_bool("overwrite", False, "Replace a previous output of this command (only the "
                    "files it wrote; anything else there is kept).")


COMMANDS = {"import": define_import_flags, "export": define_export_flags}
IMPORT, EXPORT = "convert import", "convert export"   # the commands outputs.* records


def run_import(f, mesh=None) -> None:
  """`convert import`: a THUDM file (and its tokenizer) into a params-only checkpoint."""
  tokenizer = None
  if f.tokenizer:
    # Unset flags leave task_mask / fix_command_token to DIR's tokenizer_config.json, if any.
    tokenizer = load_import_tokenizer(
        f.tokenizer, f.tokenizer_kind, f.task_mask if f["task_mask"].present else None,
        f.fix_command_token if f["fix_command_token"].present else None)
  elif f.tokenizer_kind:
    raise ConversionError("--tokenizer_kind needs --tokenizer=DIR (the released tokenizer's "
                          "files).")
  cfg = import_checkpoint(f.input, f.num_heads, f.output, f.dtype or None, tokenizer, mesh,
                          overwrite=f.overwrite, quantize=f.quantize)
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  if hosts.is_writer():
    print(f"Wrote params to {f.output}: {cfg.num_layers} layers, hidden {cfg.hidden_size}, "
          f"{cfg.num_heads} heads, vocab {cfg.vocab_size}, positions "
          f"{cfg.max_sequence_length + 1}" + (f", {cfg.quantization} kernels." if cfg.quantization
                                              else ".")
          + (f" Tokenizer ({getattr(tokenizer, 'kind', 'sentencepiece')}, task_mask="
             f"{getattr(tokenizer, 'task_mask', False)}, {tokenizer.vocab_size} ids) stored "
             "with it."
             if tokenizer is not None else ""))


def run_export(f, mesh=None) -> None:
  """`convert export`: a params-only checkpoint into THUDM-named .safetensors (and .pt).

  One file holds every tensor, so process 0 alone reads the params and writes it."""
  del mesh
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  if not hosts.is_writer():
    return
  torch_output = default_torch_output(f.output) if f.torch_output == "auto" else f.torch_output
  n = export_checkpoint(f.checkpoint, f.output, torch_output, f.prefix, overwrite=f.overwrite)
  print(f"Wrote {n} tensors in THUDM naming to {f.output}"
        + (f" and {torch_output}" if torch_output else "") + ".")


def main(argv) -> None:
  """Runs `import` or `export` (argv[1]); any failure of the files is one ConversionError line."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  cli.quiet_logs()
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise ConversionError(f"expected one command, import or export.\n{USAGE}")
  mesh = hosts.start()
  try:
    (run_import if argv[1] == "import" else run_export)(flags.FLAGS, mesh)
  except (ValueError, ImportError) as e:  # e.g. safetensors' own errors: still one line
    if isinstance(e, UserError):
      raise
    raise ConversionError(str(e)) from e


def command_line() -> None:
  """`python -m glm_jax.convert COMMAND --flags`: the command picks the flag set (an unknown one
  is refused before any flag is parsed, so `imprt` is not told about an "unknown flag")."""
  import sys  # pylint: disable=g-import-not-at-top
  from glm_jax import cli  # pylint: disable=g-import-not-at-top
  from glm_jax import hosts  # pylint: disable=g-import-not-at-top
  command = sys.argv[1] if len(sys.argv) > 1 else ""
  if command not in COMMANDS and command.split("=")[0] not in cli.HELP_FLAGS:
    print(f"error: unknown convert command {command!r}; use `convert import` or "
          "`convert export` (see --help).", file=sys.stderr)
    sys.exit(cli.USER_ERROR_EXIT_CODE)
  COMMANDS.get(command, lambda: None)()
  hosts.define_flags()
  cli.run(main)


if __name__ == "__main__":
  command_line()

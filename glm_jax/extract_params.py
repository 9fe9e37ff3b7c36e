"""CLI: take the params out of a training checkpoint into a params-only checkpoint for inference.

The output is a plain `params_io.save_params` directory (optionally cast to bfloat16), which
`glm_jax.generate`, `glm_jax.evaluate`, `--config.init_from` and `python -m glm_jax.convert
export` all read; the run's tokenizer is copied beside it.

  python -m glm_jax.extract_params --workdir=WORKDIR [--step=N] --output=DIR [--dtype=bfloat16]
      [--quantize=int8]   (weight-only int8 dense kernels, the rest bfloat16:
                           glm_jax.modeling.quantization)

Only the `params` subtree of the train state is read (the optimizer moments never are), each
leaf straight into its shard on this run's mesh (`--mesh_*`, default every device on fsdp), on
any device count or topology; every process runs it (pods: the same command on each host).
"""

from __future__ import annotations

from absl import flags

from glm_jax import cli
from glm_jax import hosts
from glm_jax.modeling import model_shape
from glm_jax.modeling import quantization as quantization_lib
from glm_jax.storage import outputs
from glm_jax.storage import params_io
from glm_jax.storage import paths
from glm_jax.training import checkpoint as checkpoint_lib

COMMAND = "extract_params"


def define_flags() -> None:
  """The command's flags; defined only when it runs, so importing the module defines none."""
  flags.DEFINE_string("workdir", None, "Training workdir (holds checkpoints/<step>/state).")
  flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
  flags.DEFINE_string("output", None, "Directory to write the params-only checkpoint to.")
  flags.DEFINE_enum("dtype", None, list(model_shape.PARAM_DTYPES),
                    "Cast params to this dtype (e.g. bfloat16); default keep.")
  flags.DEFINE_string("quantize", "", "int8: dense kernels int8 with per-output-channel scales, "
                      "the rest bfloat16 (about half the bf16 bytes); default: no quantization.")
  flags.DEFINE_bool("overwrite", False, "Replace a previous extract_params output at --output "
                    "(only the files it wrote; anything else there is kept).")
  hosts.define_flags()
  flags.mark_flags_as_required(["workdir", "output"])


def main(argv) -> None:
  """Extracts, casts and writes the params, copies the tokenizer, and prints one summary line."""
  del argv
  from input_pipeline import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  cli.quiet_logs()
  f = flags.FLAGS
  quantization_lib.check_method(f.quantize, f.dtype)  # bad values fail before anything is read
  outputs.check_directory(f.output, COMMAND, f.overwrite)  # before reading anything
  mesh = hosts.start()
  params = checkpoint_lib.params_from_training_checkpoint(f.workdir, f.step, mesh, f.dtype)
  params = params_io.for_inference(params, quantize=f.quantize)
  with outputs.directory(f.output, COMMAND, f.overwrite) as tmp:
    params_io.write_for_inference(tmp, params, f.quantize)  # every process: its shards
    tokenizer = tokenizer_lib.tokenizer_beside(f.workdir)  # the run's tokenizer goes along
    if tokenizer is not None and hosts.is_writer():
      tokenizer_lib.store_beside(tokenizer, tmp)
  cfg = model_shape.infer_config(params)
  kind = "int8 kernels, bfloat16 rest" if f.quantize else cfg.param_dtype
  if hosts.is_writer():
    print(f"Wrote inference params ({cfg.num_layers} layers, hidden {cfg.hidden_size}, "
          f"{kind}) to {paths.as_path(f.output)}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)

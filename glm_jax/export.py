"""Deprecated name of `glm_jax.extract_params` (the CLI) and of params-only checkpoint helpers.

`python -m glm_jax.export` collided with `python -m glm_jax.convert export` (which writes THUDM
files); it still runs `extract_params` for one release, after a deprecation line on stderr.
The helpers live in `glm_jax.checkpoint`; these names stay importable from here.
"""

from glm_jax.checkpoint import (  # pylint: disable=unused-import (the old import path)
    cast_params, infer_config, latest_step, load_for_inference, params_from_training_checkpoint,
    save_for_inference)

DEPRECATION = ("glm_jax.export is deprecated and will be removed in the next release; "
               "use `python -m glm_jax.extract_params` (same flags).")


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  from glm_jax import cli, extract_params  # pylint: disable=g-import-not-at-top
  print(f"warning: {DEPRECATION}", file=sys.stderr)
  extract_params.define_flags()
  cli.run(extract_params.main)

"""The entry points' shared conventions: one error line, exit status 2, per-command flag sets."""

import os
import pathlib
import subprocess
import sys

import pytest

from glm_jax.training import checkpoint
from glm_jax import cli, convert, errors, generate, run_checks
from glm_jax.evaluation import eval_rows
from input_pipeline import errors as pipeline_errors
from input_pipeline import released_tokenizers

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=120)


def test_every_user_error_class_is_a_user_error_and_keeps_its_old_import_path():
  old_paths = [run_checks.ConfigError, pipeline_errors.DataSourceError,
               checkpoint.CheckpointMismatchError, checkpoint.MissingDataStateError,
               checkpoint.UnreadableCheckpointError, convert.ConversionError,
               generate.GenerationError, released_tokenizers.TokenizerError,
               eval_rows.EvaluationError]
  assert all(issubclass(c, errors.UserError) for c in old_paths)
  assert issubclass(checkpoint.MissingDataStateError, FileNotFoundError)  # as before the move
  assert issubclass(convert.ConversionError, ValueError)


def test_error_line_names_the_kind_only_for_commands_that_name_themselves():
  error = errors.DataSourceError("no files match x/*.txt")
  assert cli.error_line(error) == "error: no files match x/*.txt"
  assert cli.error_line(error, "glm_jax.train") == "glm_jax.train: bad data: no files match x/*.txt"
  assert cli.error_line(errors.UnreadableCheckpointError("step 4"), "glm_jax.train") == \
      "glm_jax.train: step 4"


@pytest.mark.slow
def test_convert_export_of_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path):
  proc = _run("glm_jax.convert", "export", f"--checkpoint={tmp_path / 'none'}",
              f"--output={tmp_path / 'x.safetensors'}")
  assert proc.returncode == cli.USER_ERROR_EXIT_CODE == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: No params checkpoint at")
  assert "Traceback" not in proc.stderr


def test_convert_import_does_not_take_the_export_flags(tmp_path):
  proc = _run("glm_jax.convert", "import", "--input=x.pt", "--num_heads=2",
              f"--output={tmp_path}", "--checkpoint=y")
  assert proc.returncode != 0 and "Unknown command line flag 'checkpoint'" in proc.stderr

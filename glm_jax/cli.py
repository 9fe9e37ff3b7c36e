"""The one runner every command-line entry point goes through: flags, quiet logs, user errors.

A `UserError` (glm_jax.errors) or a missing file ends the command with ONE line on stderr and
exit status `USER_ERROR_EXIT_CODE` (2), never a traceback:

    error: <message>                    (generate, convert, extract_params, evaluate)
    glm_jax.train: bad data: <message>  (train and finetune name themselves and the kind)

This module imports only `glm_jax.errors`, so nothing here can form an import cycle.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

from glm_jax import errors

USER_ERROR_EXIT_CODE = 2
USER_ERRORS = (errors.UserError, FileNotFoundError)


def define_model_flags() -> None:
  """--checkpoint / --tokenizer / --tokenizer_kind, spelled and explained once for every command
  that loads a params checkpoint (generate, evaluate)."""
  flags.DEFINE_string("checkpoint", None, "Params-only checkpoint directory (glm_jax.extract_params, "
                      "`convert import`, or checkpoint.save_params).")
  flags.DEFINE_string("tokenizer", None, "Our sentencepiece .model file, or a directory with a "
                      "released GLM tokenizer; default: the one stored with --checkpoint.")
  flags.DEFINE_string("tokenizer_kind", None, "Released tokenizer kind (bert-uncased, bert-cased, "
                      "gpt2, roberta, chinese-sp) when --tokenizer has no tokenizer_config.json.")


def quiet_logs() -> None:
  """Orbax logs every read and write at INFO; show warnings only unless --verbosity was given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def user_errors() -> tuple[type[BaseException], ...]:
  """Errors whose message already says what is wrong and how to fix it: no traceback needed."""
  return USER_ERRORS


def error_line(error: BaseException, program: str = "") -> str:
  """The one line a user error prints: `error: MSG`, or `PROGRAM: KIND: MSG` for train/finetune."""
  if not program:
    return f"error: {error}"
  kind = getattr(error, "kind", "")
  return f"{program}: {kind}: {error}" if kind else f"{program}: {error}"


def exit_on_user_error(main: Callable, program: str = "",
                       exit_code: int = USER_ERROR_EXIT_CODE) -> Callable:
  """Wraps an absl `main` so a user error prints `error_line` and exits with `exit_code`."""
  def wrapped(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      print(error_line(e, program), file=sys.stderr)
      sys.exit(exit_code)
  return wrapped


def run(main: Callable[[Sequence[str]], object], *, program: str = "",
        exit_code: int = USER_ERROR_EXIT_CODE, flags_parser: Callable | None = None) -> None:
  """`absl.app.run(main)` for an entry point: one line and `exit_code` on a user error."""
  kwargs = {"flags_parser": flags_parser} if flags_parser is not None else {}
  app.run(exit_on_user_error(main, program, exit_code), **kwargs)

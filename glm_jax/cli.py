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
INTERRUPTED_EXIT_CODE = 130   # 128 + SIGINT, as shells report it
USER_ERRORS = (errors.UserError, FileNotFoundError)


def define_model_flags() -> None:
  """--checkpoint / --tokenizer / --tokenizer_kind, spelled and explained once for every command
  that loads a params checkpoint (generate, evaluate)."""
  flags.DEFINE_string("checkpoint", None, "Params-only checkpoint directory "
                      "(glm_jax.extract_params, `convert import`, or params_io.save_params).")
  flags.DEFINE_string("tokenizer", None, "Our sentencepiece .model file, or a directory with a "
                      "released GLM tokenizer; default: the one stored with --checkpoint.")
  flags.DEFINE_string("tokenizer_kind", None, "Released tokenizer kind (bert-uncased, bert-cased, "
                      "gpt2, roberta, chinese-sp) when --tokenizer has no tokenizer_config.json.")


def quiet_logs() -> None:
  """Orbax logs every read and write at INFO; show warnings only unless --verbosity was given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


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
    except USER_ERRORS + (app.UsageError,) as e:
      print(error_line(e, program), file=sys.stderr)
      sys.exit(exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which saves first, see train)
      print(f"{program or 'glm_jax'}: interrupted (Ctrl-C).", file=sys.stderr)
      sys.exit(INTERRUPTED_EXIT_CODE)
  return wrapped


def _one_line(error: BaseException) -> str:
  """A flag error's message on one line: the last line of an embedded traceback (a config
  file's own exception), else the first line."""
  lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
  if not lines:
    return type(error).__name__
  return lines[-1] if any(l.startswith("Traceback") for l in lines) else lines[0]


def config_key_error(error: BaseException, argv: Sequence[str]) -> str:
  """The line for a `--config.KEY=...` override of a key the config does not have (KeyError's
  own text is a repr with escaped quotes and ml_collections' 'Did you mean' on a second line)."""
  while error.args and isinstance(error.args[0], BaseException):  # AttributeError(KeyError())
    error = error.args[0]
  text = str(error.args[0]) if error.args else str(error)
  key, _, hint = text.strip().partition("\n")
  overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
  hint = f" {hint.strip()}" if hint.strip() else ""
  return (f"unknown config key {key.strip(chr(39) + chr(34))!r} in {overrides}.{hint} "
          "See configs/common.py for the keys.")


def parse_flags(argv: Sequence[str], program: str = ""):
  """absl's flag parsing with the error contract: a bad flag, config file or config key is one
  line and exit status 2 (absl alone prints usage and exits 1)."""
  prefix = f"{program}: " if program else "error: "
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = f"{_one_line(e)}; see --help for the flags."
  except SyntaxError as e:
    message = (f"the config file {e.filename} does not parse (line {e.lineno}: {e.msg}); "
               "fix it or pass another --config.")
  except (AttributeError, KeyError) as e:
    message = config_key_error(e, argv)
  print(prefix + message, file=sys.stderr)
  sys.exit(USER_ERROR_EXIT_CODE)


def loaded_config(holder, example: str):
  """The config of a `config_flags` flag, or ConfigError naming the file and why it did not load
  (ml_collections defers a missing file's error to the first attribute read, as a traceback)."""
  config = holder.value
  if config is None:
    raise errors.ConfigError(f"pass --config=FILE (e.g. {example}).")
  if type(config).__name__ == "_ErrorConfig":
    error = object.__getattribute__(config, "_error")
    lines = [l.strip() for l in str(error).splitlines() if l.strip().startswith("[Errno")]
    raise errors.ConfigError(f"the config file could not be loaded "
                             f"({lines[-1] if lines else _one_line(error)}); pass an existing "
                             f"file, e.g. --config={example}.")
  return config


HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "--helpfull", "--helpxml", "-?")


def run(main: Callable[[Sequence[str]], object], *, program: str = "",
        exit_code: int = USER_ERROR_EXIT_CODE, flags_parser: Callable | None = None) -> None:
  """`absl.app.run(main)` for an entry point: one line and `exit_code` on a user error or a bad
  flag; `--help` prints the flags and exits 0."""
  parser = flags_parser or (lambda argv: parse_flags(argv, program))
  try:
    app.run(exit_on_user_error(main, program, exit_code), flags_parser=parser)
  except SystemExit as e:
    if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in sys.argv[1:]):
      sys.exit(0)
    raise

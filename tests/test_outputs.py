"""glm_jax.storage.outputs: an --output or workdir is never emptied, overwritten or claimed unasked."""

import os

import numpy as np
import pytest

from glm_jax.storage import outputs, params_io
from glm_jax.errors import OutputExistsError


def _files(folder):
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
  return out


PARAMS = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}


def test_a_folder_the_command_did_not_write_is_refused_byte_for_byte(tmp_path):
  (tmp_path / "mine.txt").write_text("keep me")
  before = _files(tmp_path)
  for overwrite in (False, True):
    with pytest.raises(OutputExistsError, match="is not empty"):
      params_io.save_params(str(tmp_path), PARAMS, overwrite=overwrite)
  assert _files(tmp_path) == before


def test_a_previous_output_needs_overwrite_and_then_keeps_the_users_files(tmp_path):
  out = tmp_path / "out"
  params_io.save_params(str(out), PARAMS, command="extract_params")
  with pytest.raises(OutputExistsError, match="--overwrite"):
    params_io.save_params(str(out), PARAMS, command="extract_params")
  with pytest.raises(OutputExistsError, match="holds the output of `extract_params`"):
    params_io.save_params(str(out), PARAMS, command="convert import", overwrite=True)
  (out / "notes.txt").write_text("mine")
  params_io.save_params(str(out), {"w": PARAMS["w"] + 1}, command="extract_params",
                         overwrite=True)
  assert (out / "notes.txt").read_text() == "mine"
  np.testing.assert_array_equal(params_io.load_params(str(out))["w"], PARAMS["w"] + 1)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # no temporary sibling left


def test_an_interrupted_write_leaves_the_old_output_as_it_was(tmp_path):
  out = tmp_path / "out"
  params_io.save_params(str(out), PARAMS, command="extract_params")
  before = _files(out)
  with pytest.raises(KeyboardInterrupt):
    with outputs.directory(out, "extract_params", overwrite=True) as tmp:
      params_io.write_params(tmp, PARAMS)
      raise KeyboardInterrupt
  assert _files(out) == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_file_outputs_need_overwrite_and_are_renamed_into_place_with_the_usual_mode(tmp_path):
  target = tmp_path / "m.bin"
  with outputs.file(target, "convert export") as local:
    with open(local, "wb") as f:
      f.write(b"one")
  assert os.stat(target).st_mode & 0o777 == outputs.file_mode()
  with pytest.raises(OutputExistsError, match="--overwrite"):
    with outputs.file(target, "convert export"):
      pass
  with pytest.raises(OutputExistsError, match="is a directory"):
    with outputs.file(tmp_path, "convert export"):
      pass
  with pytest.raises(RuntimeError):
    with outputs.file(target, "convert export", overwrite=True) as local:
      with open(local, "wb") as f:
        f.write(b"half")
      raise RuntimeError("interrupted")
  assert target.read_bytes() == b"one" and sorted(os.listdir(tmp_path)) == ["m.bin"]


def test_workdirs_are_claimed_by_one_command(tmp_path):
  outputs.claim_workdir(tmp_path / "run", "train")
  outputs.claim_workdir(tmp_path / "run", "train")          # resuming is fine
  with pytest.raises(OutputExistsError, match="holds a `train` run"):
    outputs.claim_workdir(tmp_path / "run", "finetune")
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "a.txt").write_text("x")
  with pytest.raises(OutputExistsError, match="holds no glm_jax train run"):
    outputs.claim_workdir(tmp_path / "docs", "train")
  assert sorted(os.listdir(tmp_path / "docs")) == ["a.txt"]
  legacy = tmp_path / "legacy"          # a workdir from before workdirs were marked
  (legacy / "checkpoints").mkdir(parents=True)
  outputs.claim_workdir(legacy, "train")
  assert outputs.written_by(legacy) == "train"

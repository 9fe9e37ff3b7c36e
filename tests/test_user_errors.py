"""Every bad or unlucky command line of issue 21: one stderr line naming the fix, exit status 2,
nothing a user owns deleted (files compared byte for byte), `--help` exit 0.

The command lines run through `tests/fresh_interpreter/command_cases.py`: each case is the
command's own `cli.run(main)` with its own flags, many cases in one interpreter (two: train and
finetune define their flags at import), so a case costs its work and not a Python start. The
shared inputs are one tiny run of `configs/tiny.py` (its sentencepiece tokenizer included).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests import fresh_interpreter
from tests.test_train_cli import ROOT, _env

pytestmark = pytest.mark.slow

TINY = ["--config=configs/tiny.py", "--config.model.num_layers=1", "--config.model.hidden_size=64",
        "--config.global_batch_size=4", "--config.eval_every_steps=0", "--config.sample_tokens=0",
        "--config.tensorboard=False", "--config.log_every_steps=1", "--config.total_steps=4",
        "--config.checkpoint_every_steps=2"]


def snapshot(folder) -> dict:
  """Every file under `folder` (hidden ones too) and a hash of its bytes."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def truncate_blobs(step_dir) -> None:
  """Cuts a checkpoint's data blobs to 10 bytes, as an interrupted copy would."""
  for root, _, files in os.walk(step_dir):
    if os.path.basename(root) == "d":
      for name in files:
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(10)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """A tiny-config run (checkpoints 2 and 4), params extracted from it, and the files the cases
  read; returns a dict of paths."""
  base = tmp_path_factory.mktemp("inputs")
  d = {k: str(base / k) for k in ("run", "params", "user", "convdir", "int8", "notutf8",
                                  "lambada", "two_masks", "mixed", "imported", "again",
                                  "damaged", "all_bad", "finetune_work", "a_file")}
  proc = subprocess.run([sys.executable, "-m", "glm_jax.train", *TINY, f"--workdir={d['run']}"],
                        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  from glm_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  from glm_jax import convert
  from glm_jax.storage import outputs, params_io
  from input_pipeline import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  params = checkpoint.params_from_training_checkpoint(d["run"])
  with outputs.directory(d["params"], "extract_params") as tmp:
    params_io.write_params(tmp, params)
    tokenizer_lib.store_beside(os.path.join(d["run"], "tokenizer.model"), tmp)
  shutil.copytree(d["params"], d["again"])          # a previous output, plus the user's notes
  with open(os.path.join(d["again"], "notes.txt"), "w") as f:
    f.write("my notes\n")
  params_io.write_params(d["int8"], params_io.cast_params(params, "int8"))
  os.makedirs(d["user"])
  with open(os.path.join(d["user"], "thesis.txt"), "w") as f:
    f.write("years of work\n")
  os.makedirs(d["convdir"])
  convert.save_safetensors(convert.to_thudm(params), os.path.join(d["convdir"], "model.safetensors"))
  with open(d["notutf8"], "wb") as f:
    f.write(b"caf\xe9 [MASK] au lait\n")
  with open(d["lambada"], "w") as f:
    f.write(json.dumps({"text": "and god saw the light that it was good"}) + "\n")
  with open(d["two_masks"], "w") as f:
    f.write(json.dumps({"text_a": "the [MASK] and the [MASK]", "candidates": ["light", "dark"],
                        "label": 0}) + "\n")
  with open(d["mixed"], "w") as f:
    for candidates in (["light", "dark"], ["light", "dark", "water"]):
      f.write(json.dumps({"text_a": "let there be [MASK]", "candidates": candidates,
                          "label": 0}) + "\n")
  d["s2s_data"] = os.path.join(str(base), "s2s_data")
  os.makedirs(d["s2s_data"])
  words = "in the beginning god created the heaven and the earth".split()
  for split, n in (("train", 8), ("val", 4), ("test", 2)):
    lines = "".join(" ".join(words[i % 5:i % 5 + 5]) + "\n" for i in range(n))
    for side in ("source", "target"):
      with open(os.path.join(d["s2s_data"], f"{split}.{side}"), "w") as f:
        f.write(lines)
  shutil.copytree(d["run"], d["damaged"])
  truncate_blobs(os.path.join(d["damaged"], "checkpoints", "4"))
  shutil.copytree(d["damaged"], d["all_bad"])
  truncate_blobs(os.path.join(d["all_bad"], "checkpoints", "2"))
  outputs.claim_workdir(d["finetune_work"], "finetune")
  with open(d["a_file"], "w") as f:
    f.write("not a folder\n")
  d["results_file"] = os.path.join(str(base), "results.json")
  with open(d["results_file"], "w") as f:
    f.write("last week's numbers\n")
  with open(os.path.join(str(base), "bad_config.py"), "w") as f:
    f.write("def get_config(:\n")
  d["bad_config"] = os.path.join(str(base), "bad_config.py")
  d["tokenizer"] = os.path.join(d["run"], "tokenizer.model")
  return d


def run_cases(cases, tmp_path, name):
  path = tmp_path / f"{name}.json"
  path.write_text(json.dumps(cases))
  proc = fresh_interpreter.run("command_cases", str(path), devices=1, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return fresh_interpreter.last_json(proc)


def case_list(d):
  """(name, [module, argv...]) for every command line of the first interpreter."""
  gen = ["glm_jax.generate", f"--checkpoint={d['params']}"]
  ev = ["glm_jax.evaluate", f"--checkpoint={d['params']}"]
  return [
      ("extract_into_workdir", ["glm_jax.extract_params", f"--workdir={d['run']}",
                                f"--output={d['run']}"]),
      ("extract_into_user_folder", ["glm_jax.extract_params", f"--workdir={d['run']}",
                                    f"--output={d['user']}", "--overwrite"]),
      ("import_into_input_folder", ["glm_jax.convert", "import", "--num_heads=2",
                                    f"--input={d['convdir']}/model.safetensors",
                                    f"--output={d['convdir']}"]),
      ("extract_overwrite_keeps_user_files", ["glm_jax.extract_params", f"--workdir={d['run']}",
                                              f"--output={d['again']}", "--overwrite"]),
      ("extract_int8", ["glm_jax.extract_params", f"--workdir={d['run']}",
                        f"--output={d['params']}_int8", "--dtype=int8"]),
      ("extract_damaged_newest", ["glm_jax.extract_params", f"--workdir={d['damaged']}",
                                  f"--output={d['damaged']}_params"]),
      ("extract_all_damaged", ["glm_jax.extract_params", f"--workdir={d['all_bad']}",
                               f"--output={d['all_bad']}_params"]),
      ("generate_from_workdir", ["glm_jax.generate", f"--checkpoint={d['run']}",
                                 "--prompt=let there be [MASK]"]),
      ("generate_not_utf8", [*gen, f"--prompt_file={d['notutf8']}"]),
      ("generate_top_p", [*gen, "--prompt=let [MASK]", "--strategy=sample", "--top_p=2"]),
      ("generate_float64", [*gen, "--prompt=let [MASK]", "--dtype=float64"]),
      ("generate_int8_params", ["glm_jax.generate", f"--checkpoint={d['int8']}",
                                f"--tokenizer={d['tokenizer']}", "--prompt=let [MASK]"]),
      ("generate_bad_flag", [*gen, "--promt=x"]),
      ("generate_help", ["glm_jax.generate", "--help"]),
      ("export_to_folder", ["glm_jax.convert", "export", f"--checkpoint={d['params']}",
                            f"--output={d['convdir']}", "--torch_output="]),
      ("export_file", ["glm_jax.convert", "export", f"--checkpoint={d['params']}",
                       f"--output={d['convdir']}_export/m.safetensors", "--torch_output="]),
      ("convert_misspelled_command", ["glm_jax.convert", "imprt", f"--input={d['convdir']}"]),
      ("convert_bad_flag", ["glm_jax.convert", "import", "--inptu=x"]),
      ("convert_help", ["glm_jax.convert", "--help"]),
      ("import_our_tokenizer", ["glm_jax.convert", "import", "--num_heads=2",
                                f"--input={d['convdir']}/model.safetensors",
                                f"--output={d['imported']}", f"--tokenizer={d['tokenizer']}"]),
      ("lambada_seq_length", [*ev, "--task=lambada", f"--data={d['lambada']}",
                              "--seq_length=100000"]),
      ("cloze_two_masks", [*ev, "--task=cloze", f"--data={d['two_masks']}"]),
      ("cloze_single_mixed_counts", [*ev, "--task=cloze", f"--data={d['mixed']}",
                                     "--cloze_scoring=single"]),
      ("evaluate_over_a_results_file", [*ev, "--task=cloze", f"--data={d['mixed']}",
                                        f"--output={d['results_file']}"]),
      ("evaluate_bad_flag", [*ev, "--tsak=cloze"]),
      ("evaluate_help", ["glm_jax.evaluate", "--help"]),
      ("extract_bad_flag", ["glm_jax.extract_params", "--wrkdir=x"]),
      ("extract_help", ["glm_jax.extract_params", "--help"]),
  ]


def train_case_list(d):
  return [
      ("train_missing_config", ["glm_jax.train", "--config=/nonexistent/tiny.py"]),
      ("train_config_syntax", ["glm_jax.train", f"--config={d['bad_config']}"]),
      ("train_misspelled_key", ["glm_jax.train", "--config=configs/tiny.py",
                                "--config.totl_steps=3"]),
      ("train_workdir_is_file", ["glm_jax.train", *TINY, f"--workdir={d['a_file']}"]),
      ("train_workdir_proc", ["glm_jax.train", *TINY, "--workdir=/proc/glm_jax_x"]),
      ("train_cudnn_on_cpu", ["glm_jax.train", *TINY, "--config.model.attention_backend=cudnn",
                              f"--workdir={d['run']}_cudnn"]),
      ("train_into_finetune_workdir", ["glm_jax.train", *TINY,
                                       f"--workdir={d['finetune_work']}"]),
      ("train_all_checkpoints_unreadable", ["glm_jax.train", *TINY, "--config.total_steps=6",
                                            f"--workdir={d['all_bad']}"]),
      ("train_bad_flag", ["glm_jax.train", "--config=configs/tiny.py", "--wrkdir=x"]),
      ("train_help", ["glm_jax.train", "--help"]),
      ("finetune_into_train_workdir", [
          "glm_jax.finetune", "--config=configs/finetune/seq2seq.py",
          "--config.task=cnn_dm_original", f"--config.data_dir={d['run']}",
          f"--config.init_from={d['params']}", f"--workdir={d['run']}"]),
      ("finetune_without_init_from", [
          "glm_jax.finetune", "--config=configs/finetune/superglue.py", "--config.task=copa",
          f"--config.data_dir={d['run']}", f"--config.tokenizer={d['tokenizer']}",
          f"--workdir={d['run']}_ft"]),
      ("finetune_help", ["glm_jax.finetune", "--help"]),
      ("finetune_seq2seq_our_tokenizer", [
          "glm_jax.finetune", "--config=configs/finetune/seq2seq.py",
          "--config.task=cnn_dm_original", f"--config.data_dir={d['s2s_data']}",
          f"--config.init_from={d['params']}", f"--workdir={d['run']}_s2s",
          "--config.src_seq_length=16", "--config.tgt_seq_length=8", "--config.epochs=1",
          "--config.eval_every_epochs=1", "--config.global_batch_size=4",
          "--config.eval_batch_size=4", "--config.num_beams=1", "--config.tensorboard=False"]),
  ]


@pytest.fixture(scope="module")
def results(inputs, tmp_path_factory):
  """{case name: {"rc", "stdout", "stderr"}} of both interpreters, with file snapshots taken
  before the cases ran."""
  tmp = tmp_path_factory.mktemp("cases")
  before = {k: snapshot(inputs[k]) for k in ("run", "user", "convdir", "again", "all_bad",
                                               "finetune_work")}
  out = {}
  for name, cases in (("tools", case_list(inputs)), ("train", train_case_list(inputs))):
    ran = run_cases([c for _, c in cases], tmp, name)
    out.update({case_name: ran[i] for i, (case_name, _) in enumerate(cases)})
  out["_before"] = before
  return out


def one_line(result, rc=2, *words):
  """The case exited `rc` with exactly one stderr line that holds every word of `words`."""
  lines = [l for l in result["stderr"].splitlines() if l.strip()]
  assert result["rc"] == rc and len(lines) == 1, result
  assert "Traceback" not in result["stderr"]
  for word in words:
    assert word in lines[0], (word, lines[0])
  return lines[0]


# ------------------------------------------------------------------ nothing a user owns is deleted


def test_extract_params_into_the_training_workdir_is_refused_and_changes_nothing(inputs, results):
  one_line(results["extract_into_workdir"], 2, inputs["run"], "name a new or empty directory")
  assert snapshot(inputs["run"]) == results["_before"]["run"]


def test_a_user_folder_as_output_is_refused_even_with_overwrite(inputs, results):
  one_line(results["extract_into_user_folder"], 2, inputs["user"], "is not empty")
  assert snapshot(inputs["user"]) == results["_before"]["user"]


def test_convert_import_into_the_folder_of_its_input_keeps_the_input(inputs, results):
  one_line(results["import_into_input_folder"], 2, inputs["convdir"], "name a new or empty")
  after = snapshot(inputs["convdir"])
  assert {k: after[k] for k in results["_before"]["convdir"]} == results["_before"]["convdir"]


def test_overwrite_replaces_a_previous_output_and_keeps_the_users_files(inputs, results):
  assert results["extract_overwrite_keeps_user_files"]["rc"] == 0
  with open(os.path.join(inputs["again"], "notes.txt")) as f:
    assert f.read() == "my notes\n"
  from glm_jax.storage import outputs  # pylint: disable=g-import-not-at-top
  assert outputs.written_by(inputs["again"]) == "extract_params"
  assert not [n for n in os.listdir(os.path.dirname(inputs["again"])) if "glm_jax-" in n]


def test_evaluate_output_over_an_existing_file_is_refused(inputs, results):
  one_line(results["evaluate_over_a_results_file"], 2, inputs["results_file"], "--overwrite")
  with open(inputs["results_file"]) as f:
    assert f.read() == "last week's numbers\n"


# ------------------------------------------------------------------- a run never silently restarts


def test_all_checkpoints_unreadable_stops_the_run_and_changes_nothing(inputs, results):
  line = one_line(results["train_all_checkpoints_unreadable"], 2, "step 4", "step 2",
                  "new --workdir")
  assert "Error reading" in line
  assert snapshot(inputs["all_bad"]) == results["_before"]["all_bad"]   # metrics.jsonl too


def test_extract_params_falls_back_to_the_newest_readable_step_with_one_warning(inputs, results):
  result = results["extract_damaged_newest"]
  line = one_line(result, 0, "WARNING", "step 4", "used step 2")
  assert "WARNING" not in result["stdout"] and line
  from glm_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  from glm_jax.storage import params_io
  import numpy as np  # pylint: disable=g-import-not-at-top
  got = params_io.load_params(f"{inputs['damaged']}_params")
  want = checkpoint.params_from_training_checkpoint(inputs["run"], 2)
  np.testing.assert_array_equal(got["word_embeddings"]["embedding"],
                                want["word_embeddings"]["embedding"])


def test_extract_params_with_no_readable_step_names_each(results):
  one_line(results["extract_all_damaged"], 2, "step 4", "step 2", "--step")


# ------------------------------------------------------------------------- finetuning needs a model


def test_finetune_without_init_from_names_init_from_and_from_scratch(results):
  one_line(results["finetune_without_init_from"], 2, "--config.init_from",
           "--config.from_scratch=True")


def test_finetune_into_a_pretraining_workdir_is_refused(inputs, results):
  one_line(results["finetune_into_train_workdir"], 2, inputs["run"], "`train` run",
           "new --workdir")
  assert snapshot(inputs["run"]) == results["_before"]["run"]


def test_train_into_a_finetune_workdir_is_refused(inputs, results):
  one_line(results["train_into_finetune_workdir"], 2, "`finetune` run", "new --workdir")
  assert snapshot(inputs["finetune_work"]) == results["_before"]["finetune_work"]


def test_seq2seq_finetuning_runs_from_a_tiny_config_model_with_our_tokenizer(inputs, results):
  result = results["finetune_seq2seq_our_tokenizer"]
  assert result["rc"] == 0, result
  work = f"{inputs['run']}_s2s"
  with open(os.path.join(work, "best_params", "tokenizer.model"), "rb") as f, \
      open(inputs["tokenizer"], "rb") as g:
    assert f.read() == g.read()                   # generate / evaluate find it there
  assert os.listdir(os.path.join(work, "predictions"))


def test_convert_import_stores_our_sentencepiece_tokenizer(inputs, results):
  assert results["import_our_tokenizer"]["rc"] == 0, results["import_our_tokenizer"]
  with open(os.path.join(inputs["imported"], "tokenizer.model"), "rb") as f, \
      open(inputs["tokenizer"], "rb") as g:
    assert f.read() == g.read()


# --------------------------------------------------------------------- tracebacks become one line


def test_missing_config_file(results):
  one_line(results["train_missing_config"], 2, "/nonexistent/tiny.py", "--config=")


def test_config_file_with_a_syntax_error(inputs, results):
  one_line(results["train_config_syntax"], 2, inputs["bad_config"], "line 1")


def test_workdir_that_is_a_file(inputs, results):
  one_line(results["train_workdir_is_file"], 2, f"--workdir={inputs['a_file']}", "is a file")


def test_workdir_that_cannot_be_created_names_the_workdir(results):
  one_line(results["train_workdir_proc"], 2, "--workdir=/proc/glm_jax_x", "cannot be created")


def test_prompt_file_that_is_not_utf8(inputs, results):
  one_line(results["generate_not_utf8"], 2, inputs["notutf8"], "UTF-8")


def test_convert_export_output_naming_a_directory(results):
  one_line(results["export_to_folder"], 2, "is a directory", ".safetensors")


def test_cudnn_attention_on_cpu(results):
  one_line(results["train_cudnn_on_cpu"], 2, "attention_backend='cudnn'", "'xla'")


def test_generate_from_int8_params(results):
  one_line(results["generate_int8_params"], 2, "int8", "--dtype=bfloat16")


# ---------------------------------------------------------------------- messages that name the fix


def test_misspelled_config_key_reads_plainly(results):
  line = one_line(results["train_misspelled_key"], 2, "'totl_steps'", 'Did you mean "total_steps"')
  assert "\\" not in line


def test_checkpoint_naming_a_training_workdir_names_extract_params(results):
  one_line(results["generate_from_workdir"], 2, "training workdir", "glm_jax.extract_params")


def test_misspelled_convert_command(results):
  one_line(results["convert_misspelled_command"], 2, "'imprt'", "convert import")


# ------------------------------------------------------------------------- values checked at entry


def test_top_p_above_one(results):
  one_line(results["generate_top_p"], 2, "top_p", "between 0 and 1")


def test_extract_params_int8(results):
  one_line(results["extract_int8"], 2, "--dtype=int8", "bfloat16")


def test_generate_float64(results):
  one_line(results["generate_float64"], 2, "--dtype=float64", "float32")


def test_lambada_seq_length_beyond_the_position_table(results):
  one_line(results["lambada_seq_length"], 2, "--seq_length=100000", "position table")


def test_cloze_text_with_two_masks(inputs, results):
  one_line(results["cloze_two_masks"], 2, f"{inputs['two_masks']}:1", "one [MASK]")


def test_cloze_single_scoring_with_mixed_candidate_counts_scores_every_example(results):
  result = results["cloze_single_mixed_counts"]
  assert result["rc"] == 0, result
  assert json.loads(result["stdout"].strip().splitlines()[-1])["num_examples"] == 2


# ------------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("case", ["generate_bad_flag", "evaluate_bad_flag", "convert_bad_flag",
                                  "extract_bad_flag", "train_bad_flag"])
def test_flag_errors_exit_2_in_every_command(results, case):
  one_line(results[case], 2, "flag", "--help")


@pytest.mark.parametrize("case", ["generate_help", "evaluate_help", "convert_help", "extract_help",
                                  "train_help", "finetune_help"])
def test_help_exits_0(results, case):
  assert results[case]["rc"] == 0, results[case]


def test_exported_files_get_mode_0644(inputs, results):
  assert results["export_file"]["rc"] == 0, results["export_file"]
  from glm_jax.storage import outputs  # pylint: disable=g-import-not-at-top
  mode = os.stat(f"{inputs['convdir']}_export/m.safetensors").st_mode & 0o777
  assert mode == outputs.file_mode() == 0o666 & ~_umask()   # 0644 under the usual umask 022


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask

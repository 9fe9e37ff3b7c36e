"""`generate` and `evaluate` on 2 processes x 4 devices (params split over all 8 by fsdp) print
what 1 process x 8 devices prints, and both processes exit 0; only process 0 prints."""

import json
import re
import subprocess
import sys

import jax
import pytest

from glm_jax.modeling import model
from glm_jax.storage import params_io
from tests import fresh_interpreter
from tests.test_train_cli import ROOT, _env, _free_port

WORDS = "the cat sat on mat and dog rug ran in park to house a bird sang tree sun was warm".split()
LAMBADA = ["the cat sat on the mat and the dog sat on the rug",
           "the dog ran in the park and the cat ran to the house",
           "a bird sang in the tree and the sun was warm"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("multi_inference")
  (root / "tok").mkdir()
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
  (root / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
  cfg = model.GLMConfig(vocab_size=128, num_layers=2, hidden_size=64, num_heads=4,
                        max_sequence_length=64, dtype="float32", init_std=0.2)
  params_io.save_for_inference(str(root / "ckpt"), model.init_params(cfg, jax.random.PRNGKey(1)))
  (root / "lambada.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in LAMBADA))
  return root


def _commands(root):
  model_flags = [f"--checkpoint={root / 'ckpt'}", f"--tokenizer={root / 'tok'}",
                 "--tokenizer_kind=bert-uncased"]
  return {
      "generate": ["glm_jax.generate", *model_flags, "--prompt=the cat sat on the [MASK] .",
                   "--prompt=a bird [MASK] in the tree", "--max_new_tokens=4"],
      "evaluate": ["glm_jax.evaluate", *model_flags, "--task=lambada",
                   f"--data={root / 'lambada.jsonl'}", "--batch_size=8"]}


def _run_two_processes(args):
  port = _free_port()
  procs = fresh_interpreter.run_together(
      [[sys.executable, "-m", *args, f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2", f"--process_id={i}", "--initialization_timeout=120"]
       for i in range(2)], _env(devices=4), 300)
  return [(p.returncode, _ours(p.stdout), p.stderr) for p in procs]


# The pieces gloo (CPU collectives) prints when its peers connect: "[Gloo] Rank R is connected
# to N peer ranks. Expected number of connected peer ranks is : N". Its threads write at once, so
# the pieces of several lines interleave; what is left of them is numbers.
_GLOO_PIECES = re.compile(r"\[Gloo\] Rank |\s*is connected to |\s*peer ranks\.\s*"
                          r"|Expected number of connected peer ranks is :\s*")


def _ours(stdout: str) -> str:
  """stdout without what gloo printed (see _GLOO_PIECES)."""
  lines = _GLOO_PIECES.sub("", stdout).splitlines(keepends=True)
  return "".join(l for l in lines if l.strip() and not l.replace(" ", "").strip().isdigit())


def _metrics(stdout: str) -> dict:
  metrics = json.loads(stdout.strip().splitlines()[-1])
  metrics.pop("eval_tokens_per_s")
  return metrics


@pytest.mark.slow
@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_two_processes_of_four_devices_print_what_one_process_of_eight_prints(files, command):
  args = _commands(files)[command]
  single = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=_env(devices=8),
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-4000:]
  (rc0, out0, err0), (rc1, out1, err1) = _run_two_processes(args)
  assert rc0 == 0, err0[-4000:]
  assert rc1 == 0, err1[-4000:]
  assert out1.strip() == ""  # only process 0 writes output
  if command == "generate":
    assert out0.splitlines() == single.stdout.splitlines()
    assert len(out0.splitlines()) == 2
  else:
    assert _metrics(out0) == _metrics(single.stdout)
    assert _metrics(out0)["num_examples"] == len(LAMBADA)

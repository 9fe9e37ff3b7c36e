"""A whole cycle (train, stop, resume past a damaged checkpoint, export, generate) with every
path on Cloud Storage.

Offline: a local GCS emulator (gcp-storage-emulator, in memory) serves `gs://bucket`; TensorStore
(Orbax's array store) reaches it through TENSORSTORE_GCS_HTTP_URL, etils.epath through fsspec's
gcsfs (EPATH_USE_TF=false, STORAGE_EMULATOR_HOST). Nothing of the run may land on the local disk:
an `os.path`/`open` on a workdir would create a folder named `gs:` or fail. TensorFlow's own GCS
client cannot be pointed at an emulator, so TensorBoard summaries are off here.
"""

from http import HTTPStatus
import json
import os
import subprocess
import sys

from gcp_storage_emulator import server as gcs_emulator
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects as gcs_objects
import pytest

from tests import fresh_interpreter
from tests.test_train_cli import ROOT, SMALL, _env, _free_port

BUCKET = "glm-jax-test"


def _generation(storage, bucket, name):
  try:
    return storage.get_file_obj(bucket, name)["generation"]
  except NotFound:
    return None


def _query(request, key):
  values = request.query.get(key)
  return values[0] if values else None


def _download(request, response, storage, *args, **kwargs):
  """The emulator's download, plus what GCS does and TensorStore relies on: an object's generation
  in `x-goog-generation`, and the `ifGenerationMatch` / `ifGenerationNotMatch` preconditions (412,
  304). Without them TensorStore's cache revalidation of an OCDBT manifest (a GET with
  ifGenerationNotMatch=<generation it wrote>) gets a 200 with no generation, and its next
  conditional write of the manifest fails with 'Malformed StorageGeneration'."""
  generation = _generation(storage, request.params["bucket_name"], request.params["object_id"])
  if generation is not None:
    match, not_match = _query(request, "ifGenerationMatch"), _query(request, "ifGenerationNotMatch")
    response["x-goog-generation"] = generation
    if match is not None and match != generation:
      response.status = HTTPStatus.PRECONDITION_FAILED
      return
    if not_match is not None and not_match == generation:
      response.status = HTTPStatus.NOT_MODIFIED
      return
  _ORIGINAL["download"](request, response, storage, *args, **kwargs)


def _insert(request, response, storage, *args, **kwargs):
  """The emulator's upload, plus GCS's `ifGenerationMatch` precondition (0: must not exist)."""
  match, name = _query(request, "ifGenerationMatch"), _query(request, "name")
  if match is not None and name is not None:
    generation = _generation(storage, request.params["bucket_name"], name) or "0"
    if match != generation:
      response.status = HTTPStatus.PRECONDITION_FAILED
      return
  _ORIGINAL["insert"](request, response, storage, *args, **kwargs)


_ORIGINAL = {"download": gcs_objects.download, "insert": gcs_objects.insert}
_PATCHED = {gcs_objects.download: _download, gcs_objects.insert: _insert}


@pytest.fixture(scope="module")
def gcs_env():
  for _, handlers in gcs_emulator.HANDLERS:
    for method, handler in handlers.items():
      handlers[method] = _PATCHED.get(handler, handler)
  gcs_objects.download = _download       # what `objects.get` calls for ?alt=media
  gcs_objects.insert = _insert           # the router's fallback for uploads without /upload
  port = _free_port()
  server = gcs_emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
  server.start()
  url = f"http://127.0.0.1:{port}"
  env = dict(_env(), STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
             GOOGLE_AUTH_TOKEN_FOR_TESTING="emulator", EPATH_USE_TF="false")
  yield env
  server.stop()
  gcs_objects.download, gcs_objects.insert = _ORIGINAL["download"], _ORIGINAL["insert"]
  unpatch = {v: k for k, v in _PATCHED.items()}
  for _, handlers in gcs_emulator.HANDLERS:
    for method, handler in handlers.items():
      handlers[method] = unpatch.get(handler, handler)


def _run(env, cwd, module, *args):
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc


def _read(env, path) -> str:
  """Reads a gs:// object the way the project does (epath over gcsfs), in a clean interpreter."""
  proc = fresh_interpreter.run("read_gs_object", path, devices=None, env=env, timeout=120)
  proc.check_returncode()
  return proc.stdout


def _truncate_blobs(env, checkpoint) -> int:
  """Cuts a gs:// checkpoint's data blobs to 10 bytes (an interrupted copy), in a clean interpreter."""
  proc = fresh_interpreter.run("truncate_checkpoint_blobs", checkpoint, devices=None, env=env,
                               timeout=120)
  proc.check_returncode()
  return int(proc.stdout)


@pytest.mark.slow
def test_train_stop_resume_export_generate_with_a_gs_workdir(gcs_env, tmp_path):
  cwd = str(tmp_path)                      # a `gs:` folder would show up here
  workdir = f"gs://{BUCKET}/run"
  train = ["glm_jax.train", *[a.replace("configs/", f"{ROOT}/configs/") for a in SMALL
                              if "total_steps" not in a],
           "--config.synthetic_data=False", "--config.vocab_from_tokenizer=True",
           "--config.total_steps=6", "--config.checkpoint_every_steps=2",
           f"--workdir={workdir}"]
  _run(gcs_env, cwd, *train, "--config.stop_at_step=4")
  assert _truncate_blobs(gcs_env, f"{workdir}/checkpoints/4") > 0
  resumed = _run(gcs_env, cwd, *train)
  assert f"Checkpoint step 4 at {workdir}/checkpoints/4 cannot be read" in resumed.stderr
  assert f"Resumed from {workdir}/checkpoints/2." in resumed.stdout
  assert "Done at step 6" in resumed.stdout
  steps = [json.loads(l)["step"] for l in _read(gcs_env, f"{workdir}/metrics.jsonl").splitlines()]
  assert steps == [1, 2, 3, 4, 3, 4, 5, 6]   # appended to: steps 3-4 again after resuming at 2
  assert json.loads(_read(gcs_env, f"{workdir}/checkpoints/6/data/metadata"))
  assert json.loads(_read(gcs_env, f"{workdir}/checkpoints/4.unreadable/data/metadata"))

  exported = f"gs://{BUCKET}/exported"
  _run(gcs_env, cwd, "glm_jax.extract_params", f"--workdir={workdir}", f"--output={exported}",
       "--dtype=bfloat16")
  out = _run(gcs_env, cwd, "glm_jax.generate", f"--checkpoint={exported}",
             f"--tokenizer={workdir}/tokenizer.model", "--max_new_tokens=3",
             "--prompt=In the beginning God created the [MASK] and the earth.")
  assert out.stdout.startswith("In the beginning God created the")
  assert os.listdir(cwd) == [], os.listdir(cwd)
  assert not os.path.exists(os.path.join(ROOT, "gs:"))

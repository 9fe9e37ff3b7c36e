"""Two of the harness's test tasks on a 2x2x2 mesh, from one process of a (possibly multi-host) run.

Args: CHECKPOINT NUM_PROCESSES PROCESS_ID PORT. Runs glm_jax.harness.evaluate_tasks on the tasks in
tests/data/harness with the mesh (data=2, fsdp=2, tensor=2) over every process's devices, and on
process 0 prints JSON: the device and process counts and each task's per-document responses.
Run by tests/test_harness.py: 1 process x 8 fake CPU devices and 2 processes x 4.
"""

import json
import sys

import jax

from glm_jax import harness

TASKS = ["glm_lambada", "glm_gen"]  # a loglikelihood and a generation task


def main():
  checkpoint, num_processes, process_id, port = sys.argv[1:5]
  multi = int(num_processes) > 1
  model_args = dict(seq_length=32, overlap=8, batch_size=4, mesh_data=2, mesh_fsdp=2,
                    mesh_tensor=2)
  if multi:
    model_args.update(coordinator_address=f"127.0.0.1:{port}", num_processes=int(num_processes),
                      process_id=int(process_id))
  results = harness.evaluate_tasks(TASKS, checkpoint, include_path="tests/data/harness",
                                   include_defaults=False, model_args=model_args,
                                   log_samples=True, bootstrap_iters=0)
  if results is None:
    return
  samples = results.pop("samples")
  print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(),
                    "results": results["results"],
                    "responses": {t: [s["resps"] for s in samples[t]] for t in TASKS}}))


if __name__ == "__main__":
  main()

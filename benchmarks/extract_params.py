"""`extract_params` peak host memory and wall time against the params' bytes: before and after.

  python benchmarks/extract_params.py                 # 53M params (fp32), 8 fake CPU devices
  python benchmarks/extract_params.py --layers=24 --hidden=1024

A train state (params + AdamW moments) is written once, sharded fsdp=8 as `train` writes it;
each mode then runs in its own process and reports its peak RSS (the kernel's ru_maxrss):
- before: the previous extract: restore the whole train state (no target), gather the params
  to host numpy, write them (only works on the training topology: 8 devices);
- after_8_devices / after_1_device: `python -m glm_jax.extract_params` as it is now (a partial
  restore of the params, straight into their shards; the other device count shows the topology
  no longer matters);
- baseline: a process that imports the same modules and starts JAX on 8 devices, reading
  nothing: what every mode pays before it reads a byte.
On CPU the fake devices' memory is host memory, so `after` holds one sharded copy on the host.
Prints one JSON line: params_bytes, per mode wall_s / peak_rss_bytes / rss_over_params, and the
same ratio above the baseline.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MAKE = """
import sys
from configs import tiny
from glm_jax.training import checkpoint, optim, train_state
from glm_jax.modeling import model, sharding
config = tiny.get_config()
config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 8, 1
config.model.update(num_layers={layers}, hidden_size={hidden}, num_heads={heads}, vocab_size={vocab})
mesh = sharding.make_mesh(config.mesh)
optimizer = optim.make_optimizer(config)
_, shardings = train_state.state_shardings(config, mesh, optimizer)
state = train_state.init_state(config, optimizer, shardings)
saver = checkpoint.Checkpointer(sys.argv[1], keep=1)
saver.save(1, state, {{}})
saver.wait()
saver.close()
print(model.count_params(config))
"""

# The extract before this change (glm_jax.training.checkpoint.params_from_training_checkpoint then).
_BEFORE = """
import sys
import jax, numpy as np, orbax.checkpoint as ocp
from glm_jax.storage import params_io
state = ocp.StandardCheckpointer().restore(sys.argv[1] + "/checkpoints/1/state")
params = jax.tree_util.tree_map(np.asarray, state["params"])
params_io.save_for_inference(sys.argv[2], params)
"""

_BASELINE = """
import jax, orbax.checkpoint as ocp
from glm_jax.training import checkpoint
from glm_jax import extract_params
from input_pipeline import tokenizer
jax.devices()
"""


def _env(devices: int) -> dict:
  return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _measure(args, devices: int) -> dict:
  """Wall seconds and peak RSS (bytes) of one child process."""
  start = time.perf_counter()
  proc = subprocess.Popen(args, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - start
  err = proc.stderr.read().decode()
  if status != 0:
    raise SystemExit(f"{args[:3]} failed: {err[-2000:]}")
  return {"wall_s": round(wall, 2), "peak_rss_bytes": int(usage.ru_maxrss) * 1024}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", type=int, default=12)
  parser.add_argument("--hidden", type=int, default=512)
  parser.add_argument("--heads", type=int, default=8)
  parser.add_argument("--vocab", type=int, default=30592)
  args = parser.parse_args()
  root = tempfile.mkdtemp(prefix="extract_bench_")
  work = os.path.join(root, "work")
  made = subprocess.run([sys.executable, "-c", _MAKE.format(**vars(args)), work], cwd=ROOT,
                        env=_env(8), capture_output=True, text=True, check=True)
  num_params = int(made.stdout.strip().splitlines()[-1])
  params_bytes = 4 * num_params
  modes = {
      "baseline": ([sys.executable, "-c", _BASELINE], 8),
      "before": ([sys.executable, "-c", _BEFORE, work, os.path.join(root, "before")], 8),
      "after_8_devices": ([sys.executable, "-m", "glm_jax.extract_params", f"--workdir={work}",
                           f"--output={os.path.join(root, 'after8')}"], 8),
      "after_1_device": ([sys.executable, "-m", "glm_jax.extract_params", f"--workdir={work}",
                          f"--output={os.path.join(root, 'after1')}"], 1),
  }
  report = {"num_params": num_params, "params_bytes": params_bytes,
            "train_state_bytes": 3 * params_bytes, "machine": os.uname().nodename,
            "cpus": os.cpu_count()}
  for name, (command, devices) in modes.items():
    report[name] = _measure(command, devices)
    report[name]["rss_over_params"] = round(report[name]["peak_rss_bytes"] / params_bytes, 2)
  base = report["baseline"]["peak_rss_bytes"]
  for name in ("before", "after_8_devices", "after_1_device"):
    report[name]["above_baseline_over_params"] = round(
        (report[name]["peak_rss_bytes"] - base) / params_bytes, 2)
  report["before_over_after_8_devices_rss"] = round(
      report["before"]["peak_rss_bytes"] / report["after_8_devices"]["peak_rss_bytes"], 2)
  print(json.dumps(report))


if __name__ == "__main__":
  main()

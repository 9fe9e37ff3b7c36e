"""The flags of the two run commands, train and finetune: --config, --workdir, the process flags
(hosts.py) and the --compile_only group.

Defined here once, at import, so that both commands can run in one interpreter (absl refuses a
flag defined twice); each command adopts them as its own (`flags.adopt_module_key_flags`, so its
`--help` lists them), reads them in its `main` and passes the values on explicitly.
"""

from absl import flags
from ml_collections import config_flags

from glm_jax import hosts

CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file, e.g. configs/tiny.py.")
WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl and TensorBoard logs "
                              "(default: /tmp/glm_jax/<config name>; finetune: "
                              "/tmp/glm_jax/finetune_<task>).")
hosts.define_process_flags()  # --coordinator_address, --num_processes, --process_id
COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "Compile the train step for --topology "
                                 "(no TPU needed; libtpu from requirements-tpu.txt) and print "
                                 "per-chip memory, fit and collectives as JSON; train nothing.")
TOPOLOGY = flags.DEFINE_string("topology", None, "TPU topology for --compile_only, e.g. "
                               "v5p:4x4x4, v4:4x4x4, v5e:4x4.")
NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "Slices (joined over DCN) for --compile_only.")
HLO_DUMP = flags.DEFINE_string("hlo_dump", None, "--compile_only: also write the optimized HLO "
                               "text to this path.")

"""Per-chip train-step memory of GLM-Large and GLM-10B on a TPU topology: XLA vs Pallas attention.

  python benchmarks/attention_memory.py                          # v5p-64 (v5p:2x4x4): every case
  python benchmarks/attention_memory.py --sizes=large --lengths=8192 --backends=pallas

Nothing runs on a TPU: libtpu AOT-compiles the real train step for the topology on this host
(`glm_jax.training.aot`, the same path as `python -m glm_jax.train --compile_only`) and XLA's memory
analysis gives the per-chip footprint; a step the compiler cannot fit in HBM reports fits=false.
Every case keeps the config's tokens per step (global_batch_size x seq_length = 1024 x 512), so
the batch shrinks as the context grows (64 sequences at 8192 tokens), down to one sequence per
chip (both configs split the batch over every chip: 32 sequences on v5p-64 from 16384 tokens
on). attention_dropout is 0 for both backends (as the table was measured) and the position tables
grow to the length. Prints one JSON line per case, then a summary line: the longest length that
fits per size and backend.
GLM-10B compiles take minutes on a small CPU host.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys

if not __package__:  # run as a script: import the repo's packages, not benchmarks/ siblings
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from glm_jax.training import aot  # pylint: disable=g-import-not-at-top

SIZES = {"large": "configs.large", "10b": "configs.glm_10b"}
TOKENS_PER_STEP = 1024 * 512
# libtpu's out-of-memory message for a step whose temporaries alone exceed HBM.
_TEMPORARIES_NEEDED = re.compile(r"required for HLO temporaries \(([\d.]+)G\)")


def case_config(size: str, backend: str, length: int, chips: int):
  """The size's run config at `length` tokens: the same tokens per step (but at least one
  sequence per chip), no attention dropout."""
  config = importlib.import_module(SIZES[size]).get_config()
  config.seq_length = length
  config.global_batch_size = max(chips, TOKENS_PER_STEP // length)
  config.model.max_sequence_length = max(config.model.max_sequence_length, length)
  config.model.attention_dropout = 0.0
  config.model.attention_backend = backend
  return config


def measure(size: str, backend: str, length: int, topology: str) -> dict:
  """One compile; the report of `aot.compile_train_step`, or the error that stopped it."""
  config = case_config(size, backend, length, len(aot.topology_devices(topology)))
  row = {"benchmark": "attention_memory", "size": size, "backend": backend, "seq_length": length}
  try:
    report = aot.compile_train_step(config, topology)
  except Exception as e:  # pylint: disable=broad-except
    first_line = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
    return {**row, "topology": topology, "fits": False, "error": first_line[:300]}
  report.pop("collectives", None)
  needed = _TEMPORARIES_NEEDED.search(report.get("error", ""))
  if needed and "needed_gib" not in report:
    report["temporaries_needed_gib"] = float(needed.group(1))
  return {**row, **report}


def summarize(rows: list[dict]) -> dict:
  """Longest fitting length per (size, backend), and pallas/xla per-chip memory per length."""
  longest, ratios = {}, {}
  for row in rows:
    key = f"{row['size']}/{row['backend']}"
    longest.setdefault(key, 0)
    if row.get("fits"):
      longest[key] = max(longest[key], row["seq_length"])
  by_case = {(r["size"], r["backend"], r["seq_length"]): r for r in rows}
  for (size, backend, length), row in by_case.items():
    xla = by_case.get((size, "xla", length))
    if backend == "pallas" and xla and "per_chip_gib" in row and "per_chip_gib" in xla:
      ratios[f"{size}/{length}"] = round(row["per_chip_gib"] / xla["per_chip_gib"], 3)
  return {"benchmark": "attention_memory_summary", "longest_fitting_seq_length": longest,
          "pallas_over_xla_per_chip_memory": ratios}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--topology", default="v5p:2x4x4", help="v5p-64 = 32 chips = v5p:2x4x4")
  parser.add_argument("--sizes", default="large,10b", help=f"comma list of {sorted(SIZES)}")
  parser.add_argument("--backends", default="xla,pallas")
  parser.add_argument("--lengths", default="512,1024,2048,8192")
  args = parser.parse_args()
  sizes = args.sizes.split(",")
  unknown = sorted(set(sizes) - set(SIZES))
  if unknown:
    parser.error(f"--sizes: unknown {unknown}; choose from {sorted(SIZES)}.")
  rows = []
  for size in sizes:
    for length in (int(x) for x in args.lengths.split(",")):
      for backend in args.backends.split(","):
        rows.append(measure(size, backend, length, args.topology))
        print(json.dumps(rows[-1]), flush=True)
  print(json.dumps(summarize(rows)), flush=True)


if __name__ == "__main__":
  main()

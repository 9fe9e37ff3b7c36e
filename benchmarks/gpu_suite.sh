#!/usr/bin/env bash
# Everything a lent GPU should check, in one call (device time is scarce: build nothing there).
#   correctness on the GPU (fixture parity, cuDNN vs XLA attention), then JSON throughput of our
#   forward+backward, full train step (GLM-Large, GLM-2B), batched evaluation scoring and
#   KV-cached generation, then the peer baselines in the same call so ratios compare like with
#   like.
# Usage on the device machine, from the repo root (results land in $OUT):
#   bash benchmarks/gpu_suite.sh            # GPU
#   SMALL=1 bash benchmarks/gpu_suite.sh    # CPU smoke run of the same steps with tiny shapes
# The GPU image lacks ml-collections: carry its wheel (see the device tool's notes) and put it on
# PYTHONPATH first. Peer baselines run when a copy of them sits in .peers/ (git-ignored).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
OUT=${OUT:-/tmp/glm_gpu_suite}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ "${SMALL:-0}" = 1 ]; then
  LARGE="--config=configs/tiny.py --config.model.vocab_size=4096"; BIG="$LARGE"; GEN=tiny; B=8; B2=8
else
  LARGE="--config=configs/large.py"; BIG="--config=configs/glm_2b.py"; GEN=glm_large; B=64; B2=16
fi
run() { echo "== $*" | tee -a "$OUT/log.txt"; "$@" 2>&1 | tee -a "$OUT/log.txt"; }

run $PY -m pytest -q tests/test_model.py -k "fixture or reference or cudnn or kv_cache"
run $PY benchmarks/forward.py ${LARGE%% *} --batch=$((B / 4)) --dtype=bfloat16
run $PY benchmarks/train_step.py $LARGE --batch=$B
run $PY benchmarks/train_step.py $LARGE --batch=$B --nofast_attention
run $PY benchmarks/train_step.py $BIG --batch=$B2
if [ "${SMALL:-0}" = 1 ]; then EVAL="--examples=32"; else
  EVAL="--layers=24 --hidden=1024 --heads=16 --vocab=30592 --examples=256 --dtype=bfloat16"; fi
run $PY benchmarks/eval.py $EVAL   # batched vs one row per call (issue 9 expects >= 5x)
run $PY benchmarks/generate.py --shape=$GEN --prompt_len=$([ "${SMALL:-0}" = 1 ] && echo 64 || echo 384)
if [ -f .peers/train_step_peers.py ]; then
  run env SMALL="${SMALL:-}" $PY .peers/train_step_peers.py jax
  run env SMALL="${SMALL:-}" $PY .peers/train_step_peers.py torch
fi
grep -h "^{" "$OUT/log.txt" > "$OUT/results.jsonl" || true  # one-line JSON records; log.txt has all
echo "results: $OUT/results.jsonl"

#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py documents the steps): CUDA-only tests, `iclab bench --mfu`, a 2-GPU
# NCCL quickstart, a timed slice of the Garg reference training with the 500k-step projection; one JSON.
#   benchmarks/gpu_check.sh [--dry] [--out FILE] [--slice-s 600] [--skip STEP]    (GPU_CHECK_DRY=1 = --dry)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"

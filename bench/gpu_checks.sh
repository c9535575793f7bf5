#!/usr/bin/env bash
# The checks that need a GPU, as one script for a session that has one (nothing here
# has run on a GPU yet). Run from the repository root with the venv built:
#
#   bash bench/gpu_checks.sh [OUT_DIR]
#
# 1. bench/paths_batched.py on cuda: batched path evaluation vs one model per point
#    (issue 4's target: >= 5x for 41 points, same numbers); and on cpu for comparison.
# 2. The path-query tests (they run whatever device the jobs pick: cuda when present).
# 3. The quick-start end to end on the GPU (jobs use device: auto), its netCDF kept.
set -euo pipefail
OUT="${1:-gpu-checks}"
mkdir -p "$OUT"
PY=.venv/bin/python
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
$PY bench/paths_batched.py --device cuda --repeat 5 2>&1 | tee "$OUT/paths_batched_cuda.txt"
$PY bench/paths_batched.py --device cuda --repeat 5 --points 161 2>&1 | tee "$OUT/paths_batched_cuda_161.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_paths.py 2>&1 | tail -20 | tee "$OUT/test_paths.txt"
STORE="$(mktemp -d)"
time .venv/bin/studyspec launch specs/quickstart.yaml --store "$STORE" 2>&1 | tail -20 | tee "$OUT/quickstart.txt"
.venv/bin/studyspec collect specs/quickstart.yaml --store "$STORE" --out "$OUT/quickstart-gpu.nc" 2>&1 | tail -3

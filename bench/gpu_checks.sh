#!/usr/bin/env bash
# The checks that need a GPU, as one script for a session that has one (nothing here
# has run on a GPU yet). Run from the repository root with the venv built:
#
#   bash bench/gpu_checks.sh [OUT_DIR]
#
# 1. bench/paths_batched.py on cuda: batched path evaluation vs one model per point
#    (issue 4's target: >= 5x for 41 points, same numbers); and on cpu for comparison.
# 2. The path-query tests (they run whatever device the jobs pick: cuda when present).
# 3. The quick-start end to end on the GPU (jobs use device: auto), its netCDF kept, and
#    again on the CPU (train.device=cpu; path jobs follow CUDA_VISIBLE_DEVICES=""), both
#    compared by bench/compare_nc.py: final losses and barriers within seed noise.
# 4. bench/precision_step.py on cuda: ResNet-20 step time of the runner in fp32, bf16 and
#    fp16 against a hand-written AMP loop (target <= 1.05x), with and without channels_last.
#
# GPU_CHECKS_DEVICE=cpu runs the same steps on the CPU, tiny, to check the script itself.
set -euo pipefail
OUT="${1:-gpu-checks}"
mkdir -p "$OUT"
PY=.venv/bin/python
if [ "${GPU_CHECKS_DEVICE:-cuda}" = cpu ]; then  # a dry run of this script on a machine without a GPU
  $PY bench/precision_step.py --device cpu --precisions fp32 bf16 --batch 8 --short 1 --long 2 --repeats 1 \
    2>&1 | tee "$OUT/precision_step_cpu.txt"
  STORE="$(mktemp -d)"
  cat > "$OUT/tiny.yaml" <<'YAML'
study: tiny
data: {dataset: digits, batch_size: 64}
model: {arch: mlp, hidden: [32]}
train: {steps: 20, eval_every: 10}
sweep: {seed: [0, 1, 2]}
runs: {dense: {regime: dense}}
YAML
  .venv/bin/studyspec run "$OUT/tiny.yaml" --store "$STORE" --out "$OUT/tiny-a.nc" 2>&1 | tail -2
  .venv/bin/studyspec run "$OUT/tiny.yaml" --store "$STORE" --out "$OUT/tiny-b.nc" train.device=cpu 2>&1 | tail -2
  $PY bench/compare_nc.py "$OUT/tiny-a.nc" "$OUT/tiny-b.nc" | tee "$OUT/compare_tiny.txt"
  rm -rf "$STORE"
  exit 0
fi
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
$PY bench/paths_batched.py --device cuda --repeat 5 2>&1 | tee "$OUT/paths_batched_cuda.txt"
$PY bench/paths_batched.py --device cuda --repeat 5 --points 161 2>&1 | tee "$OUT/paths_batched_cuda_161.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_paths.py 2>&1 | tail -20 | tee "$OUT/test_paths.txt"
STORE="$(mktemp -d)"
time .venv/bin/studyspec launch specs/quickstart.yaml --store "$STORE" 2>&1 | tail -20 | tee "$OUT/quickstart.txt"
.venv/bin/studyspec collect specs/quickstart.yaml --store "$STORE" --out "$OUT/quickstart-gpu.nc" 2>&1 | tail -3
CPU_STORE="$(mktemp -d)"
time CUDA_VISIBLE_DEVICES="" .venv/bin/studyspec launch specs/quickstart.yaml --store "$CPU_STORE" train.device=cpu 2>&1 | tail -5 | tee "$OUT/quickstart_cpu.txt"
.venv/bin/studyspec collect specs/quickstart.yaml --store "$CPU_STORE" --out "$OUT/quickstart-cpu.nc" train.device=cpu 2>&1 | tail -3
$PY bench/compare_nc.py "$OUT/quickstart-gpu.nc" "$OUT/quickstart-cpu.nc" 2>&1 | tee "$OUT/quickstart_gpu_vs_cpu.txt" || true
$PY bench/precision_step.py --device cuda --precisions fp32 bf16 fp16 --batch 128 --short 20 --long 120 --repeats 3 2>&1 | tee "$OUT/precision_step_cuda.txt"
$PY bench/precision_step.py --device cuda --precisions fp32 bf16 fp16 --batch 128 --short 20 --long 120 --repeats 3 --channels-last 2>&1 | tee "$OUT/precision_step_cuda_cl.txt"

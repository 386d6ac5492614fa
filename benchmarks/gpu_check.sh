#!/usr/bin/env bash
# The GPU check: on one CUDA GPU (H100/H200), in at most ~8 minutes, from the repo root:
#   1. the unit suite on CUDA;
#   2. `minildm demo` end to end (its quality bar and its training throughput);
#   3. the SD-v1 UNet against diffusers: fp32 equality first, then bf16 train/sampling step times;
# then one summary table (benchmarks/gpu_summary.py), also written to $OUT/gpu_check.md and .json.
#
# Prepare on a machine with PyPI access: `bash benchmarks/gpu_wheels.sh` (wheels for what the GPU
# image lacks, into .whl/), then run this script there with .whl carried. It uses the machine's
# own python3 and torch, and this checkout through PYTHONPATH (no install).
# Options (environment): GPU_CHECK_COMPILE=1 also times torch.compile of the SD UNet (minutes of
# compilation); GPU_CHECK_SKIP=unit,demo,unet skips parts.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
skip=${GPU_CHECK_SKIP:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee -a "$OUT/gpu.txt"

if [[ $skip != *unit* ]]; then
  echo "== 1. unit suite on CUDA"
  workers=$($PY -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
  start=$(date +%s%N)
  # the stand-in device's placement checks (tests/test_device_placement.py) stand for a GPU on CPU-only machines
  timeout 300 $PY -m pytest -q -p no:cacheprovider $workers tests --ignore tests/test_device_placement.py \
    --junitxml "$OUT/unit.xml" 2>&1 | tail -25
  echo $(( ($(date +%s%N) - start) / 1000000 )) > "$OUT/unit_ms.txt"
fi

if [[ $skip != *demo* ]]; then
  echo "== 2. minildm demo on CUDA"
  rm -rf "$OUT/demo"
  start=$(date +%s%N)
  timeout 240 $PY -m minildm demo --out "$OUT/demo" 2>&1 | grep -v '^\s*$' | tail -15
  echo $(( ($(date +%s%N) - start) / 1000000 )) > "$OUT/demo_ms.txt"
fi

if [[ $skip != *unet* ]]; then
  echo "== 3. SD-v1 UNet: minildm vs diffusers (fp32 equality, then bf16 timing)"
  compile=${GPU_CHECK_COMPILE:+--compile}
  timeout 300 $PY benchmarks/unet_speed.py --preset sd-v1 --device cuda --precision bf16 --batch 8 \
    --iters 10 --repeats 3 $compile --json "$OUT/unet_sd.json" 2>&1 | grep -v '^W' | tail -8
fi

$PY benchmarks/gpu_summary.py "$OUT" --json "$OUT/gpu_check.json" | tee "$OUT/gpu_check.md"

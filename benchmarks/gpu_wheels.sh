#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels that benchmarks/gpu_check.sh installs on a
# GPU machine without internet (Python 3.12, x86-64 Linux): `bash benchmarks/gpu_wheels.sh` -> .whl/
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -v '^\s*#' benchmarks/gpu_wheels.txt | grep -v '^\s*$' | while read -r requirement; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$requirement"
done
du -sh .whl

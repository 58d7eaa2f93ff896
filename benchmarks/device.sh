#!/usr/bin/env bash
# The accelerator benchmark in one call (at most 8 minutes on a lent GPU machine):
#   bash benchmarks/device.sh            # installs CUDA wheels, then benchmarks.device_bench
#   bash benchmarks/device.sh --cpu-tiny # no installs: the CPU fallback, tiny shapes (tested)
# Installs go to .venv-gpu (tensorflow[and-cuda] at the pinned version + our requirements) and
# .venv-torch-gpu (the reference torch); each is skipped when already there. An install that
# fails (e.g. no package index reachable) prints one JSON line saying so and exits 3.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2

if [ "${1:-}" = "--cpu-tiny" ]; then
  exec "${PYTHON:-.venv/bin/python}" -m benchmarks.device_bench --device=cpu --tiny \
    ${TORCH_PYTHON:+--torch-python "$TORCH_PYTHON"}
fi

TF_PIN=$(sed -n 's/^tensorflow==//p' requirements.txt)
TORCH_PIN=2.13.0
fail() { echo "{\"name\": \"device_install\", \"error\": \"$1\"}"; exit 3; }
if [ ! -x .venv-gpu/bin/python ]; then
  python3 -m venv .venv-gpu || fail "venv .venv-gpu"
  timeout 240 .venv-gpu/bin/pip install --quiet "tensorflow[and-cuda]==$TF_PIN" \
    -r requirements.txt || fail "pip install tensorflow[and-cuda]==$TF_PIN"
  .venv-gpu/bin/pip install --quiet --no-deps -r requirements-nodeps.txt \
    || fail "pip install requirements-nodeps.txt"
fi
if [ ! -x .venv-torch-gpu/bin/python ]; then
  python3 -m venv .venv-torch-gpu || fail "venv .venv-torch-gpu"
  timeout 180 .venv-torch-gpu/bin/pip install --quiet "torch==$TORCH_PIN" numpy \
    || fail "pip install torch==$TORCH_PIN"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 360 .venv-gpu/bin/python -m benchmarks.device_bench --device=auto \
  --torch-python .venv-torch-gpu/bin/python

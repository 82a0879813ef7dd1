#!/usr/bin/env bash
# Create (or reuse) .venv and install patchforensics with its test tools.
# Used by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# Take the CPU build of torch when this machine keeps one on disk: PyPI's default
# torch wheel is a multi-GB CUDA build that a CPU machine does not need.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  cpu_wheel=$(ls /opt/wheels/torch-2.1[0-3]*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$cpu_wheel" ]; then pip install "$cpu_wheel"; else pip install "torch>=2.1,<2.14"; fi
fi
pip install -e ".[dev]"

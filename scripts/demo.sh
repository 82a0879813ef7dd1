#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then train, evaluate and explain
# on ../shared/data/faces128 (or $PATCHFORENSICS_DATA). Extra arguments go to
# 'patchforensics demo' (e.g. --out DIR --force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/patchforensics demo "$@"

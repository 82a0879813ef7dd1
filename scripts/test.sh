#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv, install Chromium for the
# browser tests and Slurm + munge for the cluster tests (a one-node cluster the
# tests start themselves, tests/slurm_cluster.py) if they are missing, run
# pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v sbatch >/dev/null && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/munged ] || need+=(slurm-wlm munge)
if [ "${#need[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# The release run on a lent GPU, in one device call of under 10 minutes.
#
# On the GPU machine it rebuilds faces128 from the carried faces256 JPEGs
# (scripts/faces128_from_faces256.py: every pixel checked against the shared faces128), trains
# the release candidates and the cross-source run with
# `patchforensics release --stop-after train --device cuda` inside a time budget, and writes to $OUT:
#   release_checkpoints.tar.gz   weights, configs, summaries, resume snapshots, selection.json
#   throughput_cuda.json         training and inference images/s of the candidates on CUDA
#   log.txt
# Finished runs carry over to the CPU, where the card steps (mediapipe) finish from the same folder:
#   mkdir -p release && tar -xzf <files_at>/release_checkpoints.tar.gz -C release && patchforensics release
# A run the budget cut short resumes only on a GPU (train --resume refuses another device): carry
# the tarball back as .device/release_checkpoints.tar.gz and call again; the data path is fixed, so
# the runs' options match.
#
# Here, once: bash scripts/device_grid.sh prepare   (.device/ gets faces256, the data README, the commit)
# Then the device tool's run with: command "bash scripts/release_gpu.sh", carry [".device"],
# timeout_s 590. Extra arguments go to `patchforensics release` (e.g. --candidate xb3_crop96).
# Tried on the CPU with: DEVICE=cpu BUDGET_S=300 SUBSET=--subset SRC=<part of faces256's parent> \
#   bash scripts/release_gpu.sh --epochs 1 --max-per-class 24 --bf16 off --no-cross-source
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SRC=${SRC:-.device}               # holds faces256/, the data README.md and maybe a previous tarball
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-470}         # training time; data, tar and throughput fit in the rest of 10 minutes
SUBSET=${SUBSET:-}                # --subset: SRC holds part of faces256 on purpose (a trial)
PY=${PY:-python3}
WORK=${WORK:-/tmp/pf-release}     # fixed: a resumed run must see the same data path
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

SECONDS=0
rm -rf "$WORK/data" && mkdir -p "$WORK/data" "$WORK/release"
$PY scripts/faces128_from_faces256.py "$SRC/faces256" "$WORK/data/faces128" \
    --check scripts/faces128.pixels.tsv $SUBSET || exit 1
cp "$SRC/README.md" "$WORK/data/README.md"
if [ -f "$SRC/release_checkpoints.tar.gz" ]; then tar -xzf "$SRC/release_checkpoints.tar.gz" -C "$WORK/release"; fi
echo "data seconds: $SECONDS"

SECONDS=0
timeout -k 30 --signal=INT "$BUDGET_S" $PY -m patchforensics release --data-root "$WORK/data/faces128" \
    --out "$WORK/release" --device "$DEVICE" --stop-after train "$@"
echo "release exit $? after $SECONDS s (124/130: the budget ran out; see the header on resuming)"
tar -czf "$OUT/release_checkpoints.tar.gz" -C "$WORK/release" --exclude runs .

$PY bench/throughput.py --faces "$WORK/data/faces128" --models xception_block3 xception_block2 --sizes 128 \
    --sections inference training --batch-size 256 --repeats 5 --device "$DEVICE" --json "$OUT/throughput_cuda.json"

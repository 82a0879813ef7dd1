#!/usr/bin/env bash
# The release run on a lent GPU, in one device call of under 10 minutes.
#
# On the GPU machine it rebuilds faces128 from the carried faces256 JPEGs
# (scripts/faces128_from_faces256.py: every pixel checked against the shared faces128), trains
# the release candidates and the cross-source run with
# `patchforensics release --stop-after train --device cuda` inside a time budget, and writes to $OUT:
#   <run>.tar.gz           one per training run: a finished run's bestval weights, config, summary
#                          and calibration; an unfinished one's resume snapshot and config (each
#                          under the tool's 16 MiB a file: block 3's snapshot alone is 13 MB)
#   selection.json         the choice on validation
#   throughput_cuda.json   training and inference images/s of the candidates on CUDA
#   log.txt
# Finished runs carry over to the CPU, where the card steps (mediapipe) finish from the same folder:
#   mkdir -p release && for t in <files_at>/*.tar.gz; do tar -xzf $t -C release; done
#   cp <files_at>/selection.json release/ && patchforensics release
# A run the budget cut short resumes only on a GPU (train --resume refuses another device): copy
# the tarballs into .device/release/ and call again; the data path is fixed, so the options match.
#
# Here, once: bash scripts/device_grid.sh prepare   (.device/ gets faces256, the data README, the commit)
# Then the device tool's run with: command "bash scripts/release_gpu.sh", carry [".device"],
# timeout_s 590. Extra arguments go to `patchforensics release` (e.g. --candidate xb3_crop96).
# Tried on the CPU with: DEVICE=cpu BUDGET_S=300 SUBSET=--subset THROUGHPUT_BATCH=8 WORK=/tmp/pf-trial \
#   SRC=<a folder with part of faces256 and the README> OUT=/tmp/gpu-trial \
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
THROUGHPUT_BATCH=${THROUGHPUT_BATCH:-256}   # where a GPU is busy; a CPU trial uses a small one
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
for earlier in "$SRC"/release/*.tar.gz; do [ -f "$earlier" ] && tar -xzf "$earlier" -C "$WORK/release"; done
echo "data seconds: $SECONDS"

SECONDS=0
timeout -k 30 --signal=INT "$BUDGET_S" $PY -m patchforensics release --data-root "$WORK/data/faces128" \
    --out "$WORK/release" --device "$DEVICE" --stop-after train "$@"
echo "release exit $? after $SECONDS s (124/130: the budget ran out; see the header on resuming)"
for run in "$WORK"/release/checkpoints/*/; do
    name=$(basename "$run")
    if grep -q '"status": "finished"' "$run/train_summary.json" 2>/dev/null; then
        keep="bestval.safetensors config.yaml train_summary.json calibration.json"
    else
        keep="resume.safetensors config.yaml"
    fi
    files=()
    for f in $keep; do [ -f "$run/$f" ] && files+=("checkpoints/$name/$f"); done
    tar -czf "$OUT/$name.tar.gz" -C "$WORK/release" "${files[@]}"
done
cp "$WORK/release/selection.json" "$OUT/" 2>/dev/null || true

$PY bench/throughput.py --faces "$WORK/data/faces128" --models xception_block3 xception_block2 --sizes 128 \
    --sections inference training --batch-size "$THROUGHPUT_BATCH" --repeats 5 --device "$DEVICE" --json "$OUT/throughput_cuda.json"

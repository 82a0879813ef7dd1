#!/usr/bin/env bash
# The findings grids on a machine with a GPU, in one call of the device tool (docs/findings.md,
# "How to continue the grid").
#
#   bash scripts/device_grid.sh prepare [DATA]     # here, before the call: .device/ (git-ignored) gets
#                                                  # DATA/faces256 (45 MB; DATA: ../shared/data), the
#                                                  # data README and the commit of this checkout
#   bash scripts/device_grid.sh run [--device cuda] [--workers 4] [--minutes 6] [--grids "G ..."]
#                                   [--src .device/faces256] [--subset] [--findings docs/findings] [--out $OUT]
#
# `run` rebuilds faces128 from the carried faces256 JPEGs (every pixel checked against
# scripts/faces128.pixels.tsv: a mismatch stops it), continues the grids (default: the must-have
# ones) from the committed tables, so a cell whose rows are there is not trained, and starts no
# cell after --minutes. Its output folder (the tool's $OUT) holds from the start, and after every
# finished cell, the tables with the new rows appended (cells.csv, curves.csv, regions.csv), so a
# call cut off at its limit keeps every whole cell; then log.txt and region-checkpoints.tar: the
# weights of finished cells that still need their region histograms, which need mediapipe and
# run back on the CPU. Five files, within what the tool sends back.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MUST_HAVE="findings-rf findings-cross findings-source findings-length"

prepare() {
    local data=${1:-../shared/data}
    [ -d "$data/faces256" ] || { echo "no $data/faces256: give the shared data folder" >&2; exit 2; }
    mkdir -p .device
    rm -rf .device/faces256
    cp -r "$data/faces256" .device/faces256
    cp "$data/README.md" .device/README.md
    PYTHONPATH=src "$PYTHON" -c 'from patchforensics.core.provenance import code_commit; print(code_commit() or "")' \
        > .device/commit
    echo "prepared .device ($(du -sh .device | cut -f1)) at commit $(cat .device/commit); call the device tool" \
         "with carry [\".device\"] and: bash scripts/device_grid.sh run --out \"\$OUT\""
}

run() {
    local device=cuda workers=4 minutes=6 grids=$MUST_HAVE src=.device/faces256 findings=docs/findings subset=
    local out=${OUT:-} work
    while [ $# -gt 0 ]; do
        case "$1" in
            --device) device=$2; shift 2 ;;
            --workers) workers=$2; shift 2 ;;
            --minutes) minutes=$2; shift 2 ;;
            --grids) grids=$2; shift 2 ;;
            --src) src=$2; shift 2 ;;
            --subset) subset=--subset; shift ;;     # a deliberately partial faces256 (tests)
            --findings) findings=$2; shift 2 ;;
            --out) out=$2; shift 2 ;;
            *) echo "run: unknown option $1" >&2; exit 2 ;;
        esac
    done
    [ -n "$out" ] || { echo "run: give --out (the device tool sets \$OUT)" >&2; exit 2; }
    mkdir -p "$out"
    work=$(mktemp -d "${TMPDIR:-/tmp}/pf-device-grid.XXXXXX")
    run_grids "$device" "$workers" "$minutes" "$grids" "$src" "$findings" "$out" "$work" "$subset" 2>&1 \
        | tee "$out/log.txt"
}

run_grids() {
    local device=$1 workers=$2 minutes=$3 grids=$4 src=$5 findings=$6 out=$7 work=$8 subset=$9
    local start=$SECONDS data grid left table
    data=$work/data/faces128
    "$PYTHON" scripts/faces128_from_faces256.py "$src" "$data" --check scripts/faces128.pixels.tsv $subset
    if [ -f "$(dirname "$src")/README.md" ]; then cp "$(dirname "$src")/README.md" "$work/data/README.md"; fi
    for table in cells curves regions; do
        if [ -f "$findings/$table.csv" ]; then cp "$findings/$table.csv" "$out/$table.csv"; fi
    done
    if [ -s .device/commit ]; then export PATCHFORENSICS_COMMIT; PATCHFORENSICS_COMMIT=$(cat .device/commit); fi
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    for grid in $grids; do
        left=$(( minutes * 60 - (SECONDS - start) ))
        if (( left <= 0 )); then echo "== $grid: no time left (--minutes $minutes)"; break; fi
        echo "== $grid: $left s left to start cells"
        # regions need mediapipe, which the GPU machine lacks: their cells come back as weights
        "$PYTHON" -m patchforensics experiment "$grid" --data-root "$data" --out "$work/exp" --findings "$out" \
            --workers "$workers" --device "$device" --stop-after "$("$PYTHON" -c "print($left / 60)")" --set regions=null \
            || echo "== $grid: not every cell finished (the rows of those that did are in $out)"
    done
    for grid in $grids; do
        "$PYTHON" -m patchforensics experiment "$grid" --data-root "$data" --out "$work/exp" --findings "$out" --plan
    done | "$PYTHON" -c '
import json, sys
for cell in map(json.loads, sys.stdin):
    if cell["state"] == "regions":
        print(cell["checkpoint"])' | sort -u > "$work/region-cells"
    local names=()
    while read -r name; do
        if [ -f "$work/exp/checkpoints/$name/train_summary.json" ]; then names+=("$name"); fi
    done < "$work/region-cells"
    if [ ${#names[@]} -gt 0 ]; then
        tar -cf "$out/region-checkpoints.tar" -C "$work/exp/checkpoints" --exclude=resume.safetensors \
            --exclude=latest.safetensors "${names[@]}"
        echo "== region-checkpoints.tar: ${names[*]}"
    fi
    if [ -f "$out/cells.csv" ]; then
        echo "== done in $(( SECONDS - start )) s; $(( $(wc -l < "$out/cells.csv") - 1 )) rows in cells.csv"
    else
        echo "== done in $(( SECONDS - start )) s; no cell finished"
    fi
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) shift; run "$@" ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac

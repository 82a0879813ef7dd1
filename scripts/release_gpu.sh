#!/usr/bin/env bash
# The release run on a lent GPU, in one device call of under 10 minutes.
#
# On the GPU machine it rebuilds faces128 from the carried faces256 JPEGs (Lanczos to
# 128 px, the shared pipeline's last step: the pixels equal ../shared/data/faces128's; the
# "140k" FFHQ reals go back into ffhq/), trains the release candidates and the cross-source
# run with `patchforensics release --stop-after train --device cuda` inside a time budget
# (a run cut short is resumable), and writes to $OUT:
#   release_checkpoints.tar.gz   weights, configs, summaries, resume snapshots, selection.json
#   throughput_cuda.json         training and inference images/s of the candidates on CUDA
#   log.txt
# Back on the CPU machine the card steps (mediapipe) finish from the same folder:
#   tar -xzf <files_at>/release_checkpoints.tar.gz -C release && patchforensics release --out release
#
# Here, once (the data must travel inside the repo, ignored by git; faces256 is 52 MB):
#   mkdir -p .device_data && cp -r ../shared/data/faces256 ../shared/data/README.md .device_data/
#   echo /.device_data/ >> .git/info/exclude
# Then the device tool's run with: command "bash scripts/release_gpu.sh", carry [".device_data"],
# timeout_s 590. Extra arguments go to `patchforensics release` (e.g. --candidate xb3_crop96).
# Tested here with: DEVICE=cpu BUDGET_S=300 bash scripts/release_gpu.sh --epochs 1 --max-per-class 24 --bf16 off
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SRC=${SRC:-.device_data}          # holds faces256/ and the data README.md
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-470}         # training time; the rest (data, tar, throughput) fits in the 10 minutes
PY=${PY:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

SECONDS=0
mkdir -p "$WORK/data"
cp "$SRC/README.md" "$WORK/data/README.md"
$PY - "$SRC/faces256" "$WORK/data/faces128" <<'EOF'
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from PIL import Image

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
pairs = []
for jpg in sorted(src.glob("*/*/*.jpg")):
    folder = "ffhq" if jpg.parts[-3] == "ffhq-140k" else jpg.parts[-3]   # one ffhq/ at 128 px
    pairs.append((jpg, dst / folder / jpg.parts[-2] / (jpg.stem + ".png")))

def convert(pair):
    jpg, png = pair
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.open(jpg).convert("RGB").resize((128, 128), Image.LANCZOS).save(png)

with ProcessPoolExecutor() as pool:
    list(pool.map(convert, pairs, chunksize=64))
print(f"faces128 rebuilt from faces256: {len(pairs)} images")
EOF
echo "data seconds: $SECONDS"

SECONDS=0
timeout --signal=INT "$BUDGET_S" $PY -m patchforensics release --data-root "$WORK/data/faces128" \
    --out "$WORK/release" --device "$DEVICE" --stop-after train "$@"
echo "release exit $? after $SECONDS s (124/130: the budget ran out; the runs resume from their snapshots)"
tar -czf "$OUT/release_checkpoints.tar.gz" -C "$WORK/release" --exclude runs .

$PY bench/throughput.py --faces "$WORK/data/faces128" --models xception_block3 xception_block2 --sizes 128 \
    --sections inference training --batch-size 256 --repeats 5 --device "$DEVICE" --json "$OUT/throughput_cuda.json"

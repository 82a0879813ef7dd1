#!/usr/bin/env bash
# One prepared GPU run (see bench/README.md): torchrun DDP training on 1 GPU, then
# bench/throughput.py on CUDA with the model it trained. Results go to $OUT:
# log.txt, train_summary.json, throughput_cuda_b32.json, throughput_cuda_b256.json,
# model/{bestval.safetensors,config.yaml}.
#
#   FACES=path/to/faces128 OUT=gpu_out bash bench/gpu.sh
#
# FACES must hold ffhq/ and tpdne-stylegan2/ with train/val/test; the default is
# .bench_data/faces128 (a copy of ../shared/data/faces128 carried to the GPU machine).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
FACES=${FACES:-.bench_data/faces128}
OUT=${OUT:-gpu_out}
PY=${PY:-python3}
CKPT=$(mktemp -d)
mkdir -p "$OUT/model"
exec > >(tee -a "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, onnxruntime, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'onnxruntime', onnxruntime.__version__, 'numpy', numpy.__version__)"

# 1. DDP through torchrun (NCCL, one process): 6 epochs of xception_block2 at 128 px
SECONDS=0
$PY -m torch.distributed.run --standalone --nproc-per-node 1 -m patchforensics train \
    --real "$FACES/ffhq" --fake "$FACES/tpdne-stylegan2" --model xception_block2 --max-epochs 6 \
    --patience 0 --checkpoints-dir "$CKPT" --runs-dir "$CKPT/runs" --device cuda 2>&1 | tail -n 5
echo "ddp train wall seconds (incl. start-up): $SECONDS"
RUN="$CKPT/xception_block2_size128"
cp "$RUN/train_summary.json" "$OUT/" && cp "$RUN/bestval.safetensors" "$RUN/config.yaml" "$OUT/model/"

# 2. batch 32 as on the CPU, with |ΔAP| of the trained model (the GPU default path is bf16)
$PY bench/throughput.py --faces "$FACES" --repeats 20 --loop-steps 10 --checkpoint "$RUN" \
    --json "$OUT/throughput_cuda_b32.json"
# 3. batch 256, where the GPU is better used
$PY bench/throughput.py --faces "$FACES" --repeats 10 --batch-size 256 --loop-steps 0 \
    --json "$OUT/throughput_cuda_b256.json"

#!/usr/bin/env bash
# moco_fashion.sh — MoCo quality on real labelled data (issue 12): trains MoCo v2 on Fashion-MNIST's 60,000
# training images (Debian's dataset-fashion-mnist, installed here when missing) with memfit for EPOCHS epochs,
# then the same recipe in PyTorch (Debian's python3-torch; TORCH=path/to/python for another) for the same
# wall-clock time, and reports the kNN top-1 accuracy (k 200, T 0.1, cosine; bank = the 60,000 training images)
# on the 10,000 test images of: memfit's model, the same network at initialisation, and PyTorch's; plus memfit's
# linear probe. Raw-pixel baselines: build/moco_baselines. With CONCURRENT=SECONDS the PyTorch run starts at the
# same time as memfit's and trains for SECONDS (both on THREADS threads: on a 2-core machine use 1 each), so the
# two hours of a sequential comparison take one; the report gives both runs' times.
# usage: [CONCURRENT=3600] bash bench/moco_fashion.sh [EPOCHS] [THREADS] [extra memfit train moco options...]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-10}; threads=${2:-2}; shift $(( $# < 2 ? $# : 2 ))
F=/usr/share/datasets/fashion-mnist
[ -f $F/train-images-idx3-ubyte.gz ] || bash scripts/deps.sh >/dev/null
B=${MEMFIT_BUILD:-build}
[ -x "$B/memfit" ] || bash scripts/build.sh >/dev/null
out=${OUT:-out/moco-fashion}
rm -rf "$out"; mkdir -p "$out"
# the recipe, shared by both sides (environment): LR, TEMP, CROP (smallest crop area), SCHEDULE, WARMUP (updates)
# and WIDTH (defaults: the recipe of docs/moco.md's last hour-long run, width 0.25 and crops of at least 0.6 of the
# image, chosen by bench/moco_recipes.sh; crops of 0.2 of a 28 px image and no warmup trained worse there)
LR=${LR:-0.06}; TEMP=${TEMP:-0.2}; CROP=${CROP:-0.6}; SCHEDULE=${SCHEDULE:-cosine}; WARMUP=${WARMUP:-60}
# DTYPE bf16: memfit trains with --precision bf16, PyTorch under torch.autocast(bfloat16) (default f32)
WIDTH=${WIDTH:-0.25}; DTYPE=${DTYPE:-f32}
model=(--size 28 --width $WIDTH --queue 4096 --batch 256 --temperature $TEMP --momentum 0.99 --bn-splits 1
  --lr $LR --crop-min $CROP --schedule $SCHEDULE --warmup $WARMUP --precision $DTYPE)
torch_fit() { # SECONDS
  OMP_NUM_THREADS=$threads ${TORCH:-/usr/bin/python3} bench/moco_torch.py fit --data $F --seconds "$1" --threads "$threads" \
    --size 28 --channels 1 --width $WIDTH --queue 4096 --batch 256 --temperature $TEMP --momentum 0.99 \
    --lr $LR --crop-min $CROP --schedule $SCHEDULE --warmup $WARMUP --dtype $DTYPE > "$out/torch.fit"
}
if [ -n "${CONCURRENT:-}" ]; then torch_fit "$CONCURRENT" & tpid=$!; fi
echo "== memfit: MoCo v2 ResNet-18 x$WIDTH, 28 px, batch 256, queue 4096, $DTYPE, $epochs epochs, $threads threads"
t0=$(date +%s.%N)
OMP_NUM_THREADS=$threads "$B"/memfit train moco "${model[@]}" --data $F/train-images-idx3-ubyte.gz \
  --val-data $F/t10k-images-idx3-ubyte.gz --epochs "$epochs" --threads "$threads" --out "$out/memfit" --log-every 60 "$@" \
  | grep -v "^  \[" || true
t1=$(date +%s.%N)
secs=$(python3 -c "print(round($t1 - $t0))")
echo "== memfit trained for $secs s"
OMP_NUM_THREADS=$threads "$B"/memfit eval moco --model "$out/memfit/model.safetensors" --data $F/train-images-idx3-ubyte.gz \
  --val-data $F/t10k-images-idx3-ubyte.gz --threads "$threads" --json | tee "$out/memfit.eval"
echo "== the same network at initialisation (one update at lr 1e-9: BN statistics of one batch)"
OMP_NUM_THREADS=$threads "$B"/memfit train moco "${model[@]}" --data $F/train-images-idx3-ubyte.gz --steps 1 --lr 1e-9 \
  --threads "$threads" --out "$out/init" --log-every 100000 >/dev/null
OMP_NUM_THREADS=$threads "$B"/memfit eval moco --model "$out/init/model.safetensors" --data $F/train-images-idx3-ubyte.gz \
  --val-data $F/t10k-images-idx3-ubyte.gz --threads "$threads" --probe-epochs 0 --json | tail -1 | tee "$out/init.eval"
if [ -n "${CONCURRENT:-}" ]; then
  echo "== PyTorch ($(${TORCH:-/usr/bin/python3} -c 'import torch; print(torch.__version__)')), the same recipe, ${CONCURRENT} s alongside"
  wait "$tpid"
else
  echo "== PyTorch ($(${TORCH:-/usr/bin/python3} -c 'import torch; print(torch.__version__)')), the same recipe for $secs s"
  torch_fit "$secs"
fi
cat "$out/torch.fit"

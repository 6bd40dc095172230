#!/usr/bin/env bash
# moco.sh — the MoCo step benchmark of issue 12, side by side in one run: a MoCo v2 training step (ResNet-18,
# small stem, 32 px, batch 64, queue 4096, f32, SGD momentum 0.9, key-encoder momentum and queue push) in memfit
# and in PyTorch (Debian's python3-torch, and PyTorch 2.x from PyPI through bench/torch2.sh unless NO_TORCH2=1),
# same thread count, same random initialisation scheme and inputs shape. The implementations run in turn, ROUNDS
# times (default 3), and each figure is the median of its rounds; ratios are memfit / PyTorch.
# Each implementation also gets its achieved convolution/GEMM GFLOP/s (memfit's plan counts the FLOPs, the same
# model's work for all) and the percentage of the sgemm peak measured with OpenBLAS after each memfit run (issue 16).
# DTYPE=bf16 runs memfit's bf16 step against PyTorch's under torch.autocast (CPU, bfloat16).
# WIDTH, SIZE and CHANNELS (environment; default 1, 32, 3) change the network: WIDTH=0.25 SIZE=28 CHANNELS=1 is the
# Fashion-MNIST recipe of bench/moco_fashion.sh.
# BENCH_RUNS=FILE appends every run's JSON record to FILE.
# usage: [WIDTH=W SIZE=S CHANNELS=C] bash bench/moco.sh [THREADS] [STEPS] [ROUNDS] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; steps=${2:-5}; rounds=${3:-3}; batch=${4:-64}
B=${MEMFIT_BUILD:-build}
[ -x "$B/bench_moco" ] || bash scripts/build.sh >/dev/null
impls=("/usr/bin/python3")
if [ "${NO_TORCH2:-0}" != 1 ] && py2=$(bash bench/torch2.sh); then impls+=("$py2"); fi
width=${WIDTH:-1}; size=${SIZE:-32}; channels=${CHANNELS:-3}
dtype=${DTYPE:-f32}
common=(--width "$width" --size "$size" --channels "$channels" --batch "$batch" --queue 4096 --steps "$steps" --threads "$threads" --dtype "$dtype")
echo "MoCo v2 training step, ResNet-18 x$width small stem, ${size}x${size}x$channels, batch $batch, queue 4096, $dtype, $threads thread(s), $steps steps, median of $rounds rounds"
runs=$(mktemp)
for r in $(seq "$rounds"); do
  for py in "${impls[@]}"; do OMP_NUM_THREADS=$threads "$py" bench/moco_torch.py bench "${common[@]}" >>"$runs"; done
  OMP_NUM_THREADS=$threads "$B"/bench_moco "${common[@]}" --peak 3 >>"$runs"
done
/usr/bin/python3 bench/side_by_side.py "$runs"
if [ -n "${BENCH_RUNS:-}" ]; then cat "$runs" >>"$BENCH_RUNS"; fi
rm -f "$runs"

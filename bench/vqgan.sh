#!/usr/bin/env bash
# vqgan.sh — the VQGAN step benchmark of issue 13, side by side in one run: a generator + discriminator step of
# the VQGAN preset `low` (hidden [16,32,64,128], latent 16, 128 codes, PatchGAN 3 layers 64 filters) at 64 px,
# batch 4, f32, Adam (0.5, 0.9), the adaptive GAN weight, in memfit and in PyTorch (Debian's python3-torch, and
# PyTorch 2.x from PyPI through bench/torch2.sh unless NO_TORCH2=1; the same model written out in
# tests/vqgan_parity.py), same threads, the same initial parameters (memfit dumps them).
# The implementations run in turn, ROUNDS times (default 3); each figure is the median of its rounds; ratios are
# memfit / PyTorch. Each implementation also gets its achieved convolution/GEMM GFLOP/s (memfit's plan counts the
# FLOPs) and the percentage of the sgemm peak measured with OpenBLAS after each memfit run (issue 16).
# BENCH_RUNS=FILE appends every run's JSON record to FILE.
# usage: bash bench/vqgan.sh [THREADS] [STEPS] [ROUNDS] [SIZE] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; steps=${2:-5}; rounds=${3:-3}; size=${4:-64}; batch=${5:-4}
B=${MEMFIT_BUILD:-build}
[ -x "$B/bench_vqgan" ] || bash scripts/build.sh >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--preset low --size "$size" --batch "$batch" --steps "$steps" --threads "$threads")
OMP_NUM_THREADS=$threads "$B"/bench_vqgan "${common[@]}" --steps 0 --warmup 0 --dump "$tmp/params.safetensors" >/dev/null
echo "VQGAN generator + discriminator step, preset low at ${size}x${size}, batch $batch, f32, $threads thread(s), $steps steps, median of $rounds rounds"
runs=$tmp/runs.jsonl
impls=("/usr/bin/python3")
if [ "${NO_TORCH2:-0}" != 1 ] && py2=$(bash bench/torch2.sh); then impls+=("$py2"); fi
for r in $(seq "$rounds"); do
  for py in "${impls[@]}"; do
    OMP_NUM_THREADS=$threads "$py" bench/vqgan_torch.py --params "$tmp/params.safetensors" "${common[@]}" >>"$runs"
  done
  OMP_NUM_THREADS=$threads "$B"/bench_vqgan "${common[@]}" --peak 3 >>"$runs"
done
/usr/bin/python3 bench/side_by_side.py "$runs"
if [ -n "${BENCH_RUNS:-}" ]; then cat "$runs" >>"$BENCH_RUNS"; fi

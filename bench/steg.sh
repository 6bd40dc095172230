#!/usr/bin/env bash
# steg.sh — the engine benchmark, side by side in one run: a training step of the steganography
# network (6 blocks, growth 80, 64x64, f32) in memfit and in PyTorch (Debian's python3-torch, and PyTorch 2.x from
# PyPI through bench/torch2.sh unless NO_TORCH2=1), same thread count, batch 1 and 4; prints images/s and peak RSS of
# each and memfit/PyTorch ratios (the ratio columns are against Debian's; a line per batch gives them against 2.x).
# The three implementations run in turn, ROUNDS times (default 3), and each figure is the median of
# its rounds, so a neighbour's burst on a shared machine moves one round, not the ratio.
# With UNFUSED=1 a fourth implementation joins the rounds: memfit's store mode with conv -> ReLU fusion off
# (MEMFIT_FUSE=0), so the fusion's effect is measured in the same interleaved rounds.
# Each implementation also gets its achieved convolution/GEMM GFLOP/s (the plan's conv + GEMM FLOPs of the step,
# bench/common/peak.c; PyTorch and store mode do the same work, invert mode more: it recomputes) and the percentage of
# the machine's sgemm peak, measured with OpenBLAS at the same thread count after each memfit run (the best of them:
# other work on the machine only ever lowers a measured peak).
# BENCH_RUNS=FILE appends every run's JSON record to FILE.
# usage: [UNFUSED=1] [NO_TORCH2=1] bash bench/steg.sh [THREADS] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; steps=${2:-10}; rounds=${3:-3}
B=${MEMFIT_BUILD:-build}
[ -x "$B/bench_steg" ] || bash scripts/build.sh >/dev/null
py2=
if [ "${NO_TORCH2:-0}" != 1 ]; then py2=$(bash bench/torch2.sh) || py2=; fi
common=(--blocks 6 --growth 80 --size 64 --steps "$steps" --threads "$threads")
echo "steganography training step, 6 blocks, growth 80, 64x64, f32, $threads thread(s), $steps steps, median of $rounds rounds"
printf '%-14s %5s %12s %14s %14s %12s %9s %7s %s\n' impl batch images/s "peak RSS MiB" "speed ratio" "RSS ratio" GFLOP/s "% peak" "rounds (images/s)"
for b in 1 4; do
  runs=$(mktemp)
  for r in $(seq "$rounds"); do
    OMP_NUM_THREADS=$threads /usr/bin/python3 bench/steg_torch.py bench "${common[@]}" --batch "$b" >>"$runs"
    if [ -n "$py2" ]; then
      OMP_NUM_THREADS=$threads "$py2" bench/steg_torch.py bench "${common[@]}" --batch "$b" | sed 's/"impl": "torch"/"impl": "torch2"/' >>"$runs"
    fi
    OMP_NUM_THREADS=$threads "$B"/bench_steg "${common[@]}" --batch "$b" --mode store --peak 3 >>"$runs"
    OMP_NUM_THREADS=$threads "$B"/bench_steg "${common[@]}" --batch "$b" --mode invert --peak 3 >>"$runs"
    if [ -n "${UNFUSED:-}" ]; then
      MEMFIT_FUSE=0 OMP_NUM_THREADS=$threads "$B"/bench_steg "${common[@]}" --batch "$b" --mode store |
        sed 's/"memfit-store"/"memfit-store-unfused"/' >>"$runs"
    fi
  done
  /usr/bin/python3 - "$b" "$runs" <<'PY'
import json, statistics, sys
b, path = sys.argv[1], sys.argv[2]
by = {}
for line in open(path):
    r = json.loads(line)
    by.setdefault(r["impl"], []).append(r)
med = {k: (statistics.median(x["images_per_s"] for x in v), statistics.median(x["peak_rss_bytes"] for x in v)) for k, v in by.items()}
ts, tr = med["torch"]
# conv/GEMM FLOPs per image: torch and store mode do store mode's work, invert mode its own (recompute included)
fl = {k: statistics.median(x["gemm_flops"] / x["batch"] for x in v) for k, v in by.items() if "gemm_flops" in v[0]}
fl["torch"] = fl["torch2"] = fl.get("memfit-store")
peaks = [x["peak_gflops_per_s"] for v in by.values() for x in v if "peak_gflops_per_s" in x]
peak = max(peaks) if peaks else None
for k in [k for k in ["torch", "torch2", "memfit-store", "memfit-invert", "memfit-store-unfused"] if k in med]:
    s, rss = med[k]
    gf = fl[k] * s / 1e9 if fl.get(k) else None
    print("%-14s %5s %12.2f %14.1f %14.2f %12.2f %9s %7s %s" % (k, b, s, rss / 2**20, s / ts, rss / tr,
          "%.1f" % gf if gf else "-", "%.1f%%" % (100 * gf / peak) if gf and peak else "-",
          " ".join("%.2f" % x["images_per_s"] for x in by[k])))
if "torch2" in med:
    t2 = med["torch2"]
    print("  batch %s against PyTorch %s: %s" % (b, by["torch2"][0].get("torch", "2.x"), ", ".join(
          "%s speed %.2fx RSS %.2fx" % (k, med[k][0] / t2[0], med[k][1] / t2[1]) for k in ["memfit-store", "memfit-invert"] if k in med)))
if peak:
    x = by["memfit-store"][0]
    print("  batch %s: conv/GEMM %.3f GFLOP per step (store), %.3f (invert); sgemm peak %.1f GFLOP/s (the best of %d runs; "
          "OpenBLAS %s core, %s; oneDNN ISA %s)" % (b, fl["memfit-store"] * int(b) / 1e9, fl.get("memfit-invert", 0) * int(b) / 1e9,
          peak, len(peaks), x.get("blas_core", "?"), x.get("blas_parallel", "?"), x.get("dnnl_isa", "?")))
PY
  if [ -n "${BENCH_RUNS:-}" ]; then cat "$runs" >>"$BENCH_RUNS"; fi
  rm -f "$runs"
done

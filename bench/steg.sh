#!/usr/bin/env bash
# steg.sh — the engine benchmark, side by side in one run: a training step of the steganography
# network (6 blocks, growth 80, 64x64, f32) in memfit and in PyTorch (Debian's python3-torch), same
# thread count, batch 1 and 4; prints images/s and peak RSS of each and memfit/PyTorch ratios.
# usage: bash bench/steg.sh [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; steps=${2:-10}
B=${MEMFIT_BUILD:-build}
[ -x "$B/bench_steg" ] || bash scripts/build.sh >/dev/null
common=(--blocks 6 --growth 80 --size 64 --steps "$steps" --threads "$threads")
printf '%-14s %5s %12s %14s %14s %12s\n' impl batch images/s "peak RSS MiB" "speed ratio" "RSS ratio"
for b in 1 4; do
  t=$(OMP_NUM_THREADS=$threads /usr/bin/python3 bench/steg_torch.py bench "${common[@]}" --batch "$b")
  ms=$(OMP_NUM_THREADS=$threads "$B"/bench_steg "${common[@]}" --batch "$b" --mode store)
  mi=$(OMP_NUM_THREADS=$threads "$B"/bench_steg "${common[@]}" --batch "$b" --mode invert)
  /usr/bin/python3 - "$b" "$t" "$ms" "$mi" <<'PY'
import json, sys
b = sys.argv[1]
t = json.loads(sys.argv[2])
for line in [sys.argv[2], sys.argv[3], sys.argv[4]]:
    r = json.loads(line)
    print("%-14s %5s %12.2f %14.1f %14.2f %12.2f" % (r["impl"], b, r["images_per_s"], r["peak_rss_bytes"] / 2**20,
          r["images_per_s"] / t["images_per_s"], r["peak_rss_bytes"] / t["peak_rss_bytes"]))
PY
done

#!/usr/bin/env bash
# vqgan.sh — the VQGAN step benchmark of issue 13, side by side in one run: a generator + discriminator step of
# the VQGAN preset `low` (hidden [16,32,64,128], latent 16, 128 codes, PatchGAN 3 layers 64 filters) at 64 px,
# batch 4, f32, Adam (0.5, 0.9), the adaptive GAN weight, in memfit and in PyTorch (Debian's python3-torch, the
# same model written out in tests/vqgan_parity.py), same threads, the same initial parameters (memfit dumps them).
# The implementations run in turn, ROUNDS times (default 3); each figure is the median of its rounds; ratios are
# memfit / PyTorch. usage: bash bench/vqgan.sh [THREADS] [STEPS] [ROUNDS] [SIZE] [BATCH]
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
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=$threads /usr/bin/python3 bench/vqgan_torch.py --params "$tmp/params.safetensors" "${common[@]}" >>"$runs"
  OMP_NUM_THREADS=$threads "$B"/bench_vqgan "${common[@]}" >>"$runs"
done
/usr/bin/python3 - "$runs" <<'PY'
import json, statistics, sys
by = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    by.setdefault(r["impl"], []).append(r)
med = {k: (statistics.median(x["images_per_s"] for x in v), statistics.median(x["peak_rss_bytes"] for x in v)) for k, v in by.items()}
ms, mr = med["memfit"]
print("%-22s %10s %14s %s" % ("impl", "images/s", "peak RSS MiB", "rounds (images/s)"))
for k, (s, rss) in med.items():
    print("%-22s %10.2f %14.1f %s" % (k, s, rss / 2**20, " ".join("%.2f" % x["images_per_s"] for x in by[k])))
for k, (s, rss) in med.items():
    if k != "memfit":
        print("memfit / %-13s speed %.2fx  peak RSS %.2fx   (targets: speed >= 1.0x, RSS <= 0.5x)" % (k, ms / s, mr / rss))
PY

#!/usr/bin/env bash
# imagegs_8k.sh — the seed's 8K Image-GS configuration (7680x4320, 30,000 Gaussians, the final count planned from step 0)
# inside --budget 2GiB (issue 14): the plan memfit chooses (tile size, backward mode, bytes per arena), then a few
# updates of the fit on a real photograph scaled up to 8K, with Gaussians added after the first update (where the seed
# ran out of memory, 20 steps after its first addition), planned vs measured per arena and the process's peak RSS.
# usage: [STEPS=N] [IMAGE=photo] [BUDGET=2GiB] bash bench/imagegs_8k.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; steps=${STEPS:-2}; budget=${BUDGET:-2GiB}
image=${IMAGE:-../shared/data/photos/astronaut.png}
B=${MEMFIT_BUILD:-build}
[ -x "$B/memfit" ] || bash scripts/build.sh >/dev/null
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
echo "== memfit plan imagegs --size 7680x4320 --gaussians 30000 --budget $budget"
OMP_NUM_THREADS=$threads "$B"/memfit plan imagegs --size 7680x4320 --gaussians 30000 --budget "$budget" --threads "$threads"
echo
echo "== $steps updates of the fit: $image scaled to 7680x4320, 15,000 Gaussians at first, 15,000 added after update 1"
start=$(date +%s)
OMP_NUM_THREADS=$threads /usr/bin/time -v "$B"/memfit train imagegs --image "$image" --size 7680x4320 --gaussians 30000 \
  --budget "$budget" --steps "$steps" --epoch-steps "$steps" --add-every 1 --adds 1 --threads "$threads" --log-every 30 \
  --out "$out/run" 2>"$out/time.txt" | grep -vE "^ +(other states|no gradient)"
echo "wall $(( $(date +%s) - start )) s; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E "Maximum resident set size" "$out/time.txt" | sed 's/^\s*/peak RSS (time -v): /'

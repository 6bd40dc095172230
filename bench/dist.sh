#!/usr/bin/env bash
# dist.sh — data-parallel scaling on this machine: one process with T threads against T ranks of one thread each
# (mpirun), training steg on the same global batch; prints images/s of each and the time an update waited for the
# gradients' reduction after backward. Usage: bench/dist.sh [build/memfit] (env: STEPS, BATCH, PRESET, SIZE, T, BUCKET).
set -u
M=${1:-build/memfit}
STEPS=${STEPS:-30} BATCH=${BATCH:-8} PRESET=${PRESET:-small} SIZE=${SIZE:-32} T=${T:-2} BUCKET=${BUCKET:-256KiB}
command -v mpirun >/dev/null || { echo "dist.sh: mpirun not found"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
A=(train steg --preset "$PRESET" --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --data generated --val-fraction 0
   --schedule constant --log-every 0 --json)
# images/s from the --json end record (updates x batch / seconds: the whole run, first steps included)
rate() { python3 -c 'import json,sys; d=json.loads([l for l in open(sys.argv[1]) if l.startswith("{\"step\"")][-1]); print("%.2f" % (d["updates"]*int(sys.argv[2])/d["seconds"]))' "$1" "$BATCH"; }
echo "steg preset $PRESET, ${SIZE}x${SIZE}, global batch $BATCH, $STEPS updates, buckets of $BUCKET (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$M" "${A[@]}" --threads "$T" --out "$tmp/one" >"$tmp/one.txt" 2>&1 || { tail -5 "$tmp/one.txt"; exit 1; }
echo "  1 rank x $T threads:  $(rate "$tmp/one.txt") images/s"
mpirun --bind-to core -np "$T" "$M" "${A[@]}" --threads 1 --bucket "$BUCKET" --out "$tmp/dp" >"$tmp/dp.txt" 2>&1 || { tail -5 "$tmp/dp.txt"; exit 1; }
echo "  $T ranks x 1 thread: $(rate "$tmp/dp.txt") images/s"
grep "gradient all-reduce" "$tmp/dp.txt" | sed 's/^/  /'
grep "all-reduced in" "$tmp/dp.txt" | sed 's/^ */  plan: /'

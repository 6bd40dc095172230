#!/usr/bin/env bash
# imagegs_speed.sh — updates per second of `memfit train imagegs` for two builds run interleaved (the same load for
# both): OLD and NEW memfit binaries, ROUNDS rounds of each setting; prints each run's median per-update rate from
# log.jsonl (images_per_s; the first update, which pays for the plan and the initialisation, left out) and the CPU
# seconds of the whole run (time -f), then the medians.
# usage: OLD=path/memfit NEW=build/memfit [ROUNDS=3] [IMAGE=...] bash bench/imagegs_speed.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; rounds=${ROUNDS:-3}
img=${IMAGE:-../shared/data/photos/astronaut.png}
old=${OLD:?OLD=path to the old memfit}; new=${NEW:-build/memfit}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# setting: name, --size, --gaussians, --steps (all Gaussians active from the start: --add-every 0)
settings=("512x512 4000 20" "2048x2048 10000 6")
run() { # binary size gaussians steps -> "rate cpu_s"
  local out="$tmp/run" t
  rm -rf "$out"
  t=$( { OMP_NUM_THREADS=$threads /usr/bin/time -f "%U %S" "$1" train imagegs --image "$img" --size "$2" --gaussians "$3" \
         --steps "$4" --epoch-steps "$4" --add-every 0 --threads "$threads" --log-every 0 --out "$out" >/dev/null 2>"$tmp/err"; } 2>&1; \
       tail -1 "$tmp/err")
  local rate
  rate=$(grep '"type": "update"' "$out/log.jsonl" | tail -n +2 | sed -E 's/.*"images_per_s": ([0-9.e+-]+).*/\1/' | sort -g |
         awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
  echo "$rate $(awk '{ print $1 + $2 }' <<<"$t")"
}
echo "Image-GS update speed, old $old vs new $new, $threads thread(s), $rounds interleaved rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${settings[@]}"; do
  read -r size n steps <<<"$s"
  : >"$tmp/old.txt"; : >"$tmp/new.txt"
  for r in $(seq "$rounds"); do
    a=$(run "$old" "$size" "$n" "$steps"); b=$(run "$new" "$size" "$n" "$steps")
    echo "$a" >>"$tmp/old.txt"; echo "$b" >>"$tmp/new.txt"
    echo "  $size, $n Gaussians, round $r: old $a, new $b (updates/s, CPU s of the run)"
  done
  med() { sort -g -k"$2" "$1" | awk -v k="$2" '{ v[NR] = $k } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
  printf "%s, %s Gaussians, %s updates: median old %.3f updates/s (%.1f CPU s), new %.3f updates/s (%.1f CPU s): %.2fx\n" "$size" "$n" "$steps" \
    "$(med "$tmp/old.txt" 1)" "$(med "$tmp/old.txt" 2)" "$(med "$tmp/new.txt" 1)" "$(med "$tmp/new.txt" 2)" \
    "$(awk -v a="$(med "$tmp/old.txt" 1)" -v b="$(med "$tmp/new.txt" 1)" 'BEGIN { print b / a }')"
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# cli_calibrate.sh — the cost-model calibration cache: `memfit calibrate` measures and writes it under
# $XDG_CACHE_HOME (or ~/.cache), prints positive finite figures and the path; a damaged, NaN, older-
# format or stale cache is measured again rather than trusted; a good one is used. Never asserts a time.
# Usage: cli_calibrate.sh path/to/memfit
set -u
M=$(realpath "${1:?usage: cli_calibrate.sh path/to/memfit}")
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/harness_cli.sh"
unset MEMFIT_CALIBRATION
export XDG_CACHE_HOME=$T/cache
cache=$T/cache/memfit/calibration-cpu-t1.txt
plan() { "$M" plan steg --preset small --size 16 --budget 1GiB --threads 1 "$@"; }

run "calibrate measures and names the cache under XDG_CACHE_HOME" 0 "cache: $cache" "$M" calibrate --threads 1
ok_if() { if eval "$2"; then ok; else bad "$1"; fi; }
ok_if "the cache file is written there" '[ -s "$cache" ] && head -1 "$cache" | grep -qx "memfit-calibration 2" && grep -q "^measured [0-9]" "$cache"'
ok_if "every figure is positive and finite" \
  'awk "/GFLOP\/s|GB\/s| us\$/ { n++; v = \$(NF-1); if (v !~ /^[0-9.]+\$/ || (v + 0 <= 0 && \$0 !~ /fixed cost/)) bad = 1 } END { exit bad || n != 8 }" "$T/out.txt"'

run "a plan uses the fresh cache" 0 "cost model cached in $cache" plan

printf 'memfit-calibration 2\nflops_per_s garbage\n' >"$cache"
run "a damaged cache is measured again" 0 "measured now \(the cache file was damaged\), saved to $cache" plan
ok_if "and rewritten whole" 'grep -q "^flops_per_s [0-9]" "$cache" && grep -q "^gemm_overhead_s" "$cache"'

sed -i 's/^flops_per_s .*/flops_per_s nan nan nan/' "$cache"
run "a cache of NaN figures is measured again" 0 "the cache file was damaged" plan
sed -i 's/^flops_per_s .*/flops_per_s -5 1 1/' "$cache"
run "a cache with a negative figure is measured again" 0 "the cache file was damaged" plan

printf '1e10 1e10 1e10 1e10 1e10 1e10 1e-6 1e-6\n' >"$cache" # the format before versions
run "an older memfit's cache is measured again" 0 "another memfit version" plan
ok_if "and replaced by this version's" 'head -1 "$cache" | grep -qx "memfit-calibration 2"'

sed -i "s/^measured [0-9]*/measured $(( $(date +%s) - 31 * 86400 ))/; s/^busy .*/busy 0/" "$cache"
run "a cache over 30 days old is measured again" 0 "over 30 days old" plan
sed -i "s/^measured [0-9]*/measured $(( $(date +%s) - 2 * 3600 ))/; s/^busy .*/busy 1/" "$cache"
run "one measured on a busy machine two hours ago is measured again" 0 "measured on a busy machine" plan
sed -i "s/^measured [0-9]*/measured $(( $(date +%s) - 2 * 3600 ))/; s/^busy .*/busy 0/" "$cache"
run "a quiet machine's two hours old cache is used" 0 "cost model cached in $cache" plan

: >"$cache"
run "an empty cache is measured again" 0 "measured now" plan

rm -rf "$T/cache"
mkdir -p "$T/home"
run "without XDG_CACHE_HOME the cache is under ~/.cache" 0 "cache: $T/home/.cache/memfit/calibration-cpu-t1.txt" \
  env -u XDG_CACHE_HOME HOME="$T/home" "$M" calibrate --threads 1
ok_if "and written there" '[ -s "$T/home/.cache/memfit/calibration-cpu-t1.txt" ]'

chmod 500 "$T/cache" 2>/dev/null; mkdir -p "$T/ro" && chmod 500 "$T/ro"
if [ "$(id -u)" != 0 ]; then
  run "an unwritable cache folder: still plans, and says the cache was not saved" 0 "not saved to" \
    env XDG_CACHE_HOME="$T/ro" "$M" plan steg --preset small --size 16 --budget 1GiB --threads 1
fi

run "MEMFIT_CALIBRATION stands in for a measurement" 0 "MEMFIT_CALIBRATION is set" \
  env MEMFIT_CALIBRATION=1e10,1e10,1e10,1e10 "$M" calibrate --threads 1
run "calibrate --help says where the cache is" 0 "XDG_CACHE_HOME" "$M" calibrate --help
run "calibrate with an unknown option: usage error, nearest option" 2 "did you mean --threads" "$M" calibrate --thread 1
run "calibrate with an unknown backend" 2 "backend 'nope' is unknown" "$M" calibrate --backend nope

echo "cli_calibrate: $pass passed, $fail failed"
[ "$fail" = 0 ]

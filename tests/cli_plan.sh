#!/usr/bin/env bash
# cli_plan.sh — the memfit command as a user meets it: plan, budget search, too-small budgets,
# JSON, timeline, presets, the demo, and clear errors for bad settings. Usage: cli_plan.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_plan.sh path/to/memfit}")
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
run() { "$M" "$@" >"$tmp/out" 2>"$tmp/err"; echo $? >"$tmp/rc"; }
rc() { cat "$tmp/rc"; }

run plan steg --preset small --size 32
ok "plain plan exits 0" '[ "$(rc)" = 0 ]'
ok "plan shows every arena and the peak" 'grep -q "activations + workspace" $tmp/out && grep -q "optimizer state" $tmp/out && grep -q "activation peak at" $tmp/out'

run plan steg --preset seed-16gb
ok "seed-16gb plans under 4 GiB with memory-free backprop" 'awk "/^  total/ {exit !(\$2 < 4*1024*1024*1024)}" $tmp/out'
run plan steg --preset seed-16gb --recompute none
ok "seed-16gb without recompute plans over 40 GiB" 'awk "/^  total/ {exit !(\$2 > 40*1024*1024*1024)}" $tmp/out'

run plan steg --preset seed-16gb --budget 4GiB
ok "4 GiB budget: a choice that fits" '[ "$(rc)" = 0 ] && grep -q "chosen for a budget of 4.00 GiB" $tmp/out && grep -q "(fits 4.00 GiB)" $tmp/out'
ok "4 GiB budget: runners-up with why they lost" 'grep -q "runners-up" $tmp/out && grep -q "lost:" $tmp/out'

run plan steg --preset seed-16gb --budget 100MiB
ok "too small a budget: exit 3, the smallest that fits and the knob" '[ "$(rc)" = 3 ] && grep -q "NOTHING FITS" $tmp/out && grep -q "smallest any setting needs" $tmp/out'

run plan steg --preset small --size 32 --budget 1GiB
ok "a roomy budget says how much is idle" 'grep -q "of the budget" $tmp/out'

run plan steg --preset small --size 32 --budget 64MiB --json
ok "json output parses" '[ "$(rc)" = 0 ] && { ! command -v /usr/bin/python3 >/dev/null || /usr/bin/python3 -m json.tool <$tmp/out >/dev/null; }'

# strings printed into JSON are escaped: a calibration cache path with a quote, a backslash, a tab and a
# byte that is not UTF-8 (it measures once, then presets reads the cache)
hostile=$(printf '%s/ca"che\\d\tir\377' "$tmp")
mkdir -p "$hostile"
XDG_CACHE_HOME=$hostile MEMFIT_CALIBRATION= "$M" plan steg --preset small --size 32 --budget 64MiB --json >"$tmp/out" 2>"$tmp/err"
ok "plan --json with a hostile cache path parses and names it" '/usr/bin/python3 -c "import json,sys; d = json.load(open(sys.argv[1], encoding=\"utf-8\")); assert \"ca\\\"che\\\\d\\tir\ufffd/memfit\" in d[\"calibration\"], d[\"calibration\"]" "$tmp/out"'
XDG_CACHE_HOME=$hostile MEMFIT_CALIBRATION= "$M" presets steg --preset small --size 32 --json >"$tmp/out" 2>"$tmp/err"
ok "presets --json with a hostile cache path parses" '/usr/bin/python3 -c "import json,sys; d = json.load(open(sys.argv[1], encoding=\"utf-8\")); assert \"ca\\\"che\" in d[\"calibration\"] and len(d[\"presets\"]) == 8" "$tmp/out"'

run plan steg --preset small --size 32 --timeline "$tmp/t.svg"
ok "timeline svg written" 'grep -q "<svg" $tmp/t.svg && grep -q "peak" $tmp/t.svg'

run presets steg --preset small --size 32
ok "presets table has the 8 budgets" '[ "$(grep -cE "^ *[0-9]+ GiB" $tmp/out)" = 8 ]'

run plan steg --budget lots
ok "bad --budget: exit 2, names the option" '[ "$(rc)" = 2 ] && grep -q -- "--budget" $tmp/err'
run plan steg --size 31
ok "odd --size: names the setting" '[ "$(rc)" = 2 ] && grep -q -- "--size" $tmp/err'
run plan steg --preset nope
ok "unknown preset lists the valid ones" '[ "$(rc)" = 2 ] && grep -q "seed-16gb" $tmp/err'
run plan nosuchworkload
ok "unknown workload" '[ "$(rc)" = 2 ] && grep -q "unknown workload" $tmp/err'
run frobnicate
ok "unknown command" '[ "$(rc)" = 2 ] && grep -q "unknown command" $tmp/err'

(cd "$tmp" && "$M" demo --steps 3 --size 16 --batch 2 --threads 1 >out 2>err; echo $? >rc)
ok "demo trains and its memory is exact" '[ "$(cat $tmp/rc)" = 0 ] && grep -q "exact" $tmp/out && ! grep -q DIFFERENT $tmp/out && [ -f $tmp/memfit-demo/demo.safetensors ]'

echo "cli_plan: $pass passed, $fail failed"
[ "$fail" = 0 ]

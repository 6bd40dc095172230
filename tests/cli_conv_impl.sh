#!/usr/bin/env bash
# cli_conv_impl.sh — `memfit plan WORKLOAD --by-layer` names the implementation of every convolution (forward,
# backward-data, backward-weights) as the planner chose it, in text and JSON: oneDNN with its kernel, memfit's
# algorithm with MEMFIT_CONV=gemm; `memfit calibrate WORKLOAD` measures the shapes into the conv cache and the
# next plan follows it ("measured faster"); MEMFIT_CONV=rule ignores it. Never asserts which one is faster.
# Usage: cli_conv_impl.sh path/to/memfit
set -u
M=$(realpath "${1:?usage: cli_conv_impl.sh path/to/memfit}")
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/harness_cli.sh"
unset MEMFIT_CONV
export XDG_CACHE_HOME=$T/cache
ok_if() { if eval "$2"; then ok; else bad "$1"; fi; }
P=(plan steg --preset small --size 16 --threads 1 --by-layer)
dnnl=0
"$M" --version | grep -q "on oneDNN" && dnnl=1

run "plan --by-layer lists the convolutions" 0 "convolutions: [0-9]+ nodes" "$M" "${P[@]}"
ok_if "every pass is there" 'grep -q " forward " "$T/out.txt" && grep -q " backward-data " "$T/out.txt" && grep -q " backward-weights " "$T/out.txt"'
ok_if "no cache: the shape rule, and where the cache would be" 'grep -q "conv cache $T/cache/memfit/conv-cpu-t1.txt: none" "$T/out.txt"'
if [ $dnnl = 1 ]; then
  ok_if "oneDNN's kernels are named (not its reference one)" 'grep -Eq "onednn [a-z]" "$T/out.txt" && ! grep -q "onednn ref" "$T/out.txt"'
  ok_if "chosen by the shape rule" 'grep -q "shape rule" "$T/out.txt"'
fi

run "MEMFIT_CONV=gemm: memfit's algorithms everywhere" 0 "MEMFIT_CONV=gemm" env MEMFIT_CONV=gemm "$M" "${P[@]}"
ok_if "and no oneDNN row" '! grep -q "onednn " "$T/out.txt" && grep -Eq "memfit (implicit|stacked|im2col|1x1|route-a|route-b)" "$T/out.txt"'

"$M" "${P[@]}" --json >"$T/plan.json" 2>"$T/err"
ok_if "--json --by-layer parses, every conv node with an implementation and a workspace" \
  '/usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
c = d[\"convolutions\"]
assert c[\"nodes\"], c
passes = {n[\"pass\"] for n in c[\"nodes\"]}
assert {\"forward\", \"backward-data\", \"backward-weights\"} <= passes, passes
for n in c[\"nodes\"]:
    assert n[\"implementation\"].split()[0] in (\"onednn\", \"memfit\"), n
    assert n[\"workspace_bytes\"] >= 0 and n[\"chosen_by\"], n
if int(sys.argv[2]): assert any(n[\"implementation\"].startswith(\"onednn \") for n in c[\"nodes\"])
" "$T/plan.json" $dnnl'
env MEMFIT_CONV=gemm "$M" "${P[@]}" --json >"$T/plan.json" 2>"$T/err"
ok_if "--json with MEMFIT_CONV=gemm: all memfit" \
  '/usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert all(n[\"implementation\"].startswith(\"memfit \") for n in d[\"convolutions\"][\"nodes\"])
" "$T/plan.json"'

if [ $dnnl = 1 ]; then
  run "calibrate WORKLOAD measures every shape into the conv cache" 0 "shapes? measured, saved to $T/cache/memfit/conv-cpu-t1.txt" \
    "$M" calibrate steg --preset small --size 16 --threads 1 --repeats 1
  ok_if "each line says which was faster" 'grep -Eq "(fwd|bwd-data|bwd-weight) .* -> (onednn|memfit)$" "$T/out.txt"'
  run "the next plan reads it" 0 "conv cache $T/cache/memfit/conv-cpu-t1.txt: [0-9]+ measured shape" "$M" "${P[@]}"
  ok_if "and follows it" 'grep -q "measured faster" "$T/out.txt" && ! grep -q "shape rule" "$T/out.txt"'
  run "MEMFIT_CONV=rule ignores it" 0 "not used \(MEMFIT_CONV=rule\)" env MEMFIT_CONV=rule "$M" "${P[@]}"
  ok_if "and nothing is chosen by measurement" '! grep -q "measured faster" "$T/out.txt"'
fi

# MEMFIT_PROFILE=1: the kernel-time table at the end of a run counts the same conv nodes per pass as the plan
# above (a plan with the conv cache of the calibration above, when there was one: both runs read it)
"$M" "${P[@]}" >"$T/plan.txt" 2>&1
( cd "$T" && MEMFIT_PROFILE=1 "$M" train steg --preset small --size 16 --threads 1 --steps 3 --out "$T/prof" >"$T/prof.out" 2>"$T/prof.err" )
ok_if "MEMFIT_PROFILE=1 prints the table, the first step left out" 'grep -q "^memfit profile (MEMFIT_PROFILE): 2 training micro-steps" "$T/prof.err" && grep -q "optimizer update (2 updates)" "$T/prof.err"'
for pass_kind in "conv2d_bwd_data:backward-data" "conv2d_bwd_weight:backward-weights"; do
  op=${pass_kind%%:*}; label=${pass_kind#*:}
  want=$(awk -v l="$label" '$2 == l' "$T/plan.txt" | wc -l)
  got=$(awk -v o="$op" '$1 == o {s += $(NF-2)} END {print s + 0}' "$T/prof.err")
  ok_if "the profile's $op nodes ($got) are the plan's $label convolutions ($want)" '[ "$want" -gt 0 ] && [ "$got" -eq "$want" ]'
done
want=$(awk '$2 == "forward"' "$T/plan.txt" | wc -l)
got=$(awk '$1 == "conv2d" {s += $(NF-2)} END {print s + 0}' "$T/prof.err")
ok_if "the profile's forward conv nodes ($got) are the plan's ($want), recomputed ones included" '[ "$want" -gt 0 ] && [ "$got" -eq "$want" ]'
ok_if "the shares add up to 100% (rounding: 0.05% a row)" '/usr/bin/python3 -c "
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith(\"  \") and l.rstrip().endswith(\"%\") and \"share\" not in l]
tot = sum(float(r[-1].rstrip(\"%\")) for r in rows)
assert rows and abs(tot - 100) <= 0.05 * len(rows) + 1e-9, (len(rows), tot)
" "$T/prof.err"'
( cd "$T" && "$M" train steg --preset small --size 16 --threads 1 --steps 1 --out "$T/prof2" >/dev/null 2>"$T/prof2.err" )
ok_if "without MEMFIT_PROFILE no table" '! grep -q "memfit profile" "$T/prof2.err"'
run "calibrate --help explains the conv cache" 0 "conv-cpu-tTHREADS" "$M" calibrate --help
run "plan --help lists --by-layer" 0 "--by-layer" "$M" plan --help
echo "cli_conv_impl: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

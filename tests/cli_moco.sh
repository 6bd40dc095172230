#!/usr/bin/env bash
# cli_moco.sh — CLI-level tests of the moco planning workload: `memfit plan moco` prints the queue, the EMA
# encoder (STATE arena) and the logits; with --budget it answers the largest batch that fits, queue unchanged,
# and the utilisation line; `memfit presets moco` prints the 4-80 GiB table; bad settings give a message
# naming the setting. Usage: bash tests/cli_moco.sh path/to/memfit (from the repo root).
set -u
MEMFIT=${1:?usage: cli_moco.sh path/to/memfit}
T=$(mktemp -d /tmp/cli_moco.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

run "plan small: queue" 0 "ring 'queue' \[4096,128\] f32" "$MEMFIT" plan moco --preset small
run "plan small: EMA encoder in the state arena" 0 "EMA averages of 64 parameters" "$MEMFIT" plan moco --preset small
run "plan small: logits" 0 "activation 'logits' \[256,4097\]" "$MEMFIT" plan moco --preset small
run "plan small: key branch frees its activations" 0 "no gradient: .* freed at their last forward use" "$MEMFIT" plan moco --preset small
run "plan seed-low-vram: queue stage for accumulation 4" 0 "stage of 192 keys: written once per update of 4 micro-steps" \
  "$MEMFIT" plan moco --preset seed-low-vram
# with a budget (one run, several checks on its output)
run "plan seed-low-vram 8GiB" 0 "chosen for a budget of 8.00 GiB" "$MEMFIT" plan moco --preset seed-low-vram --budget 8GiB
cp "$T/out.txt" "$T/plan.txt"
grep -Eq "largest batch that fits: [0-9]+ in (f32|bf16|f16) storing every activation .* the queue unchanged" "$T/plan.txt" && ok ||
  bad "8GiB: no largest batch line"
grep -Eq "^  [0-9]+ recomputing all 16 segments of variant 'checkpointed blocks'" "$T/plan.txt" && ok ||
  bad "8GiB: no largest batch with recompute"
# the seed's setting (64 x 4, f32, everything stored) fits 8 GiB: the key branch runs before the query's
# activations pile up, so it stays out of the peak
run "seed-low-vram as given" 0 "total .*" "$MEMFIT" plan moco --preset seed-low-vram --recompute none
tot=$(sed -n 's/^  total *\([0-9]*\) B.*/\1/p' "$T/out.txt")
[ -n "$tot" ] && [ "$tot" -le 8589934592 ] && ok || bad "seed-low-vram: total $tot over 8 GiB"
# the utilisation line: when the chosen plan leaves more than 15% of the budget idle
run "plan small 4GiB: utilisation" 0 "the chosen plan uses [0-9]+% of the budget: [0-9]+% is idle" \
  "$MEMFIT" plan moco --preset small --budget 4GiB
# the answer is right: the batch fits, one more step of it does not (stored activations, in the precision the
# search chose: f32, or bf16 where the calibration measured it faster, as on CPUs with AVX-512 bf16), counting the
# feature pass the run holds beside the step (the "besides the step" line)
B=$(sed -n 's/^largest batch that fits: \([0-9]*\) .*/\1/p' "$T/plan.txt")
P=$(sed -n 's/^largest batch that fits: [0-9]* in \([a-z0-9]*\) .*/\1/p' "$T/plan.txt")
if [ -n "$B" ] && [ -n "$P" ]; then
  run "batch $B fits 8 GiB" 0 "total .*" "$MEMFIT" plan moco --preset seed-low-vram --batch "$B" --precision "$P" --recompute none
  tot=$(sed -n 's/^  total *\([0-9]*\) B.*/\1/p' "$T/out.txt")
  side=$(sed -n 's/^  besides the step *\([0-9]*\) B.*/\1/p' "$T/out.txt")
  [ -n "$side" ] && [ "$side" -gt 0 ] && ok || bad "batch $B: no 'besides the step' line (the kNN monitor's feature pass)"
  tot=$((tot + ${side:-0}))
  [ -n "$tot" ] && [ "$tot" -le 8589934592 ] && ok || bad "batch $B: total $tot over 8 GiB"
  run "batch $((B + 2)) does not" 0 "total .*" "$MEMFIT" plan moco --preset seed-low-vram --batch $((B + 2)) --precision "$P" --recompute none
  tot=$(sed -n 's/^  total *\([0-9]*\) B.*/\1/p' "$T/out.txt")
  tot=$((tot + $(sed -n 's/^  besides the step *\([0-9]*\) B.*/\1/p' "$T/out.txt")))
  [ -n "$tot" ] && [ "$tot" -gt 8589934592 ] && ok || bad "batch $((B + 2)): total $tot fits 8 GiB"
else bad "no largest batch in the plan output"; fi
run "plan seed-16gb: queue 76800, batch 96" 0 "queue 76800 x 128" "$MEMFIT" plan moco --preset seed-16gb
run "plan v3" 0 "MoCo v3: ResNet-18" "$MEMFIT" plan moco --preset small --version 3 --batch 32
run "plan any batch with the queue" 0 "ring 'queue' \[100,128\]" "$MEMFIT" plan moco --preset small --queue 100 --batch 96 \
  --bn-splits 4
run "presets moco" 0 "80 GiB" "$MEMFIT" presets moco --preset seed-low-vram
run "plan --help lists the moco settings" 0 "--bn-splits" "$MEMFIT" plan moco --help

# bad settings: the message names the setting
run "queue shorter than the batch" 1 "--queue: 100 negatives is shorter than --batch 256" "$MEMFIT" plan moco --queue 100
run "temperature 0" 2 "--temperature" "$MEMFIT" plan moco --temperature 0
run "temperature negative" 2 "--temperature" "$MEMFIT" plan moco --temperature -1
run "momentum above 1" 2 "--momentum" "$MEMFIT" plan moco --momentum 1.5
run "momentum below 0" 2 "--momentum" "$MEMFIT" plan moco --momentum -0.1
run "bn-splits not dividing" 1 "--bn-splits 3" "$MEMFIT" plan moco --bn-splits 3
run "unknown arch" 2 "--arch: 'resnet99'" "$MEMFIT" plan moco --arch resnet99
run "unknown version" 2 "--version" "$MEMFIT" plan moco --version 4
run "unknown preset" 2 "--preset: 'huge' is not a moco preset" "$MEMFIT" plan moco --preset huge
run "unknown setting" 2 "unknown option .--foo." "$MEMFIT" plan moco --foo 1

echo "cli_moco: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_imagegs.sh — `memfit plan imagegs` as a user meets it: the 8K, 30,000-Gaussian fit planned inside 2 GiB over
# image tiles (and how), a budget too small even in tiles (the smallest that fits), and bad settings refused clearly.
# Usage: cli_imagegs.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_imagegs.sh path/to/memfit}")
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/harness_cli.sh"

run "8K in 2 GiB: fits, over image tiles" 0 "chosen for a budget of 2.00 GiB" \
  "$M" plan imagegs --size 7680x4320 --gaussians 30000 --budget 2GiB
for pat in "\(fits 2.00 GiB\)" "^image tiles: [0-9]+x[0-9]+ px .* micro-steps per update" "^backward: the top-K" \
           "^  activations \+ workspace" "^Gaussian-tile pairs: at most"; do
  if grep -Eq -- "$pat" "$T/out.txt"; then ok; else bad "8K plan lacks /$pat/"; fi
done
# the chosen plan's total is within the budget, and the whole image alone is not
total=$(awk '/^  total/ {print $2}' "$T/out.txt")
if [ -n "$total" ] && [ "$total" -le $((2 * 1024 * 1024 * 1024)) ]; then ok; else bad "8K plan total '$total' over 2 GiB"; fi
if grep -Eq "unconstrained fastest \(needs more memory" "$T/out.txt"; then ok; else bad "the whole-image plan should need more than 2 GiB"; fi

run "whole image, no budget" 0 "image tiles: none, the whole 640x480 image" "$M" plan imagegs --size 640x480 --gaussians 3000
run "a fixed tile" 0 "image tiles: 128x128 px" "$M" plan imagegs --size 640x480 --gaussians 3000 --tile 128
run "too small a budget: the smallest that fits" 3 "smallest any setting needs" \
  "$M" plan imagegs --size 7680x4320 --gaussians 30000 --budget 4MiB
run "0 Gaussians" 2 "--gaussians 0: need at least 1 Gaussian" "$M" plan imagegs --size 64x64 --gaussians 0
run "more Gaussians than pixels" 2 "more Gaussians than the 64x64 image has pixels \(4096\)" \
  "$M" plan imagegs --size 64x64 --gaussians 5000
run "a size without height" 2 "--size: '640' is not WIDTHxHEIGHT" "$M" plan imagegs --size 640 --gaussians 10
run "a tile not a multiple of 16" 2 "--tile 100: must be a multiple of 16" "$M" plan imagegs --size 640x480 --tile 100
run "an unknown setting" 2 "unknown option|did you mean" "$M" plan imagegs --gausians 10

echo "cli_imagegs: $pass passed, $fail failed"
[ "$fail" = 0 ]

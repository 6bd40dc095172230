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

# a short fit: measured == planned in every arena, the evaluation's figures, Gaussians added, the model renders
run "train: a short fit, measured == planned" 0 "activations \+ workspace +planned +[0-9]+ B +measured +[0-9]+ B +exact" \
  "$M" train imagegs --size 64x48 --gaussians 120 --steps 12 --epoch-steps 6 --add-every 4 --adds 2 --out "$T/run" \
  --frames "$T/frames" --frame-every 6 --threads 2 --log-every 0
for pat in "^epoch 2/2 PSNR [0-9.]+ dB, SSIM [0-9.]+, [0-9.]+ bpp \(120 Gaussians" "added 30 Gaussians .*\(90 of 120 active\)" \
           "clamped large, [0-9]+ clamped small, [0-9]+ skipped"; do
  if grep -Eq -- "$pat" "$T/out.txt"; then ok; else bad "train output lacks /$pat/"; fi
done
if grep -q '"psnr"' "$T/run/log.jsonl" && grep -q '"bpp"' "$T/run/log.jsonl"; then ok; else bad "log.jsonl lacks psnr / bpp"; fi
if [ -s "$T/frames/frame-000012.png" ]; then ok; else bad "no progress frame at update 12"; fi
if ! grep -Eq "planned +[0-9]+ B +measured +[0-9]+ B +(off|over|under)" "$T/out.txt"; then ok; else bad "an arena measured differs from its plan"; fi
run "render at another size" 0 "-> .*big.png \(160x120, 3 channels\)" "$M" render "$T/run/model.safetensors" --size 160x120 --out "$T/big.png"
# at the fitted size the model file draws what the last evaluation drew, byte for byte (f32, and quantised to 6 bits)
run "render at the fitted size" 0 "\(64x48, 3 channels\)" "$M" render "$T/run/model.safetensors" --out "$T/same.png"
if cmp -s "$T/same.png" "$T/run/samples-epoch002.png"; then ok; else bad "render differs from the fit's last render"; fi
run "train: quantised to 6 bits" 0 "bpp \(120 Gaussians x 8 values of 6 bits\)" "$M" train imagegs --size 64x48 --gaussians 120 \
  --steps 12 --epoch-steps 6 --add-every 4 --adds 2 --quant-bits 6 --out "$T/runq" --threads 2 --log-every 0
run "render the quantised model" 0 "\(64x48, 3 channels\)" "$M" render "$T/runq/model.safetensors" --out "$T/sameq.png"
if cmp -s "$T/sameq.png" "$T/runq/samples-epoch002.png"; then ok; else bad "quantised model renders other than its fit"; fi
run "render a checkpoint: another kind, said" 1 "another kind .*memfit-checkpoint-1.*not an Image-GS model" \
  "$M" render "$T/run/checkpoint.safetensors" --out "$T/x.png"
run "render without --out" 2 "no --out" "$M" render "$T/run/model.safetensors"
run "resume continues" 0 "trained" "$M" train imagegs --size 64x48 --gaussians 120 --steps 14 --epoch-steps 6 --add-every 4 --adds 2 \
  --out "$T/run" --resume "$T/run/checkpoint.safetensors" --threads 2 --log-every 0
run "resume from a model file: said" 1 "an Image-GS model file, not a training checkpoint" "$M" train imagegs --size 64x48 \
  --gaussians 120 --steps 14 --out "$T/run2" --resume "$T/run/model.safetensors" --log-every 0
# the backward mode: the kept top-K map (faster) whenever it fits, recomputed only when the budget needs it; --tile 96
# makes every variant the whole 96x64 image, so the two modes are all that differ (the map is 96 x 64 x 40 = 245,760 B)
for case in "4MiB kept fits and runs faster" "600KiB recomputed would run faster but needs"; do
  read -r b mode why <<<"$case"
  run "backward mode at --budget $b: top-K $mode" 0 "chose .*whole image, top-K $mode" "$M" train imagegs --size 96x64 \
    --gaussians 120 --tile 96 --budget "$b" --steps 4 --epoch-steps 2 --add-every 2 --adds 1 --out "$T/mode$b" --threads 2 --log-every 0
  if grep -Eq "^  why: .*$why" "$T/out.txt"; then ok; else bad "--budget $b: the plan line does not say why ('$why')"; fi
  if grep -Eq "activations \+ workspace +planned +[0-9]+ B +measured +[0-9]+ B +exact" "$T/out.txt" &&
     ! grep -Eq "planned +[0-9]+ B +measured +[0-9]+ B +(off|over|under)" "$T/out.txt"; then ok; else bad "--budget $b: measured != planned"; fi
done
run "plan without a budget: the map kept" 0 "^backward: the top-K index map is kept" "$M" plan imagegs --size 640x480 --gaussians 3000

# --video: the progress frames encoded as a video, read back by memfit's video reader (test_video_write --probe)
mkdir -p "$T/vid"
if "$M" --version | grep -q "^video: FFmpeg"; then
  run "train --video: the fit as a video" 0 "video of the fit: .*fit.mp4 \(4 frames, one every 3 updates, at 10 fps\)" \
    "$M" train imagegs --size 64x48 --gaussians 120 --steps 12 --epoch-steps 6 --add-every 4 --adds 2 --out "$T/runv" \
    --video "$T/vid/fit.mp4" --frame-every 3 --threads 2 --log-every 0
  P="$(dirname "$M")/test_video_write"
  if [ -x "$P" ]; then
    if "$P" --probe "$T/vid" | grep -q "^probe: 4 frames, 64 px wide, all decoded"; then ok; else bad "video: $("$P" --probe "$T/vid")"; fi
  fi
  if [ ! -e "$T/vid/fit.mp4.partial" ]; then ok; else bad "video: the temporary file is left"; fi
  run "train --video: no container for the name, said before training" 1 "--video: .*fit.txt: no video container" \
    "$M" train imagegs --size 64x48 --gaussians 120 --steps 2 --out "$T/runv2" --video "$T/vid/fit.txt" --log-every 0
  if [ ! -e "$T/runv2/checkpoint.safetensors" ]; then ok; else bad "video: a run with a bad --video trained"; fi
else
  run "train --video without FFmpeg: said" 1 "built without it" "$M" train imagegs --size 64x48 --gaussians 120 --steps 2 \
    --out "$T/runv" --video "$T/fit.mp4" --log-every 0
fi
run "train: an image too large for the budget, even in tiles" 3 "nothing fits 1.00 MiB; the smallest setting needs" \
  "$M" train imagegs --size 4096x4096 --gaussians 1000 --budget 1MiB --steps 1 --out "$T/run3"
run "train: more Gaussians than pixels" 2 "more Gaussians than the 32x32 image has pixels" \
  "$M" train imagegs --size 32x32 --gaussians 2000 --out "$T/run4"
run "train: a missing image" 2 "nosuch.png" "$M" train imagegs --image "$T/nosuch.png" --out "$T/run5"

echo "cli_imagegs: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_vqgan.sh — CLI-level tests of `memfit plan vqgan` (both phases and which sets the peak; with --budget the
# setting that fits without shrinking the model, exit 3 when nothing does), `memfit presets vqgan` (the 4-80 GiB
# table), and the bad settings of issue 13 (a latent grid that does not divide, 0 codes, FSQ levels below 2).
# Usage: bash tests/cli_vqgan.sh path/to/memfit (from the repo root).
set -u
MEMFIT=${1:?usage: cli_vqgan.sh path/to/memfit}
T=$(mktemp -d /tmp/cli_vqgan.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

run "plan tiny: generator phase" 0 "phase 0 'generator': activations" "$MEMFIT" plan vqgan --preset tiny
run "plan tiny: discriminator phase" 0 "phase 1 'discriminator': activations" "$MEMFIT" plan vqgan --preset tiny
run "plan tiny: which phase sets the peak" 0 "peak set by the (generator|discriminator) phase" "$MEMFIT" plan vqgan --preset tiny
run "plan low" 0 "hidden \[16,32,64,128\], 2 res blocks, latent 16, 128 codes" "$MEMFIT" plan vqgan --preset low
# the original model fits 4 GiB without being shrunk; the chosen plan's total is within the budget
run "original in 4GiB" 0 "chosen for a budget of 4.00 GiB without shrinking the model" "$MEMFIT" plan vqgan --preset original --budget 4GiB
tot=$(sed -n 's/^  total *\([0-9]*\) B.*/\1/p' "$T/out.txt")
[ -n "$tot" ] && [ "$tot" -le 4294967296 ] && ok || bad "original 4GiB: total $tot over 4 GiB"
# as given (8 x 1, f32, stored) it needs more than 4 GiB: the search had something to do
run "original as given" 0 "total .*" "$MEMFIT" plan vqgan --preset original
tot=$(sed -n 's/^  total *\([0-9]*\) B.*/\1/p' "$T/out.txt")
[ -n "$tot" ] && [ "$tot" -gt 4294967296 ] && ok || bad "original as given: total $tot fits 4 GiB"
run "nothing fits 1GiB" 3 "NOTHING FITS in 1.00 GiB" "$MEMFIT" plan vqgan --preset original --budget 1GiB
run "fsq" 0 "FSQ \[8,5,5,5\]" "$MEMFIT" plan vqgan --preset tiny --fsq-levels 8,5,5,5 --latent 4
run "ema" 0 "16 codes x 4 \(EMA\)" "$MEMFIT" plan vqgan --preset tiny --ema 1
run "presets vqgan" 0 "80 GiB +original" "$MEMFIT" presets vqgan
run "bad size" 2 "--size 100 does not divide into the latent grid" "$MEMFIT" plan vqgan --size 100
run "0 codes" 2 "codebook needs 1 to .* entries \(--codes\)" "$MEMFIT" plan vqgan --codes 0
run "fsq level 1" 2 "FSQ level 1 is 1; every level must be at least 2 \(--fsq-levels\)" "$MEMFIT" plan vqgan --fsq-levels 8,1,5
run "unknown preset" 2 "unknown vqgan preset 'huge'" "$MEMFIT" plan vqgan --preset huge
run "unknown setting" 2 "unknown option .--foo." "$MEMFIT" plan vqgan --foo 1
run "help" 0 "--fsq-levels LIST" "$MEMFIT" plan vqgan --help
# training: both phases, validation metrics, the grid, measured == planned
run "train tiny" 0 "codebook usage [0-9.]+% \([0-9]+ of 16 codes\), perplexity" "$MEMFIT" train vqgan --preset tiny --gen-count 16 \
  --epochs 1 --val-count 4 --out "$T/run" --threads 1
grep -Eq "reconstruction [0-9.]+ dB PSNR, SSIM" "$T/out.txt" && ok || bad "train tiny: no PSNR/SSIM line"
[ "$(grep -c "planned .* measured .* exact" "$T/out.txt")" -ge 6 ] && ok || bad "train tiny: not every arena exact"
[ -s "$T/run/samples-epoch001.png" ] && ok || bad "train tiny: no sample grid"
grep -q "perceptual loss off (no network file" "$T/out.txt" && ok || bad "train tiny: the run does not say the perceptual term is off"
head -c 500 /dev/urandom > "$T/notonnx.onnx"
run "perceptual: not ONNX" 2 "--perceptual: .*notonnx.onnx" "$MEMFIT" plan vqgan --preset tiny --perceptual "$T/notonnx.onnx"
run "perceptual: missing" 2 "--perceptual: .*missing.onnx" "$MEMFIT" plan vqgan --preset tiny --perceptual "$T/missing.onnx"
run "train ema fsq budget" 0 "budget 1.00 GiB: chose" "$MEMFIT" train vqgan --preset tiny --fsq-levels 5,5,4 --latent 3 \
  --gen-count 8 --epochs 1 --val-count 2 --budget 1GiB --out "$T/run2" --threads 1
# an interrupted run with an EMA codebook resumes to the same losses, bit for bit
common=(train vqgan --preset tiny --gen-count 16 --epochs 2 --val-count 2 --threads 1 --ema 1)
run "train whole" 0 "exact" "$MEMFIT" "${common[@]}" --out "$T/rA" --loss-log "$T/a.txt"
run "train stopped" 0 "exact" "$MEMFIT" "${common[@]}" --out "$T/rB" --loss-log "$T/b.txt" --stop-after 5
run "train resumed" 0 "exact" "$MEMFIT" "${common[@]}" --out "$T/rB" --loss-log "$T/b.txt" --resume "$T/rB/checkpoint.safetensors"
cmp -s "$T/a.txt" "$T/b.txt" && [ "$(wc -l < "$T/a.txt")" -eq 16 ] && ok || bad "resume: the loss log differs from the whole run's"
run "train help" 0 "--gen-count N" "$MEMFIT" train vqgan --help
# --disc-start 2: updates 1 and 2 train without the GAN (the discriminator's hinge and lambda are 0 in both phases, with
# accumulation too), update 3 with it; the generator's logged loss is its objective (no raw g_loss before the start)
run "disc-start" 0 "exact" "$MEMFIT" train vqgan --preset tiny --gen-count 16 --steps 4 --batch 4 --accum 2 --val-fraction 0 \
  --disc-start 2 --threads 1 --log-every 0 --out "$T/ds"
out=$(python3 - "$T/ds/log.jsonl" <<'EOF' 2>&1
import json, sys
u = [r for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "update"]
assert len(u) == 4, len(u)
for r in u[:2]: assert r["loss_discriminator"] == 0 and r["lambda"] == 0 and r["g_loss"] != 0, r
for r in u[2:]: assert r["loss_discriminator"] > 0 and r["lambda"] > 0, r
print("updates 1-2: no GAN (g_loss %.3g left out of loss_generator %.4g); 3-4: lambda %.3g, %.3g" % (u[1]["g_loss"], u[1]["loss_generator"], u[2]["lambda"], u[3]["lambda"]))
EOF
)
rc=$?; echo "  disc-start 2: $out"
[ $rc = 0 ] && ok || bad "disc-start 2: $out"
# video: clips of T frames (per-frame 2D layers + temporal convs), 128 x 128 by default, planned exactly
run "plan clips 16" 0 "clips of 16 frames \(temporal convs\) 128x128" "$MEMFIT" plan vqgan --preset low --clips 16
run "plan clips 16 budget" 0 "chosen for a budget of 4.00 GiB" "$MEMFIT" plan vqgan --preset mid --clips 16 --budget 4GiB
run "presets clips" 0 "for clips" "$MEMFIT" presets vqgan --clips 16
run "clips 0" 2 "--clips: .0. is not a whole number from 1 to 4096" "$MEMFIT" plan vqgan --clips 0
run "train clips" 0 "PSNR per frame \(dB, 2 clips\):( [0-9.]+){4}$" "$MEMFIT" train vqgan --preset tiny --clips 4 --size 16 \
  --gen-count 4 --epochs 1 --val-count 2 --ssim 0.5 --out "$T/rv" --threads 1
grep -q "1 - SSIM" "$T/out.txt" && ok || bad "train clips: the SSIM term is not in the losses line"
[ "$(grep -c "planned .* measured .* exact" "$T/out.txt")" -ge 6 ] && ok || bad "train clips: not every arena exact"
[ -s "$T/rv/samples-epoch001.mp4" ] && ok || bad "train clips: no reconstruction video (input | reconstruction)"
# video folders: a video FFmpeg cannot open and one shorter than a clip are skipped with a count, never a crash
# (the videos are the reconstruction videos of two runs: 4 frames and 2 frames, 32x16)
if grep -q "built without FFmpeg" <("$MEMFIT" train vqgan --preset tiny --clips 2 --data "$T/none" --epochs 1 2>&1); then
  echo "cli_vqgan: built without FFmpeg: video folders not tested"
else
  run "train clips 2" 0 "PSNR per frame" "$MEMFIT" train vqgan --preset tiny --clips 2 --size 16 --gen-count 2 --epochs 1 \
    --val-count 1 --out "$T/rv2" --threads 1
  mkdir -p "$T/vids/a" "$T/vids/b"
  cp "$T/rv/samples-epoch001.mp4" "$T/vids/a/four.mp4"
  cp "$T/rv/samples-epoch001.mp4" "$T/vids/b/four.mp4"
  cp "$T/rv2/samples-epoch001.mp4" "$T/vids/a/two.mp4"
  head -c 3000 /dev/urandom > "$T/vids/b/broken.avi"
  run "video folder: bad files skipped" 0 "2 training clips" "$MEMFIT" train vqgan --preset tiny --clips 4 --size 16 \
    --data "$T/vids" --epochs 1 --batch 2 --out "$T/rv3" --threads 1
  grep -Eq "broken.avi: skipped: unreadable video" "$T/out.txt" && ok || bad "video folder: the unreadable video is not named"
  grep -Eq "two.mp4: skipped: 2 frames, fewer than one clip \(4\)" "$T/out.txt" && ok || bad "video folder: the short video is not named"
  grep -Eq "1 unreadable files? skipped" "$T/out.txt" && ok || bad "video folder: no count of unreadable files"
  run "video folder: nothing usable" 1 "no usable video \(4 skipped" "$MEMFIT" train vqgan --preset tiny --clips 8 --size 16 \
    --data "$T/vids" --epochs 1 --out "$T/rv4" --threads 1
fi

echo "cli_vqgan: $pass passed, $fail failed"
[ "$fail" = 0 ]

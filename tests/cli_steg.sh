#!/usr/bin/env bash
# cli_steg.sh — CLI-level tests of the steganography commands (train steg, hide, reveal, eval):
# a tiny training run (plan == measured, checkpoint, resume, grids), hide/reveal of images and
# messages with the shipped model, and every kind of bad input: each must give a clear message
# naming the file, and never crash. Usage: bash tests/cli_steg.sh path/to/memfit (from the repo root).
set -u
MEMFIT=${1:?usage: cli_steg.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
ROOT=$(pwd)
MODEL=$ROOT/models/steg-small.safetensors
DATA=$ROOT/../shared/data
T=$(mktemp -d /tmp/cli_steg.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

# test images: written by a few lines of Python (zlib PNG), any colour type and size
/usr/bin/python3 - "$T" <<'EOF'
import sys, zlib, struct, random
d = sys.argv[1]
def png(path, w, h, ct, px):
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ct]
    raw = b''.join(b'\x00' + bytes(px(x, y, c) for x in range(w) for c in range(ch)) for y in range(h))
    def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, ct, 0, 0, 0)) +
                           chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
random.seed(1)
smooth = lambda x, y, c: (x * 3 + y * 5 + c * 60 + random.randint(0, 8)) % 256
png(d + '/cover.png', 64, 48, 2, smooth)
png(d + '/odd.png', 63, 47, 2, lambda x, y, c: (x * 4 + y * 2 + c * 80) % 256)
png(d + '/gray.png', 64, 48, 0, lambda x, y, c: (x * 4 + y) % 256)
png(d + '/rgba.png', 64, 48, 6, lambda x, y, c: 255 if c == 3 else (x * 2 + y * 3 + c * 70) % 256)
png(d + '/big.png', 128, 96, 2, lambda x, y, c: (x + y * 2 + c * 50) % 256)
png(d + '/tiny.png', 8, 8, 2, smooth)
# saturated covers: the right half white; flat graphic panels in pure colours (each channel 0 or 255)
png(d + '/halfwhite.png', 128, 96, 2, lambda x, y, c: 255 if x >= 64 else (x * 3 + y * 2 + c * 70 + (x * y) % 13) % 256)
png(d + '/panels.png', 128, 96, 2, lambda x, y, c: [0, 255][((x // 40) * 3 + (y // 32) * 5 + c) % 2])
import os
os.makedirs(d + '/train/sub', exist_ok=True)
for i in range(6):
    png(d + '/train/img%d.png' % i, 40, 40, 2, lambda x, y, c, i=i: (x * (i + 1) + y * 3 + c * 40) % 256)
png(d + '/train/sub/small.png', 16, 16, 2, smooth)          # smaller than the crop
open(d + '/train/sub/broken.png', 'wb').write(b'\x89PNG\r\n\x1a\n' + b'\x00' * 20)  # unreadable
open(d + '/notamodel.safetensors', 'wb').write(b'hello')
open(d + '/long.txt', 'w').write('x' * 5000)
EOF

# ---- train: tiny model, a folder with a too-small and a broken file, SSIM + DCT terms, grids, plan == measured
run "train on a folder" 0 "planned .* exact" "$MEMFIT" train steg --data "$T/train" --blocks 1 --growth 4 --size 32 --batch 2 \
  --steps 4 --epoch-steps 2 --val-fraction 0 --val-count 2 --ssim 0.5 --dct 0.01 --lr 1e-3 --warmup 1 --clip 5 --threads 1 --out "$T/run"
grep -Eq "^epoch 2/2 loss .* hide PSNR .* rec PSNR .* SSIM" "$T/out.txt" && ok || bad "train: no 'epoch 2/2 loss ... hide PSNR ... rec PSNR ... SSIM' line"
grep -Eq "small.png" "$T/out.txt" && grep -Eq "broken.png" "$T/out.txt" && ok || bad "train: skipped files not named"
grep -q "DIFFERENT" "$T/out.txt" && bad "train: measured memory differs from the plan" || ok
[ -s "$T/run/samples-epoch002.png" ] && [ -s "$T/run/model.safetensors" ] && ok || bad "train: no sample grid or model file"
run "resume" 0 "resumed from .* at update 4" "$MEMFIT" train steg --data "$T/train" --blocks 1 --growth 4 --size 32 --batch 2 \
  --steps 6 --epoch-steps 2 --val-fraction 0 --val-count 2 --ssim 0.5 --dct 0.01 --threads 1 --out "$T/run" --resume "$T/run/checkpoint.safetensors"
run "resume with other settings" 1 "checkpoint .*(another model|expected)" "$MEMFIT" train steg --data generated --blocks 2 --growth 4 \
  --size 32 --batch 2 --steps 2 --threads 1 --out "$T/run2" --resume "$T/run/checkpoint.safetensors"
run "train with a budget" 0 "budget .*chose" "$MEMFIT" train steg --data generated --blocks 1 --growth 4 --size 32 --batch 4 \
  --steps 2 --val-count 2 --budget 4MiB --threads 1 --out "$T/run3"
run "budget too small" 3 "nothing fits" "$MEMFIT" train steg --data generated --blocks 1 --growth 4 --size 32 --batch 4 --steps 2 \
  --budget 10KiB --threads 1 --out "$T/run4"
run "odd --size" 2 "odd" "$MEMFIT" train steg --size 33 --steps 1
run "unknown backend" 2 "--backend: backend 'tpu' is unknown" "$MEMFIT" train steg --backend tpu --steps 1 --out "$T/run6"
# a device backend: trains where a GPU is usable, else refuses before training and says why (exit 2)
"$MEMFIT" train steg --backend cuda --data generated --blocks 1 --growth 4 --size 32 --batch 2 --steps 2 --gen-count 8 \
  --val-count 1 --threads 1 --out "$T/run7" > "$T/out.txt" 2>&1
rc=$?
if [ "$rc" = 0 ] && grep -Eq "planned .* exact" "$T/out.txt"; then ok
elif [ "$rc" = 2 ] && grep -Eq -- "--backend( cuda)?: .*(not built in|no CUDA device|CUDA backend)" "$T/out.txt"; then ok
else bad "cuda backend: exit status $rc"; sed 's/^/    /' "$T/out.txt" | tail -5; fi
run "no images" 1 "$T/empty|no usable|No such" "$MEMFIT" train steg --data "$T/empty" --steps 1 --threads 1 --out "$T/run5"

# ---- hide / reveal: use the freshly trained tiny model for the mechanics (quality does not matter)
M=$T/run/model.safetensors
run "hide image" 0 "stego .*8-bit PNG" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/gray.png" --out "$T/st.png" --threads 1
run "reveal image" 0 "recovered secret" "$MEMFIT" reveal --model "$M" --stego "$T/st.png" --out "$T/rv.png" --threads 1
run "odd cover" 0 "odd\).*padded to 64x48" "$MEMFIT" hide --model "$M" --cover "$T/odd.png" --secret "$T/cover.png" --out "$T/st_odd.png" --threads 1
run "odd stego" 0 "odd.*padded" "$MEMFIT" reveal --model "$M" --stego "$T/st_odd.png" --out "$T/rv_odd.png" --threads 1
run "gray cover" 0 "grayscale" "$MEMFIT" hide --model "$M" --cover "$T/gray.png" --secret "$T/cover.png" --out "$T/st2.png" --threads 1
run "RGBA cover" 0 "alpha channel" "$MEMFIT" hide --model "$M" --cover "$T/rgba.png" --secret "$T/cover.png" --out "$T/st3.png" --threads 1
run "secret larger than cover" 0 "larger than the cover" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/big.png" --out "$T/st4.png" --threads 1
run "message too long" 1 "holds at most [0-9]+ bytes" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --message-file "$T/long.txt" --out "$T/st5.png" --threads 1
run "tiny cover, message" 1 "holds at most 0 bytes" "$MEMFIT" hide --model "$M" --cover "$T/tiny.png" --message "hi" --out "$T/st6.png" --threads 1
run "not a model" 1 "notamodel" "$MEMFIT" hide --model "$T/notamodel.safetensors" --cover "$T/cover.png" --secret "$T/cover.png" --out "$T/x.png"
run "missing model" 1 "nosuch.safetensors" "$MEMFIT" reveal --model "$T/nosuch.safetensors" --stego "$T/st.png" --out "$T/x.png"
run "missing cover" 1 "nosuch.png" "$MEMFIT" hide --model "$M" --cover "$T/nosuch.png" --secret "$T/cover.png" --out "$T/x.png"
run "no secret" 2 "exactly one of" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --out "$T/x.png"
run "not a message" 1 "no intact message" "$MEMFIT" reveal --model "$M" --stego "$T/cover.png" --message --threads 1
run "eval pairs" 0 "means over 1 pairs" "$MEMFIT" eval --model "$M" --pairs <(echo "$T/cover.png $T/rgba.png") --size 32 --out "$T/grid.png" --threads 1
[ -s "$T/grid.png" ] && ok || bad "eval: no grid"
# train --json: the last line of standard output is the summary as JSON, every arena measured as planned
"$MEMFIT" train steg --data generated --blocks 1 --growth 4 --size 16 --batch 2 --steps 2 --gen-count 4 --val-count 1 \
  --threads 1 --log-every 0 --out "$T/jrun" --json >"$T/train.out" 2>&1
tail -1 "$T/train.out" | /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert d["type"] == "end" and d["ended"] == "done" and d["updates"] == 2, d
assert all(a["planned"] == a["measured"] for a in d["arenas"].values()), d' && ok || bad "train --json: no summary line"
# --json: one object on standard output (the text on standard error), with the pair and the means
"$MEMFIT" eval --model "$M" --pairs <(echo "$T/cover.png $T/rgba.png") --size 32 --threads 1 --json >"$T/eval.json" 2>"$T/eval.err"
[ $? = 0 ] && grep -q "means over 1 pairs" "$T/eval.err" && ok || bad "eval --json: status or text on stderr"
/usr/bin/python3 - "$T/eval.json" "$T/cover.png" <<'EOF2' && ok || bad "eval --json: not the expected JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["evaluated"] == 1 and len(d["pairs"]) == 1 and d["pairs"][0]["cover"] == sys.argv[2], d
assert d["mean"]["hide_psnr"] == d["pairs"][0]["hide_psnr"] and 0 <= d["mean"]["bit_accuracy"] <= 1, d
EOF2
run "eval crop too large" 1 "no pair has two images of at least 256x256" "$MEMFIT" eval --model "$M" --pairs <(echo "$T/cover.png $T/rgba.png") --size 256 --threads 1

if [ -d "$DATA" ]; then
  run "truncated cover" 1 "truncated.jpg" "$MEMFIT" hide --model "$M" --cover "$DATA/bad/truncated.jpg" --secret "$T/cover.png" --out "$T/x.png"
  run "truncated stego" 1 "truncated.jpg" "$MEMFIT" reveal --model "$M" --stego "$DATA/bad/truncated.jpg" --out "$T/x.png"
  run "eval with a truncated file" 0 "skipping pair .*truncated.jpg" "$MEMFIT" eval --model "$M" \
    --pairs <(echo "$DATA/bad/truncated.jpg $T/cover.png"; echo "$T/cover.png $T/gray.png") --size 32 --threads 1
else
  echo "cli_steg: ../shared/data absent: truncated-file tests skipped"
fi

# ---- the shipped model: a message and a photo round trip
if [ -f "$MODEL" ]; then
  run "shipped model: hide message" 0 "message: 25 bytes" "$MEMFIT" hide --model "$MODEL" --cover "$T/big.png" --message "memfit hides this message" --out "$T/msg.png" --threads 1
  run "shipped model: reveal message" 0 "memfit hides this message" "$MEMFIT" reveal --model "$MODEL" --stego "$T/msg.png" --message --threads 1
  # the stated capacity is true: fill it exactly (random bytes), hide, reveal, compare; one byte more is refused
  for c in big halfwhite panels; do
    "$MEMFIT" hide --model "$MODEL" --cover "$T/$c.png" --message "x" --out "$T/cap.png" --threads 1 > "$T/cap.txt" 2>&1
    cap=$(sed -n -e 's/^message: 1 bytes of \([0-9]*\) the cover holds.*/\1/p' -e 's/.*cover holds at most \([0-9]*\) bytes.*/\1/p' "$T/cap.txt")
    if [ -z "$cap" ]; then bad "capacity of $c.png not reported: $(head -c 300 "$T/cap.txt")"; continue; fi
    head -c $((cap + 1)) /dev/urandom > "$T/over.bin"
    run "capacity $c.png: one byte more than $cap refused" 1 "holds at most $cap bytes" "$MEMFIT" hide --model "$MODEL" \
      --cover "$T/$c.png" --message-file "$T/over.bin" --out "$T/over.png" --threads 1
    [ "$cap" -gt 0 ] || continue
    head -c "$cap" /dev/urandom > "$T/full.bin"
    run "capacity $c.png: $cap bytes hidden" 0 "message check: revealed from the 8-bit stego intact" "$MEMFIT" hide --model "$MODEL" \
      --cover "$T/$c.png" --message-file "$T/full.bin" --out "$T/full.png" --threads 1
    run "capacity $c.png: revealed" 0 "message \\($cap bytes, CRC-32 ok\\) written to" "$MEMFIT" reveal --model "$MODEL" \
      --stego "$T/full.png" --message-file "$T/got.bin" --threads 1
    cmp -s "$T/full.bin" "$T/got.bin" && ok || bad "capacity $c.png: the revealed bytes differ from the hidden ones"
  done
  if [ -d "$DATA/photos" ]; then
    run "shipped model: eval on two photos" 0 "means over 2 pairs" "$MEMFIT" eval --model "$MODEL" --data "$DATA/photos" --size 64 --max-pairs 2 --threads 1
  fi
else
  echo "cli_steg: $MODEL absent: shipped-model tests skipped"
fi

# train takes the settings plan takes: --precision, --recompute, --micro-batch, --variant
P=(steg --blocks 1 --growth 4 --size 16 --batch 4)
TR=(--gen-count 8 --gen-size 32 --steps 3 --val-count 2 --threads 1 --log-every 1000 --data generated)
run "train: default settings" 0 "memory-free backprop through every coupling block" "$MEMFIT" train "${P[@]}" "${TR[@]}" --out "$T/s0" \
  --loss-log "$T/s0.log"
run "train: --recompute all --precision f32 (the default, as plan names it)" 0 "settings: micro-batch 4 x 1 accumulation, f32" \
  "$MEMFIT" train "${P[@]}" "${TR[@]}" --out "$T/s1" --loss-log "$T/s1.log" --recompute all --precision f32
[ -s "$T/s0.log" ] && cmp -s "$T/s0.log" "$T/s1.log" && ok || bad "train: the default and its settings given by name train differently"
run "train: bf16, nothing recomputed, micro-batch 2" 0 "settings: micro-batch 2 x 2 accumulation, bf16, .*nothing recomputed" \
  "$MEMFIT" train "${P[@]}" "${TR[@]}" --out "$T/s2" --precision bf16 --recompute none --micro-batch 2
grep -q "DIFFERENT" "$T/out.txt" && bad "train bf16: measured memory differs from the plan" || ok
trained=$(sed -n 's/^settings: .*(plans \(.*\))$/\1/p' "$T/out.txt")
run "plan: the same settings" 0 "settings: micro-batch 2 x 2 accumulation, bf16" "$MEMFIT" plan "${P[@]}" --precision bf16 \
  --recompute none --micro-batch 2
planned=$(awk '/^  total/ {print $4, $5}' "$T/out.txt")
[ -n "$trained" ] && [ "$trained" = "$planned" ] && ok || bad "train plans '$trained', plan '$planned' for the same settings"
run "train: bad --precision" 2 "--precision: 'f8' is not f32, bf16, f16 or auto" "$MEMFIT" train "${P[@]}" "${TR[@]}" --out "$T/s3" \
  --precision f8
run "train: --micro-batch that does not divide --batch" 1 "micro-batch 3 does not divide the effective batch of 4" "$MEMFIT" train \
  "${P[@]}" "${TR[@]}" --out "$T/s3" --micro-batch 3

echo "cli_steg: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_io.sh — the CLI when files and writes go wrong: every failed write is an error naming the path
# (train, demo, eval, plan --timeline, --loss-log, hide), a PNG written to a FIFO arrives and the FIFO
# stays, images too large for --budget are refused before decoding, directories/FIFOs/devices given as
# images or messages are refused at once, and the loss log is flushed per line and continued on --resume.
# Usage: bash tests/cli_io.sh path/to/memfit (from the repo root). Runs as root too (no chmod tricks).
set -u
MEMFIT=${1:?usage: cli_io.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
ROOT=$(pwd)
MODEL=$ROOT/models/steg-small.safetensors
T=$(mktemp -d /tmp/cli_io.XXXXXX)
BG=
trap '[ -n "$BG" ] && kill $BG 2>/dev/null; rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"
# no_line NAME PATTERN: the last command's output must not match PATTERN
no_line() { if grep -Eq -- "$2" "$T/out.txt"; then bad "$1: output has /$2/"; sed 's/^/    /' "$T/out.txt" | tail -3; else ok; fi; }

/usr/bin/python3 - "$T" <<'EOF'
import sys, zlib, struct, os
d = sys.argv[1]
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
def png(path, w, h, ct, row):  # row(y) -> bytes of one row (without the filter byte)
    z = zlib.compressobj(9)
    parts = [z.compress(b'\x00' + row(y)) for y in range(h)] + [z.flush()]
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, ct, 0, 0, 0)) +
                           chunk(b'IDAT', b''.join(parts)) + chunk(b'IEND', b''))
rgb = lambda w, k: (lambda y: bytes((x * (3 + k) + y * 5 + c * 70) % 256 for x in range(w) for c in range(3)))
png(d + '/cover.png', 64, 48, 2, rgb(64, 0))
os.makedirs(d + '/imgs')
for i in range(3): png(d + '/imgs/i%d.png' % i, 40, 40, 2, rgb(40, i))
zero = bytes(16000)  # a PNG bomb: 16000x16000 gray zeros, about 250 KB compressed
png(d + '/bomb.png', 16000, 16000, 0, lambda y: zero)
zero = bytes(4000)
png(d + '/big.png', 4000, 3000, 0, lambda y: zero)
EOF
[ -s "$T/bomb.png" ] && [ "$(stat -c %s "$T/bomb.png")" -lt 2000000 ] && ok || bad "could not write the test PNG bomb"

TR=(train steg --data generated --blocks 1 --growth 4 --size 16 --batch 2 --gen-count 4 --gen-size 32 --steps 2
    --epoch-steps 2 --val-count 2 --threads 1 --log-every 1000)

# ---- 1. failed writes: non-zero exit, the path named, no "saved"
# a device that fails every write, like /dev/full, but our own: a writer that wrongly removes its
# output on failure must not take the system's /dev/full with it
FULL=$T/full
mknod "$FULL" c 1 7 2>/dev/null || FULL=
echo x > "$T/afile"
run "train --out is a file" 1 "afile" "$MEMFIT" "${TR[@]}" --out "$T/afile"
no_line "train --out is a file" "^  saved "
run "train --out under a file" 1 "afile/sub" "$MEMFIT" "${TR[@]}" --out "$T/afile/sub"
mkdir -p "$T/gdir/samples-epoch001.png"
run "train: the samples grid cannot be written" 1 "samples-epoch001.png" "$MEMFIT" "${TR[@]}" --out "$T/gdir"
run "train --out in /proc" 1 "/proc/memfit-test" "$MEMFIT" "${TR[@]}" --out /proc/memfit-test
mkdir -p "$T/ckdir/checkpoint.safetensors"
run "train: the checkpoint path is a folder" 1 "checkpoint.safetensors" "$MEMFIT" "${TR[@]}" --out "$T/ckdir"
no_line "train: the checkpoint path is a folder" "^  saved "
run "train --loss-log in a missing folder" 1 "loss-log $T/nodir/l.txt" "$MEMFIT" "${TR[@]}" --out "$T/run1" --loss-log "$T/nodir/l.txt"
run "demo --out in a missing folder" 1 "$T/nodir/demo" "$MEMFIT" demo --steps 1 --size 16 --batch 1 --threads 1 --out "$T/nodir/demo"
run "eval --out in a missing folder" 1 "$T/nodir/grid.png" "$MEMFIT" eval --model "$MODEL" --data "$T/imgs" --size 32 --no-messages \
  --threads 1 --out "$T/nodir/grid.png"
no_line "eval --out in a missing folder" "^grid "
run "plan --timeline in a missing folder" 1 "$T/nodir/t.svg" "$MEMFIT" plan steg --preset small --timeline "$T/nodir/t.svg"
no_line "plan --timeline in a missing folder" "^timeline: "
[ -n "$FULL" ] && run "plan, standard output on a full device" 1 "standard output" bash -c "'$MEMFIT' plan steg --preset small > '$FULL'"
if [ -n "$FULL" ]; then
  run "hide --out on a full device" 1 "$FULL" "$MEMFIT" hide --model "$MODEL" --cover "$T/cover.png" --message hi --out "$FULL"
  [ -c "$FULL" ] && ok || bad "hide --out $FULL removed the device file"
  run "train --loss-log on a full device" 1 "loss-log $FULL" "$MEMFIT" "${TR[@]}" --out "$T/run1" --loss-log "$FULL"
  run "plan --timeline on a full device" 1 "$FULL" "$MEMFIT" plan steg --preset small --timeline "$FULL"
  [ -c "$FULL" ] && ok || bad "a failed write removed the device file $FULL"
else echo "(mknod not permitted: the full-device checks are skipped)"; fi

# ---- 2. a PNG written into a FIFO arrives whole, and the FIFO stays
mkfifo "$T/fifo.png"
(cat "$T/fifo.png" > "$T/from-fifo.png") & BG=$!
run "hide --out a FIFO" 0 "stego .*fifo.png" timeout 60 "$MEMFIT" hide --model "$MODEL" --cover "$T/cover.png" --message hi \
  --out "$T/fifo.png"
wait $BG; BG=
[ -p "$T/fifo.png" ] && ok || bad "the FIFO is gone after writing a PNG into it"
run "reveal the PNG that came through the FIFO" 0 "hi" "$MEMFIT" reveal --model "$MODEL" --stego "$T/from-fifo.png" --message

# ---- 4. images too large for --budget: refused before decoding, naming the file, its size and the budget
run "hide: a PNG bomb over --budget 1GiB" 1 "--budget 1GiB is too small to decode cover .*bomb.png, a 16000x16000 image .*before decoding" \
  "$MEMFIT" hide --model "$MODEL" --cover "$T/bomb.png" --message hi --out "$T/s.png" --budget 1GiB
run "hide: a large secret over --budget 64MiB" 1 "--budget 64MiB is too small to decode secret .*big.png, a 4000x3000 image .*before decoding" \
  "$MEMFIT" hide --model "$MODEL" --cover "$T/cover.png" --secret "$T/big.png" --out "$T/s.png" --budget 64MiB
run "reveal: a large stego over --budget 64MiB" 1 "--budget 64MiB is too small to decode stego .*big.png, a 4000x3000 image .*before decoding" \
  "$MEMFIT" reveal --model "$MODEL" --stego "$T/big.png" --out "$T/r.png" --budget 64MiB
printf '%s %s\n' "$T/big.png" "$T/imgs/i0.png" "$T/imgs/i1.png" "$T/imgs/i2.png" > "$T/pairs.txt"
run "eval: a large image over --budget 64MiB is skipped" 0 "skipping pair 1: --budget 64MiB is too small to decode file .*big.png, a 4000x3000 image .*before decoding" \
  "$MEMFIT" eval --model "$MODEL" --pairs "$T/pairs.txt" --size 32 --no-messages --threads 1 --budget 64MiB

mkdir -p "$T/tdata" && cp "$T"/imgs/*.png "$T/big.png" "$T/tdata/"
run "train: an image over --budget 8MiB is skipped unread" 0 "big.png: skipped: a 4000x3000 image: decoding it needs .* budget of 8" \
  "$MEMFIT" train steg --data "$T/tdata" --val-fraction 0 --blocks 1 --growth 4 --size 16 --batch 1 --steps 1 --epoch-steps 1 \
  --val-count 1 --threads 1 --log-every 1000 --budget 8MiB --out "$T/tb"

# ---- 5. directories, FIFOs and devices as inputs: refused at once, by name
run "hide: a folder as the cover" 1 "cover $T/imgs: is a directory" "$MEMFIT" hide --model "$MODEL" --cover "$T/imgs" --message hi \
  --out "$T/s.png"
mkfifo "$T/in.png"
run "hide: a FIFO as the cover" 1 "in.png: is a FIFO" timeout 30 "$MEMFIT" hide --model "$MODEL" --cover "$T/in.png" --message hi \
  --out "$T/s.png"
run "reveal: /dev/zero as the stego" 1 "/dev/zero: is a character device" timeout 30 "$MEMFIT" reveal --model "$MODEL" \
  --stego /dev/zero --message
run "hide --message-file /dev/zero" 1 "message file /dev/zero is longer than [0-9]+ bytes" timeout 30 "$MEMFIT" hide \
  --model "$MODEL" --cover "$T/cover.png" --message-file /dev/zero --out "$T/s.png"

# ---- 6. the loss log: written as it goes (a killed run keeps it), continued on --resume
LR=(train steg --data generated --blocks 1 --growth 4 --size 16 --batch 2 --gen-count 4 --gen-size 32 --epoch-steps 4
    --val-count 2 --threads 1 --lr 1e-3)
"$MEMFIT" "${LR[@]}" --steps 100000 --log-every 0 --out "$T/K" --loss-log "$T/K.log" > "$T/K.out" 2>&1 & BG=$!
for _ in $(seq 600); do grep -q "step 5/" "$T/K.out" 2>/dev/null && break; sleep 0.1; done
n=$(wc -l < "$T/K.log" 2>/dev/null || echo 0)
kill -9 $BG 2>/dev/null; wait $BG 2>/dev/null; BG=
grep -q "step 5/" "$T/K.out" && ok || bad "the long run printed no 'step 5/' (see $T/K.out)"
[ "$n" -ge 5 ] && ok || bad "loss log of a running training has $n lines after update 5 was reported (not flushed per line)"

run "uninterrupted 6 updates" 0 "trained 6 updates" "$MEMFIT" "${LR[@]}" --steps 6 --log-every 1000 --out "$T/A" --loss-log "$T/A.log"
run "stopped after 4" 0 "stopped after update 4" "$MEMFIT" "${LR[@]}" --steps 6 --log-every 1000 --out "$T/B" --loss-log "$T/B.log" \
  --stop-after 4
echo "5 0.1 0.1 0.1" >> "$T/B.log"   # a line the killed run wrote after its checkpoint
printf '6 0.2' >> "$T/B.log"           # and a line cut by the kill
run "resume after 4 with the same --loss-log" 0 "line\(s\) after update 4 removed" "$MEMFIT" "${LR[@]}" --steps 6 --log-every 1000 \
  --out "$T/B" --loss-log "$T/B.log" --resume "$T/B/checkpoint.safetensors"
if cmp -s "$T/A.log" "$T/B.log"; then ok; else bad "the resumed loss log differs from the uninterrupted run's"; diff "$T/A.log" "$T/B.log" | head -5; fi

echo "cli_io: $pass passed, $fail failed"
[ "$fail" = 0 ]

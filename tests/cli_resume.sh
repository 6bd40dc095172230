#!/usr/bin/env bash
# cli_resume.sh — `memfit train steg --resume` continues the same run: a run stopped after update k and
# resumed to N logs, from k+1 on, the same per-update losses to the last bit as an uninterrupted N-update
# run (generated and folder data, mid-epoch and epoch-end checkpoints, another --workers, an old
# checkpoint without a data position, a run interrupted by SIGINT or SIGTERM); changed data settings are
# refused naming the setting.
# Usage: bash tests/cli_resume.sh path/to/memfit (from the repo root); KEEP=1 keeps the temporary folder.
set -u
MEMFIT=${1:?usage: cli_resume.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
T=$(mktemp -d /tmp/cli_resume.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

# same NAME FILE1 FILE2: the two loss logs are equal byte for byte (and not empty)
same() {
  if [ -s "$2" ] && cmp -s "$2" "$3"; then ok; else bad "$1: losses differ"; diff "$2" "$3" | head -6 | sed 's/^/    /'; fi
}
# tail_of LOG K: the lines of updates after K
tail_of() { awk -v k="$2" '$1 > k' "$1"; }

# an image folder: 6 PNGs of different sizes, two of them in a sub-folder
/usr/bin/python3 - "$T/imgs" <<'EOF'
import os, struct, sys, zlib
d = sys.argv[1]
os.makedirs(d + '/sub', exist_ok=True)
def png(path, w, h, px):
    raw = b''.join(b'\x00' + bytes(px(x, y, c) for x in range(w) for c in range(3)) for y in range(h))
    def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
                           chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
for i in range(6):
    png('%s/%simg%d.png' % (d, 'sub/' if i % 2 else '', i), 24 + i, 20 + 2 * i,
        lambda x, y, c, i=i: (x * (i + 3) + y * (7 - i) + c * 50 + (x * y) % 13) % 256)
EOF

# ---- generated images: 8 images in micro-batches of 2 pairs = 2 loader batches per pass, 3 updates per epoch
G=(train steg --blocks 1 --growth 4 --size 16 --batch 2 --gen-count 8 --gen-size 32 --steps 8 --epoch-steps 3 --val-count 2
   --lr 1e-3 --clip 5 --threads 1 --log-every 1000 --data generated)
run "uninterrupted 8 updates" 0 "planned .* exact" "$MEMFIT" "${G[@]}" --out "$T/A" --loss-log "$T/A.log"
[ "$(wc -l < "$T/A.log")" = 8 ] && ok || bad "uninterrupted: the loss log has $(wc -l < "$T/A.log") lines, not 8"
tail_of "$T/A.log" 5 > "$T/A.after5"
tail_of "$T/A.log" 3 > "$T/A.after3"

# stopped after update 5: mid-epoch (epoch 2 of 3) and mid-pass over the data (pass 3, its 2nd batch)
run "stop after update 5" 0 "stopped after update 5 of 8" "$MEMFIT" "${G[@]}" --out "$T/B" --loss-log "$T/B.log" --stop-after 5
head -n 5 "$T/A.log" > "$T/A.first5"
same "updates 1-5 before the stop" "$T/A.first5" "$T/B.log"
cp "$T/B/checkpoint.safetensors" "$T/ck5.safetensors"
run "resume from update 5 with 2 workers" 0 "data order continues at its epoch 3, batch 2" "$MEMFIT" "${G[@]}" --workers 2 \
  --out "$T/C" --loss-log "$T/C.log" --resume "$T/ck5.safetensors"
grep -q "note: --workers is 2 here, 1 in the checkpoint's run" "$T/out.txt" && ok || bad "resume: no note on the changed --workers"
same "updates 6-8 after resuming at 5 (bit-identical to the uninterrupted run)" "$T/A.after5" "$T/C.log"

# stopped after update 3 = an epoch end: the checkpoint the epoch-end path wrote (after validation)
run "stop after update 3 (epoch end)" 0 "stopped after update 3 of 8" "$MEMFIT" "${G[@]}" --out "$T/D" --stop-after 3
run "resume from update 3" 0 "resumed from .* at update 3" "$MEMFIT" "${G[@]}" --out "$T/E" --loss-log "$T/E.log" \
  --resume "$T/D/checkpoint.safetensors"
same "updates 4-8 after resuming at an epoch end" "$T/A.after3" "$T/E.log"

# the check can fail: starting the data order again gives other losses
run "resume with --restart-data" 0 "restart-data: the data order starts again" "$MEMFIT" "${G[@]}" --out "$T/F" \
  --loss-log "$T/F.log" --resume "$T/ck5.safetensors" --restart-data
if [ -s "$T/F.log" ] && ! cmp -s "$T/A.after5" "$T/F.log"; then ok; else bad "--restart-data gave the same losses: the comparison sees nothing"; fi

# an older checkpoint (no data.* / steg.* metadata, plain safetensors): resumes with one warning line,
# at the position an uninterrupted run would have (exact here: that run was never resumed)
/usr/bin/python3 - "$T/ck5.safetensors" "$T/old.safetensors" <<'EOF'
import json, struct, sys
buf = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', buf[:8])[0]
hdr = json.loads(buf[8:8 + n])
meta = hdr.get('__metadata__', {})
hdr['__metadata__'] = {k: v for k, v in meta.items() if not k.startswith(('data.', 'steg.', 'memfit.'))}
h = json.dumps(hdr, separators=(',', ':')).encode()
h += b' ' * (-len(h) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(h)) + h + buf[8 + n:])
EOF
run "resume an old checkpoint" 0 "warning: --resume .*old.safetensors has no data position" "$MEMFIT" "${G[@]}" --out "$T/H" \
  --loss-log "$T/H.log" --resume "$T/old.safetensors"
[ "$(grep -c "warning" "$T/out.txt")" = 1 ] && ok || bad "old checkpoint: expected one warning line"
same "old checkpoint: updates 6-8" "$T/A.after5" "$T/H.log"

# settings that change the data order are refused, naming the setting
run "resume with another --seed" 1 "--seed is 2 here but was 1" "$MEMFIT" "${G[@]}" --seed 2 --out "$T/X" --resume "$T/ck5.safetensors"
run "resume with another --gen-count" 1 "--gen-count is 16 here but was 8" "$MEMFIT" "${G[@]}" --gen-count 16 --out "$T/X" \
  --resume "$T/ck5.safetensors"
run "resume with another --batch" 1 "micro-batch .* is 1 here but was 2" "$MEMFIT" "${G[@]}" --batch 1 --out "$T/X" \
  --resume "$T/ck5.safetensors"
run "resume with --data DIR instead of generated" 1 "does not hold the images of the checkpoint's run \(--data generated" \
  "$MEMFIT" "${G[@]}" --data "$T/imgs" --val-fraction 0 --out "$T/X" --resume "$T/ck5.safetensors"
run "--restart-data without --resume" 2 "goes with --resume" "$MEMFIT" "${G[@]}" --restart-data --out "$T/X"
run "resume a finished run" 0 "nothing to train" "$MEMFIT" "${G[@]}" --out "$T/X" --resume "$T/A/checkpoint.safetensors"
run "--stop-after before the checkpoint" 2 "--stop-after 4: .* is already at update 5" "$MEMFIT" "${G[@]}" --stop-after 4 \
  --out "$T/X" --resume "$T/ck5.safetensors"

# ---- the image folder: 3 loader batches per pass; moved, changed
F=(train steg --val-fraction 0 --blocks 1 --growth 4 --size 16 --batch 1 --steps 7 --epoch-steps 4 --val-count 2 --lr 1e-3
   --threads 1 --log-every 1000)
F_IMGS=("${F[@]}" --data "$T/imgs")
F_MOVED=("${F[@]}" --data "$T/moved")
run "folder: uninterrupted 7 updates" 0 "planned .* exact" "$MEMFIT" "${F_IMGS[@]}" --out "$T/FA" --loss-log "$T/FA.log"
tail_of "$T/FA.log" 2 > "$T/FA.after2"
run "folder: stop after update 2" 0 "stopped after update 2 of 7" "$MEMFIT" "${F_IMGS[@]}" --out "$T/FB" --stop-after 2
run "folder: resume with 3 workers" 0 "data order continues at its epoch 1, batch 3" "$MEMFIT" "${F_IMGS[@]}" --workers 3 \
  --out "$T/FC" --loss-log "$T/FC.log" --resume "$T/FB/checkpoint.safetensors"
same "folder: updates 3-7 after resuming at 2" "$T/FA.after2" "$T/FC.log"
cp -r "$T/imgs" "$T/moved"
run "folder moved: same images" 0 "not the checkpoint's --data .* but it holds the same images" "$MEMFIT" "${F_MOVED[@]}" \
  --out "$T/FD" --loss-log "$T/FD.log" --resume "$T/FB/checkpoint.safetensors"
same "folder moved: updates 3-7" "$T/FA.after2" "$T/FD.log"
rm "$T/moved/img2.png"
run "folder with an image removed" 1 "--data .*moved does not hold the images of the checkpoint's run \(--data .*imgs, 6 images; this one has 5\)" \
  "$MEMFIT" "${F_MOVED[@]}" --out "$T/X" --resume "$T/FB/checkpoint.safetensors"
cp "$T/imgs/img0.png" "$T/imgs/sub/extra.png"
run "folder with an image added" 1 "images under --data .*imgs changed since the checkpoint was written \(6 images then, 7 now\)" \
  "$MEMFIT" "${F_IMGS[@]}" --out "$T/X" --resume "$T/FB/checkpoint.safetensors"
run "folder changed, --restart-data" 0 "resumed from" "$MEMFIT" "${F_IMGS[@]}" --out "$T/X" --resume "$T/FB/checkpoint.safetensors" \
  --restart-data

# ---- Ctrl-C / SIGTERM: the update in progress is finished, a checkpoint saved, exit 130 / 143; the resumed
# run continues bit-identically (the batch already taken ahead of the next update is where it resumes)
S=(train steg --blocks 1 --growth 4 --size 16 --batch 2 --gen-count 8 --gen-size 32 --steps 100000 --epoch-steps 3 --val-count 2
   --lr 1e-3 --clip 5 --threads 1 --log-every 1000 --data generated)
interrupt() { # NAME SIGNAL DIR: starts the long run, sends SIGNAL once it logged 4 updates; leaves the exit status in $irc
  "$MEMFIT" "${S[@]}" --out "$3" --loss-log "$3.log" --log "$3.jsonl" > "$3.out" 2>&1 &
  local pid=$! n=0
  for _ in $(seq 600); do n=$(wc -l 2>/dev/null < "$3.log" || echo 0); [ "${n:-0}" -ge 4 ] && break; sleep 0.05; done
  kill -s "$2" "$pid"
  wait "$pid"; irc=$?
}
interrupt "SIGINT" INT "$T/SA"
k=$(wc -l < "$T/SA.log")
[ "$irc" = 130 ] && ok || { bad "SIGINT: exit status $irc, expected 130"; tail -3 "$T/SA.out"; }
grep -Eq "interrupted by SIGINT \(Ctrl-C\) after update $k of 100000: saved; continue with the same options and --resume .*SA/checkpoint.safetensors" \
  "$T/SA.out" && ok || { bad "SIGINT: no 'interrupted ... after update $k' line"; tail -3 "$T/SA.out"; }
if [ "$k" -ge 4 ] && [ "$k" -lt 100000 ]; then
  # the reference: the same run uninterrupted to update k + 4
  run "uninterrupted to update k+4" 0 "stopped after update $((k + 4))" "$MEMFIT" "${S[@]}" --out "$T/SR" --loss-log "$T/SR.log" \
    --stop-after $((k + 4))
  head -n "$k" "$T/SR.log" > "$T/SR.first"
  same "SIGINT: updates 1-$k before the signal" "$T/SR.first" "$T/SA.log"
  tail_of "$T/SR.log" "$k" > "$T/SR.after"
  cp "$T/SA.jsonl" "$T/SB.jsonl"
  run "resume after SIGINT" 0 "resumed from .* at update $k" "$MEMFIT" "${S[@]}" --out "$T/SB" --loss-log "$T/SB.log" \
    --resume "$T/SA/checkpoint.safetensors" --stop-after $((k + 4)) --log "$T/SB.jsonl"
  same "SIGINT: updates after resuming (bit-identical to the uninterrupted run)" "$T/SR.after" "$T/SB.log"
  # --log: JSON lines; the interrupted run's records up to its checkpoint, then the resumed run's: updates 1..k+4
  # once each, with the --loss-log's losses, an end record per run (SIGINT, then stop-after) with every arena exact
  cat "$T/SA.log" "$T/SB.log" > "$T/SAB.log"
  /usr/bin/python3 - "$T/SB.jsonl" "$T/SAB.log" "$k" <<'EOF'
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
k = int(sys.argv[3])
ups = [r for r in recs if r["type"] == "update"]
assert [r["step"] for r in ups] == list(range(1, k + 5)), [r["step"] for r in ups]
losses = [line.split() for line in open(sys.argv[2])]
for r, l in zip(ups, losses):
    assert int(l[0]) == r["step"] and float(l[1]) == r["loss"] and float(l[2]) == r["guide"] and float(l[3]) == r["rec"], (r, l)
    assert r["lr"] > 0 and r["grad_norm"] > 0 and r["loss_scale"] == 1 and r["pairs_per_s"] > 0 and r["plan_bytes"] > 0, r
ends = [r for r in recs if r["type"] == "end"]
assert [e["ended"] for e in ends] == ["SIGINT", "stop-after"] and ends[0]["step"] == k and ends[1]["step"] == k + 4, ends
for e in ends:
    assert e["arenas"] and all(a["planned"] == a["measured"] for a in e["arenas"].values()), e
vals = [r for r in recs if r["type"] == "validation"]
assert vals and all(r["step"] % 3 == 0 and r["pairs"] == 2 for r in vals), vals
steps = [r["step"] for r in recs]
assert steps == sorted(steps), steps
EOF
  [ $? = 0 ] && ok || bad "--log: the JSON lines of the interrupted and resumed run are not as expected"
else bad "SIGINT: the run logged $k updates"; fi
interrupt "SIGTERM" TERM "$T/ST"
[ "$irc" = 143 ] && ok || { bad "SIGTERM: exit status $irc, expected 143"; tail -3 "$T/ST.out"; }
grep -q "interrupted by SIGTERM after update" "$T/ST.out" && [ -s "$T/ST/checkpoint.safetensors" ] && ok ||
  bad "SIGTERM: no 'interrupted' line or no checkpoint"

# --init: a new run from a checkpoint's weights. With a learning rate of 1e-9 one Adam update moves each weight
# by at most about 1e-9, so the model it writes equals the checkpoint's weights within 1e-9 plus the f32
# rounding of the update (2^-24 |w|); a run that ignored --init starts from random weights, far off.
run "--init from a checkpoint" 0 "weights from .*ck5.safetensors" "$MEMFIT" "${G[@]}" --steps 1 --out "$T/I" \
  --lr 1e-9 --init "$T/ck5.safetensors"
/usr/bin/python3 - "$T/ck5.safetensors" "$T/I/model.safetensors" <<'EOF2'
import json, struct, sys
def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k.startswith('param.'):
            s, e = v['data_offsets']
            out[k] = struct.unpack('<%df' % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a and sorted(a) == sorted(b), (len(a), len(b))
worst = max(abs(x - y) / (1.01e-9 + 2**-24 * abs(x)) for k in a for x, y in zip(a[k], b[k]))
assert worst <= 1, worst
EOF2
[ $? = 0 ] && ok || bad "--init: the weights of the new run are not the checkpoint's"
run "--init with other model settings" 1 "holds .* parameters, this model has|has no tensor 'param" "$MEMFIT" "${G[@]}" --blocks 2 \
  --out "$T/I2" --init "$T/ck5.safetensors"
run "--init with --resume" 2 "--init and --resume exclude each other" "$MEMFIT" "${G[@]}" --out "$T/I3" \
  --init "$T/ck5.safetensors" --resume "$T/ck5.safetensors"
run "--init of a file that is not a checkpoint" 1 "init: .*$T/imgs/img0.png" "$MEMFIT" "${G[@]}" --out "$T/I4" --init "$T/imgs/img0.png"

run "--log that cannot be written" 1 "writing --log /dev/full failed" "$MEMFIT" "${G[@]}" --out "$T/LF" --log /dev/full

echo "cli_resume: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_messages.sh — bad settings and bad input get errors that say what is wrong (issue 10, section 2):
# NaN and oversized byte sizes, PiB/EiB, a micro-batch that does not divide the effective batch, --resume
# on a model file, a valid 12-bit JPEG, eval --size larger than every image, too few images for a batch,
# images that are only too small, bad files in the validation split, a run where no sample loads.
# Usage: bash tests/cli_messages.sh path/to/memfit (from the repo root); KEEP=1 keeps the temporary folder.
set -u
MEMFIT=${1:?usage: cli_messages.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODEL=$ROOT/models/steg-small.safetensors
T=$(mktemp -d /tmp/cli_messages.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"
# norun NAME PATTERN: the last command's output lacks PATTERN
norun() { if grep -Eq -- "$2" "$T/out.txt"; then bad "$1: output has /$2/"; sed 's/^/    /' "$T/out.txt" | tail -5; else ok; fi; }

# ---- byte sizes (--budget nan was undefined behaviour)
run "--budget nan" 2 "'nan' is not a size" "$MEMFIT" plan steg --budget nan
run "--host-budget nan" 2 "--host-budget: 'nan' is not a size" "$MEMFIT" plan steg --host-budget nan
run "--budget inf" 2 "'inf' is not a size" "$MEMFIT" plan steg --budget inf
run "--budget 9EiB" 2 "'9EiB' is too large" "$MEMFIT" plan steg --budget 9EiB
run "--budget 1e30" 2 "too large" "$MEMFIT" plan steg --budget 1e30
run "--budget 1PiB" 0 "fit" "$MEMFIT" plan steg --budget 1PiB
run "--budget 2EiB" 0 "fit" "$MEMFIT" plan steg --budget 2EiB
run "hide --budget nan" 2 "not a size" "$MEMFIT" hide --model "$MODEL" --cover x.png --secret y.png --out "$T/s.png" --budget nan

# ---- a micro-batch that does not divide the effective batch
run "--micro-batch 3" 1 "micro-batch 3 does not divide the effective batch of 32.*1, 2, 4, 8, 16, 32" \
  "$MEMFIT" plan steg --preset seed-16gb --micro-batch 3 --budget 4GiB

# ---- images
/usr/bin/python3 - "$T" <<'EOF'
import os, struct, sys, zlib
t = sys.argv[1]
def png(path, w, h):
    raw = b''.join(b'\x00' + bytes(((x * 7 + y * 3 + c * 50) % 256) for x in range(w) for c in range(3)) for y in range(h))
    def chunk(k, b): return struct.pack('>I', len(b)) + k + b + struct.pack('>I', zlib.crc32(k + b) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
                           chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
# a valid 12-bit JPEG (SOF1, 8x8 grey, one DC/AC Huffman code each)
j = bytes([0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0] + [1] * 64 + [0xFF, 0xC1, 0, 11, 12, 0, 8, 0, 8, 1, 1, 0x11, 0] +
          [0xFF, 0xC4, 0, 20, 0x00, 1] + [0] * 15 + [0] + [0xFF, 0xC4, 0, 20, 0x10, 1] + [0] * 15 + [0] +
          [0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0, 0x3F, 0xFF, 0xD9])
open(t + '/twelve.jpg', 'wb').write(j)
png(t + '/cover.png', 32, 32)
for d, n, size in [('few', 3, 32), ('small', 12, 24)]:
    os.makedirs(t + '/' + d)
    for i in range(n): png('%s/%s/g%02d.png' % (t, d, i), size, size)
for i in range(4): png('%s/small/tiny%d.png' % (t, i), 8, 8)
os.makedirs(t + '/valsmall')
for i in range(12): png('%s/valsmall/g%02d.png' % (t, i), 24, 24)
for i in range(8): png('%s/valsmall/tiny%d.png' % (t, i), 8, 8)
os.makedirs(t + '/val')
for i in range(12): png('%s/val/g%02d.png' % (t, i), 24, 24)
for i in range(8): open('%s/val/bad%d.png' % (t, i), 'w').write('not an image')
os.makedirs(t + '/broken')
png(t + '/whole.png', 24, 24)
for i in range(3):  # valid headers, truncated data: they pass the folder scan and fail when loaded
    b = open(t + '/whole.png', 'rb').read()
    open('%s/broken/b%d.png' % (t, i), 'wb').write(b[:60])
EOF
run "12-bit JPEG" 1 "12-bit JPEG.*unsupported|unsupported 12-bit" "$MEMFIT" hide --model "$MODEL" --cover "$T/twelve.jpg" --secret "$T/cover.png" --out "$T/s.png"
norun "12-bit JPEG is not corrupt" "corrupt"

# ---- eval --size larger than every image: refused from the headers
run "eval --size too large" 1 "no pair has two images of at least 4096x4096.*largest image is 32x32" \
  "$MEMFIT" eval --model "$MODEL" --data "$T/few" --size 4096

# ---- --resume with a model file (parameters only): the real error, no "older memfit" warning
run "--resume model file" 1 "a model file \(parameters only\), not a training checkpoint" \
  "$MEMFIT" train steg --data generated --preset small --size 16 --batch 2 --steps 1 --threads 1 --out "$T/r" --resume "$MODEL"
norun "--resume model file: no older-memfit warning" "older memfit"

# ---- too few images for one micro-batch: a real option is suggested
run "too few images" 1 "fewer than the 8 one micro-batch takes.*--batch" \
  "$MEMFIT" train steg --data "$T/few" --preset small --size 16 --batch 4 --steps 1 --threads 1 --out "$T/f"
norun "too few images: no drop_last" "drop_last"

# ---- images that are only too small are not counted as unreadable
run "too small images" 0 "0 unreadable files skipped; 4 images smaller than --size 16 skipped" \
  "$MEMFIT" train steg --data "$T/small" --preset small --size 16 --batch 2 --steps 2 --val-fraction 0 --val-count 2 --threads 1 --out "$T/s"

run "too small validation images" 0 "validation: skipping: .*tiny.*smaller than the 16x16 crop" \
  "$MEMFIT" train steg --data "$T/valsmall" --preset small --size 16 --batch 1 --steps 1 --val-fraction 0.5 --val-count 8 --threads 1 --out "$T/vs"
grep -q " 0 unreadable files skipped; [1-9][0-9]* images smaller than --size 16 skipped" "$T/out.txt" && ok ||
  { bad "too small validation images: counted as unreadable"; grep "unreadable" "$T/out.txt" | sed 's/^/    /'; }

# ---- bad files in the validation split are warned about (8 bad files: every one is named once)
run "validation split bad files" 0 "trained" \
  "$MEMFIT" train steg --data "$T/val" --preset small --size 16 --batch 1 --steps 1 --val-fraction 0.5 --val-count 1 --threads 1 --out "$T/v"
n=$(grep -c "bad[0-9].png: skipped" "$T/out.txt")
if [ "$n" = 8 ]; then ok; else bad "validation split bad files: $n of 8 bad files warned about"; fi

# ---- no sample loads: the loader's error, without a spurious "measured memory differs" bug report
run "no sample loads" 1 "no sample could be loaded" \
  "$MEMFIT" train steg --data "$T/broken" --preset small --size 16 --batch 1 --steps 2 --val-fraction 0 --threads 1 --out "$T/b"
norun "no sample loads: no memory bug report" "differs from the plan"

# ---- hand-edited checkpoint metadata (checksums recomputed, so only the values are off) is refused naming key and value
# edit_meta FILE KEY VALUE: sets one metadata value of a memfit safetensors file and fixes memfit.header_crc32
edit_meta() {
  /usr/bin/python3 - "$@" <<'EOF'
import json, struct, sys, zlib
path, key, value = sys.argv[1:4]
b = open(path, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['__metadata__'][key] = value
h['__metadata__']['memfit.header_crc32'] = '00000000'
hdr = json.dumps(h, separators=(',', ':')).encode()
hdr += b' ' * (-len(hdr) % 8)
len8 = struct.pack('<Q', len(hdr))
crc = '%08x' % (zlib.crc32(len8 + hdr) & 0xffffffff)
hdr = hdr.replace(b'"memfit.header_crc32":"00000000"', ('"memfit.header_crc32":"%s"' % crc).encode())
open(path, 'wb').write(len8 + hdr + b[8 + n:])
EOF
}
R=(train steg --data "$T/small" --preset small --size 16 --batch 2 --val-fraction 0 --val-count 2 --threads 1)
run "checkpoint to edit" 0 "saved" "$MEMFIT" "${R[@]}" --steps 1 --out "$T/ck"
for kv in "step nan" "step 1e30" "step 4.5" "step -5" "micro -1" "rng abc" "clean_steps 1e300" "loss_scale 0"; do
  set -- $kv
  cp "$T/ck/checkpoint.safetensors" "$T/ck/edited.safetensors"
  edit_meta "$T/ck/edited.safetensors" "$1" "$2"
  run "checkpoint $1=$2" 1 "metadata '$1' is '$2'.*(whole number|finite number)" "$MEMFIT" "${R[@]}" --steps 2 --out "$T/ck2" \
    --resume "$T/ck/edited.safetensors"
done
for kv in "data.epoch -1" "data.batch 99999999999999999999" "data.seed abc" "data.id 0"; do
  set -- $kv
  cp "$T/ck/checkpoint.safetensors" "$T/ck/edited.safetensors"
  edit_meta "$T/ck/edited.safetensors" "$1" "$2"
  run "checkpoint $1=$2" 1 "metadata '$1' is '$2'" "$MEMFIT" "${R[@]}" --steps 2 --out "$T/ck2" --resume "$T/ck/edited.safetensors"
done

echo "cli_messages: $pass passed, $fail failed"
[ "$fail" = 0 ]

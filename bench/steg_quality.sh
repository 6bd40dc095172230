#!/usr/bin/env bash
# steg_quality.sh — the steganography quality figures of issue 19: `memfit eval` of a model on the photos of
# ../shared/data/photos at 256 and 512 (hiding and recovery PSNR/SSIM on RGB and Y after 8-bit rounding, the
# per-pair minimum, message-mode stego PSNR and bit accuracy at each cover's full capacity), and the same on
# those photos made half white (the right half of each photo set to 255: a clipped cover). The half-white copies
# are written by Debian's python3-pil (installed here when missing).
# usage: bash bench/steg_quality.sh [MODEL] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/steg-small.safetensors}; threads=${2:-2}
photos=../shared/data/photos
[ -d "$photos" ] || { echo "steg_quality: $photos absent: nothing to measure"; exit 0; }
B=${MEMFIT_BUILD:-build}
[ -x "$B/memfit" ] || bash scripts/build.sh >/dev/null
/usr/bin/python3 -c "import PIL" 2>/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pil >/dev/null; }
out=${OUT:-out/steg-quality}
rm -rf "$out"; mkdir -p "$out/halfwhite"
/usr/bin/python3 - "$photos" "$out/halfwhite" <<'EOF'
import os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(src)):
    try:
        im = Image.open(os.path.join(src, f)).convert("RGB")
    except OSError:
        continue
    w, h = im.size
    im.paste((255, 255, 255), (w // 2, 0, w, h))  # the right half of the whole photo: half of every centre crop
    im.save(os.path.join(dst, os.path.splitext(f)[0] + ".png"))
EOF
for set in photos halfwhite; do
  dir=$photos; [ $set = halfwhite ] && dir=$out/halfwhite
  for size in 256 512; do
    echo "== $set, ${size}x$size centre crops: $B/memfit eval --model $model --data $dir --size $size --threads $threads"
    "$B"/memfit eval --model "$model" --data "$dir" --size "$size" --threads "$threads" --json > "$out/$set-$size.json" \
      2> "$out/$set-$size.txt" || { cat "$out/$set-$size.txt"; exit 1; }
    grep -E "^(means|without|messages)" "$out/$set-$size.txt" || true
    /usr/bin/python3 - "$out/$set-$size.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["pairs"]
lo = lambda k: min(x[k] for x in p)
print("per-pair minimum: hiding PSNR %.2f dB, recovery PSNR %.2f dB, message-mode stego PSNR %.2f dB; messages intact %d of %d"
      % (lo("hide_psnr"), lo("rec_psnr"), lo("message_hide_psnr"), sum(x["message_ok"] for x in p), len(p)))
EOF
  done
done

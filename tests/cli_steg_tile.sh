#!/usr/bin/env bash
# cli_steg_tile.sh — hide / reveal / eval inside --budget with the shipped model: whole image or tiles,
# messages through tiles, budgets too small (exit 1, naming --budget), bad --budget/--tile/--halo.
# Usage: bash tests/cli_steg_tile.sh path/to/memfit
set -u
MEMFIT=${1:?usage: cli_steg_tile.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
MODEL=$(pwd)/models/steg-small.safetensors
T=$(mktemp -d /tmp/cli_steg_tile.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=2
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"
if [ ! -f "$MODEL" ]; then echo "cli_steg_tile: $MODEL absent: skipped"; exit 0; fi

# test images (zlib PNG from a few lines of Python): an odd-sized cover and a secret
/usr/bin/python3 - "$T" <<'EOF'
import sys, zlib, struct, random
d = sys.argv[1]
def png(path, w, h, px):
    raw = b''.join(b'\x00' + bytes(px(x, y, c) for x in range(w) for c in range(3)) for y in range(h))
    def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
                           chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
random.seed(2)
png(d + '/cover.png', 241, 223, lambda x, y, c: (x * 3 + y * 2 + c * 70 + (x // 40 + y // 30) * 40 + random.randint(0, 6)) % 256)
png(d + '/secret.png', 241, 223, lambda x, y, c: (x * 5 - y * 3 + c * 90) % 256)
png(d + '/large.png', 481, 401, lambda x, y, c: (x * 2 + y + c * 50 + (x // 60 + y // 50) * 30) % 256)
png(d + '/secret2.png', 250, 250, lambda x, y, c: (x * 4 + y * 7 + c * 30) % 256)
EOF
M=$MODEL
MSG="tiles keep every bit of this message"

# the one line: whole image (the default budget is half the memory or MemAvailable) or tiles
run "whole image, default budget" 0 "hide: whole image 242x224 in one graph; plan .* budget \(default: (half of|MemAvailable)" \
  "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/st_whole.png"
run "forced tiles" 0 "hide: 16 tiles \(4x4\) of 64x64 \+ 70-pixel halo \(receptive radius 70\): 204x204 graphs, .*; plan .* per tile" \
  "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/st_tiles.png" --tile 64
# a budget below the whole-image plan (482x402: about 75 MiB): tiles as large as fit, all inside the budget
run "budget forces tiles" 0 "hide: [0-9]+ tiles .* of the 48.00 MiB budget \(--budget 48MiB\)" \
  "$MEMFIT" hide --model "$M" --cover "$T/large.png" --secret "$T/cover.png" --out "$T/st_budget.png" --budget 48MiB
total=$(sed -n 's/.*= \([0-9.]*\) MiB of the 48.00 MiB budget.*/\1/p' "$T/out.txt")
awk -v t="${total:-99}" 'BEGIN { exit !(t <= 48) }' && ok || bad "budget 48MiB: the printed total '$total MiB' is over the budget"
run "reveal in a budget" 0 "reveal: [0-9]+ tiles .* of the 40.00 MiB budget" \
  "$MEMFIT" reveal --model "$M" --stego "$T/st_budget.png" --out "$T/rv_budget.png" --budget 40MiB

# a message hidden in tiles comes back intact, read by tiles and by one whole-image pass
run "hide a message in tiles" 0 "message: 36 bytes" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --message "$MSG" \
  --out "$T/msg.png" --tile 80
run "reveal it by tiles" 0 "$MSG" "$MEMFIT" reveal --model "$M" --stego "$T/msg.png" --message --tile 96
grep -q "reveal: 9 tiles (3x3) of 96x96" "$T/out.txt" && ok || bad "reveal --tile 96: no '9 tiles (3x3) of 96x96' line"
run "reveal it whole" 0 "$MSG" "$MEMFIT" reveal --model "$M" --stego "$T/msg.png" --message

# eval by tiles prints the same means as eval of the whole crops
run "eval whole" 0 "means over 1 pairs" "$MEMFIT" eval --model "$M" --pairs <(echo "$T/large.png $T/secret2.png") --size 240 --no-messages
grep "^means over" "$T/out.txt" > "$T/eval_whole.txt"
run "eval by tiles" 0 "eval hide graph: 9 tiles" "$MEMFIT" eval --model "$M" --pairs <(echo "$T/large.png $T/secret2.png") --size 240 \
  --no-messages --tile 80
# tiles and the whole crop differ by f32 rounding (GEMM kernels round a pixel by its column), which can
# move an 8-bit value by one level (tests/test_steg_tile.c): a few such values move a PSNR by about
# 1e-5 dB, so each printed mean may differ by one unit of its last printed digit, never more
grep "^means over" "$T/out.txt" > "$T/eval_tiles.txt"
same_means() { # each number on the two lines within one unit of its last printed digit
  awk 'NR == FNR { n = split($0, a, /[^0-9.]+/); next }
       { seen = 1; m = split($0, b, /[^0-9.]+/); if (m != n) bad = 1
         for (i = 1; i <= n && !bad; i++) {
           d = index(a[i], ".") ? length(a[i]) - index(a[i], ".") : 0
           if ((a[i] - b[i]) ^ 2 > (10 ^ -d) ^ 2 * 1.0001) bad = 1 } }
       END { exit (bad || !seen) }' "$1" "$2"
}
[ -s "$T/eval_tiles.txt" ] && same_means "$T/eval_whole.txt" "$T/eval_tiles.txt" && ok ||
  bad "eval by tiles: other means than whole crops: $(cat "$T/eval_whole.txt") / $(cat "$T/eval_tiles.txt")"

# too small for any tile: exit 1, naming --budget and the size that would fit; that size then works
run "budget too small (hide)" 1 "--budget 2MiB is too small .*smallest tile \(70x70 pixels with a 70-pixel halo: a 210x210 graph\).* Give --budget [0-9]+MiB or more" \
  "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/x.png" --budget 2MiB
need=$(sed -n 's/.*Give --budget \([0-9]*MiB\) or more.*/\1/p' "$T/out.txt")
run "the size it names fits" 0 "tiles .* budget \(--budget $need\)" \
  "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/x.png" --budget "${need:-0}"
[ -s "$T/x.png" ] && ok || bad "no stego from the budget the message named"
run "budget too small (reveal)" 1 "--budget 100KiB is too small" "$MEMFIT" reveal --model "$M" --stego "$T/st_whole.png" --out "$T/x.png" --budget 100KiB
run "budget too small (eval)" 1 "--budget 1MiB is too small" "$MEMFIT" eval --model "$M" --pairs <(echo "$T/cover.png $T/secret.png") --size 64 --budget 1MiB
run "bad budget" 2 "--budget: 'lots' is not a size" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/y.png" --budget lots
run "odd halo" 1 "halo 69: must be a multiple of 2" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" \
  --out "$T/y.png" --tile 64 --halo 69
run "halo without tile" 2 "--halo goes with --tile" "$MEMFIT" reveal --model "$M" --stego "$T/st_whole.png" --out "$T/y.png" --halo 40
run "short halo warns" 0 "warning: --halo 40 is less than the network's receptive radius 70" "$MEMFIT" reveal --model "$M" \
  --stego "$T/st_whole.png" --out "$T/y.png" --tile 64 --halo 40
run "tiles over the budget" 1 "tiles of 64 need .* more than the .* budget \(see --tile and --budget\)" "$MEMFIT" hide --model "$M" \
  --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/y.png" --tile 64 --budget 5MiB
run "bad tile" 2 "--tile" "$MEMFIT" hide --model "$M" --cover "$T/cover.png" --secret "$T/secret.png" --out "$T/y.png" --tile 1

echo "cli_steg_tile: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_vqgan_quality.sh — the tools of the VQGAN quality benchmark (bench/vqgan_quality.sh): bench_vqgan
# --write-generated (memfit's generated images as PNG files), --dump-model (a model file that --init and --eval read)
# and --eval (reconstruction PSNR/SSIM of centre crops, codebook usage): the printed PSNR of each image against one
# computed here from the input and reconstruction tiles of its --grid PNG (in float64, python3-pil), the usage
# figures against each other, and bad input.
# Usage: bash tests/cli_vqgan_quality.sh path/to/memfit (from the repo root; bench_vqgan is beside it).
set -u
MEMFIT=${1:?usage: cli_vqgan_quality.sh path/to/memfit}
BV=$(dirname "$MEMFIT")/bench_vqgan
T=$(mktemp -d /tmp/cli_vqgan_quality.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

mkdir -p "$T/img"
run "write generated" 0 "wrote 3 generated 48x48 images" "$BV" --write-generated "$T/img" --count 3 --size 48 --seed 2
n=$(ls "$T/img" | grep -c '^gen-00000[0-2]\.png$')
[ "$n" = 3 ] && ok || bad "write generated: $n of 3 PNG files"
run "dump model" 0 '"impl": "memfit"' "$BV" --preset tiny --size 32 --batch 2 --steps 0 --warmup 0 --threads 1 --dump-model "$T/m.safetensors"
# the model file starts a training run (--init) of the same settings
run "init from the dump" 0 "weights from" "$MEMFIT" train vqgan --preset tiny --size 32 --batch 2 --steps 1 --data "$T/img" \
  --val-split 0 --init "$T/m.safetensors" --threads 1 --out "$T/run"
run "eval" 0 '"psnr": ' "$BV" --eval "$T/m.safetensors" --preset tiny --photos "$T/img" --crop 32 --threads 1 --grid "$T/g.png"
cp "$T/out.txt" "$T/eval.txt"
grep -q "mean over 3 photos (32x32 centre crops" "$T/eval.txt" && ok || bad "eval: no mean over the 3 images"
/usr/bin/python3 - "$T/eval.txt" <<'EOF' && ok || bad "eval: usage figures disagree"
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
# 3 images x 16 latent positions (32 px / 2): at most 48 codes; perplexity (exp entropy) at most the codes used
assert 1 <= j["codes_used"] <= min(j["codes"], 48), j
assert abs(j["code_usage"] - j["codes_used"] / j["codes"]) < 1e-4, j
assert 1 - 1e-9 <= j["perplexity"] <= j["codes_used"] + 1e-6, j
assert 0 < j["ssim"] < 1, j
EOF
if /usr/bin/python3 -c "import PIL, numpy" 2>/dev/null; then
  # the grid: a label row, then one row per image of input | reconstruction, 32 px tiles 2 px apart; both tiles are
  # what the metric read (8-bit values), so the PSNR of the tiles is the printed one
  /usr/bin/python3 - "$T/eval.txt" "$T/g.png" <<'EOF' && ok || bad "eval: the printed PSNR is not that of the grid's tiles"
import math, re, sys
import numpy as np
from PIL import Image
lines = [l for l in open(sys.argv[1]) if re.search(r"PSNR +[-0-9.]+ dB +SSIM", l)]
g = np.asarray(Image.open(sys.argv[2]).convert("RGB")).astype(np.float64) / 255
S, rows = 32, len(lines)
top = g.shape[0] - rows * S - (rows - 1) * 2
assert rows == 3 and g.shape[1] == 2 * S + 2 and top >= 0, (rows, g.shape)
for r, l in enumerate(lines):
    y = top + r * (S + 2)
    a, b = g[y:y + S, :S], g[y:y + S, S + 2:]
    want = 10 * math.log10(1 / np.mean((a - b) ** 2))
    got = float(re.search(r"PSNR +([-0-9.]+) dB", l).group(1))
    assert abs(got - want) <= 0.006, (l, want)
print("psnr of %d tiles agrees" % rows)
EOF
else
  echo "cli_vqgan_quality: python3-pil absent: the PSNR against the grid is not checked"; ok
fi
# bad input: a model of other settings, a missing folder
run "eval: model of another preset" 1 "m.safetensors.*(no tensor|parameters|another model)" "$BV" --eval "$T/m.safetensors" --preset low --photos "$T/img" --crop 32
run "eval: missing photos" 1 "nowhere" "$BV" --eval "$T/m.safetensors" --preset tiny --photos "$T/nowhere" --crop 32
run "eval: no --photos" 2 "needs --photos" "$BV" --eval "$T/m.safetensors"
echo "cli_vqgan_quality: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

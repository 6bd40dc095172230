#!/usr/bin/env bash
# vqgan_quality.sh — the VQGAN quality benchmark of issue 13: trains the preset `low` with memfit and the same model
# and recipe in PyTorch (Debian's python3-torch, bench/vqgan_quality_torch.py) for the same wall time, from the same
# initial parameters, on the same images (memfit's generated set, written once as PNG files that both sides read),
# then measures each side's model with ONE implementation (bench_vqgan --eval: memfit's forward, data/metrics.c):
# reconstruction PSNR and SSIM (11x11 Gaussian, after 8-bit rounding) of the 128 x 128 centre crops of every photo in
# ../shared/data/photos (never seen in training) and the codebook usage and perplexity over their codes; the initial
# model's figures are the floor.
# CONCURRENT=SECONDS runs both at the same time, one thread each (on this 2-core machine), each stopping at SECONDS of
# wall time: memfit by SIGTERM (it finishes the update in progress, writes its checkpoint and exits 143), PyTorch by
# its own clock after the update in progress. Without CONCURRENT they run one after the other, SECONDS (default 3600)
# each.
# usage: [CONCURRENT=3600] bash bench/vqgan_quality.sh [SECONDS] [THREADS] [extra memfit train vqgan options...]
# recipe (environment, both sides): SIZE (training crop, default 64), BATCH (8), LR (1e-4), DISC_START (updates before
# the GAN terms start, default 400), COUNT (generated training images, default 2048, written at 128 x 128), SEED (1)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${CONCURRENT:-${1:-3600}}; threads=${2:-1}; shift $(( $# < 2 ? $# : 2 ))
SIZE=${SIZE:-64}; BATCH=${BATCH:-8}; LR=${LR:-1e-4}; DISC_START=${DISC_START:-400}; COUNT=${COUNT:-2048}; SEED=${SEED:-1}
photos=../shared/data/photos
B=${MEMFIT_BUILD:-build}
[ -x "$B/memfit" ] && [ -x "$B/bench_vqgan" ] || bash scripts/build.sh >/dev/null
/usr/bin/python3 -c "import PIL" 2>/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pil >/dev/null; }
out=${OUT:-out/vqgan-quality}
rm -rf "$out"; mkdir -p "$out/data"
export OMP_NUM_THREADS=$threads
echo "== data: memfit's generated images, $COUNT of 128x128 (seed $SEED), written once for both sides"
"$B"/bench_vqgan --write-generated "$out/data" --count "$COUNT" --size 128 --seed "$SEED"
echo "== initial parameters (memfit's initialisation, graph seed 3), for both sides"
"$B"/bench_vqgan --preset low --size "$SIZE" --batch "$BATCH" --steps 0 --warmup 0 --threads "$threads" \
  --dump "$out/init-plain.safetensors" --dump-model "$out/init.safetensors" >/dev/null
recipe="preset low, $SIZE px random crops + flips of the 128 px images, batch $BATCH, Adam lr $LR betas (0.5, 0.9), L1 + codebook"
recipe="$recipe + adaptive-weight hinge GAN from update $DISC_START, f32, $threads thread(s)"
torch_fit() { # SECONDS
  /usr/bin/python3 bench/vqgan_quality_torch.py --params "$out/init-plain.safetensors" --data "$out/data" \
    --out "$out/torch.safetensors" --seconds "$1" --preset low --size "$SIZE" --batch "$BATCH" --lr "$LR" \
    --disc-start "$DISC_START" --threads "$threads" --seed "$SEED" > "$out/torch.fit" 2> "$out/torch.log"
}
if [ -n "${CONCURRENT:-}" ]; then torch_fit "$secs" & tpid=$!; fi
echo "== memfit: $recipe; stopped by SIGTERM after $secs s"
t0=$(date +%s.%N)
set +e
/usr/bin/time -f "%M" -o "$out/memfit.rss" timeout -s TERM "$secs" "$B"/memfit train vqgan --preset low --size "$SIZE" \
  --batch "$BATCH" --micro-batch "$BATCH" --data "$out/data" --val-split 0 --init "$out/init.safetensors" --lr "$LR" \
  --disc-start "$DISC_START" --steps 100000000 --threads "$threads" --workers 1 --seed "$SEED" --out "$out/memfit" \
  --log-every 60 "$@" > "$out/memfit.log" 2>&1
rc=$?
set -e
t1=$(date +%s.%N)
grep -v "^  \[" "$out/memfit.log" | tail -n 8 || true
[ "$rc" = 124 ] || [ "$rc" = 143 ] || [ "$rc" = 0 ] || { echo "memfit train failed (exit $rc): see $out/memfit.log"; exit 1; }
if [ -n "${CONCURRENT:-}" ]; then wait "$tpid"; else torch_fit "$secs"; fi
echo "== PyTorch ($(/usr/bin/python3 -c 'import torch; print(torch.__version__)')): the same recipe"
tail -n 3 "$out/torch.log" || true
ck="$out/memfit/checkpoint.safetensors"
[ -f "$ck" ] || { echo "memfit wrote no checkpoint ($ck): see $out/memfit.log"; exit 1; }
echo "$t0 $t1" > "$out/memfit.wall"
if [ ! -d "$photos" ]; then echo "vqgan_quality: $photos absent: no reconstruction figures"; exit 0; fi
for side in init memfit torch; do
  case $side in
    init) m="$out/init.safetensors"; what="the initial model (step 0, the floor)" ;;
    memfit) m="$ck"; what="memfit's model after $secs s" ;;
    torch) m="$out/torch.safetensors"; what="PyTorch's model after $secs s" ;;
  esac
  echo "== $what: $photos, 128x128 centre crops"
  "$B"/bench_vqgan --eval "$m" --photos "$photos" --crop 128 --threads "$threads" --grid "$out/recon-$side.png" | tee "$out/eval-$side.txt"
done
/usr/bin/python3 - "$out" "$BATCH" <<'EOF' | tee "$out/table.md"
import json, sys
out, batch = sys.argv[1], int(sys.argv[2])
t0, t1 = map(float, open(out + "/memfit.wall").read().split())
end = [json.loads(l) for l in open(out + "/memfit/log.jsonl") if '"type": "end"' in l][-1]
tf = json.loads(open(out + "/torch.fit").read().strip().splitlines()[-1])
mrss = int(open(out + "/memfit.rss").read().split()[-1]) * 1024
ev = {s: json.loads(open("%s/eval-%s.txt" % (out, s)).read().strip().splitlines()[-1]) for s in ("init", "memfit", "torch")}
rows = [("initial model (step 0)", None, None, None, ev["init"]),
        ("memfit", end["updates"], t1 - t0, mrss, ev["memfit"]),
        ("PyTorch", tf["updates"], tf["seconds"], tf["peak_rss_bytes"], ev["torch"])]
print("| model | updates | images/s | PSNR (dB) | SSIM | codebook usage | perplexity | peak RSS |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name, upd, secs, rss, e in rows:
    print("| %s | %s | %s | %.2f | %.4f | %.1f%% (%d of %d) | %.1f | %s |" % (
        name, "-" if upd is None else upd, "-" if upd is None else "%.3f" % (upd * batch / secs), e["psnr"], e["ssim"],
        100 * e["code_usage"], e["codes_used"], e["codes"], e["perplexity"], "-" if rss is None else "%.0f MiB" % (rss / 2**20)))
print("(images/s: updates x batch %d / wall seconds of the process, startup and the last checkpoint included; "
      "memfit %.0f s, PyTorch %.0f s; memfit's trainer alone: %d updates in %.0f s)" % (batch, t1 - t0, tf["seconds"], end["updates"], end["seconds"]))
EOF

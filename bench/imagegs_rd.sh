#!/usr/bin/env bash
# imagegs_rd.sh — Image-GS's rate-distortion against JPEG (issue 14): for each photograph (../shared/data/photos, and
# with WALLPAPERS=1 photographs of Debian's plasma-workspace-wallpapers, installed here with apt-get), fit it with
# `memfit train imagegs` at a few Gaussian counts (parameters quantised to QBITS bits, straight-through) and put PSNR
# and SSIM beside JPEG's (libjpeg-turbo, bench/jpeg_rd.c) at the same bits per pixel or just below.
# COUNTS are Gaussians for a 512x512 image; each image gets them scaled by its pixels / 512^2 (rounded to 100), so
# every image is fitted at about the same bits per pixel (SCALE_COUNTS=0: the counts as given, for every image).
# usage: [STEPS=N] [QBITS=B] [COUNTS="1000 4000"] [SCALE_COUNTS=0|1] [IMAGES="a.png b.jpg"]
#        [WALLPAPERS=1 [WALLNAMES="Path Autumn"]] bash bench/imagegs_rd.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
B=${MEMFIT_BUILD:-build}
steps=${STEPS:-500}; qbits=${QBITS:-8}; counts=${COUNTS:-"1000 4000"}
[ -x "$B/memfit" ] && [ -x "$B/jpeg_rd" ] || bash scripts/build.sh >/dev/null
images=${IMAGES:-$(ls ../shared/data/photos/*.png ../shared/data/photos/*.jpg 2>/dev/null)}
if [ "${WALLPAPERS:-0}" = 1 ]; then
  if [ ! -d /usr/share/wallpapers ] || ! ls /usr/share/wallpapers/*/contents/images/*.jpg >/dev/null 2>&1; then
    apt-get install -y plasma-workspace-wallpapers >/dev/null 2>&1 || echo "(plasma-workspace-wallpapers could not be installed; photos only)"
  fi
  # the photographs among them (the 3840x2160 and most 5120x2880 ones are rendered art); their smaller names
  # (640x480.jpg ... 2560x1440.jpg) are links to the one 2560x1600 file, so every fit is at 2560x1600
  for w in ${WALLNAMES:-Path Autumn}; do
    f=/usr/share/wallpapers/$w/contents/images/2560x1600.jpg
    if [ -r "$f" ]; then images="$images $f"; else echo "(no $f)"; fi
  done
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "Image-GS vs JPEG: $steps updates per fit, parameters at $qbits bits, Gaussian counts: $counts$([ "${SCALE_COUNTS:-1}" = 1 ] && echo " per 512x512, scaled by each image's pixels"); $threads thread(s)"
printf "%-28s %9s %8s %9s %7s | %5s %8s %9s %7s | %s\n" image gaussians bpp "PSNR dB" SSIM "JPEG q" bpp "PSNR dB" SSIM better
for img in $images; do
  name=$(basename "$img"); case $img in /usr/share/wallpapers/*) name=$(cut -d/ -f5 <<<"$img")-$name;; esac
  in=$img
  read -r iw ih < <("$B"/jpeg_rd --size "$img")
  for n0 in $counts; do
    n=$n0
    [ "${SCALE_COUNTS:-1}" = 1 ] && n=$(awk -v n="$n0" -v p=$((iw * ih)) 'BEGIN { c = int(n * p / 262144 / 100 + 0.5) * 100; print (c < 100 ? 100 : c) }')
    out="$tmp/$name-$n"
    if ! OMP_NUM_THREADS=$threads "$B"/memfit train imagegs --image "$in" --gaussians "$n" --steps "$steps" \
         --epoch-steps "$steps" --add-every $((steps / 10)) --quant-bits "$qbits" --out "$out" --threads "$threads" \
         --log-every 0 >"$out.log" 2>&1; then
      printf "%-28s %9s fit failed: %s\n" "$name" "$n" "$(tail -1 "$out.log")"
      continue
    fi
    line=$(grep -E "^epoch [0-9]+/[0-9]+ PSNR" "$out.log" | tail -1)
    psnr=$(sed -E 's/.*PSNR ([0-9.]+) dB.*/\1/' <<<"$line"); ssim=$(sed -E 's/.*SSIM ([0-9.]+),.*/\1/' <<<"$line")
    bpp=$(sed -E 's/.* ([0-9.]+) bpp.*/\1/' <<<"$line")
    j=$("$B"/jpeg_rd "$img" "$bpp")
    if grep -q "below JPEG" <<<"$j"; then
      printf "%-28s %9s %8s %9s %7s | %s\n" "$name" "$n" "$bpp" "$psnr" "$ssim" "JPEG cannot go this low: $j"
      continue
    fi
    jq=$(sed -E 's/.*quality ([0-9]+),.*/\1/' <<<"$j"); jb=$(sed -E 's/.*, ([0-9.]+) bpp.*/\1/' <<<"$j")
    jp=$(sed -E 's/.*PSNR ([0-9.]+) dB.*/\1/' <<<"$j"); js=$(sed -E 's/.*SSIM ([0-9.]+).*/\1/' <<<"$j")
    better=$(awk -v a="$psnr" -v b="$jp" -v c="$ssim" -v d="$js" 'BEGIN { printf "%s PSNR, %s SSIM", (a > b ? "Image-GS" : "JPEG"), (c > d ? "Image-GS" : "JPEG") }')
    printf "%-28s %9s %8s %9s %7s | %5s %8s %9s %7s | %s\n" "$name" "$n" "$bpp" "$psnr" "$ssim" "$jq" "$jb" "$jp" "$js" "$better"
  done
done

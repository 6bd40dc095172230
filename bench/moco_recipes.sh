#!/usr/bin/env bash
# moco_recipes.sh — a short sweep of MoCo v2 recipes on Fashion-MNIST (issue 12): each recipe trains EPOCHS epochs
# (ResNet-18 small stem, 28 px, batch 256, queue 4096, momentum 0.99, bn-splits 1, warm-up 60 updates, lr 0.06,
# cosine) on one thread, JOBS recipes at a time, then `memfit eval moco` gives its kNN top-1 (k 200, T 0.1, cosine;
# bank: the 60,000 training images, queries: the 10,000 test images). A short run ranks recipes early in training
# only: use it to choose what an hour-long run (bench/moco_fashion.sh) should try, not as the final figure.
# Each recipe is one argument: a name, then memfit train moco options, e.g. 'w25 --width 0.25 --crop-min 0.6'.
# usage: [EPOCHS=2] [JOBS=2] bash bench/moco_recipes.sh [RECIPE...]   (default: the sweep of docs/moco.md)
set -euo pipefail
cd "$(dirname "$0")/.."
F=/usr/share/datasets/fashion-mnist
[ -f $F/train-images-idx3-ubyte.gz ] || bash scripts/deps.sh >/dev/null
B=${MEMFIT_BUILD:-build}
[ -x "$B/memfit" ] || bash scripts/build.sh >/dev/null
epochs=${EPOCHS:-2}; jobs=${JOBS:-2}
out=${OUT:-out/moco-recipes}
rm -rf "$out"; mkdir -p "$out"
if [ $# -eq 0 ]; then
  set -- "base --width 0.125 --crop-min 0.4 --temperature 0.2" \
    "t01 --width 0.125 --crop-min 0.4 --temperature 0.1" \
    "crop6 --width 0.125 --crop-min 0.6 --temperature 0.2" \
    "crop8 --width 0.125 --crop-min 0.8 --temperature 0.2" \
    "crop6t01 --width 0.125 --crop-min 0.6 --temperature 0.1" \
    "crop8t01 --width 0.125 --crop-min 0.8 --temperature 0.1" \
    "crop10t01 --width 0.125 --crop-min 1.0 --temperature 0.1" \
    "split8 --width 0.125 --crop-min 0.4 --temperature 0.2 --bn-splits 8" \
    "w25 --width 0.25 --crop-min 0.4 --temperature 0.2"
fi
one() { # NAME OPTIONS...
  local name=$1; shift
  local t0 t1
  t0=$(date +%s)
  OMP_NUM_THREADS=1 "$B"/memfit train moco --size 28 --queue 4096 --batch 256 --momentum 0.99 --bn-splits 1 --lr 0.06 \
    --warmup 60 --data $F/train-images-idx3-ubyte.gz --val-data $F/t10k-images-idx3-ubyte.gz --epochs "$epochs" \
    --threads 1 --probe-epochs 0 --out "$out/$name" --log-every 100000 "$@" > "$out/$name.train" 2>&1
  t1=$(date +%s)
  OMP_NUM_THREADS=1 "$B"/memfit eval moco --model "$out/$name/model.safetensors" --data $F/train-images-idx3-ubyte.gz \
    --val-data $F/t10k-images-idx3-ubyte.gz --threads 1 --probe-epochs 0 --json 2>&1 | tail -1 |
    sed -n "s/.*\"knn_top1\": \([0-9.]*\).*/$name $((t1 - t0)) \1 $*/p" > "$out/$name.result"
}
echo "MoCo v2 recipes on Fashion-MNIST, $epochs epochs each, 1 thread each, $jobs at a time"
for r in "$@"; do
  # shellcheck disable=SC2086 # a recipe is a name and its options, split on spaces
  one $r &
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait
printf '%-12s %9s %8s  %s\n' recipe "train s" "kNN" "options"
for r in "$@"; do
  n=${r%% *}
  if [ -s "$out/$n.result" ]; then
    read -r name secs knn opts < "$out/$n.result"
    printf '%-12s %9s %7.2f%%  %s\n' "$name" "$secs" "$(python3 -c "print(100*$knn)")" "$opts"
  else
    printf '%-12s failed: %s\n' "$n" "$(tail -1 "$out/$n.train")"
  fi
done

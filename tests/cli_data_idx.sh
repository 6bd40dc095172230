#!/usr/bin/env bash
# cli_data_idx.sh — `memfit train --data FILE` with an IDX images file (MNIST / Fashion-MNIST layout): it trains
# on the file's images with the labels found beside it (plain and gzip), a validation file by --val-data, and a
# file that is not IDX, a truncated one or labels that do not match are refused with a message naming the file.
# Usage: bash tests/cli_data_idx.sh path/to/memfit (from the repo root).
set -u
MEMFIT=${1:?usage: cli_data_idx.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
T=$(mktemp -d /tmp/cli_data_idx.XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

# IDX files written here: N images of 28x28 (a pattern per image), labels i % 10
idx() { # idx PATH MAGIC N [ROWS COLS] < payload: header, then the payload from stdin
  /usr/bin/python3 -c '
import struct, sys
p, magic, dims = sys.argv[1], int(sys.argv[2], 16), [int(a) for a in sys.argv[3:]]
open(p, "wb").write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + sys.stdin.buffer.read())' "$@"
}
pixels() { /usr/bin/python3 -c '
import sys
n = int(sys.argv[1])
sys.stdout.buffer.write(bytes((i * 37 + (p // 28) * 5 + (p % 28) * 3) % 256 for i in range(n) for p in range(784)))' "$1"; }
labels() { /usr/bin/python3 -c 'import sys; sys.stdout.buffer.write(bytes(i % 10 for i in range(int(sys.argv[1]))))' "$1"; }
pixels 40 | idx "$T/train-images-idx3-ubyte" 803 40 28 28
labels 40 | idx "$T/train-labels-idx1-ubyte" 801 40
pixels 12 | idx "$T/t10k-images-idx3-ubyte" 803 12 28 28
labels 12 | idx "$T/t10k-labels-idx1-ubyte" 801 12
gzip -k "$T/t10k-images-idx3-ubyte" "$T/t10k-labels-idx1-ubyte"

TR=(train steg --preset small --size 16 --batch 2 --steps 2 --threads 1)
run "train on an IDX file" 0 "data: .*train-images-idx3-ubyte" "$MEMFIT" "${TR[@]}" --data "$T/train-images-idx3-ubyte" --out "$T/r1"
run "an IDX file and a gzip IDX validation file" 0 "40 training images, 12 validation images" "$MEMFIT" "${TR[@]}" --data "$T/train-images-idx3-ubyte" \
  --val-data "$T/t10k-images-idx3-ubyte.gz" --out "$T/r2"

# exact resume on IDX data: stopped after update 3 and resumed, the loss log equals an uninterrupted run's;
# the same file with one changed pixel is other data (its content is in the loader's data id)
R=(train steg --preset small --size 16 --batch 2 --steps 5 --epoch-steps 4 --val-fraction 0 --val-count 2 --lr 1e-3 --threads 1
   --log-every 1000 --data "$T/train-images-idx3-ubyte")
run "uninterrupted 5 updates" 0 "planned .* exact" "$MEMFIT" "${R[@]}" --out "$T/A" --loss-log "$T/A.log"
run "stop after update 3" 0 "stopped after update 3 of 5" "$MEMFIT" "${R[@]}" --out "$T/B" --stop-after 3
run "resume from update 3" 0 "resumed from .* at update 3" "$MEMFIT" "${R[@]}" --out "$T/C" --loss-log "$T/C.log" \
  --resume "$T/B/checkpoint.safetensors"
if [ "$(tail -n 2 "$T/A.log")" = "$(cat "$T/C.log")" ] && [ -s "$T/C.log" ]; then ok; else bad "updates 4-5 after resuming differ"; fi
cp "$T/train-images-idx3-ubyte" "$T/keep"
printf '\x01' | dd of="$T/train-images-idx3-ubyte" bs=1 seek=5000 conv=notrunc 2>/dev/null
run "resume on changed IDX pixels" 1 "changed since the checkpoint" "$MEMFIT" "${R[@]}" --out "$T/D" --resume "$T/B/checkpoint.safetensors"
mv "$T/keep" "$T/train-images-idx3-ubyte"

echo "hello" > "$T/notes.txt"
run "a text file as --data" 1 "notes.txt: a file, but not an IDX images file" "$MEMFIT" "${TR[@]}" --data "$T/notes.txt" --out "$T/r3"
head -c 20000 "$T/train-images-idx3-ubyte" > "$T/cut-images-idx3-ubyte"
run "a truncated IDX file" 1 "cut-images-idx3-ubyte: truncated: the header says 40 images" "$MEMFIT" "${TR[@]}" \
  --data "$T/cut-images-idx3-ubyte" --out "$T/r4"
mkdir -p "$T/m"
cp "$T/train-images-idx3-ubyte" "$T/m/"
labels 12 | idx "$T/m/train-labels-idx1-ubyte" 801 12
run "labels that do not match" 1 "train-labels-idx1-ubyte: 12 labels, but the images file has 40 images" "$MEMFIT" "${TR[@]}" \
  --data "$T/m/train-images-idx3-ubyte" --out "$T/r5"
idx "$T/m/bad-images-idx3-ubyte" 804 1 1 1 1 < /dev/null
run "a wrong magic number" 1 "bad-images-idx3-ubyte.*not an IDX images file" "$MEMFIT" "${TR[@]}" \
  --data "$T/m/bad-images-idx3-ubyte" --out "$T/r6"

echo "cli_data_idx: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

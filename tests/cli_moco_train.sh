#!/usr/bin/env bash
# cli_moco_train.sh — `memfit train moco` and `memfit eval moco`: a tiny MoCo v2 and v3 train on generated images
# with every arena measured == planned; a run stopped and resumed logs the same losses to the last bit (the queue,
# the key encoder and its pending keys come back with the checkpoint); with accumulation the run still trains;
# on Fashion-MNIST (Debian's dataset-fashion-mnist; skipped when absent) the kNN monitor reports at validation and
# `memfit eval moco` gives kNN and linear-probe accuracies of the model file; bad settings and files are refused
# with a message naming them. Usage: bash tests/cli_moco_train.sh path/to/memfit (from the repo root).
set -u
MEMFIT=${1:?usage: cli_moco_train.sh path/to/memfit}
T=$(mktemp -d /tmp/cli_moco_train.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

G=(train moco --preset tiny --gen-count 32 --gen-size 24 --threads 1 --log-every 1000 --lr 0.03)
# every arena exact: as many "exact" lines in the summary as arenas planned (6, 7 with a low-precision copy)
exact6() { [ "$(grep -c " exact$" "$T/out.txt")" -ge 6 ] && [ "$(grep -c " exact$" "$T/out.txt")" = "$(grep -cE "planned +[0-9]+ B" "$T/out.txt")" ] && ok || { bad "$1: not every arena measured == planned"; grep "planned" "$T/out.txt" | sed 's/^/    /'; }; }
run "v2 trains on generated images" 0 "trained 6 updates" "$MEMFIT" "${G[@]}" --steps 6 --out "$T/A" --loss-log "$T/A.log"
exact6 "v2"
[ -s "$T/A/model.safetensors" ] && ok || bad "v2: no model.safetensors"
run "v2 with accumulation 2 (queue written once per update)" 0 "micro-batch 4 x 2" "$MEMFIT" "${G[@]}" --steps 3 \
  --micro-batch 4 --out "$T/acc"
exact6 "v2 accumulation"
run "v3 trains (momentum ramp, in-batch negatives)" 0 "trained 4 updates" "$MEMFIT" "${G[@]}" --version 3 --hidden 32 --dim 16 \
  --steps 4 --out "$T/v3"
exact6 "v3"
run "bf16 trains" 0 "trained 3 updates" "$MEMFIT" "${G[@]}" --precision bf16 --steps 3 --out "$T/bf16"
exact6 "bf16"

run "several model settings together" 0 "ResNet-34 x0.125, 20x20, effective batch 8, queue 12 x 8, head 16-8, T 0.5, m 0.9, bn-splits 1" \
  "$MEMFIT" "${G[@]}" --arch resnet34 --width 0.125 --size 20 --queue 12 --temperature 0.5 --momentum 0.9 --bn-splits 1 --steps 1 \
  --out "$T/several"

run "checkpointed blocks (--variant 1) train" 0 "trained 2 updates" "$MEMFIT" "${G[@]}" --variant 1 --steps 2 --out "$T/ck"
exact6 "checkpointed blocks"
# the budget: 4% above the smallest setting the search finds on this machine (its convolution workspaces, and so the
# plans, depend on the CPU's oneDNN implementations), so the search has to give something up to fit it
need=$("$MEMFIT" "${G[@]}" --budget 1KiB --steps 1 --out "$T/x" 2>&1 | sed -n 's/.*the smallest setting needs \([0-9.]*\) \([KMG]iB\).*/\1 \2/p')
budget=$(awk -v n="$need" 'BEGIN { split(n, a, " "); u = a[2] == "KiB" ? 1024 : a[2] == "MiB" ? 1048576 : 1073741824;
  if (a[1] > 0) printf "%d", a[1] * u * 1.04 }')
[ -n "$budget" ] && ok || bad "--budget 1KiB: no 'the smallest setting needs' in its message"
run "--budget picks the settings" 0 "settings from the budget search" "$MEMFIT" "${G[@]}" --budget "${budget:-5MiB}" --steps 2 --out "$T/bud"
exact6 "budget"

# stop after 3, resume to 6: updates 4-6 bit-identical to the uninterrupted run
run "stop after update 3" 0 "stopped after update 3 of 6" "$MEMFIT" "${G[@]}" --steps 6 --out "$T/B" --loss-log "$T/B.log" --stop-after 3
run "resume from update 3" 0 "resumed from .* at update 3" "$MEMFIT" "${G[@]}" --steps 6 --out "$T/C" --loss-log "$T/C.log" \
  --resume "$T/B/checkpoint.safetensors"
awk '$1 > 3' "$T/A.log" > "$T/A.after3"
if [ -s "$T/C.log" ] && cmp -s "$T/A.after3" "$T/C.log"; then ok; else bad "resume: updates 4-6 differ"; diff "$T/A.after3" "$T/C.log" | head -6; fi

# bad settings and files
run "queue shorter than the batch" 2 "--queue: 4 negatives is shorter than --batch 8" "$MEMFIT" "${G[@]}" --queue 4 --steps 1 --out "$T/x"
run "temperature 0" 2 "--temperature: '0'" "$MEMFIT" "${G[@]}" --temperature 0 --steps 1 --out "$T/x"
run "momentum 1.5" 2 "--momentum: '1.5'" "$MEMFIT" "${G[@]}" --momentum 1.5 --steps 1 --out "$T/x"
run "unknown setting, with a suggestion" 2 "did you mean --queue" "$MEMFIT" "${G[@]}" --queu 8 --steps 1 --out "$T/x"
run "resume from a model file" 1 "a model file \(the backbone only\)" "$MEMFIT" "${G[@]}" --steps 6 --out "$T/y" \
  --resume "$T/A/model.safetensors"
run "eval moco: a checkpoint is not a model" 1 "not a MoCo model file" "$MEMFIT" eval moco --model "$T/A/checkpoint.safetensors" \
  --data "$T" --val-data "$T"
mkdir -p "$T/flat" && cp "$T/A/timeline.svg" "$T/flat/" 2>/dev/null
/usr/bin/python3 - "$T/flat" <<'PY'
import struct, sys, zlib
def png(path, w, h):
    raw = b''.join(b'\x00' + bytes((x * 7 + y * 3 + c * 40) % 256 for x in range(w) for c in range(3)) for y in range(h))
    def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
                           chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
for i in range(3): png('%s/img%d.png' % (sys.argv[1], i), 20, 20)
PY
run "eval moco: images without classes" 1 "eval moco: --data $T/flat" "$MEMFIT" eval moco --model "$T/A/model.safetensors" \
  --data "$T/flat" --val-data "$T/flat"

F=/usr/share/datasets/fashion-mnist
if [ -f "$F/train-images-idx3-ubyte.gz" ] && [ -f "$F/t10k-images-idx3-ubyte.gz" ]; then
  run "Fashion-MNIST: the kNN monitor reports" 0 "kNN top-1 [0-9.]+% \(k 50, T 0.1; 500 bank, 200 validation images\), linear probe [0-9.]+% \(3 epochs\)" \
    "$MEMFIT" train moco --preset tiny --threads 1 --log-every 1000 --data "$F/train-images-idx3-ubyte.gz" \
    --val-data "$F/t10k-images-idx3-ubyte.gz" --steps 4 --val-every 2 --knn-k 50 --knn-bank 500 --knn-test 200 --probe-epochs 3 --out "$T/F" \
    --log "$T/F.jsonl"
  grep -q '"knn_top1".*"probe_top1"' "$T/F.jsonl" && ok || bad "Fashion-MNIST: no knn_top1 and probe_top1 in the log"
  run "eval moco: kNN and linear probe" 0 "linear probe: test [0-9.]+%" "$MEMFIT" eval moco --model "$T/F/model.safetensors" \
    --data "$F/train-images-idx3-ubyte.gz" --val-data "$F/t10k-images-idx3-ubyte.gz" --bank 1000 --test 300 --probe-epochs 5 --json
  # the accuracies are shares of the test set: a number in [0, 1], and above chance (10 classes) for a probe on features
  /usr/bin/python3 - "$T/out.txt" <<'PY' && ok || bad "eval moco: the JSON accuracies are out of range or at chance"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert 0 <= r["knn_top1"] <= 1 and 0 <= r["probe_test"] <= 1 and r["test"] == 300 and r["bank"] == 1000
assert r["probe_train"] > 0.2, r  # a linear probe fits its own training set far above chance (0.1)
PY
else
  echo "skipped: the Fashion-MNIST part (no $F; apt-get install dataset-fashion-mnist)"
fi

echo "cli_moco_train: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# onnx_models.sh — torchvision models exported to ONNX by Debian's python3-torch (random weights, nothing
# downloaded) at batch 8 x 3 x 224 x 224, f32: memfit's plan of a training step (AdamW) next to PyTorch's measured
# peak for the same step on this CPU (peak RSS minus the process's RSS before the model), the plan under
# --budget 4GiB, and a one-step memfit run checking measured == planned per arena.
# Usage: bench/onnx_models.sh [build/memfit] [MODEL...]   (default: resnet18 resnet50 mobilenet_v2 vgg11
# densenet121 efficientnet_b0 vit_b_16). MEMFIT_ONNX_RUN=0 skips the memfit runs, MEMFIT_ONNX_TORCH=0 PyTorch's.
set -u
M=$(realpath "${1:-build/memfit}"); shift || true
models=${*:-resnet18 resnet50 mobilenet_v2 vgg11 densenet121 efficientnet_b0 vit_b_16}
here=$(cd "$(dirname "$0")" && pwd)
tmp=${MEMFIT_ONNX_DIR:-$(mktemp -d)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
gib() { awk -v b="$1" 'BEGIN { if (b == "" || b == "-") print "-"; else printf "%.2f GiB", b / 1073741824 }'; }
printf "%-16s %12s %14s %14s %14s %-40s %s\n" model parameters "memfit plan" "torch peak" "of which step" "--budget 4GiB" "memfit run"
for m in $models; do
  onnx=$tmp/$m.onnx
  if ! /usr/bin/python3 "$here/onnx_torch.py" "$m" "$onnx" 8 >"$tmp/$m.torch" 2>"$tmp/$m.torch.err"; then
    printf "%-16s export failed: %s\n" "$m" "$(tail -1 "$tmp/$m.torch.err")"; continue
  fi
  [ "${MEMFIT_ONNX_TORCH:-1}" != 0 ] && /usr/bin/python3 "$here/onnx_torch.py" --measure "$m" 8 >>"$tmp/$m.torch" 2>>"$tmp/$m.torch.err"
  params=$(awk '/^params/ {print $2}' "$tmp/$m.torch")
  tpeak=$(awk '/^torch_peak_minus_baseline_bytes/ {print $2}' "$tmp/$m.torch")
  tstep=$(awk '/^torch_step_peak_minus_model_bytes/ {print $2}' "$tmp/$m.torch")
  if ! "$M" plan "$onnx" --input input=8x3x224x224 --json >"$tmp/$m.plan" 2>"$tmp/$m.err"; then
    printf "%-16s %12s  does not import: %s\n" "$m" "$params" "$(head -c 200 "$tmp/$m.err")"; continue
  fi
  total=$(/usr/bin/python3 -c "import json; print(json.load(open('$tmp/$m.plan'))['total_bytes'])")
  "$M" plan "$onnx" --input input=8x3x224x224 --budget 4GiB --json >"$tmp/$m.budget" 2>&1
  fit=$(/usr/bin/python3 -c "
import json
try:
    d = json.load(open('$tmp/$m.budget')); print(('fits: ' if d['found'] else 'no fit: ') + d['settings'] + ', %.2f GiB' % (d['device_bytes'] / 2**30))
except Exception as e: print('-')")
  run=-
  if [ "${MEMFIT_ONNX_RUN:-1}" != 0 ]; then
    "$M" plan "$onnx" --input input=8x3x224x224 --run 1 >"$tmp/$m.run" 2>&1
    run=$(grep -o "measured == planned: [a-zA-Z]*" "$tmp/$m.run" | awk '{print $NF}')
    [ -z "$run" ] && run="failed: $(tail -1 "$tmp/$m.run")"
  fi
  printf "%-16s %12s %14s %14s %14s %-40s %s\n" "$m" "$params" "$(gib "$total")" "$(gib "${tpeak:-}")" "$(gib "${tstep:-}")" "$fit" "$run"
done
echo "(files in $tmp)"

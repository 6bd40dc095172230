#!/usr/bin/env bash
# cli_onnx_1d.sh — 1-D convolutions and pools (Conv1d, MaxPool1d, AvgPool1d, ConvTranspose1d, AdaptiveAvgPool1d) and
# nearest and bicubic resizes of any geometry (F.interpolate with size= and a non-integer scale_factor) exported by Debian's
# python3-torch: memfit's forward output and one training step against PyTorch, the 1-D weights kept in their ONNX
# shape, measured == planned (tests/onnx_1d.py). Skips when torch is absent. Usage: cli_onnx_1d.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_onnx_1d.sh path/to/memfit}")
root=$(cd "$(dirname "$0")/.." && pwd)
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if "$M" plan --list-unsupported /dev/null 2>&1 | grep -q "without ONNX support"; then
  echo "cli_onnx_1d: SKIP (memfit built without ONNX support)"; exit 0
fi
PY=/usr/bin/python3
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then echo "cli_onnx_1d: SKIP (no python3-torch and numpy)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" "$root/tests/onnx_1d.py" "$M" "$tmp"
rc=$?
echo "cli_onnx_1d: exit $rc"
exit $rc

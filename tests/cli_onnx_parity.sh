#!/usr/bin/env bash
# cli_onnx_parity.sh — one training step of a small CNN and a small transformer block exported by Debian's
# python3-torch, in memfit (memfit plan MODEL.onnx --run 1 --feed --dump) and in PyTorch from the same weights
# and batch: loss, every gradient, the updated weights (SGD and Adam) and batch norm's statistics within 1e-4
# relative (tests/onnx_parity.py says why that bound). Skips when torch is absent. Usage: cli_onnx_parity.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_onnx_parity.sh path/to/memfit}")
root=$(cd "$(dirname "$0")/.." && pwd)
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if "$M" plan --list-unsupported /dev/null 2>&1 | grep -q "without ONNX support"; then
  echo "cli_onnx_parity: SKIP (memfit built without ONNX support)"; exit 0
fi
PY=/usr/bin/python3
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then echo "cli_onnx_parity: SKIP (no python3-torch and numpy)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" "$root/tests/onnx_parity.py" "$M" "$tmp"
rc=$?
echo "cli_onnx_parity: exit $rc"
exit $rc

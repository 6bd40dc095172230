#!/usr/bin/env bash
# torch2.sh — prints the path of a python3 with current PyTorch 2.x from PyPI, installing it first into
# .bench-venv (a virtual environment of the repository, ignored by git; several GB with its CUDA wheels) when it
# is not there. The benchmarks compare memfit with this PyTorch as well as with Debian's python3-torch.
# usage: py=$(bash bench/torch2.sh) || echo "no PyTorch 2.x"
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MEMFIT_TORCH2_VENV:-.bench-venv}
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(0 if int(torch.__version__.split('.')[0]) >= 2 else 1)" 2>/dev/null; then
  command -v python3 >/dev/null || { echo "torch2.sh: no python3" >&2; exit 1; }
  python3 -m venv "$venv" >&2 || { echo "torch2.sh: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install -q torch numpy >&2 || { echo "torch2.sh: pip install torch failed (is PyPI reachable?)" >&2; exit 1; }
fi
case $venv in /*) echo "$venv/bin/python" ;; *) echo "$PWD/$venv/bin/python" ;; esac

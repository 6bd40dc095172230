#!/usr/bin/env bash
# deps.sh — installs memfit's Debian build and test dependencies (run as root on Debian 12).
set -euo pipefail
PKGS=(build-essential cmake pkg-config git clang libclang-rt-14-dev libomp-14-dev valgrind
      libopenblas-openmp-dev libdnnl-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev
      libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
      openmpi-bin libopenmpi-dev  # data-parallel training (mpirun -np N memfit train ...; tests/cli_mpi.sh)
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev  # ONNX import: protobuf-c generates its code from onnx.proto
      libonnx-testdata  # ONNX's own node tests: the importer's conformance suite (tests/test_onnx_conformance.c)
      python3 python3-numpy python3-torch python3-torchvision
      python3-onnx  # ONNX's own checker reads the models memfit writes (tests/cli_onnx_train.sh)
      dataset-fashion-mnist  # real labelled images (IDX, 70,000 x 28x28) for the MoCo tests and baselines
      chromium)  # headless, for tests/cli_report.sh's check of the run report in a real browser (~500 MiB)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: all present"

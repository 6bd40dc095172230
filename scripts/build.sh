#!/usr/bin/env bash
# build.sh — installs the Debian dependencies (if missing) and builds memfit into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"

#!/usr/bin/env bash
# run.sh — sets up memfit and runs its main job on the embedded default (no download, no user data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
exec ./build/memfit demo "$@"

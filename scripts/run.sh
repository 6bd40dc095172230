#!/usr/bin/env bash
# run.sh — sets up memfit and runs its main job on the embedded default (no download, no user data):
# trains the small steganography model on generated images inside its exact memory plan, then hides
# a generated picture in another with the shipped pretrained model and reveals it again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
./build/memfit demo "$@"
out=memfit-demo
echo
echo "== hide and reveal with the shipped model (models/steg-small.safetensors)"
./build/memfit hide --model models/steg-small.safetensors --cover $out/cover.png --secret $out/secret.png --out $out/stego.png
./build/memfit reveal --model models/steg-small.safetensors --stego $out/stego.png --out $out/recovered.png
echo "pictures: $out/cover.png $out/secret.png -> $out/stego.png -> $out/recovered.png"

#!/usr/bin/env bash
# gpu-deps.sh — run on the development machine (Debian 12, apt reachable): downloads the .deb files of
# the build dependencies that a bare GPU machine without a package registry may lack (OpenBLAS,
# libpng, libjpeg-turbo, zlib headers, pkg-config) into .gpu-deps/. The device tool carries that
# folder (carry: [".gpu-deps"]) and scripts/gpu-check.sh unpacks it when the machine lacks them.
# usage: bash scripts/gpu-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libpng16-16 libpng-dev zlib1g-dev
      libjpeg62-turbo libjpeg62-turbo-dev pkgconf pkgconf-bin libpkgconf3)
mkdir -p .gpu-deps
rm -f .gpu-deps/*.deb
(cd .gpu-deps && apt-get download "${pkgs[@]}")
echo "gpu-deps: $(ls .gpu-deps/*.deb | wc -l) packages, $(du -sh .gpu-deps | cut -f1) in .gpu-deps/ (carry it to the GPU machine)"

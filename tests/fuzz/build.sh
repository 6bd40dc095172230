#!/bin/sh
# build.sh — builds the libFuzzer decoders (clang, ASan+UBSan) into build-fuzz/. Usage from the repo
# root: sh tests/fuzz/build.sh; then see docs/data.md for running them.
set -e
mkdir -p build-fuzz
CF="-DMEMFIT_FUZZING -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc"
clang $CF -DFUZZ_PNG tests/fuzz/fuzz_decode.c src/data/image.c -o build-fuzz/fuzz_png -lpng -ljpeg
clang $CF -DFUZZ_JPEG tests/fuzz/fuzz_decode.c src/data/image.c -o build-fuzz/fuzz_jpeg -lpng -ljpeg
echo "built build-fuzz/fuzz_png build-fuzz/fuzz_jpeg"

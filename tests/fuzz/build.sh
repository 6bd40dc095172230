#!/bin/sh
# build.sh — builds the libFuzzer harnesses (clang, ASan+UBSan) into build-fuzz/: the PNG and JPEG
# decoders, the safetensors reader, the checkpoint metadata reader, the CLI's number and size
# parsers, the IDX reader and the ONNX importer. Usage from the repo root: sh tests/fuzz/build.sh; then see docs/data.md for running them.
set -e
mkdir -p build-fuzz/obj
CF="-DMEMFIT_FUZZING -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc"
clang $CF -DFUZZ_PNG tests/fuzz/fuzz_decode.c src/data/image.c -o build-fuzz/fuzz_png -lpng -ljpeg
clang $CF -DFUZZ_JPEG tests/fuzz/fuzz_decode.c src/data/image.c -o build-fuzz/fuzz_jpeg -lpng -ljpeg
# the whole library (without FFmpeg and CUDA), instrumented, for the harnesses that need a session
LIBCF="-std=c11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fopenmp -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(pkg-config --cflags openblas)"
objs=""
newest_h=$(ls -t include/*.h src/*/*.h src/*/*/*.h 2>/dev/null | head -1) # a changed header rebuilds every object
for c in src/base/*.c src/backend/*.c src/graph/*.c src/ops/*.c src/plan/*.c src/backend/cpu/*.c src/train/*.c src/data/*.c src/models/*.c; do
  o=build-fuzz/obj/$(echo "$c" | tr / _ | sed 's/\.c$/.o/')
  if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || [ "$newest_h" -nt "$o" ]; then clang $LIBCF -c "$c" -o "$o"; fi
  objs="$objs $o"
done
# the ONNX importer: its protobuf code generated from Debian's onnx.proto (libonnx-dev), as the CMake build does
if command -v protoc-c >/dev/null && [ -f /usr/include/onnx/onnx.proto ]; then
  mkdir -p build-fuzz/onnx_gen
  [ build-fuzz/onnx_gen/onnx.pb-c.c -nt /usr/include/onnx/onnx.proto ] ||
    protoc-c --c_out=build-fuzz/onnx_gen --proto_path=/usr/include/onnx /usr/include/onnx/onnx.proto
  for c in build-fuzz/onnx_gen/onnx.pb-c.c src/onnx/*.c; do
    o=build-fuzz/obj/onnx_$(basename "$c" .c | tr - _).o
    if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || [ "$newest_h" -nt "$o" ]; then
      clang $LIBCF -DMEMFIT_HAVE_ONNX=1 -Ibuild-fuzz/onnx_gen -c "$c" -o "$o"; fi
    objs="$objs $o"
  done
  ONNX_LIBS=-lprotobuf-c
else
  for c in src/onnx/*.c; do  # without protobuf-c: the entry points say so
    o=build-fuzz/obj/onnx_$(basename "$c" .c).o
    clang $LIBCF -c "$c" -o "$o"
    objs="$objs $o"
  done
  ONNX_LIBS=
fi
LIBS="$(pkg-config --libs openblas) -lpng -ljpeg -lz -lm -ldl -lpthread -fopenmp $ONNX_LIBS"
clang $CF tests/fuzz/fuzz_safetensors.c $objs -o build-fuzz/fuzz_safetensors $LIBS
clang $CF tests/fuzz/fuzz_checkpoint.c $objs -o build-fuzz/fuzz_checkpoint $LIBS
clang $CF tests/fuzz/fuzz_parse.c src/cli/args.c $objs -o build-fuzz/fuzz_parse $LIBS
clang $CF tests/fuzz/fuzz_idx.c $objs -o build-fuzz/fuzz_idx $LIBS
[ -n "$ONNX_LIBS" ] && clang $CF tests/fuzz/fuzz_onnx.c $objs -o build-fuzz/fuzz_onnx $LIBS
echo "built build-fuzz/fuzz_png fuzz_jpeg fuzz_safetensors fuzz_checkpoint fuzz_parse fuzz_idx${ONNX_LIBS:+ fuzz_onnx}"

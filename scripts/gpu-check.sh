#!/usr/bin/env bash
# gpu-check.sh — everything issue 6 needs checked on a machine with an NVIDIA GPU, in one command:
# builds memfit with the CUDA backend, shows the GPU, runs the CUDA tests (every op and a full
# steganography training step against the CPU backend, measured == planned memory), the conv cases once
# on cuDNN and once on im2col + cuBLAS (MEMFIT_CUDNN=0), each against the CPU backend, benchmarks a
# training step of the seed-16gb steganography model (10 blocks, growth 160, 224x224, batch 8,
# bf16) in memfit and in PyTorch (autocast bf16), trains it in a 4 GiB budget, and runs the data-parallel tests on
# the device when mpirun is there (NCCL with one rank, two ranks sharing the GPU); ends with a table.
# usage: bash scripts/gpu-check.sh [STEPS]          (env: BUILD_DIR, PYTHON, SKIP_DEPS=1)
# On a GPU machine with no package registry (the device tool's): first run 'bash scripts/gpu-deps.sh'
# on the development machine, then run this there with .gpu-deps carried along.
set -uo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10}
dir=${BUILD_DIR:-build-gpu}
out=$(mktemp -d)
status=0
note() { printf '\n== %s\n' "$*"; }

note "dependencies"
if [ "${SKIP_DEPS:-0}" = 1 ] || ls .gpu-deps/*.deb >/dev/null 2>&1; then
  echo "skipped (SKIP_DEPS=1 or carried .gpu-deps/: a machine without a package registry)"
else
  timeout 900 bash scripts/deps.sh || echo "deps: could not install (offline?); continuing with what is there"
fi

# A GPU machine without a package registry: unpack the .deb files scripts/gpu-deps.sh fetched (carried
# in .gpu-deps/) into .gpu-deps/root and point pkg-config, the compiler and the loader at them.
if ! { command -v pkg-config >/dev/null && pkg-config --exists openblas libpng libjpeg; } 2>/dev/null; then
  if ls .gpu-deps/*.deb >/dev/null 2>&1; then
    root=$PWD/.gpu-deps/root
    mkdir -p "$root"
    python3 - "$root" .gpu-deps/*.deb <<'PY' || { echo "gpu-check: could not unpack .gpu-deps"; exit 1; }
import io, sys, tarfile
root = sys.argv[1]
for deb in sys.argv[2:]:  # a .deb is an ar archive holding data.tar.*
    raw = open(deb, "rb").read()
    assert raw[:8] == b"!<arch>\n", deb
    pos = 8
    while pos < len(raw):
        name, size = raw[pos:pos + 16].decode().strip(), int(raw[pos + 48:pos + 58])
        body = raw[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as t:
                kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                t.extractall(root, **kw)
        pos += 60 + size + (size & 1)
print("unpacked %d packages into %s" % (len(sys.argv) - 2, root))
PY
    lib=$root/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_SYSROOT_DIR=$root
    export PKG_CONFIG_PATH=$lib/openblas-openmp/pkgconfig:$lib/pkgconfig:$root/usr/share/pkgconfig
    export LD_LIBRARY_PATH=$lib/openblas-openmp:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export LIBRARY_PATH=$lib/openblas-openmp:$lib${LIBRARY_PATH:+:$LIBRARY_PATH}
    command -v pkg-config >/dev/null || pkgconfig_exe=$root/usr/bin/pkgconf
  else
    echo "gpu-check: OpenBLAS, libpng or libjpeg (or pkg-config) is missing here and nothing can be installed;"
    echo "           on the development machine run 'bash scripts/gpu-deps.sh' and carry .gpu-deps"
  fi
fi

note "GPU"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi || true
else
  echo "nvidia-smi not found"
fi

note "configure and build with CUDA ($dir)"
if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMEMFIT_CUDA=ON ${pkgconfig_exe:+-DPKG_CONFIG_EXECUTABLE=$pkgconfig_exe} \
     >"$out/configure.log" 2>&1; then
  cat "$out/configure.log"; echo "gpu-check: configure FAILED"; exit 1
fi
grep -E "memfit: CUDA" "$out/configure.log" || true
if ! grep -q "MEMFIT_HAVE_CUDA\|CUDA backend on" "$out/configure.log"; then
  echo "gpu-check: CUDA was not found (is nvcc on PATH or in /usr/local/cuda/bin?)"; exit 1
fi
t0=$(date +%s)
if ! cmake --build "$dir" -j"$(nproc)" >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"; echo "gpu-check: build FAILED"; exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s"

note "CUDA tests (test_cuda_ops)"
"./$dir/test_cuda_ops" 2>&1 | tee "$out/test.log"
test_rc=${PIPESTATUS[0]}
if grep -q "^SKIP" "$out/test.log"; then
  echo "gpu-check: the CUDA tests skipped: this machine's GPU is not usable by memfit"; exit 1
fi
[ "$test_rc" -eq 0 ] || { echo "gpu-check: CUDA tests FAILED"; status=1; }
test_line=$(grep -E "^test_cuda_ops: " "$out/test.log" | tail -1)

note "CUDA convolutions: cuDNN, then im2col + cuBLAS (MEMFIT_CUDNN=0), each against the CPU backend"
# the conv cases of test_cuda_ops and its steganography step (all convolutions), once per implementation; the
# choice itself (cuDNN within each node's workspace limit, or im2col and why) is test_cuda_conv_choice
"./$dir/test_cuda_conv_choice" >"$out/conv-choice.log" 2>&1 || { tail -20 "$out/conv-choice.log"; echo "gpu-check: conv choice FAILED"; status=1; }
tail -3 "$out/conv-choice.log"
conv_line=""
for mode in cudnn im2col; do
  if [ $mode = im2col ]; then off=0; else off=1; fi
  MEMFIT_CUDNN=$off MEMFIT_CUDA_TEST_ONLY=conv "./$dir/test_cuda_ops" >"$out/conv-$mode.log" 2>&1
  rc=$?
  grep -E "^FAIL" "$out/conv-$mode.log" | head -20
  counts=$(grep -E "^conv steps run alone" "$out/conv-$mode.log" | tail -1)
  result=$(grep -E "^test_cuda_ops: " "$out/conv-$mode.log" | tail -1)
  echo "$mode: $counts; $result"
  conv_line="$conv_line $mode: ${counts#conv steps run alone: } (${result#test_cuda_ops: });"
  [ "$rc" -eq 0 ] || { echo "gpu-check: conv cases on $mode FAILED"; status=1; }
  on=$(echo "$counts" | sed -n 's/.*on cuDNN: \([0-9]*\).*/\1/p')
  if [ $mode = im2col ] && [ "${on:-0}" != 0 ]; then echo "gpu-check: MEMFIT_CUDNN=0 still ran $on conv steps on cuDNN"; status=1; fi
  if [ $mode = cudnn ] && [ "${on:-0}" = 0 ] && grep -q "cuDNN for the CUDA" "$out/configure.log"; then
    echo "gpu-check: built with cuDNN but no conv step ran on it (see memfit plan --by-layer)"; status=1
  fi
done

note "staged batches on the CUDA backend (test_input_stage: copy stream + events vs plain copies)"
"./$dir/test_input_stage" 2>&1 | tee "$out/stage.log"
stage_rc=${PIPESTATUS[0]}
if grep -q "^SKIP cuda" "$out/stage.log"; then echo "gpu-check: the staging test skipped its CUDA part"; status=1; fi
[ "$stage_rc" -eq 0 ] || { echo "gpu-check: staging test FAILED"; status=1; }
stage_line=$(grep -E "^test_input_stage: " "$out/stage.log" | tail -1)

note "benchmark: seed-16gb steganography step (10 blocks, growth 160, 224x224, batch 8, bf16), $steps steps"
model=(--blocks 10 --growth 160 --size 224 --batch 8 --steps "$steps" --warmup 2 --dtype bf16)
py=${PYTHON:-}
if [ -z "$py" ]; then
  for c in python3 /usr/bin/python3 /usr/local/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then py=$c; break; fi
  done
fi
: >"$out/bench.jsonl"
if [ -n "$py" ]; then
  echo "PyTorch: $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
  "$py" bench/steg_torch.py bench --device cuda "${model[@]}" | tee -a "$out/bench.jsonl" || status=1
else
  echo "no python3 with a CUDA-enabled torch found (set PYTHON=...); PyTorch side skipped"
fi
# the last two rows feed a new batch every step: copied in before the step, or staged during the previous one
# "im2col" rows: the same with MEMFIT_CUDNN=0 (every conv on im2col + cuBLAS), to compare speed and planned bytes
for cfg in "store::" "invert:subnets:" "invert:blocks:" "store::write" "store::stage" "store:::im2col"; do
  mode=${cfg%%:*}; rest=${cfg#*:}; seg=${rest%%:*}; feed=${rest#*:}; conv=""
  case "$feed" in *:im2col) feed=${feed%:im2col}; conv=-im2col ;; esac
  args=(--backend cuda --mode "$mode")
  [ -n "$seg" ] && args+=(--segments "$seg")
  [ -n "$feed" ] && args+=(--feed "$feed")
  line=$(if [ -n "$conv" ]; then export MEMFIT_CUDNN=0; fi; "./$dir/bench_steg" "${model[@]}" "${args[@]}") ||
    { echo "bench_steg ${args[*]} ${conv:+MEMFIT_CUDNN=0} FAILED"; status=1; continue; }
  echo "$line" | sed "s/\"impl\": \"memfit-$mode\"/\"impl\": \"memfit-$mode${seg:+-$seg}$conv\"/" | tee -a "$out/bench.jsonl"
done

note "4 GiB budget: seed-16gb trains in it on the GPU and reports its measured peak"
# 224x224 crops of generated 256x256 images, effective batch 8; the search picks the settings
"./$dir/memfit" train steg --backend cuda --preset seed-16gb --size 224 --batch 8 --budget 4GiB --steps "$steps" \
  --data generated --gen-size 256 --gen-count 256 --val-count 2 --workers 4 --log-every 0 --out "$out/budget-run" 2>&1 |
  tee "$out/budget.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu-check: the 4 GiB training run FAILED"; status=1; }
budget_line=$(grep -E "^budget .*chose" "$out/budget.log" | tail -1)

note "data parallel on the GPU (tests/cli_mpi.sh: its CPU part, then a 1-rank NCCL run and 2 ranks sharing the GPU)"
if command -v mpirun >/dev/null && "./$dir/memfit" --version | grep -q "data parallel: MPI"; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 bash tests/cli_mpi.sh "./$dir/memfit" 2>&1 |
    tee "$out/mpi.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu-check: data parallel FAILED"; status=1; }
  mpi_line=$(grep -E "^cli_mpi: " "$out/mpi.log" | tail -1)
else
  echo "skipped: no mpirun here, or memfit was built without MPI (NCCL needs it: apt-get install openmpi-bin libopenmpi-dev)"
fi

note "summary"
[ -n "$test_line" ] && echo "$test_line"
[ -n "${stage_line:-}" ] && echo "$stage_line"
[ -n "${conv_line:-}" ] && echo "conv steps alone / on cuDNN:$conv_line"
[ -n "${budget_line:-}" ] && echo "4 GiB: $budget_line"
[ -n "${mpi_line:-}" ] && echo "$mpi_line"
grep -E "^  (parameters|gradients|optimizer state|activations|data staging|param copy) .*planned" "$out/budget.log" || true
python3 - "$out/bench.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
def peak(r):  # device bytes: memfit's arenas + fixed overhead; torch's allocator peak + its context
    if r["impl"].startswith("torch"):
        return r["peak_device_bytes"] + r.get("context_bytes", 0)
    return r["planned_bytes"] + r.get("overhead_bytes", 0)
torch = next((r for r in rows if r["impl"].startswith("torch")), None)
print("%-24s %10s %16s %12s %12s" % ("impl", "images/s", "peak dev MiB", "speed ratio", "mem ratio"))
for r in rows:
    sr = "%.2f" % (r["images_per_s"] / torch["images_per_s"]) if torch else "-"
    mr = "%.2f" % (peak(r) / peak(torch)) if torch else "-"
    print("%-24s %10.2f %16.1f %12s %12s" % (r["impl"], r["images_per_s"], peak(r) / 2**20, sr, mr))
print("targets: speed ratio >= 1.0 and memory ratio <= 0.5 (memfit vs torch)")
w = next((r for r in rows if r["impl"].endswith("-feed-write")), None)
st = next((r for r in rows if r["impl"].endswith("-feed-stage")), None)
if w and st:
    print("a new batch every step: staged (copy overlapped) / copied before the step = %.3f images/s ratio" % (st["images_per_s"] / w["images_per_s"]))
PY
echo "logs: $out"
exit $status

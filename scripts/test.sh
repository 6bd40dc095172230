#!/usr/bin/env bash
# test.sh — sets up memfit and runs the whole test suite: the release build under ctest, then an
# ASan+UBSan build of the same tests (with clang). Ends with one "N passed, N failed" line; non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
jobs=$(nproc)
pass=0; fail=0
run_suite() { # name builddir cmake-args...
  local name=$1 dir=$2; shift 2
  echo "== $name: configure and build ($dir)"
  if ! cmake -S . -B "$dir" "$@" >/dev/null || ! cmake --build "$dir" -j"$jobs" >"$dir.build.log" 2>&1; then
    tail -40 "$dir.build.log" 2>/dev/null
    echo "== $name: BUILD FAILED"; fail=$((fail + 1)); return
  fi
  echo "== $name: tests"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" 2>&1 | tee "$dir.test.log"
  local line; line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$dir.test.log" | tail -1)
  local total failed
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line"); failed=$(sed -E 's/.*, ([0-9]+) tests failed.*/\1/' <<<"$line")
  if [ -z "$line" ]; then fail=$((fail + 1)); return; fi
  pass=$((pass + total - failed)); fail=$((fail + failed))
}
run_suite release build -DCMAKE_BUILD_TYPE=Release
if [ "${MEMFIT_SKIP_SANITIZE:-0}" != 1 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
  export MEMFIT_SANITIZED=1
  # built with clang, so CI checks both compilers' warnings (-Werror) as well as the sanitizers
  CC=clang run_suite sanitize build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMFIT_SANITIZE=ON
fi
echo "memfit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# cli_install.sh — `cmake --install` gives a usable library: the usage example at the top of
# include/memfit.h compiles against the installed header through pkg-config and runs.
# Usage: cli_install.sh path/to/build/memfit
set -u
build=$(dirname "$(realpath "${1:?usage: cli_install.sh path/to/memfit}")")
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${MEMFIT_SANITIZED:-0}" = 1 ]; then # an uninstrumented program cannot load the ASan-built library
  echo "SKIP: install test runs in the release build only"; echo "cli_install: 0 passed, 0 failed"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1
ok "install" '[ -f $tmp/prefix/include/memfit.h ] && [ -f $tmp/prefix/lib/pkgconfig/memfit.pc ]'
{ # the header's example, between its first and last code lines, inside a main with data
  echo '#include <memfit.h>'
  echo '#include <stdlib.h>'
  echo '#include <string.h>'
  echo 'int main(void) {'
  echo '  float xdata[32 * 16], ydata[32];'
  echo '  for (int i = 0; i < 32 * 16; i++) xdata[i] = (float)(i % 7) / 7;'
  echo '  for (int i = 0; i < 32; i++) ydata[i] = (float)(i % 3);'
  sed -n '/mf_graph \*g = mf_graph_init/,/mf_session_free(s); mf_graph_free(g);/p' "$root/include/memfit.h" | sed 's/^ \*   //'
  echo '  return 0;'
  echo '}'
} >"$tmp/example.c"
export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
cc -std=c11 -Wall -Wextra -Werror "$tmp/example.c" -o "$tmp/example" $(pkg-config --cflags --libs memfit) \
  -Wl,-rpath,"$tmp/prefix/lib" 2>"$tmp/cc.log"
ok "the header's usage example compiles against the installed library" '[ -x $tmp/example ] || { cat $tmp/cc.log; false; }'
"$tmp/example" >"$tmp/out" 2>&1
ok "and runs, printing its plan" 'grep -q "activations + workspace" $tmp/out'
echo "cli_install: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_install.sh — `cmake --install` gives a usable library: installed into /usr under DESTDIR, the
# usage example at the top of include/memfit.h compiles against it through pkg-config (shared, and
# static with `pkg-config --static`) and through find_package(memfit), and runs.
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
dest=$tmp/dest
DESTDIR=$dest cmake --install "$build" --prefix /usr >"$tmp/install.log" 2>&1
ok "install into /usr under DESTDIR" '[ -f $dest/usr/include/memfit.h ] || { cat $tmp/install.log; false; }'
pc=$(find "$dest" -name memfit.pc | head -1)
lib=$(find "$dest" -name 'libmemfit.so' | head -1)
libdir=$(dirname "${lib:-/nonexistent/x}")
ok "memfit.pc is installed beside the library, in LIBDIR/pkgconfig" '[ -n "$pc" ] && [ "$(dirname "$pc")" = "$libdir/pkgconfig" ]'
ok "memfit.pc names the library's folder and the header's (prefix /usr, not the DESTDIR)" \
  'grep -qx "libdir=${libdir#$dest}" "$pc" && grep -qx "includedir=/usr/include" "$pc" || cat "$pc"'
ok "the CMake package is installed" '[ -f "$libdir/cmake/memfit/memfitConfig.cmake" ]'
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
runs() { # runs one built example: it prints its plan
  LD_LIBRARY_PATH=$libdir "$1" >"$tmp/out" 2>&1 && grep -q "activations + workspace" "$tmp/out" || { tail -5 "$tmp/out"; false; }
}

# pkg-config, as a cross or staged build sees it: the sysroot is the DESTDIR
export PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$libdir/pkgconfig
cflags=$(pkg-config --cflags memfit 2>"$tmp/pc.log") && libs=$(pkg-config --libs memfit 2>>"$tmp/pc.log")
ok "pkg-config --cflags --libs memfit" '[ -n "${libs:-}" ] || { cat $tmp/pc.log; false; }'
cc -std=c11 -Wall -Wextra -Werror "$tmp/example.c" -o "$tmp/example_pc" ${cflags:-} ${libs:-} 2>"$tmp/cc.log"
ok "the header's example builds with pkg-config's flags" '[ -x $tmp/example_pc ] || { cat $tmp/cc.log; false; }'
ok "and runs, printing its plan" 'runs $tmp/example_pc'
{ # the budget search example (mf_search with the user's own builder), from build() to its main's end
  echo '#include <memfit.h>'
  echo '#include <stdio.h>'
  echo '#include <stdlib.h>'
  sed -n '/static int build(mf_graph \*g, int variant/,/end of the search example/p' "$root/include/memfit.h" | sed 's/^ \*   //'
} >"$tmp/search.c"
cc -std=c11 -Wall -Wextra -Werror "$tmp/search.c" -o "$tmp/search_pc" ${cflags:-} ${libs:-} 2>"$tmp/cc.log"
ok "the header's budget search example builds" '[ -x $tmp/search_pc ] || { cat $tmp/cc.log; false; }'
ok "and runs, printing the best setting" \
  'MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 LD_LIBRARY_PATH=$libdir $tmp/search_pc >$tmp/out 2>&1 && grep -q "^best: micro-batch" $tmp/out || { tail -5 $tmp/out; false; }'
slibs=$(pkg-config --static --libs memfit 2>"$tmp/pc.log")
ok "pkg-config --static --libs memfit" '[ -n "${slibs:-}" ] || { cat $tmp/pc.log; false; }'
cc -std=c11 -Wall -Wextra -Werror "$tmp/example.c" -o "$tmp/example_static" ${cflags:-} \
  $(echo "${slibs:-}" | sed "s|-lmemfit\b|$libdir/libmemfit.a|") 2>"$tmp/cc.log"
ok "the example links statically with pkg-config --static's line" '[ -x $tmp/example_static ] || { cat $tmp/cc.log; false; }'
ok "and runs without libmemfit.so" '[ -x $tmp/example_static ] && ! ldd $tmp/example_static | grep -q libmemfit && runs $tmp/example_static'
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH

# find_package(memfit): memfit::memfit (shared) and memfit::memfit_static
mkdir -p "$tmp/proj"
cp "$tmp/example.c" "$tmp/proj/"
cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(memfit_example C)
find_package(memfit 0.1 REQUIRED)
add_executable(example_shared example.c)
target_link_libraries(example_shared PRIVATE memfit::memfit)
add_executable(example_static example.c)
target_link_libraries(example_static PRIVATE memfit::memfit_static)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$dest/usr" -DCMAKE_BUILD_TYPE=Release >"$tmp/cm.log" 2>&1 &&
  cmake --build "$tmp/proj/build" -j2 >>"$tmp/cm.log" 2>&1
ok "find_package(memfit) builds the example against memfit::memfit and memfit::memfit_static" \
  '[ -x $tmp/proj/build/example_shared ] && [ -x $tmp/proj/build/example_static ] || { tail -20 $tmp/cm.log; false; }'
ok "memfit::memfit is the installed shared library" \
  'ldd $tmp/proj/build/example_shared 2>/dev/null | grep -q "$libdir/libmemfit.so" || LD_LIBRARY_PATH= ldd $tmp/proj/build/example_shared | grep libmemfit'
ok "both run" 'runs $tmp/proj/build/example_shared && runs $tmp/proj/build/example_static'

# the Python module: installed under PREFIX/lib/python3/dist-packages, naming the library's installed folder
pymod=$dest/usr/lib/python3/dist-packages/memfit
ok "the Python module is installed with _install.py naming the library's folder" \
  '[ -f $pymod/__init__.py ] && grep -qx "LIBDIR = .${libdir#$dest}." $pymod/_install.py || cat $pymod/_install.py'
ok "it imports from there and loads the installed library" \
  'PYTHONPATH=$dest/usr/lib/python3/dist-packages MEMFIT_LIB=$libdir/libmemfit.so /usr/bin/python3 -c "import memfit; assert memfit.library().mf_parse_bytes(b\"4GiB\") == 4 << 30; assert memfit.__file__.startswith(\"$dest\")"'
echo "cli_install: $pass passed, $fail failed"
[ "$fail" = 0 ]

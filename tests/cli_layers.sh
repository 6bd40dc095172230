#!/usr/bin/env bash
# cli_layers.sh — every arrow points down: each file of src/ includes only headers of its own layer or
# of the layers below it (docs/design.md 5). Layers, bottom to top: base, graph, ops, backend (cpu and
# cuda together), plan, train, onnx, models, cli; data and dist sit beside them (each needs base only, train
# and the layers above may use them). memfit.h (the public API) may be included anywhere; cli may include
# anything. The calls between the build's object files follow the same order. Usage:
# cli_layers.sh [path/to/build/memfit] (MEMFIT_LAYERS_SRC=DIR checks the includes of another src/ tree).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
src=${MEMFIT_LAYERS_SRC:-$root/src}
pass=0; fail=0
# what each layer may include (besides memfit.h and system headers)
allowed() {
  case $1 in
  base) echo "base" ;;
  graph) echo "base graph" ;;
  ops) echo "base graph ops" ;;
  backend) echo "base graph ops backend" ;;
  plan) echo "base graph ops backend plan" ;;
  data) echo "base data" ;;
  dist) echo "base dist" ;;
  train) echo "base graph ops backend plan data dist train" ;;
  onnx) echo "base graph ops backend plan data dist train onnx" ;;
  models) echo "base graph ops backend plan data dist train onnx models" ;;
  cli) echo "*" ;;
  *) echo "" ;;
  esac
}
[ -d "$src" ] || { echo "FAIL: no source tree at $src"; echo "cli_layers: 0 passed, 1 failed"; exit 1; }
files=$(cd "$src" && find . -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sed 's|^\./||' | sort)
[ -n "$files" ] || { echo "FAIL: no sources under $src"; exit 1; }
for f in $files; do
  layer=${f%%/*}
  ok_layers=$(allowed "$layer")
  if [ -z "$ok_layers" ]; then fail=$((fail + 1)); echo "FAIL: $f: folder '$layer' is in no layer (add it to tests/cli_layers.sh and docs/design.md 5)"; continue; fi
  bad_here=0
  # quoted includes only; <...> are system headers
  while IFS= read -r inc; do
    [ "$inc" = "memfit.h" ] && continue
    case $inc in */*) ;; *)
      if [ -f "$src/$(dirname "$f")/$inc" ]; then continue; fi   # a header beside the file
      bad_here=1; echo "FAIL: $f includes \"$inc\", which names no folder of src/"; continue ;;
    esac
    if [ ! -f "$src/$inc" ]; then bad_here=1; echo "FAIL: $f includes \"$inc\", which is not a file of src/"; continue; fi
    target=${inc%%/*}
    [ "$ok_layers" = "*" ] && continue
    case " $ok_layers " in *" $target "*) ;; *)
      bad_here=1; echo "FAIL: $f ($layer) includes \"$inc\" ($target): $layer may include only $ok_layers" ;;
    esac
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$src/$f")
  if [ "$bad_here" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
# The same order for calls, from the objects of a build (memfit's folder, given as $1): a function an
# object file of layer L calls must be defined in L or a layer L may use. Calls through the public
# API count too (a planner file that ran a session would show here, not in its includes).
objs=""
if [ -n "${1:-}" ] && [ -z "${MEMFIT_LAYERS_SRC:-}" ]; then
  build=$(dirname "$(realpath "$1")")
  # objects of sources that still exist (a moved file leaves its old object behind)
  objs=$(find "$build/CMakeFiles/memfit_obj.dir/src" "$build/CMakeFiles/memfit_cuda.dir/src" -name '*.o' 2>/dev/null | sort |
         while read -r o; do rel=${o#*/src/}; [ -f "$src/${rel%.o}" ] && echo "$o"; done)
fi
if [ -n "$objs" ] && command -v nm >/dev/null; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  for o in $objs; do
    rel=${o#*/src/}; layer=${rel%%/*}
    nm --defined-only -g "$o" 2>/dev/null | awk -v l="$layer" '$2 ~ /^[TDBRVW]$/ && $3 ~ /^mf_/ {print $3, l}' >>"$tmp/defs"
  done
  sort -u "$tmp/defs" -o "$tmp/defs"
  for o in $objs; do
    rel=${o#*/src/}; layer=${rel%%/*}; file=${rel%.o}
    ok_layers=$(allowed "$layer")
    [ "$ok_layers" = "*" ] && { pass=$((pass + 1)); continue; }
    bad_here=0
    for sym in $(nm -u "$o" 2>/dev/null | awk '$2 ~ /^mf_/ {print $2}'); do
      target=$(awk -v s="$sym" '$1 == s {print $2; exit}' "$tmp/defs")
      [ -z "$target" ] && continue
      case " $ok_layers " in *" $target "*) ;; *)
        bad_here=1; echo "FAIL: $file ($layer) calls $sym, defined in $target: $layer may use only $ok_layers" ;;
      esac
    done
    if [ "$bad_here" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  done
else
  echo "(calls not checked: no build objects next to ${1:-the memfit binary}, or no nm)"
fi
echo "cli_layers: $pass passed, $fail failed"
[ "$fail" = 0 ]

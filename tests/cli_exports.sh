#!/usr/bin/env bash
# cli_exports.sh — libmemfit.so exports the public API and nothing else: every dynamic symbol it
# defines starts with mf_ and is declared in include/memfit.h, and every function memfit.h declares
# is exported. Usage: cli_exports.sh path/to/build/memfit
set -u
build=$(dirname "$(realpath "${1:?usage: cli_exports.sh path/to/memfit}")")
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$build/libmemfit.so
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
if ! command -v nm >/dev/null; then echo "SKIP: nm (binutils) is not installed"; echo "cli_exports: 0 passed, 0 failed"; exit 0; fi
ok "the shared library was built ($lib)" '[ -f "$lib" ]'
# functions the header declares: identifiers mf_... followed by '(' once comments are removed
perl -0pe 's{/\*.*?\*/}{}gs; s{//[^\n]*}{}g' "$root/include/memfit.h" | grep -oE '\bmf_[A-Za-z0-9_]+[[:space:]]*\(' |
  sed 's/[[:space:](]//g' | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk 'NF >= 3 && $2 != "A" {print $3}' | sed 's/@.*//' | sort -u >"$tmp/exported"
ok "the header declares functions (parsed $(wc -l <"$tmp/declared"))" '[ "$(wc -l <"$tmp/declared")" -gt 50 ]'
ok "every export starts with mf_" '! grep -v "^mf_" "$tmp/exported" | sed "s/^/    not mf_: /" | grep .'
ok "every export is declared in include/memfit.h" \
  '! comm -13 "$tmp/declared" "$tmp/exported" | sed "s/^/    exported, not in memfit.h: /" | grep .'
ok "every function memfit.h declares is exported" \
  '! comm -23 "$tmp/declared" "$tmp/exported" | sed "s/^/    declared, not exported: /" | grep .'
echo "cli_exports: $pass passed, $fail failed"
[ "$fail" = 0 ]

#!/usr/bin/env bash
# cli_docs.sh — the repository explains itself: no file cites a design document outside it, every
# docs/*.md that README, docs, sources or tests name exists, and the sections they cite
# ("docs/design.md 3.1") are headings of docs/design.md. Usage: cli_docs.sh [path/to/memfit] (unused)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
files() { # the project's own text files: tracked ones when this is a git checkout, else all but builds
  if git rev-parse --git-dir >/dev/null 2>&1; then git ls-files -co --exclude-standard; else find . -type f -not -path './build*' | sed 's|^\./||'; fi |
    grep -Ev '^(build|\.git/)|\.(png|jpg|safetensors|bin)$' | while read -r f; do [ -f "$f" ] && echo "$f"; done
}
files >"${TMPDIR:-/tmp}/memfit_docs.$$"; list="${TMPDIR:-/tmp}/memfit_docs.$$"; trap 'rm -f "$list"' EXIT
ok "docs/design.md exists" '[ -s docs/design.md ]'
ok "nothing cites DESIGN.md (a file outside the repository)" \
  '! xargs grep -n "DESIGN\.md" <"$list" 2>/dev/null | grep -v "^tests/cli_docs.sh:" | sed "s/^/    /" | grep .'
missing=$(xargs grep -ohE "docs/[a-z_]+\.md" <"$list" 2>/dev/null | sort -u | while read -r d; do [ -f "$d" ] || echo "$d"; done)
ok "every docs/*.md named somewhere exists" '[ -z "$missing" ] || { echo "    missing: $missing"; false; }'
bad=$(xargs grep -ohE "design\.md +[0-9]+(\.[0-9]+)?" <"$list" 2>/dev/null | grep -oE "[0-9]+(\.[0-9]+)?$" | sort -u |
  while read -r s; do grep -Eq "^#+ $s[ .]" docs/design.md || echo "$s"; done)
ok "every cited section of docs/design.md is one of its headings" '[ -z "$bad" ] || { echo "    not a section: $bad"; false; }'
echo "cli_docs: $pass passed, $fail failed"
[ "$fail" = 0 ]

# harness_cli.sh — sourced by the CLI tests (cli_steg.sh, cli_resume.sh): pass/fail counters and
# run NAME EXPECTED_RC PATTERN CMD..., which runs CMD into $T/out.txt and checks its exit status and
# that its output matches PATTERN (a crash, status >= 128, always fails). Needs $T (a scratch folder).
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
run() {
  local name=$1 want=$2 pat=$3; shift 3
  "$@" > "$T/out.txt" 2>&1
  local rc=$?
  if [ "$rc" -ge 128 ]; then bad "$name: crashed (status $rc)"; sed 's/^/    /' "$T/out.txt" | tail -5; return; fi
  if [ "$rc" != "$want" ]; then bad "$name: exit status $rc, expected $want"; sed 's/^/    /' "$T/out.txt" | tail -5; return; fi
  if ! grep -Eq -- "$pat" "$T/out.txt"; then bad "$name: output lacks /$pat/"; sed 's/^/    /' "$T/out.txt" | tail -5; return; fi
  ok
}

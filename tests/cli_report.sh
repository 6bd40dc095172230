#!/usr/bin/env bash
# cli_report.sh — the run report: a tiny `memfit train steg` leaves OUT/log.jsonl and a self-contained OUT/report.html
# (curves, the arena table, timeline and samples as data: URIs, nothing external, strings escaped); `memfit report DIR`
# rebuilds it, skipping damaged lines with a warning; headless Chromium renders it (skipped when it is absent).
# Usage: bash tests/cli_report.sh path/to/memfit (from the repo root); KEEP=1 keeps the temporary folder.
set -u
MEMFIT=${1:?usage: cli_report.sh path/to/memfit}
MEMFIT=$(cd "$(dirname "$MEMFIT")" && pwd)/$(basename "$MEMFIT")
T=$(mktemp -d /tmp/cli_report.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
. "$(dirname "${BASH_SOURCE[0]}")/harness_cli.sh"

# has NAME FILE PATTERN / lacks NAME FILE PATTERN (extended regex)
has() { if grep -Eq -- "$3" "$2"; then ok; else bad "$1: $(basename "$2") lacks /$3/"; fi; }
lacks() { if grep -Eiq -- "$3" "$2"; then bad "$1: $(basename "$2") has /$3/"; grep -Eio -- ".{0,40}$3.{0,40}" "$2" | head -2; else ok; fi; }
# the page is self-contained: no scripts, nothing fetched (the SVG namespace URI in xmlns is a name, not a fetch)
selfcontained() {
  lacks "$1: no script" "$2" "<script"
  lacks "$1: nothing fetched" "$2" "(src|href)=[\"']?(https?:|//|file:)"
  lacks "$1: no CSS fetch" "$2" "(@import|url\()"
  lacks "$1: no link element" "$2" "<link"
}
ARENAS=("parameters" "gradients" "optimizer state" "activations \+ workspace" "data staging")
SERIES=("loss (update)" "loss (validation)" "guide PSNR (train)" "rec PSNR (train)" "hide_psnr (validation)" "rec_psnr (validation)"
        "hide_ssim (validation)" "rec_ssim (validation)"
        "learning rate" "gradient norm")

G=(train steg --blocks 1 --growth 4 --size 16 --batch 2 --gen-count 8 --gen-size 32 --steps 6 --epoch-steps 3 --val-count 2
   --threads 1 --log-every 1000 --data generated)
R="$T/run"
run "tiny run" 0 "planned .* exact" "$MEMFIT" "${G[@]}" --out "$R"
[ -s "$R/log.jsonl" ] && ok || bad "no --log: the records are not in OUT/log.jsonl"
[ -s "$R/report.html" ] && ok || bad "no report.html after the run"
[ -s "$R/timeline.svg" ] && ok || bad "no timeline.svg after the run"
ls "$R"/report.html.tmp.* >/dev/null 2>&1 && bad "a temporary report file was left behind" || ok
if [ -x /usr/bin/python3 ]; then # Debian's (a pyenv shim may lack json on another PATH)
  /usr/bin/python3 - "$R/log.jsonl" <<'EOF' && ok || bad "log.jsonl: not JSON lines that start with a start record and end with an end record"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs[0]["type"] == "start" and recs[0]["step"] == 0 and recs[0]["pixels"] == 2 * 3 * 16 * 16, recs[0]
assert "--gen-count 8" in recs[0]["command"] and "micro-batch 2" in recs[0]["settings"], recs[0]
assert recs[-1]["type"] == "end" and [r["step"] for r in recs if r["type"] == "update"] == list(range(1, 7))
EOF
fi
H="$R/report.html"
selfcontained "report" "$H"
for a in "${ARENAS[@]}"; do has "arena table" "$H" "<tr class=\"arena\"><td>$a</td>.*class=\"exact\">exact</td></tr>"; done
has "arena table" "$H" "<table id=\"memory\">"
has "5 of 5 arenas exact" "$H" "5 of 5 arenas measured exactly as planned"
for s in "${SERIES[@]}"; do
  s_re=$(printf '%s' "$s" | sed 's/[()]/\\&/g')
  has "curve '$s'" "$H" "<path class=\"curve\" data-series=\"$s_re\"[^>]* d=\"M[0-9.]+,[0-9.]+ "
done
[ "$(grep -c '<svg' "$H")" -ge 4 ] && ok || bad "report: fewer than 4 inline <svg> charts"
has "update curve has 6 points" "$H" "data-series=\"loss \(update\)\"[^>]* d=\"M[0-9.,]+ (L[0-9.,]+ ){5}\""
has "validation points" "$H" "<circle cx="
has "samples embedded" "$H" "<img class=\"samples\" alt=\"samples\" src=\"data:image/png;base64,iVBORw0KGgo"
has "latest samples" "$H" "<figcaption>samples-epoch002.png</figcaption>"
has "timeline embedded" "$H" "src=\"data:image/svg\+xml;base64,PHN2Zy"
has "settings: the command" "$H" "id=\"settings\">memfit train steg --blocks 1 .*--data generated --out "
has "settings: the line" "$H" "^preset custom \(1 coupling blocks, growth 4\), 16x16 crops, batch 2 = micro-batch 2 x 1, f32"
has "ended" "$H" "Ended: <b>done</b> after update 6"

# ---- memfit report DIR rebuilds the same page
cp "$H" "$T/first.html"
rm "$H"
run "memfit report DIR" 0 "report: .*/report.html" "$MEMFIT" report "$R"
cmp -s "$H" "$T/first.html" && ok || bad "memfit report: the rebuilt page differs from the one train wrote"
run "report --help" 0 "usage: memfit report DIR" "$MEMFIT" report --help
run "report: misspelt option" 2 "did you mean --log" "$MEMFIT" report "$R" --lgo x
run "report: misspelt command" 2 "did you mean 'report'" "$MEMFIT" reprot "$R"
run "report: no folder" 2 "usage: memfit report DIR" "$MEMFIT" report
run "report: no records" 1 "memfit report: cannot read .*nothere/log.jsonl" "$MEMFIT" report "$T/nothere"
run "report: two folders" 2 "one run folder only" "$MEMFIT" report "$R" "$R"

# ---- damaged records: a killed run (no end record, a cut last line), junk, a bad value, a NUL byte; names escaped
K="$T/killed <b>&\"x'"
mkdir -p "$K"
cp "$R"/samples-epoch001.png "$K/"
{
  head -n 3 "$R/log.jsonl"
  echo '{"step": 3, "type": "upd'                     # line 4: cut short in the middle
  echo 'garbage'                                       # line 5
  echo '{"step": 4, "type": "update", "loss": nan}'    # line 6: not JSON
  printf '{"step": 4, "type": "upd\0ate"}\n'          # line 7: a NUL byte
  echo '{"type": "update", "loss": 1}'                 # line 8: no step
  echo '{"step": 5, "type": "update", "loss": null, "lr": 1e-5, "guide": 1, "rec": 2}'  # a null: a gap in the loss curve
  echo '{"step": 6, "type": "update", "loss": 2500, "lr": 1e-5, "guide": 1, "rec": 2, "note": "<script>x</script>"}'
  printf '{"step": 7, "type": "update", "loss": 2400}'  # line 11: no line end (the kill cut it)
} > "$K/log.jsonl"
run "report of a damaged log" 0 "report: " "$MEMFIT" report "$K"
for l in 4 5 6 7 8 11; do
  grep -q "memfit report: warning: .*log.jsonl line $l: damaged record skipped" "$T/out.txt" && ok || bad "no warning for line $l"
done
[ "$(grep -c "damaged record skipped" "$T/out.txt")" = 6 ] && ok || bad "damaged log: not 6 warnings"; grep -c "damaged" "$T/out.txt" >/dev/null
H2="$K/report.html"
selfcontained "damaged" "$H2"
has "killed: no end record" "$H2" "stopped without a closing record \(killed\): the last record is at update 6"
has "damaged: lines counted" "$H2" "6 damaged lines skipped"
has "damaged: a gap (null) splits the loss curve" "$H2" "data-series=\"loss \(update\)\"[^>]* d=\"M[^\"]*M"
has "damaged: arenas planned, not measured" "$H2" "<tr class=\"arena\"><td>parameters</td>.*not measured yet"
has "escaped folder name" "$H2" "<h1>memfit run report: .*killed &lt;b&gt;&amp;&quot;x&#39;</h1>"
lacks "folder name not raw" "$H2" "killed <b>"

# ---- a single point, and values that are all null
S="$T/single"
mkdir -p "$S"
echo '{"step": 1, "type": "update", "loss": 3.5, "lr": null, "guide": null, "rec": null, "grad_norm": null}' > "$S/log.jsonl"
run "report of one update" 0 "report: " "$MEMFIT" report "$S"
has "one point: a dot" "$S/report.html" "<circle cx="
has "one point: a path" "$S/report.html" "data-series=\"loss \(update\)\"[^>]* d=\"M[0-9.]+,[0-9.]+ \""
has "all null: said" "$S/report.html" "no values logged yet"
has "no arenas: said" "$S/report.html" "No arena figures in the records"
lacks "no NaN drawn" "$S/report.html" "[>\" ,(](nan|-?inf)[<\" ,)]"

# ---- a real browser: headless Chromium renders the page; its DOM has the curves and the memory table
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
  echo "cli_report: chromium not installed: skipping the browser check (scripts/deps.sh installs it)"
else
  CH=("$CHROME" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$T/chrome" --window-size=1000,2200)
  HOME="$T" timeout 120 "${CH[@]}" --dump-dom "file://$H" > "$T/dom.html" 2> "$T/chrome.err"
  if [ -s "$T/dom.html" ]; then
    ok
    n=$(grep -o '<path class="curve"' "$T/dom.html" | wc -l)
    [ "$n" = "${#SERIES[@]}" ] && ok || bad "chromium DOM: $n curve paths, expected ${#SERIES[@]} (one per series)"
    has "chromium DOM: memory table" "$T/dom.html" "<table id=\"memory\">"
    for a in "${ARENAS[@]}"; do has "chromium DOM: arena row" "$T/dom.html" "<tr class=\"arena\"><td>$a</td>"; done
    has "chromium DOM: samples image" "$T/dom.html" "<img class=\"samples\""
  else bad "chromium --dump-dom printed nothing"; tail -3 "$T/chrome.err"; fi
  HOME="$T" timeout 120 "${CH[@]}" --screenshot="$T/shot.png" "file://$H" > /dev/null 2>> "$T/chrome.err"
  if [ -s "$T/shot.png" ] && [ "$(head -c 8 "$T/shot.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
     [ "$(stat -c %s "$T/shot.png")" -gt 20000 ]; then ok
  else bad "chromium --screenshot: no PNG (or an empty page)"; tail -3 "$T/chrome.err"; fi
fi

echo "cli_report: $pass passed, $fail failed"
[ "$fail" = 0 ]

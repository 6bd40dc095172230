#!/usr/bin/env bash
# cli_help.sh — what a newcomer types first: --version with the build's features, help that shows
# defaults, presets, variants and exit codes, did-you-mean for misspelt commands and options, and
# `presets` refusing or honouring every option it takes. Usage: cli_help.sh path/to/memfit
set -u
M=$(realpath "${1:?usage: cli_help.sh path/to/memfit}")
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/harness_cli.sh"
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
version=$(sed -n 's/^project(memfit VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../CMakeLists.txt")

run "--version: CMake's project version" 0 "^memfit $version\$" "$M" --version
run "--version: the build's backends and features" 0 "backends: cpu .*(cuda \(libmemfit_cuda.so|cuda not built in)" "$M" --version
run "--version names video support either way" 0 "^video: (FFmpeg|not built)" "$M" --version
run "version, -V" 0 "^memfit $version" "$M" -V
run "help lists every exit status" 0 "3  nothing fits the memory budget" "$M" --help
run "help lists calibrate" 0 "calibrate " "$M" --help

run "misspelt command: did you mean" 2 "unknown command 'plna'; did you mean 'plan'" "$M" plna
run "misspelt command (swap): did you mean" 2 "did you mean 'train'" "$M" trian
run "unrelated word: no suggestion" 2 "unknown command 'frobnicate'\$" "$M" frobnicate
run "plan: misspelt workload" 2 "unknown workload 'stge'; did you mean 'steg'" "$M" plan stge
run "train: misspelt workload" 2 "unknown workload 'stge'; did you mean 'steg'" "$M" train stge
run "plan: misspelt option" 2 "did you mean --budget" "$M" plan steg --budgte 4GiB
run "plan: misspelt flag" 2 "did you mean --json" "$M" plan steg --jsno
run "plan: misspelt workload setting" 2 "did you mean --preset" "$M" plan steg --presett small
run "plan: misspelt option with =" 2 "did you mean --timeline" "$M" plan steg --timelin=x.svg
run "hide: misspelt option" 2 "did you mean --cover" "$M" hide --covr c.png
run "reveal: misspelt option" 2 "did you mean --stego" "$M" reveal --stgo s.png
run "eval: misspelt option" 2 "did you mean --model" "$M" eval --modle m
run "train steg: misspelt option" 2 "did you mean --steps" "$M" train steg --stepz 3
run "demo: misspelt option" 2 "did you mean --steps" "$M" demo --stpes 3
run "calibrate: misspelt option" 2 "did you mean --backend" "$M" calibrate --backedn cpu
run "an option far from any: no suggestion" 2 "unknown option '--zzzzzzzz' \(see" "$M" hide --zzzzzzzz

run "plan --help lists the variants below" 0 "1  checkpointed subnets" "$M" plan --help
run "plan --help lists the presets with their settings" 0 "seed-16gb +10 blocks, growth 160" "$M" plan --help
run "plan --help shows defaults" 0 "default: all without --budget" "$M" plan --help
run "plan --help names exit status 3" 0 "3 nothing fits the --budget" "$M" plan --help
run "presets --help lists only what presets takes" 0 "default: searched" "$M" presets --help
if grep -q -- "--timeline" "$T/out.txt"; then bad "presets --help offers --timeline"; else ok; fi
run "demo --help shows defaults" 0 "Defaults: --steps 150" "$M" demo --help

run "presets --budget is refused, pointing to plan" 2 "use 'memfit plan steg --budget" "$M" presets steg --budget 4GiB
run "presets --timeline is refused, pointing to plan" 2 "memfit plan steg --timeline" "$M" presets steg --timeline "$T/x.svg"
if [ -e "$T/x.svg" ]; then bad "presets --timeline wrote a file"; else ok; fi
run "presets names its cost model" 0 "cost model MEMFIT_CALIBRATION" "$M" presets steg --preset small --size 32
run "presets --json is JSON" 0 "\"presets\"" "$M" presets steg --preset small --size 32 --json
py() { ! command -v python3 >/dev/null || python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $1" "$T/out.txt"; }
if py 'assert len(d["presets"]) == 8'; then ok; else bad "presets --json: not 8 rows of valid JSON"; fi
run "presets --micro-batch is honoured" 0 "" "$M" presets steg --preset small --size 32 --micro-batch 2 --json
if py 'assert all(r["chosen"]["micro_batch"] == 2 for r in d["presets"])'; then ok
else bad "presets --micro-batch 2: some row has another micro-batch"; fi
run "presets --recompute none is honoured" 0 "" "$M" presets steg --preset small --size 32 --recompute none --json
if py 'assert all(r["chosen"]["recomputed_segments"] == 0 for r in d["presets"])'; then ok
else bad "presets --recompute none: a row recomputes"; fi
run "presets --variant 1 is honoured" 0 "" "$M" presets steg --preset small --size 32 --variant 1 --json
if py 'assert all(r["chosen"]["variant"] == "checkpointed subnets" for r in d["presets"])'; then ok
else bad "presets --variant 1: a row has another variant"; fi
run "presets --precision bf16 is honoured" 0 "bf16" "$M" presets steg --preset small --size 32 --precision bf16
if grep -E "^ *[0-9]+ GiB" "$T/out.txt" | grep -q " f32 "; then bad "presets --precision bf16: an f32 row"; else ok; fi

echo "cli_help: $pass passed, $fail failed"
[ "$fail" = 0 ]

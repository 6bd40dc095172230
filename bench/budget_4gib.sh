#!/usr/bin/env bash
# budget_4gib.sh — issue 4's target table: the steganography seed-16gb model (10 blocks, growth 160,
# 224x224, effective batch 32) in a 4 GiB budget: what memfit picks, vs the seed project's hand-made
# choice (6 blocks, growth 80, batch 1 x 32, nothing recomputed) and vs recomputing every segment.
# Peaks are exact plans; times are the planner's calibrated predictions on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/memfit ] || bash scripts/build.sh >/dev/null
M=${MEMFIT:-./build/memfit}
picked=$($M plan steg --preset seed-16gb --budget 4GiB --json)
seed=$($M plan steg --preset seed-4gb --micro-batch 1 --recompute none --json)
allrc=$($M plan steg --preset seed-16gb --budget 4GiB --recompute all --json)
/usr/bin/python3 - "$picked" "$seed" "$allrc" <<'PY'
import json, sys
rows = [("memfit's choice (seed-16gb model)", json.loads(sys.argv[1])),
        ("seed's hand-made 4 GB setting (6 blocks, g 80)", json.loads(sys.argv[2])),
        ("recompute every segment (seed-16gb model)", json.loads(sys.argv[3]))]
ref = rows[0][1]["chosen"]["predicted_step_s"]
print("%-48s %-70s %10s %14s" % ("plan", "settings", "peak GiB", "time vs choice"))
for name, r in rows:
    c = r["chosen"]
    print("%-48s %-70s %10.2f %13.2fx" % (name, c["settings"][:70], c["device_bytes"] / 2**30, c["predicted_step_s"] / ref))
PY

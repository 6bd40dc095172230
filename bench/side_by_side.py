#!/usr/bin/python3
"""side_by_side.py — the summary of an interleaved benchmark (bench/moco.sh, bench/vqgan.sh): reads one JSON
record per run ({"impl", "images_per_s", "peak_rss_bytes"}), prints each implementation's medians and rounds, and
memfit's speed and peak-RSS ratios against every other implementation.
Usage: /usr/bin/python3 bench/side_by_side.py RUNS.jsonl"""
import json
import statistics
import sys

by = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    by.setdefault(r["impl"], []).append(r)
med = {k: (statistics.median(x["images_per_s"] for x in v), statistics.median(x["peak_rss_bytes"] for x in v))
       for k, v in by.items()}
ms, mr = med["memfit"]
print("%-22s %10s %14s %s" % ("impl", "images/s", "peak RSS MiB", "rounds (images/s)"))
for k, (s, rss) in med.items():
    print("%-22s %10.2f %14.1f %s" % (k, s, rss / 2**20, " ".join("%.2f" % x["images_per_s"] for x in by[k])))
for k, (s, rss) in med.items():
    if k != "memfit":
        print("memfit / %-13s speed %.2fx  peak RSS %.2fx   (targets: speed >= 1.0x, RSS <= 0.5x)" % (k, ms / s, mr / rss))

#!/usr/bin/python3
"""side_by_side.py — the summary of an interleaved benchmark (bench/moco.sh, bench/vqgan.sh): reads one JSON
record per run ({"impl", "images_per_s", "peak_rss_bytes"}), prints each implementation's medians and rounds, and
memfit's speed and peak-RSS ratios against every other implementation.
When memfit's records carry the step's conv/GEMM FLOPs (gemm_flops, per step of "batch" images) and the sgemm peak
measured in its runs (peak_gflops_per_s, bench/common/peak.c; the best of them: other work on the machine only
ever lowers a measured peak), every implementation also gets its achieved conv/GEMM
GFLOP/s (memfit's FLOPs per image x its images/s: the same model's work) and the percentage of that peak.
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
mf = by["memfit"]
flops_img = statistics.median(x["gemm_flops"] / x["batch"] for x in mf) if all("gemm_flops" in x for x in mf) else None
peaks = [x["peak_gflops_per_s"] for x in mf if "peak_gflops_per_s" in x]
peak = max(peaks) if peaks else None
rate = flops_img is not None
print("%-22s %10s %14s%s %s" % ("impl", "images/s", "peak RSS MiB", " %9s %7s" % ("GFLOP/s", "% peak") if rate else "",
                                "rounds (images/s)"))
for k, (s, rss) in med.items():
    extra = ""
    if rate:
        gf = flops_img * s / 1e9
        extra = " %9.1f %7s" % (gf, "%.1f%%" % (100 * gf / peak) if peak else "-")
    print("%-22s %10.2f %14.1f%s %s" % (k, s, rss / 2**20, extra, " ".join("%.2f" % x["images_per_s"] for x in by[k])))
for k, (s, rss) in med.items():
    if k != "memfit":
        print("memfit / %-13s speed %.2fx  peak RSS %.2fx   (targets: speed >= 1.0x, RSS <= 0.5x)" % (k, ms / s, mr / rss))
if rate:
    x = mf[0]
    print("conv/GEMM work %.3f GFLOP per step of %d images (all ops the plan counts: %.3f GFLOP)" %
          (x["gemm_flops"] / 1e9, x["batch"], x["plan_flops"] / 1e9), end="")
    if peak:
        print("; sgemm peak %.1f GFLOP/s (the best of %d runs; OpenBLAS %s core, %s; oneDNN ISA %s); target >= 70%% of peak" %
              (peak, len(peaks), x.get("blas_core", "?"), x.get("blas_parallel", "?"), x.get("dnnl_isa", "?")))
    else:
        print()

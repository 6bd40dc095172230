/* cmd_calibrate.c — `memfit calibrate`: measures the backend for the planner's cost model now,
 * rewrites the cache file and prints the figures and where the cache is. */
#include "cli/cli.h"
#include "train/calibrate.h"
#include "backend/backend.h"
#include <omp.h>
#include <string.h>

static void calibrate_usage(FILE *f) {
  fprintf(f, "usage: memfit calibrate [--backend cpu|cuda] [--threads T]\n\n"
             "Measures what the planner's cost model needs (convolution FLOP/s per precision, elementwise bandwidth,\n"
             "the fixed cost of a node and of a GEMM call), each the fastest of several repeats, and saves it in\n"
             "$XDG_CACHE_HOME/memfit/calibration-BACKEND-tTHREADS.txt (~/.cache/memfit/ without XDG_CACHE_HOME).\n"
             "`plan --budget`, `presets` and `train --budget` read that file, and measure again by themselves when it\n"
             "is missing, damaged, from another memfit version, older than 30 days, or measured on a busy machine more\n"
             "than an hour ago. A busy machine (repeats that disagree, or T threads computing slower than one) is\n"
             "measured again and named in the output. Times are relative: only the ranking of plans depends on them.\n\n"
             "  --backend B   cpu (default) or cuda\n"
             "  --threads T   threads to calibrate for (default: all cores, as plan and train use)\n"
             "\nexit status: 0 measured, 1 the backend could not be timed, 2 usage error\n");
}

int mf_cmd_calibrate(int argc, char **argv) {
  const char *backend = "cpu";
  int threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help")) { calibrate_usage(stdout); return 0; }
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) backend = v;
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) return 2; }
    else return cli_unknown_option("calibrate", argv[i]);
  }
  char err[1024];
  if (!mf_backend_get(backend, err, sizeof err)) { fprintf(stderr, "memfit calibrate: --backend: %s\n", err); return 2; }
  mf_calibration c;
  if (mf_calibrate_refresh(backend, threads, &c, err, sizeof err) < 0) { fprintf(stderr, "memfit calibrate: %s\n", err); return 1; }
  int t = threads > 0 ? threads : omp_get_num_procs();
  printf("calibration of backend %s with %d thread%s (%s)\n", backend, t, t == 1 ? "" : "s", c.source);
  static const mf_dtype dts[3] = {MF_F32, MF_BF16, MF_F16};
  for (int i = 0; i < 3; i++)
    printf("  convolution, %-4s storage   %10.3f GFLOP/s\n", mf_dtype_name(dts[i]), c.flops_per_s[dts[i]] / 1e9);
  for (int i = 0; i < 3; i++)
    printf("  elementwise, %-4s storage   %10.3f GB/s\n", mf_dtype_name(dts[i]), c.bytes_per_s[dts[i]] / 1e9);
  printf("  fixed cost of a node        %10.3f us\n", c.op_overhead_s * 1e6);
  printf("  fixed cost of a GEMM node   %10.3f us\n", c.gemm_overhead_s * 1e6);
  if (c.busy || *c.note) printf("note: %s\n", *c.note ? c.note : "the machine looked busy while measuring");
  if (*c.path) printf("cache: %s\n", c.path);
  else printf("note: MEMFIT_CALIBRATION is set: its figures stand in for any measurement; nothing was measured or saved\n");
  return 0;
}

/* cmd_calibrate.c — `memfit calibrate`: measures the backend for the planner's cost model now,
 * rewrites the cache file and prints the figures and where the cache is; `memfit calibrate WORKLOAD`:
 * times every convolution shape of the workload's training step on oneDNN and on memfit's own GEMM
 * algorithms, and saves which is faster in the conv cache the planner reads. */
#include "cli/cli.h"
#include "train/calibrate.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "models/workload.h"
#include "plan/plan.h"
#include <stdlib.h>
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
             "\nusage: memfit calibrate WORKLOAD [settings] [--precision f32|bf16] [--micro-batch N] [--variant V] [--threads T]\n"
             "                        [--repeats R]\n\n"
             "Times every convolution of WORKLOAD's training step (%s; its settings as 'memfit plan WORKLOAD'\n"
             "takes them; activations stored in --precision, default f32) that oneDNN takes, forward, backward-data and\n"
             "backward-weights, on oneDNN and on memfit's own (its Winograd where it takes the shape, else its GEMM\n"
             "algorithms), T threads, the better of R interleaved runs each (default 5), and saves the faster of each\n"
             "shape and pass in $XDG_CACHE_HOME/memfit/conv-cpu-tTHREADS.txt, beside the shapes measured before. Plans\n"
             "and training runs with T threads then run each measured shape on the faster one ('memfit plan WORKLOAD\n"
             "--by-layer' shows which); shapes not in it follow the shape rule (oneDNN wherever it takes the conv). The\n"
             "cache is not used when older than 30 days or from another oneDNN; MEMFIT_CONV=rule ignores it. On a busy\n"
             "machine the figures are rough: measure again when it is quiet.\n"
             "\nexit status: 0 measured, 1 the backend could not be timed, 2 usage error\n", "steg, moco, imagegs");
}

/* memfit calibrate WORKLOAD ...: the conv cache */
static int calibrate_convs(int argc, char **argv) {
  const mf_workload *w = mf_workload_find(argv[1]);
  if (!w->build || !w->cfg_new) {
    fprintf(stderr, "memfit calibrate: %s: its convolutions cannot be measured from here (steg, moco, imagegs)\n", w->name);
    return 2;
  }
  void *cfg = w->cfg_new();
  int threads = 0, micro = 0, variant = -1, reps = 5;
  mf_dtype dtype = MF_F32;
  char err[1024];
  for (int i = 2; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help")) { calibrate_usage(stdout); free(cfg); return 0; }
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) { free(cfg); return 2; } }
    else if ((v = cli_opt(argc, argv, &i, "--micro-batch"))) { if (cli_int("--micro-batch", v, 1, 1 << 20, &micro)) { free(cfg); return 2; } }
    else if ((v = cli_opt(argc, argv, &i, "--variant"))) { if (cli_int("--variant", v, 0, w->n_variants - 1, &variant)) { free(cfg); return 2; } }
    else if ((v = cli_opt(argc, argv, &i, "--repeats"))) { if (cli_int("--repeats", v, 1, 1000, &reps)) { free(cfg); return 2; } }
    else if ((v = cli_opt(argc, argv, &i, "--precision"))) {
      if (strcmp(v, "f32") && strcmp(v, "bf16")) {
        fprintf(stderr, "memfit calibrate: --precision: '%s' is not f32 or bf16 (the storage types oneDNN's convs take)\n", v);
        free(cfg);
        return 2;
      }
      dtype = (mf_dtype)mf_dtype_parse(v);
    }
    else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
      const char *key = argv[i] + 2, *eq = strchr(key, '=');
      char k[64];
      if (eq) { snprintf(k, sizeof k, "%.*s", (int)(eq - key), key); v = eq + 1; }
      else { snprintf(k, sizeof k, "%s", key); v = argv[++i]; }
      if (w->cfg_set(cfg, k, v, err, sizeof err) < 0) {
        free(cfg);
        if (strstr(err, "unknown setting")) return cli_unknown_option("calibrate", argv[eq ? i : i - 1]);
        fprintf(stderr, "memfit calibrate: %s\n", err);
        return 2;
      }
    } else { free(cfg); return cli_unknown_option("calibrate", argv[i]); }
  }
  if (w->cfg_check && w->cfg_check(cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit calibrate: %s\n", err); free(cfg); return 2; }
  if (!mf_cpu_dnnl_version()) {
    printf("memfit calibrate: this memfit is built without oneDNN: every convolution runs memfit's own algorithms, "
           "nothing to compare\n");
    free(cfg);
    return 0;
  }
  int t = threads > 0 ? threads : omp_get_max_threads();
  char desc[256];
  w->cfg_describe(cfg, desc, sizeof desc);
  mf_graph *g = mf_graph_init(dtype);
  void *state = NULL;
  mf_tensor loss;
  int rc = 0;
  if (!g || w->build(g, cfg, variant >= 0 ? variant : w->default_variant, micro ? micro : w->default_micro_batch(cfg), &loss, &state,
                     err, sizeof err) < 0) {
    fprintf(stderr, "memfit calibrate: %s\n", g ? err : "out of host memory");
    rc = 1;
  } else {
    mf_plan_opts po = mf_plan_opts_default();
    po.threads = t;
    mf_plan *p = mf_plan_init(g, loss, &po, err, sizeof err); /* the training step: its backward convs too */
    if (!p) { fprintf(stderr, "memfit calibrate: %s\n", err); rc = 1; }
    else {
      char path[1024];
      mf_cpu_conv_cache_path(t, path, sizeof path);
      printf("convolutions of %s (training step, %s), %d thread%s: memfit's own and oneDNN %s, the better of %d runs\n", desc,
             mf_dtype_name(dtype), t, t == 1 ? "" : "s", mf_cpu_dnnl_version(), reps);
      int n = mf_cpu_conv_measure(p->g, t, reps, stdout, err, sizeof err);
      if (n < 0) { fprintf(stderr, "memfit calibrate: %s\n", err); rc = 1; }
      else if (!n) printf("no convolution here that oneDNN takes: nothing measured, nothing saved\n");
      else printf("%d shape%s measured, saved to %s\n", n, n == 1 ? "" : "s", path);
      mf_plan_free(p);
    }
  }
  if (state) w->state_free(state);
  mf_graph_free(g);
  free(cfg);
  return rc;
}

int mf_cmd_calibrate(int argc, char **argv) {
  if (argc >= 2 && mf_workload_find(argv[1])) return calibrate_convs(argc, argv);
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

/* calibrate.c — measures the backend once for the planner's cost model: convolution throughput per
 * storage dtype (compute-bound ops) and elementwise bandwidth (memory-bound ops); cached per
 * backend and thread count so later runs plan instantly. */
#include "plan/search.h"
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* seconds per forward run of a one-op graph */
static char time_err[512]; /* why the last time_graph failed */

static double time_graph(mf_graph *g, mf_tensor out, const char *backend, int threads, int reps, double *flops) {
  mf_train_opts o = mf_train_opts_default();
  o.plan.training = 0;
  o.plan.backend = backend;
  o.threads = threads;
  mf_session *s = mf_session_init(g, out, &o, time_err, sizeof time_err);
  if (!s) return -1;
  *flops = mf_plan_flops(mf_session_plan(s));
  mf_session_forward(s); /* warm-up */
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = now_s();
    mf_session_forward(s);
    double t = now_s() - t0;
    if (t < best) best = t;
  }
  mf_session_free(s);
  return best;
}

static void cache_path(char *buf, size_t n, const char *backend, int threads) {
  const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  if (x && *x) snprintf(buf, n, "%s/memfit", x);
  else snprintf(buf, n, "%s/.cache/memfit", h && *h ? h : "/tmp");
  size_t l = strlen(buf);
  snprintf(buf + l, n - l, "/calibration-%s-t%d.txt", backend, threads);
}

static void mkdirs_for(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') { *p = 0; mkdir(tmp, 0777); *p = '/'; }
}

int mf_calibrate(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  if (!backend) backend = "cpu";
  if (threads <= 0) threads = omp_get_num_procs();
  c->offload_bytes_per_s = 20e9; /* PCIe-class link; only used by device backends */
  const char *env = getenv("MEMFIT_CALIBRATION");
  if (env && sscanf(env, "%lf,%lf,%lf,%lf,%lf", &c->flops_per_s[MF_F32], &c->flops_per_s[MF_BF16], &c->flops_per_s[MF_F16],
                    &c->bytes_per_s[MF_F32], &c->op_overhead_s) >= 4) {
    c->gemm_overhead_s = c->op_overhead_s;
    c->bytes_per_s[MF_BF16] = c->bytes_per_s[MF_F16] = c->bytes_per_s[MF_F32];
    snprintf(c->source, sizeof c->source, "MEMFIT_CALIBRATION");
    return 0;
  }
  char path[1024];
  cache_path(path, sizeof path, backend, threads);
  FILE *f = fopen(path, "r");
  if (f) {
    int ok = fscanf(f, "%lf %lf %lf %lf %lf %lf %lf %lf", &c->flops_per_s[MF_F32], &c->flops_per_s[MF_BF16], &c->flops_per_s[MF_F16],
                    &c->bytes_per_s[MF_F32], &c->bytes_per_s[MF_BF16], &c->bytes_per_s[MF_F16], &c->op_overhead_s,
                    &c->gemm_overhead_s) == 8;
    fclose(f);
    if (ok && c->flops_per_s[MF_F32] > 0 && c->bytes_per_s[MF_F32] > 0) {
      snprintf(c->source, sizeof c->source, "cached in %.140s", path);
      return 0;
    }
  }
  mf_dtype dts[3] = {MF_F32, MF_BF16, MF_F16};
  for (int i = 0; i < 3; i++) {
    mf_graph *g = mf_graph_init(dts[i]);
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){8, 64, 32, 32});
    mf_tensor w = mf_param(g, "w", 4, (int64_t[]){64, 64, 3, 3}, MF_INIT_KAIMING, 0);
    mf_tensor y = mf_conv2d(g, x, w, -1, 1, 1, 1);
    double fl = 0, t = time_graph(g, y, backend, threads, 7, &fl);
    mf_graph_free(g);
    if (t <= 0) { snprintf(err, errlen, "calibration: could not time a convolution on backend '%s': %s", backend, time_err); return -1; }
    c->flops_per_s[dts[i]] = fl / t;
  }
  mf_graph *g = NULL;
  double fl = 0, t = 0;
  int64_t n = 1 << 22;
  for (int i = 0; i < 3; i++) { /* bandwidth of an elementwise op in each storage dtype */
    g = mf_graph_init(dts[i]);
    mf_tensor a = mf_input(g, "a", 1, &n), b = mf_input(g, "b", 1, &n);
    mf_tensor y = mf_add(g, a, b);
    t = time_graph(g, y, backend, threads, 5, &fl);
    mf_graph_free(g);
    if (t <= 0) { snprintf(err, errlen, "calibration: could not time an elementwise op on backend '%s': %s", backend, time_err); return -1; }
    c->bytes_per_s[dts[i]] = 3.0 * (double)n * (double)mf_dtype_size(dts[i]) / t;
  }
  /* per-node overhead: a chain of 256 tiny adds */
  g = mf_graph_init(MF_F32);
  int64_t small = 64;
  mf_tensor v = mf_input(g, "v", 1, &small);
  for (int i = 0; i < 256; i++) v = mf_add_scalar(g, v, 1.0);
  t = time_graph(g, v, backend, threads, 5, &fl);
  mf_graph_free(g);
  c->op_overhead_s = t > 0 ? t / 256 : 0;
  /* per-GEMM-node overhead: a chain of 32 small convolutions (16 channels, 16x16: where small
   * models live), less their arithmetic at the large convolution's rate */
  g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 16, 16, 16});
  mf_tensor wt = mf_param(g, "w", 4, (int64_t[]){16, 16, 3, 3}, MF_INIT_KAIMING, 0);
  for (int i = 0; i < 32; i++) x = mf_conv2d(g, x, wt, -1, 1, 1, 1);
  t = time_graph(g, x, backend, threads, 5, &fl);
  mf_graph_free(g);
  c->gemm_overhead_s = t > 0 ? fmax(0, t - fl / c->flops_per_s[MF_F32]) / 32 : c->op_overhead_s;
  snprintf(c->source, sizeof c->source, "measured now, saved to %.130s", path);
  mkdirs_for(path);
  f = fopen(path, "w");
  if (f) {
    fprintf(f, "%.6g %.6g %.6g %.6g %.6g %.6g %.6g %.6g\n", c->flops_per_s[MF_F32], c->flops_per_s[MF_BF16],
            c->flops_per_s[MF_F16], c->bytes_per_s[MF_F32], c->bytes_per_s[MF_BF16], c->bytes_per_s[MF_F16], c->op_overhead_s,
            c->gemm_overhead_s);
    fclose(f);
  }
  return 0;
}

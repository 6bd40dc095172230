/* calibrate.c — measures the backend for the planner's cost model: convolution throughput per
 * storage dtype (compute-bound ops), elementwise bandwidth (memory-bound ops) and per-node overheads;
 * cached per backend and thread count (versioned, dated, refreshed when stale, corrupt or measured on
 * a busy machine) so later runs plan instantly. */
#include "train/calibrate.h"
#include "base/atomic_file.h"
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
  CAL_VERSION = 2,                 /* bump when what is measured changes: older caches are re-measured */
  CAL_MAX_AGE_S = 30 * 86400,      /* a cache older than this is re-measured (new BLAS, new machine) */
  CAL_BUSY_MAX_AGE_S = 3600,       /* one measured on a busy machine, after an hour */
  CAL_ATTEMPTS = 2,                /* looks at a busy machine before settling for 1-thread figures */
};
#define CAL_SPREAD_BUSY 1.5        /* median / best repeat above this: something else used the cores */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static char time_err[512]; /* why the last time_graph failed */

/* Seconds per forward run of a graph: the best of `reps` runs after a warm-up; *spread is the median
 * run over the best (1: the repeats agree; well above 1: the cores were shared). */
static double time_graph(mf_graph *g, mf_tensor out, const char *backend, int threads, int reps, double *flops,
                         double *spread) {
  mf_train_opts o = mf_train_opts_default();
  o.plan.training = 0;
  o.plan.backend = backend;
  o.threads = threads;
  mf_session *s = mf_session_init(g, out, &o, time_err, sizeof time_err);
  if (!s) return -1;
  *flops = mf_plan_flops(mf_session_plan(s));
  mf_session_forward(s); /* warm-up */
  double t[16];
  if (reps > 16) reps = 16;
  for (int r = 0; r < reps; r++) {
    double t0 = now_s();
    mf_session_forward(s);
    t[r] = now_s() - t0;
  }
  mf_session_free(s);
  qsort(t, (size_t)reps, sizeof t[0], cmp_double);
  if (spread) *spread = t[0] > 0 ? t[reps / 2] / t[0] : 1;
  return t[0];
}

void mf_calibration_cache_path(const char *backend, int threads, char *buf, size_t n) {
  const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  if (!backend) backend = "cpu";
  if (threads <= 0) threads = omp_get_num_procs();
  if (x && *x) snprintf(buf, n, "%s/memfit", x);
  else snprintf(buf, n, "%s/.cache/memfit", h && *h ? h : "/tmp");
  size_t l = strlen(buf);
  if (l < n) snprintf(buf + l, n - l, "/calibration-%s-t%d.txt", backend, threads);
}

static int figures_ok(const mf_calibration *c) {
  mf_dtype dts[3] = {MF_F32, MF_BF16, MF_F16};
  for (int i = 0; i < 3; i++)
    if (!(isfinite(c->flops_per_s[dts[i]]) && c->flops_per_s[dts[i]] > 0 && isfinite(c->bytes_per_s[dts[i]]) &&
          c->bytes_per_s[dts[i]] > 0))
      return 0;
  return isfinite(c->op_overhead_s) && c->op_overhead_s >= 0 && isfinite(c->gemm_overhead_s) && c->gemm_overhead_s >= 0;
}

/* Reads a cache file: 1 usable, 0 missing, -1 unusable with why. */
static int cache_read(const char *path, mf_calibration *c, time_t *when, char *why, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int version = 0, busy = 0, got = 0;
  long long at = 0;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "memfit-calibration %d", &version) == 1) got |= 1;
    else if (sscanf(line, "measured %lld", &at) == 1) got |= 2;
    else if (sscanf(line, "busy %d", &busy) == 1) got |= 4;
    else if (sscanf(line, "flops_per_s %lf %lf %lf", &c->flops_per_s[MF_F32], &c->flops_per_s[MF_BF16],
                    &c->flops_per_s[MF_F16]) == 3) got |= 8;
    else if (sscanf(line, "bytes_per_s %lf %lf %lf", &c->bytes_per_s[MF_F32], &c->bytes_per_s[MF_BF16],
                    &c->bytes_per_s[MF_F16]) == 3) got |= 16;
    else if (sscanf(line, "op_overhead_s %lf", &c->op_overhead_s) == 1) got |= 32;
    else if (sscanf(line, "gemm_overhead_s %lf", &c->gemm_overhead_s) == 1) got |= 64;
  }
  fclose(f);
  time_t now = time(NULL);
  if (!(got & 1) || version != CAL_VERSION) { snprintf(why, n, "the cache is from another memfit version"); return -1; }
  if (got != 127 || !figures_ok(c) || at <= 0) { snprintf(why, n, "the cache file was damaged"); return -1; }
  if ((long long)now - at > (busy ? CAL_BUSY_MAX_AGE_S : CAL_MAX_AGE_S) || at > (long long)now + 86400) {
    snprintf(why, n, busy ? "the cache was measured on a busy machine" : "the cache was over 30 days old");
    return -1;
  }
  c->busy = busy;
  *when = (time_t)at;
  return 1;
}

/* Writes the cache beside its final name, then renames it into place (never a half-written cache). */
static int cache_write(const char *path, const mf_calibration *c, char *why, size_t n) {
  mf_atomic_file af;
  if (mf_atomic_file_open(&af, path, why, n)) return -1;
  FILE *f = af.f;
  time_t now = af.now;
  const char *date = af.date;
  fprintf(f, "memfit-calibration %d\n# memfit's cost-model figures; delete this file or run `memfit calibrate` to re-measure\n",
          CAL_VERSION);
  fprintf(f, "measured %lld %s\nbusy %d\n", (long long)now, date, c->busy);
  fprintf(f, "flops_per_s %.6g %.6g %.6g\n", c->flops_per_s[MF_F32], c->flops_per_s[MF_BF16], c->flops_per_s[MF_F16]);
  fprintf(f, "bytes_per_s %.6g %.6g %.6g\n", c->bytes_per_s[MF_F32], c->bytes_per_s[MF_BF16], c->bytes_per_s[MF_F16]);
  fprintf(f, "op_overhead_s %.6g\ngemm_overhead_s %.6g\n", c->op_overhead_s, c->gemm_overhead_s);
  return mf_atomic_file_commit(&af, why, n);
}

/* One measurement of every figure with `threads` threads; *spread: the largest median/best ratio. */
static int measure_once(const char *backend, int threads, mf_calibration *c, double *spread, char *err, size_t errlen) {
  mf_dtype dts[3] = {MF_F32, MF_BF16, MF_F16};
  double sp = 1;
  *spread = 1;
  for (int i = 0; i < 3; i++) {
    mf_graph *g = mf_graph_init(dts[i]);
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){8, 64, 32, 32});
    mf_tensor w = mf_param(g, "w", 4, (int64_t[]){64, 64, 3, 3}, MF_INIT_KAIMING, 0);
    mf_tensor y = mf_conv2d(g, x, w, -1, 1, 1, 1);
    double fl = 0, t = time_graph(g, y, backend, threads, 5, &fl, &sp);
    mf_graph_free(g);
    if (t <= 0) { snprintf(err, errlen, "calibration: could not time a convolution on backend '%s': %s", backend, time_err); return -1; }
    c->flops_per_s[dts[i]] = fl / t;
    *spread = fmax(*spread, sp);
  }
  mf_graph *g = NULL;
  double fl = 0, t = 0;
  int64_t n = 1 << 22;
  for (int i = 0; i < 3; i++) { /* bandwidth of an elementwise op in each storage dtype */
    g = mf_graph_init(dts[i]);
    mf_tensor a = mf_input(g, "a", 1, &n), b = mf_input(g, "b", 1, &n);
    mf_tensor y = mf_add(g, a, b);
    t = time_graph(g, y, backend, threads, 7, &fl, &sp);
    mf_graph_free(g);
    if (t <= 0) { snprintf(err, errlen, "calibration: could not time an elementwise op on backend '%s': %s", backend, time_err); return -1; }
    c->bytes_per_s[dts[i]] = 3.0 * (double)n * (double)mf_dtype_size(dts[i]) / t;
    *spread = fmax(*spread, sp);
  }
  /* per-node overhead: a chain of 256 tiny adds */
  g = mf_graph_init(MF_F32);
  int64_t small = 64;
  mf_tensor v = mf_input(g, "v", 1, &small);
  for (int i = 0; i < 256; i++) v = mf_add_scalar(g, v, 1.0);
  t = time_graph(g, v, backend, threads, 7, &fl, NULL);
  mf_graph_free(g);
  c->op_overhead_s = t > 0 ? t / 256 : 0;
  /* per-GEMM-node overhead: a chain of 32 small convolutions (16 channels, 16x16: where small
   * models live), less their arithmetic at the large convolution's rate */
  g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 16, 16, 16});
  mf_tensor wt = mf_param(g, "w", 4, (int64_t[]){16, 16, 3, 3}, MF_INIT_KAIMING, 0);
  for (int i = 0; i < 32; i++) x = mf_conv2d(g, x, wt, -1, 1, 1, 1);
  t = time_graph(g, x, backend, threads, 7, &fl, NULL);
  mf_graph_free(g);
  c->gemm_overhead_s = t > 0 ? fmax(0, t - fl / c->flops_per_s[MF_F32]) / 32 : c->op_overhead_s;
  return 0;
}

/* f32 convolution FLOP/s with `threads` threads (the figure that compares thread counts) */
static double conv_rate(const char *backend, int threads) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){8, 64, 32, 32});
  mf_tensor w = mf_param(g, "w", 4, (int64_t[]){64, 64, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor y = mf_conv2d(g, x, w, -1, 1, 1, 1);
  double fl = 0, t = time_graph(g, y, backend, threads, 5, &fl, NULL);
  mf_graph_free(g);
  return t > 0 ? fl / t : 0;
}

static void pause_briefly(void) {
  struct timespec pause = {0, 300 * 1000 * 1000};
  nanosleep(&pause, NULL); /* a moment for a burst of other work to end */
}

/* Measures every figure. A busy machine shows as N threads computing slower than one (OpenMP threads
 * waiting for a core: checked first, twice, on one convolution) or as repeats that disagree. With N
 * threads slower, the figures are one thread's; with repeats that disagree, everything is measured
 * again and each figure is the better of the two rounds. Either way the note says so. */
static int measure(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen) {
  if (threads > 1 && !strcmp(backend, "cpu")) {
    double rn = 0, r1 = 0;
    for (int attempt = 1; attempt <= CAL_ATTEMPTS; attempt++) {
      rn = conv_rate(backend, threads);
      r1 = conv_rate(backend, 1);
      if (rn >= r1) break;
      if (attempt < CAL_ATTEMPTS) pause_briefly();
    }
    if (rn < r1) {
      double sp;
      if (measure_once(backend, 1, c, &sp, err, errlen) < 0) return -1;
      c->busy = 1;
      snprintf(c->note, sizeof c->note, "the machine looked busy: %d threads computed at %.3g GFLOP/s, 1 thread at %.3g; "
               "these are 1-thread figures (on a busy machine --threads 1 runs faster)", threads, rn / 1e9, r1 / 1e9);
      return 0;
    }
  }
  double spread = 1;
  if (measure_once(backend, threads, c, &spread, err, errlen) < 0) return -1;
  if (spread <= CAL_SPREAD_BUSY) return 0;
  pause_briefly();
  mf_calibration again;
  memset(&again, 0, sizeof again);
  double spread2 = 1;
  if (measure_once(backend, threads, &again, &spread2, err, errlen) < 0) return -1;
  for (int d = 0; d < MF_DTYPE_COUNT; d++) {
    c->flops_per_s[d] = fmax(c->flops_per_s[d], again.flops_per_s[d]);
    c->bytes_per_s[d] = fmax(c->bytes_per_s[d], again.bytes_per_s[d]);
  }
  c->op_overhead_s = fmin(c->op_overhead_s, again.op_overhead_s);
  c->gemm_overhead_s = fmin(c->gemm_overhead_s, again.gemm_overhead_s);
  c->busy = spread2 > CAL_SPREAD_BUSY;
  if (c->busy)
    snprintf(c->note, sizeof c->note, "the machine looked busy: repeats of one measurement differed by up to %.1fx in "
             "two rounds; each figure is the fastest seen", fmax(spread, spread2));
  return 0;
}

static int calibrate(const char *backend, int threads, int refresh, mf_calibration *c, char *err, size_t errlen) {
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
  mf_calibration_cache_path(backend, threads, c->path, sizeof c->path);
  char why[160] = "";
  if (!refresh) {
    time_t when = 0;
    int r = cache_read(c->path, c, &when, why, sizeof why);
    if (r == 1) {
      char date[32];
      struct tm tm;
      gmtime_r(&when, &tm);
      strftime(date, sizeof date, "%Y-%m-%d", &tm);
      snprintf(c->source, sizeof c->source, "cached in %.200s (measured %.16s)", c->path, date);
      return 0;
    }
    mf_calibration keep = *c;
    memset(c, 0, sizeof *c);
    c->offload_bytes_per_s = keep.offload_bytes_per_s;
    memcpy(c->path, keep.path, sizeof c->path);
  }
  if (measure(backend, threads, c, err, errlen) < 0) return -1;
  char werr[1200] = "";
  int saved = cache_write(c->path, c, werr, sizeof werr) == 0;
  snprintf(c->source, sizeof c->source, "measured now%s%s%s, %s %.100s", *why ? " (" : "", why, *why ? ")" : "",
           saved ? "saved to" : "not saved to", c->path);
  if (!saved) {
    size_t l = strlen(c->note);
    snprintf(c->note + l, sizeof c->note - l, "%s%.200s", l ? "; " : "", werr);
  }
  return 0;
}

int mf_calibrate(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen) {
  return calibrate(backend, threads, 0, c, err, errlen);
}

int mf_calibrate_refresh(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen) {
  return calibrate(backend, threads, 1, c, err, errlen);
}

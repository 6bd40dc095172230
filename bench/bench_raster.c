/* bench_raster.c — times an Image-GS training step (mf_gauss_raster forward + L1 loss + backward + Adam) at
 * 2048x2048 with 10,000 Gaussians (C = 3, top-K 10) in both backward modes, and prints steps per second,
 * the pairs binned and the planned memory. Usage: OMP_NUM_THREADS=2 ./bench_raster [size] [gaussians] [steps] */
#include "memfit.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>

#define SH(...) ((const int64_t[]){__VA_ARGS__})

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* CPU seconds of all the process's threads: on a shared machine the wall time of a step can be several
 * times what it would be alone; CPU time / threads estimates the unshared step */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static uint64_t rng = 12345;
static double uni(void) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static int bench(int S, int N, int steps, int keep) {
  int C = 3;
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor p = mf_param(g, "pos", 2, SH(N, 2), MF_INIT_ZERO, 0), q = mf_param(g, "inv_scale", 2, SH(N, 2), MF_INIT_ZERO, 0);
  mf_tensor r = mf_param(g, "rot", 2, SH(N, 1), MF_INIT_ZERO, 0), f = mf_param(g, "feat", 2, SH(N, C), MF_INIT_ZERO, 0);
  mf_raster_opts o;
  memset(&o, 0, sizeof o);
  o.width = o.height = S;
  o.top_k = 10;
  o.keep_topk = keep;
  mf_tensor img = mf_gauss_raster(g, p, q, r, f, -1, &o);
  mf_tensor st = mf_gauss_raster_stats(g, p, q, r, -1, &o);
  mf_tensor target = mf_input(g, "target", 3, SH(C, S, S));
  mf_tensor loss = mf_l1_loss(g, img, target);
  (void)st;
  mf_train_opts to = mf_train_opts_default();
  to.threads = omp_get_max_threads();
  to.loss_scaling = 0;
  char err[512];
  mf_session *s = mf_session_init(g, loss, &to, err, sizeof err);
  if (!s) { fprintf(stderr, "bench_raster: %s\n", err); mf_graph_free(g); return 1; }
  float *pos = malloc((size_t)N * 2 * 4), *isc = malloc((size_t)N * 2 * 4), *rot = malloc((size_t)N * 4), *feat = malloc((size_t)N * C * 4);
  float *tgt = malloc((size_t)C * S * S * 4);
  rng = 12345;
  /* about one Gaussian per (sqrt(S^2/N))^2 pixels: sigma 5 .. 20 px */
  for (int i = 0; i < N; i++) {
    pos[2 * i] = (float)uni(); pos[2 * i + 1] = (float)uni();
    isc[2 * i] = (float)(0.05 + 0.15 * uni()); isc[2 * i + 1] = (float)(0.05 + 0.15 * uni());
    rot[i] = (float)(6.283 * uni());
    for (int c = 0; c < C; c++) feat[i * C + c] = (float)uni();
  }
  for (size_t i = 0; i < (size_t)C * S * S; i++) tgt[i] = (float)uni();
  mf_session_write_param(s, p, pos, (size_t)N * 2);
  mf_session_write_param(s, q, isc, (size_t)N * 2);
  mf_session_write_param(s, r, rot, (size_t)N);
  mf_session_write_param(s, f, feat, (size_t)N * C);
  mf_session_write_input(s, target, tgt, (size_t)C * S * S);
  double best = 1e30, l = 0, cpu = 1e30;
  for (int i = -1; i < steps; i++) {
    double t0 = now(), c0 = cpu_now();
    l = mf_session_micro_step(s);
    mf_session_update(s);
    double t = now() - t0, c = cpu_now() - c0;
    if (i >= 0 && t < best) best = t;
    if (i >= 0 && c < cpu) cpu = c;
  }
  const mf_plan *pl = mf_session_plan(s);
  size_t total = 0;
  for (int a = 0; a < MF_ARENA_COUNT; a++) total += mf_plan_arena_bytes(pl, (mf_arena_kind)a);
  printf("%dx%d, %d Gaussians, top-K 10, %s top-K, %d threads: best step %.1f ms = %.2f steps/s (CPU time %.1f ms: %.2f steps/s "
         "if the threads had their cores; loss %.4f); plan %.1f MiB (activations %.1f MiB), pair capacity %lld\n",
         S, S, N, keep ? "kept" : "recomputed", omp_get_max_threads(), best * 1e3, 1.0 / best, cpu * 1e3,
         omp_get_max_threads() / cpu, l, total / 1048576.0,
         mf_plan_arena_bytes(pl, MF_ARENA_ACT) / 1048576.0, (long long)mf_raster_pair_bound(N, &o));
  free(pos); free(isc); free(rot); free(feat); free(tgt);
  mf_session_free(s);
  mf_graph_free(g);
  return 0;
}

int main(int argc, char **argv) {
  int S = argc > 1 ? atoi(argv[1]) : 2048, N = argc > 2 ? atoi(argv[2]) : 10000, steps = argc > 3 ? atoi(argv[3]) : 3;
  if (S < 16 || N < 1 || steps < 1) { fprintf(stderr, "usage: bench_raster [size >= 16] [gaussians >= 1] [steps >= 1]\n"); return 2; }
  int rc = bench(S, N, steps, 0);
  rc |= bench(S, N, steps, 1);
  return rc;
}

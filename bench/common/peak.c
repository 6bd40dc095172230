/* peak.c — the sgemm peak, the CPU kernels of OpenBLAS and oneDNN, and a plan's conv/GEMM FLOPs, for the bench
 * binaries' achieved-GFLOP/s and %-of-peak figures (issue 16); see peak.h. */
#include "peak.h"
#include "backend/cpu/cpu.h"
#include "graph/oplist.h"
#include "plan/plan.h"
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double peak_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int bench_peak_measure(int threads, int reps, bench_peak *p) {
  memset(p, 0, sizeof *p);
  if (threads <= 0) threads = omp_get_max_threads();
  if (reps < 1) reps = 1;
  p->threads = threads;
  snprintf(p->blas_core, sizeof p->blas_core, "%s", openblas_get_corename());
  int par = openblas_get_parallel();
  snprintf(p->blas_parallel, sizeof p->blas_parallel, "%s", par == 0 ? "sequential" : par == 1 ? "pthreads" : par == 2 ? "openmp" : "?");
  const char *isa = mf_cpu_dnnl_isa();
  snprintf(p->dnnl_isa, sizeof p->dnnl_isa, "%s", isa ? isa : "none");
  enum { NMAX = 2048 };
  static const int sizes[] = {1024, 1536, NMAX};
  /* a, b, c [NMAX, NMAX] row-major; a smaller n uses their first n*n floats with leading dimension n */
  float *a = malloc((size_t)NMAX * NMAX * sizeof *a), *b = malloc((size_t)NMAX * NMAX * sizeof *b);
  float *c = malloc((size_t)NMAX * NMAX * sizeof *c);
  if (!a || !b || !c) { free(a); free(b); free(c); return -1; }
  uint64_t r = 7;
  for (size_t i = 0; i < (size_t)NMAX * NMAX; i++) {
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    a[i] = (float)((double)(r >> 40) / 8388608.0 - 1.0);
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (float)((double)(r >> 40) / 8388608.0 - 1.0);
  }
  int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads); /* the OpenMP build sets OpenMP's count too; a pthreads build its pool */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sizes[0], sizes[0], sizes[0], 1.0f, a, sizes[0], b, sizes[0], 0.0f, c,
              sizes[0]); /* warm-up: the thread team, OpenBLAS's buffers */
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    int n = sizes[k];
    for (int rep = 0; rep < reps; rep++) {
      double t0 = peak_now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      double f = 2.0 * (double)n * (double)n * (double)n / (peak_now() - t0);
      if (f > p->flops_per_s) { p->flops_per_s = f; p->n = n; }
    }
  }
  omp_set_num_threads(saved);
  openblas_set_num_threads(saved);
  free(a);
  free(b);
  free(c);
  return 0;
}

static double program_gemm_flops(const mf_graph *g, const mf_program *pr) {
  double f = 0;
  for (int i = 0; i < pr->n_steps; i++) {
    const mf_node *n = &g->nodes[pr->steps[i]];
    if (n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT || n->op == MF_OP_MATMUL)
      f += mf_node_flops(g, n);
  }
  return f;
}

double bench_plan_gemm_flops(const mf_plan *p) {
  if (!p->has_train) return program_gemm_flops(p->g, &p->fwd);
  double f = 0;
  for (int k = 0; k < p->n_phases; k++) f += program_gemm_flops(p->g, p->phase[k].prog);
  return f;
}

void bench_peak_json(const bench_peak *pk, double gemm_flops, double plan_flops, double step_s, char *buf, size_t len) {
  double achieved = step_s > 0 ? gemm_flops / step_s : 0;
  int w = snprintf(buf, len, ", \"gemm_flops\": %.6g, \"plan_flops\": %.6g, \"gemm_gflops_per_s\": %.3f", gemm_flops, plan_flops,
                   achieved / 1e9);
  if (!pk || pk->flops_per_s <= 0 || w < 0 || (size_t)w >= len) return;
  snprintf(buf + w, len - (size_t)w,
           ", \"peak_gflops_per_s\": %.3f, \"peak_n\": %d, \"peak_ratio\": %.4f, \"blas_core\": \"%s\", \"blas_parallel\": \"%s\", "
           "\"dnnl_isa\": \"%s\"",
           pk->flops_per_s / 1e9, pk->n, achieved / pk->flops_per_s, pk->blas_core, pk->blas_parallel, pk->dnnl_isa);
}

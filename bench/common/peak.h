/* peak.h — what the bench binaries share for issue 16's FLOP-rate figures: the machine's sgemm peak measured
 * with the OpenBLAS memfit links, the CPU kernels OpenBLAS and oneDNN chose, and a planned step's conv/GEMM FLOPs. */
#ifndef MF_BENCH_PEAK_H
#define MF_BENCH_PEAK_H

#include "memfit.h"
#include <stddef.h>

typedef struct bench_peak {
  double flops_per_s;    /* the best sgemm rate of the runs (FLOP/s, 2 * n^3 per call) */
  int n;                 /* the square size of that run */
  int threads;           /* OpenMP threads the runs had (OpenBLAS's OpenMP build follows them) */
  char blas_core[32];    /* openblas_get_corename(): the kernel family OpenBLAS picked for this CPU */
  char blas_parallel[16];/* openblas_get_parallel(): sequential, pthreads or openmp */
  char dnnl_isa[48];     /* the instruction set oneDNN's kernels use here, "none" without oneDNN */
} bench_peak;

/* Measures the sgemm peak with `threads` OpenMP threads (restored afterwards): row-major C = A B on squares
 * n = 1024, 1536 and 2048 in [-1, 1), `reps` timed calls each after a warm-up, the fastest call wins. Fills p;
 * returns 0, or -1 when the operands cannot be allocated (p->flops_per_s is then 0). */
int bench_peak_measure(int threads, int reps, bench_peak *p);

/* FLOPs of one micro-step of every phase of plan p (recompute included) in convolutions (forward, backward-data,
 * backward-weight) and matrix products only, at 2 per multiply-add: mf_plan_flops less the element-wise,
 * normalisation, pooling, attention and loss ops it also counts. */
double bench_plan_gemm_flops(const mf_plan *p);

/* The JSON fields (", \"key\": value" ...) of a step's rates: gemm_flops (conv/GEMM FLOPs per step), plan_flops
 * (mf_plan_flops per step), gemm_gflops_per_s (gemm_flops / step_s), and with a measured peak (pk != NULL)
 * peak_gflops_per_s, peak_n, peak_ratio (achieved / peak), blas_core, blas_parallel, dnnl_isa. */
void bench_peak_json(const bench_peak *pk, double gemm_flops, double plan_flops, double step_s, char *buf, size_t len);

#endif

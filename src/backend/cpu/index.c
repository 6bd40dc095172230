/* index.c (CPU) — kernels of argmin, gather and its scatter-add backward, straight-through and
 * round. Gather never reads outside its table: an index outside [0, K) gives a NaN row and a fault
 * (the step fails, naming the node); the scatter-add runs over rows in order, so its sums are the
 * same for every thread count. */
#include "backend/cpu/cpu.h"
#include <math.h>
#include <stdio.h>

/* prod(ne[0..ax)) and prod(ne[ax+1..]) */
static void outer_inner(const mf_node *x, int ax, int64_t *outer, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= x->ne[i];
  for (int i = ax + 1; i < x->ndim; i++) *inner *= x->ne[i];
}

/* x [outer, K, inner] -> out i32 [outer, inner]: the first index of the smallest value; a NaN
 * counts as smaller than everything (the first NaN wins, as in PyTorch) */
void mf_cpu_argmin(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int ax = n->ip[0];
  int64_t outer, inner, K = x->ne[ax];
  outer_inner(x, ax, &outer, &inner);
  int32_t *o = out;
  int64_t total = outer * inner;
  #pragma omp parallel for schedule(static) if (total * K > 65536)
  for (int64_t j = 0; j < total; j++) {
    int64_t a = j / inner, i = j % inner, base = a * K * inner + i;
    double best = mf_ld(src[0], x->dtype, base);
    int64_t bi = 0;
    for (int64_t c = 1; c < K && !isnan(best); c++) {
      double v = mf_ld(src[0], x->dtype, base + c * inner);
      if (v < best || isnan(v)) { best = v; bi = c; }
    }
    o[j] = (int32_t)bi;
  }
}

/* table [K,D], idx [N] -> out [N,D] */
void mf_cpu_gather(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *t = mf_src(k, n, 0);
  const int32_t *idx = src[1];
  int64_t N = n->ne[0], D = n->ne[1], K = t->ne[0], bad = 0, first = -1;
  size_t row = (size_t)D * mf_dtype_size(n->dtype);
  for (int64_t r = 0; r < N; r++) {
    int64_t i = idx[r];
    if (i >= 0 && i < K) {
      memcpy((char *)out + (size_t)r * row, (const char *)src[0] + (size_t)i * row, row);
      continue;
    }
    for (int64_t d = 0; d < D; d++) mf_st(out, n->dtype, r * D + d, NAN);
    if (!bad++) first = r;
  }
  if (bad && k->fault && !k->fault[0])
    snprintf(k->fault, k->fault_len, "gather '%s': %lld of %lld indices are outside the table's %lld rows (first: %d at row %lld); "
             "their output rows are NaN", n->name, (long long)bad, (long long)N, (long long)K, idx[first], (long long)first);
}

/* dy [N,D], idx [N] -> out [K,D] = sum over rows r with idx[r] = k of dy[r,:], rows in order. f32
 * and f64 outputs accumulate in place; f16/bf16 in an f32 workspace [K,D], rounded once at the end. */
void mf_cpu_gather_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *dy = mf_src(k, n, 0);
  const int32_t *idx = src[1];
  int64_t N = dy->ne[0], D = n->ne[1], K = n->ne[0];
  const int64_t CB = 64; /* columns per task */
  int64_t nblk = (D + CB - 1) / CB;
  if (n->dtype == MF_F64) {
    double *o = out;
    const double *g = src[0];
    memset(o, 0, (size_t)(K * D) * sizeof *o);
    #pragma omp parallel for schedule(static) if (N * D > 65536)
    for (int64_t b = 0; b < nblk; b++) {
      int64_t d0 = b * CB, d1 = d0 + CB < D ? d0 + CB : D;
      for (int64_t r = 0; r < N; r++)
        if (idx[r] >= 0 && idx[r] < K)
          for (int64_t d = d0; d < d1; d++) o[idx[r] * D + d] += g[r * D + d];
    }
    return;
  }
  float *acc = n->dtype == MF_F32 ? out : ws;
  memset(acc, 0, (size_t)(K * D) * sizeof *acc);
  #pragma omp parallel for schedule(static) if (N * D > 65536)
  for (int64_t b = 0; b < nblk; b++) {
    int64_t d0 = b * CB, d1 = d0 + CB < D ? d0 + CB : D;
    for (int64_t r = 0; r < N; r++)
      if (idx[r] >= 0 && idx[r] < K)
        for (int64_t d = d0; d < d1; d++) acc[idx[r] * D + d] += (float)mf_ld(src[0], dy->dtype, r * D + d);
  }
  if (acc != out) mf_convert(out, n->dtype, acc, MF_F32, K * D);
}

size_t mf_cpu_ws_index(const mf_graph *g, const mf_node *n) {
  (void)g;
  if (n->op != MF_OP_GATHER_BWD || n->dtype == MF_F32 || n->dtype == MF_F64) return 0;
  return (size_t)mf_node_numel(n) * sizeof(float);
}

/* hard, soft -> out = hard */
void mf_cpu_straight_through(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)k; (void)ws;
  memcpy(out, src[0], mf_node_bytes(n));
}

/* half to even (nearbyint in the default rounding mode) */
void mf_cpu_round(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)k; (void)ws;
  int64_t total = mf_node_numel(n);
  if (n->dtype == MF_F32) {
    const float *x = src[0];
    float *y = out;
    #pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t i = 0; i < total; i++) y[i] = nearbyintf(x[i]);
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 65536)
  for (int64_t i = 0; i < total; i++) mf_st(out, n->dtype, i, nearbyint(mf_ld(src[0], n->dtype, i)));
}

/* cpu.h — declarations of the CPU kernels (one per op, defined in this folder by family)
 * and the helpers they share. Kernels parallelise with OpenMP and use OpenBLAS for GEMM. */
#ifndef MF_CPU_H
#define MF_CPU_H

#include "backend/backend.h"
#include "graph/dtype.h"

#define MF_CPU_DECL(E, n) void mf_cpu_##n(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
MF_OP_LIST(MF_CPU_DECL)
#undef MF_CPU_DECL

/* Workspace sizes of the families that need scratch (0 for all other ops). */
size_t mf_cpu_ws_conv(const mf_graph *g, const mf_node *n);
size_t mf_cpu_ws_matmul(const mf_graph *g, const mf_node *n);
size_t mf_cpu_ws_index(const mf_graph *g, const mf_node *n);   /* gather_bwd in f16/bf16 */
size_t mf_cpu_ws_raster(const mf_graph *g, const mf_node *n);  /* gauss_topk, gauss_raster and its backward */
double mf_cpu_sum_squares(const float *g, int64_t n, void *stream);
void mf_cpu_optim_update(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream);

static inline const mf_node *mf_src(const mf_kctx *k, const mf_node *n, int i) { return &k->g->nodes[n->src[i]]; }

/* Row-major strides of a node. */
static inline void mf_strides(const mf_node *n, int64_t *st) {
  int64_t s = 1;
  for (int i = n->ndim - 1; i >= 0; i--) { st[i] = s; s *= n->ne[i]; }
}

#endif

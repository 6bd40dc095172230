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
size_t mf_cpu_ws_attention(const mf_graph *g, const mf_node *n); /* attention, attn_probs, attention_bwd, vq_nearest */
/* oneDNN convolutions (conv_dnnl.c): for a conv node that oneDNN runs, its exact workspace bytes
 * (returns 1; the primitive is created on this first call), or 0 when memfit's own algorithms run it
 * (f64/f16/bf16 operands, MEMFIT_CONV=gemm, oneDNN only offers its reference kernel, or built without
 * oneDNN). _impl: oneDNN's implementation name, or NULL. _run: runs the node (1) or returns 0. */
int mf_cpu_dnnl_conv_ws(const mf_graph *g, const mf_node *n, size_t *bytes);
/* Tests: on 0 sends every conv to memfit's own algorithms from now on, 1 back to oneDNN; returns
 * whether oneDNN is now in use (0 when not built in or MEMFIT_CONV=gemm). Not while a step runs. */
int mf_cpu_dnnl_conv_enable(int on);
/* "major.minor.patch" of the oneDNN library in use, or NULL when built without it */
const char *mf_cpu_dnnl_version(void);
const char *mf_cpu_dnnl_conv_impl(const mf_graph *g, const mf_node *n);
int mf_cpu_dnnl_conv_run(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
double mf_cpu_sum_squares(const float *g, int64_t n, void *stream);
void mf_cpu_optim_update(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream);

static inline const mf_node *mf_src(const mf_kctx *k, const mf_node *n, int i) { return &k->g->nodes[n->src[i]]; }

/* Row-major strides of a node. */
static inline void mf_strides(const mf_node *n, int64_t *st) {
  int64_t s = 1;
  for (int i = n->ndim - 1; i >= 0; i--) { st[i] = s; s *= n->ne[i]; }
}

#endif

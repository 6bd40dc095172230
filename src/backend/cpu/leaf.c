/* leaf.c (CPU) — kernels of the non-computing ops: leaves do nothing, the low-precision
 * parameter copy is a cast, the seed writes the loss gradient, acc_grad adds into f32 grads. */
#include "backend/cpu/cpu.h"

void mf_cpu_input(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_param(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_buffer(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }

void mf_cpu_param_lp(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  mf_convert(out, n->dtype, src[0], mf_src(k, n, 0)->dtype, mf_node_numel(n));
}

void mf_cpu_seed(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)src; (void)ws;
  int64_t total = mf_node_numel(n);
  for (int64_t i = 0; i < total; i++) mf_st(out, n->dtype, i, k->grad_seed);
}

void mf_cpu_acc_grad(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *s = mf_src(k, n, 0);
  int64_t total = mf_node_numel(n);
  if (n->dtype == MF_F32 && s->dtype == MF_F32) {
    float *g = out; const float *d = src[0];
    #pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t i = 0; i < total; i++) g[i] += d[i];
    return;
  }
  if (n->dtype == MF_F32 && s->dtype == MF_BF16) { /* a float sum is the f64 sum rounded once: the generic path's bits */
    float *g = out; const uint16_t *d = src[0];
    #pragma omp parallel for schedule(static) if (total > 65536)
    for (int64_t i = 0; i < total; i++) g[i] += mf_bf16_to_f32(d[i]);
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 65536)
  for (int64_t i = 0; i < total; i++) mf_st(out, n->dtype, i, mf_ld(out, n->dtype, i) + mf_ld(src[0], s->dtype, i));
}

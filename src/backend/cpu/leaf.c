/* leaf.c (CPU) — kernels of the non-computing ops: leaves do nothing, the low-precision
 * parameter copy is a cast, the seed writes the loss gradient, acc_grad adds into f32 grads. */
#include "backend/cpu/cpu.h"

void mf_cpu_input(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_param(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_buffer(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }

MF_CPU_INLINE void to_bf16_body(const float *s, uint16_t *d, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = mf_f32_to_bf16(s[i]);
}
MF_CPU_TWO_COPIES_VOID(to_bf16, (const float *s, uint16_t *d, int64_t n), (s, d, n))

/* the low-precision copy of an f32 master; to bf16 in chunks over the threads, in the widest copy the CPU has (after
 * every optimizer update this runs over all parameters: an SSE loop was compute-bound there) */
void mf_cpu_param_lp(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  int64_t total = mf_node_numel(n);
  if (n->dtype == MF_BF16 && mf_src(k, n, 0)->dtype == MF_F32) {
    enum { CHUNK = 1 << 15 };
    int64_t chunks = (total + CHUNK - 1) / CHUNK;
    #pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
      int64_t lo = c * CHUNK, len = total - lo < CHUNK ? total - lo : CHUNK;
      to_bf16((const float *)src[0] + lo, (uint16_t *)out + lo, len);
    }
    return;
  }
  mf_convert(out, n->dtype, src[0], mf_src(k, n, 0)->dtype, total);
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

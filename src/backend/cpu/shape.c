/* shape.c (CPU) — STUB kernels, to be replaced. */
#include "backend/cpu/cpu.h"

void mf_cpu_concat(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_slice(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_slice_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_reshape(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_permute(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_reduce(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_expand(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }

/* wavelet.c (CPU) — STUB kernels, to be replaced. */
#include "backend/cpu/cpu.h"

void mf_cpu_dwt(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_idwt(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }

/* loss.c (CPU) — STUB kernels, to be replaced. */
#include "backend/cpu/cpu.h"

void mf_cpu_loss(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_loss_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_softmax_ce(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_softmax_ce_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }

/* conv.c (CPU) — STUB kernels, to be replaced. */
#include "backend/cpu/cpu.h"

void mf_cpu_matmul(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_conv2d(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_conv2d_bwd_data(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
void mf_cpu_conv2d_bwd_weight(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
size_t mf_cpu_ws_conv(const mf_graph *g, const mf_node *n) { (void)g; (void)n; return 0; }
size_t mf_cpu_ws_matmul(const mf_graph *g, const mf_node *n) { (void)g; (void)n; return 0; }

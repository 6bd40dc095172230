/* cpu.c — the CPU backend table: one kernel per op (by X-macro from the op list) and the workspace
 * each node needs, which the planner reserves in the activation arena. Only this file refers to the
 * kernel families (conv.c, shape.c...); they refer only to cpu.h. */
#include "backend/cpu/cpu.h"
#include <stdlib.h>
#include <string.h>

static size_t cpu_workspace(const mf_graph *g, const mf_node *n) {
  switch (n->op) {
  case MF_OP_CONV2D:
  case MF_OP_CONV2D_BWD_DATA:
  case MF_OP_CONV2D_BWD_WEIGHT: {
    size_t b; /* the implementation the planner chose (conv_choice.c) */
    if (mf_cpu_conv_on_wino(n)) return mf_cpu_wino_ws(g, n);
    return mf_cpu_conv_on_dnnl(n) && mf_cpu_dnnl_conv_ws(g, n, &b) ? b : mf_cpu_ws_conv(g, n);
  }
  case MF_OP_MATMUL: return mf_cpu_ws_matmul(g, n);
  case MF_OP_GATHER_BWD: return mf_cpu_ws_index(g, n);
  case MF_OP_GAUSS_TOPK:
  case MF_OP_GAUSS_RASTER:
  case MF_OP_GAUSS_RASTER_BWD: return mf_cpu_ws_raster(g, n);
  case MF_OP_ATTN_PROBS:
  case MF_OP_ATTENTION:
  case MF_OP_ATTENTION_BWD:
  case MF_OP_VQ_NEAREST: return mf_cpu_ws_attention(g, n);
  case MF_OP_RESIZE_CUBIC_BWD: return mf_cpu_ws_resize(g, n);
  default: return 0;
  }
}

static void cpu_choose(const mf_graph *g, mf_node *n, int threads) {
  if (n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT) mf_cpu_conv_choose(g, n, threads);
}

static int cpu_describe(const mf_graph *g, const mf_node *n, char *name, size_t len, const char **why) {
  if (n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT)
    return mf_cpu_conv_describe(g, n, name, len, why);
  return 0;
}

#define MF_CPU_ENTRY(E, n) [MF_OP_##E] = mf_cpu_##n,
const mf_backend mf_backend_cpu = {
  .name = "cpu",
  .kernels = {MF_OP_LIST(MF_CPU_ENTRY)},
  .workspace = cpu_workspace,
  .choose = cpu_choose,
  .fuses_conv_act = 1,
  .fuses_norm_act = 1,
  .aliases_concat = 1,
  .impl_describe = cpu_describe,
  .sum_squares = mf_cpu_sum_squares,
  .optim_update = mf_cpu_optim_update,
};
#undef MF_CPU_ENTRY

/* ---- the AVX2 / AVX-512 switch (cpu.h): decided on first use, read relaxed (the same value on every thread) ---- */
static int cpu_avx2_state = -1;
static int cpu_level(void) { /* the widest copies this CPU runs: 2 AVX-512 (F, BW, VL, DQ), 1 AVX2, 0 neither */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return 2;
  return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
  return 0;
#endif
}
static int cpu_avx2_default(void) {
  const char *e = getenv("MEMFIT_CPU_AVX2"), *f = getenv("MEMFIT_CPU_AVX512");
  int v = e && strcmp(e, "0") == 0 ? 0 : cpu_level();
  return f && strcmp(f, "0") == 0 && v > 1 ? 1 : v;
}
int mf_cpu_avx2(void) {
  int v = __atomic_load_n(&cpu_avx2_state, __ATOMIC_RELAXED);
  if (v < 0) {
    v = cpu_avx2_default();
    __atomic_store_n(&cpu_avx2_state, v, __ATOMIC_RELAXED);
  }
  return v;
}
void mf_cpu_avx2_use(int level) {
  int have = cpu_level();
  __atomic_store_n(&cpu_avx2_state, level < 0 ? cpu_avx2_default() : level < have ? level : have, __ATOMIC_RELAXED);
}

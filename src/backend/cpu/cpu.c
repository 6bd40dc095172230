/* cpu.c — the CPU backend table: one kernel per op (by X-macro from ops.h) and the
 * workspace each node needs, which the planner reserves in the activation arena. */
#include "backend/cpu/cpu.h"
#include <stdio.h>
#include <string.h>

static size_t cpu_workspace(const mf_graph *g, const mf_node *n) {
  switch (n->op) {
  case MF_OP_CONV2D:
  case MF_OP_CONV2D_BWD_DATA:
  case MF_OP_CONV2D_BWD_WEIGHT: return mf_cpu_ws_conv(g, n);
  case MF_OP_MATMUL: return mf_cpu_ws_matmul(g, n);
  default: return 0;
  }
}

#define MF_CPU_ENTRY(E, n) [MF_OP_##E] = mf_cpu_##n,
const mf_backend mf_backend_cpu = {
  .name = "cpu",
  .kernels = {MF_OP_LIST(MF_CPU_ENTRY)},
  .workspace = cpu_workspace,
  .sum_squares = mf_cpu_sum_squares,
  .optim_update = mf_cpu_optim_update,
};
#undef MF_CPU_ENTRY

const mf_backend *mf_backend_get(const char *name, char *err, size_t errlen) {
  if (!name || !strcmp(name, "cpu")) return &mf_backend_cpu;
#ifdef MEMFIT_HAVE_CUDA
  if (!strcmp(name, "cuda")) return &mf_backend_cuda;
  snprintf(err, errlen, "backend '%s' is unknown (use cpu or cuda)", name);
#else
  snprintf(err, errlen, "backend '%s' is %s (this build has: cpu)", name, strcmp(name, "cuda") ? "unknown" : "not built in: CUDA was not found when memfit was built");
#endif
  return NULL;
}

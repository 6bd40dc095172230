/* cpu.c — the CPU backend table: one kernel per op (by X-macro from ops.h) and the
 * workspace each node needs, which the planner reserves in the activation arena. */
#include "backend/cpu/cpu.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t cpu_workspace(const mf_graph *g, const mf_node *n) {
  switch (n->op) {
  case MF_OP_CONV2D:
  case MF_OP_CONV2D_BWD_DATA:
  case MF_OP_CONV2D_BWD_WEIGHT: return mf_cpu_ws_conv(g, n);
  case MF_OP_MATMUL: return mf_cpu_ws_matmul(g, n);
  case MF_OP_GATHER_BWD: return mf_cpu_ws_index(g, n);
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

#ifndef MEMFIT_CUDA_MODULE_DIRS
#define MEMFIT_CUDA_MODULE_DIRS ""
#endif

/* The CUDA backend lives in libmemfit_cuda.so, loaded the first time it is asked for, so that CPU
 * runs never map the CUDA libraries. Looked for in $MEMFIT_CUDA_MODULE (a file), then the build and
 * install folders, then the loader's usual path. */
static const mf_backend *cuda_load(char *err, size_t errlen) {
  static const mf_backend *be;
  if (be) return be;
  char path[4096];
  const char *env = getenv("MEMFIT_CUDA_MODULE");
  const char *dirs = MEMFIT_CUDA_MODULE_DIRS;
  const char *last_err = "not found";
  for (int k = 0; k < 16 && !be; k++) {
    if (k == 0) {
      if (!env || !*env) continue;
      snprintf(path, sizeof path, "%s", env);
    } else if (*dirs) {
      const char *colon = strchr(dirs, ':');
      size_t n = colon ? (size_t)(colon - dirs) : strlen(dirs);
      snprintf(path, sizeof path, "%.*s/libmemfit_cuda.so", (int)n, dirs);
      dirs += n + (colon ? 1 : 0);
    } else {
      snprintf(path, sizeof path, "libmemfit_cuda.so");
      k = 16;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { last_err = dlerror(); continue; }
    be = dlsym(h, "mf_backend_cuda");
    if (!be) last_err = "it has no mf_backend_cuda";
  }
  if (!be)
    snprintf(err, errlen, "backend 'cuda' is not built in here: libmemfit_cuda.so could not be loaded (%s); memfit is "
             "built with it when nvcc is found at build time", last_err ? last_err : "?");
  return be;
}

const mf_backend *mf_backend_get(const char *name, char *err, size_t errlen) {
  if (!name || !strcmp(name, "cpu")) return &mf_backend_cpu;
  if (!strcmp(name, "cuda")) return cuda_load(err, errlen);
  snprintf(err, errlen, "backend '%s' is unknown (use cpu or cuda)", name);
  return NULL;
}

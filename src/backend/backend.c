/* backend.c — the registry of backends: the CPU backend, and the CUDA backend loaded on demand from
 * libmemfit_cuda.so; the planner and the session look backends up here by name. */
#include "backend/backend.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MEMFIT_CUDA_MODULE_DIRS
#define MEMFIT_CUDA_MODULE_DIRS ""
#endif

/* The CUDA backend lives in libmemfit_cuda.so, loaded the first time it is asked for, so that CPU
 * runs never map the CUDA libraries. Looked for in $MEMFIT_CUDA_MODULE (a file), then the build and
 * install folders, then the loader's usual path. */
static const mf_backend *cuda_be; /* once loaded: its table, and the library's handle */
static void *cuda_lib;

static const mf_backend *cuda_load(char *err, size_t errlen) {
  const mf_backend *be = cuda_be;
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
    else cuda_lib = h;
  }
  cuda_be = be;
  if (!be)
    snprintf(err, errlen, "backend 'cuda' is not built in here: libmemfit_cuda.so could not be loaded (%s); memfit is "
             "built with it when nvcc is found at build time", last_err ? last_err : "?");
  return be;
}

void *mf_backend_symbol(const mf_backend *be, const char *name) {
  return be && be == cuda_be && cuda_lib ? dlsym(cuda_lib, name) : NULL;
}

const mf_backend *mf_backend_get(const char *name, char *err, size_t errlen) {
  if (!name || !strcmp(name, "cpu")) return &mf_backend_cpu;
  if (!strcmp(name, "cuda")) return cuda_load(err, errlen);
  snprintf(err, errlen, "backend '%s' is unknown (use cpu or cuda)", name);
  return NULL;
}

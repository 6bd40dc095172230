/* backend.h — a backend is a table of kernels (one per op) plus how much workspace each
 * node needs; the planner asks it for workspace sizes, the runtime calls its kernels. */
#ifndef MF_BACKEND_H
#define MF_BACKEND_H

#include "ops/ops.h"

typedef struct mf_kctx {
  const mf_graph *g;
  double grad_seed;   /* value SEED writes: loss scale / accumulation steps */
  int nthreads;
} mf_kctx;

/* out: the node's storage; src[i]: storage of node->src[i]; ws: this node's workspace (or NULL). */
typedef void (*mf_kernel_fn)(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);

typedef struct mf_backend {
  const char *name;
  mf_kernel_fn kernels[MF_OP_COUNT];
  /* Exact bytes of scratch the node's kernel uses (planned in the activation arena). */
  size_t (*workspace)(const mf_graph *g, const mf_node *n);
} mf_backend;

extern const mf_backend mf_backend_cpu;

#endif

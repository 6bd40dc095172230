/* reference.h — the reference evaluator (one allocation per node, the CPU backend's kernels) that
 * tests use to check ops, gradients and plans. */
#ifndef MF_REFERENCE_H
#define MF_REFERENCE_H

#include "backend/backend.h"

/* Reference evaluation: allocates every node separately (zeroed), runs all nodes in id order on
 * the CPU backend with grad_seed, and returns per-node data pointers (free with mf_ref_free).
 * Leaves are filled from `leaf_data[id]` (may be NULL -> zero); PARAM_LP nodes are converted. */
typedef struct mf_ref {
  int n;
  void **data;
  uint8_t *alias;   /* 1 where data[i] is another node's storage (extra gradient accumulators) */
} mf_ref;
int mf_ref_eval(const mf_graph *g, void *const *leaf_data, double grad_seed, mf_ref *out, char *err, size_t errlen);
void mf_ref_free(mf_ref *r);

#endif

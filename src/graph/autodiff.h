/* autodiff.h — reverse-mode differentiation: appends the backward graph to the forward graph,
 * and a reference evaluator (one allocation per node) that tests use to check ops and plans. */
#ifndef MF_AUTODIFF_H
#define MF_AUTODIFF_H

#include "graph/graph.h"

/* Appends the backward of scalar `loss`. Each gradient contribution to a parameter becomes an
 * ACC_GRAD node (role GRAD) adding into the parameter's f32 gradient; param->grad is the first. Returns the SEED node id, or -1 with g->err set. */
int mf_autodiff(mf_graph *g, int loss);
/* The backward of one phase: only parameters of the groups in `groups` (bit k: group k; 0: all) get
 * gradients (ACC_GRAD nodes); the gradient still flows through the others' activations to them, and
 * never through a detach. The first call fixes g->n_fwd; each call appends its backward after the
 * previous one. rg (optional, g->n_fwd entries) receives, per forward node, whether it needs a
 * gradient in this phase: it depends on a parameter the phase trains and the loss's gradient reaches
 * it (not only through a detach). Returns the phase's SEED node, or -1 with g->err set. */
int mf_autodiff_phase(mf_graph *g, int loss, unsigned groups, uint8_t *rg);

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

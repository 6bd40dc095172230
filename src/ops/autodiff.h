/* autodiff.h — reverse-mode differentiation: appends the backward graph to the forward graph, from
 * each op's gradient rule (ops/ops.h). */
#ifndef MF_AUTODIFF_H
#define MF_AUTODIFF_H

#include "ops/ops.h"

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

#endif

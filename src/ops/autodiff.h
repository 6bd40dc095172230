/* autodiff.h — reverse-mode differentiation: appends the backward graph to the forward graph, from
 * each op's gradient rule (ops/ops.h). */
#ifndef MF_AUTODIFF_H
#define MF_AUTODIFF_H

#include "ops/ops.h"

/* Appends the backward of scalar `loss`. Each gradient contribution to a parameter becomes an
 * ACC_GRAD node (role GRAD) adding into the parameter's f32 gradient; param->grad is the first. Returns the SEED node id, or -1 with g->err set. */
int mf_autodiff(mf_graph *g, int loss);

#endif

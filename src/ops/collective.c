/* collective.c — ops that move data between the ranks of a data-parallel job inside the step program: the
 * all-gather of a tensor's rows (forward only; the session runs the collective, src/train/session.c). */
#include "ops/ops.h"
#include <string.h>

mf_tensor mf_allgather(mf_graph *g, mf_tensor x, int ranks) {
  if (!mf_graph_check_srcs(g, "allgather", 1, &x)) return -1;
  const mf_node *t = &g->nodes[x];
  if (ranks < 1) return mf_graph_fail(g, "allgather: ranks %d must be at least 1", ranks);
  if (t->ndim < 1 || mf_node_numel(t) == 0) {
    char sh[64];
    mf_shape_str(t, sh, sizeof sh);
    return mf_graph_fail(g, "allgather: '%s' %s is empty or has no rows to gather", t->name, sh);
  }
  if (t->requires_grad)
    return mf_graph_fail(g, "allgather: '%s' needs a gradient (it depends on a parameter), but the all-gather is forward only: "
                            "gather a tensor without gradient (e.g. MoCo's momentum-encoder keys) or mf_detach it first",
                         t->name[0] ? t->name : "(unnamed)");
  if (t->ne[0] > INT64_MAX / ranks) return mf_graph_fail(g, "allgather: %d ranks x %lld rows overflow", ranks, (long long)t->ne[0]);
  int64_t ne[MF_MAX_DIMS];
  memcpy(ne, t->ne, sizeof ne);
  ne[0] *= ranks; /* [ranks * B, ...] */
  int id = mf_graph_add(g, MF_OP_ALLGATHER, t->dtype, t->ndim, ne, 1, &x);
  if (id >= 0) g->nodes[id].ip[0] = ranks;
  return id;
}

static double flops_allgather(const mf_graph *g, const mf_node *n) { (void)g; (void)n; return 0; }

/* no gradient rule: autodiff refuses a loss that would need one through it (the builder already refuses such an x) */
const mf_op_def mf_op_def_allgather = {"allgather", NULL, flops_allgather};

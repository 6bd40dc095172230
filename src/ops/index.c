/* index.c — integer and non-differentiable ops (codebooks and quantisation): argmin, gather (+ its
 * scatter-add backward), straight-through and round: shape rules, builders and gradient rules.
 * Kernels: backend/cpu/index.c, backend/cuda/index.cu. */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <string.h>

/* ---- argmin: x float [.., K, ..] -> i32 [.., ..] (axis removed; a 1-D x gives [1]) ---- */

mf_tensor mf_argmin(mf_graph *g, mf_tensor x, int axis) {
  if (!mf_graph_check_srcs(g, "argmin", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (!mf_dtype_is_float(nx->dtype))
    return mf_graph_fail(g, "argmin: input %s is %s; it must be floating point", sx, mf_dtype_name(nx->dtype));
  int ax = axis < 0 ? axis + nx->ndim : axis;
  if (ax < 0 || ax >= nx->ndim) return mf_graph_fail(g, "argmin: axis %d is out of range for shape %s", axis, sx);
  if (nx->ne[ax] > INT32_MAX) return mf_graph_fail(g, "argmin: axis %d of %s is too long for i32 indices", axis, sx);
  int64_t ne[MF_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < nx->ndim; i++)
    if (i != ax) ne[nd++] = nx->ne[i];
  if (nd == 0) ne[nd++] = 1;
  int id = mf_graph_add(g, MF_OP_ARGMIN, MF_I32, nd, ne, 1, &x);
  if (id >= 0) {
    g->nodes[id].ip[0] = ax;
    g->nodes[id].requires_grad = false; /* indices carry no gradient */
  }
  return id;
}

/* ---- gather: table [K,D] float, idx i32 [N] -> [N,D] = table[idx[n], :] ---- */

mf_tensor mf_gather(mf_graph *g, mf_tensor table, mf_tensor idx) {
  int src[2] = {table, idx};
  if (!mf_graph_check_srcs(g, "gather", 2, src)) return -1;
  const mf_node *t = &g->nodes[table], *ix = &g->nodes[idx];
  if (t->ndim != 2 || !mf_dtype_is_float(t->dtype) || ix->ndim != 1 || ix->dtype != MF_I32) {
    char st[80], si[80];
    mf_shape_str(t, st, sizeof st);
    mf_shape_str(ix, si, sizeof si);
    return mf_graph_fail(g, "gather: table %s (%s) must be float [K,D] and indices %s (%s) i32 [N]", st, mf_dtype_name(t->dtype), si,
                         mf_dtype_name(ix->dtype));
  }
  if (t->ne[0] > INT32_MAX) return mf_graph_fail(g, "gather: table has %lld rows, more than i32 indices reach", (long long)t->ne[0]);
  int64_t ne[2] = {ix->ne[0], t->ne[1]};
  return mf_graph_add(g, MF_OP_GATHER, t->dtype, 2, ne, 2, src);
}

/* dy [N,D], idx [N] -> dtable [K,D] (K = rows of `table_like`): rows of dy summed into the rows idx
 * names, in order of n; indices outside [0, K) contribute nothing. */
static int gather_bwd(mf_graph *g, int dy, int idx, int table_like) {
  int src[2] = {dy, idx};
  if (!mf_graph_check_srcs(g, "gather_bwd", 2, src) || !mf_graph_check_srcs(g, "gather_bwd", 1, &table_like)) return -1;
  const mf_node *d = &g->nodes[dy], *t = &g->nodes[table_like];
  int64_t ne[2] = {t->ne[0], d->ne[1]};
  int id = mf_graph_add(g, MF_OP_GATHER_BWD, d->dtype, 2, ne, 2, src);
  if (id >= 0) g->nodes[id].ip[0] = (int32_t)t->ne[0];
  return id;
}

static int grad_gather(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int table = n->src[0], idx = n->src[1];
  if (mf_wants_grad(g, table)) dx[0] = gather_bwd(g, dy, idx, table);
  return g->err[0] ? -1 : 0; /* dx[1] stays -1: no gradient to the indices */
}

/* ---- straight_through: the value of hard, the gradient of soft ---- */

mf_tensor mf_straight_through(mf_graph *g, mf_tensor hard, mf_tensor soft) {
  int src[2] = {hard, soft};
  if (!mf_graph_check_srcs(g, "straight_through", 2, src)) return -1;
  const mf_node *h = &g->nodes[hard], *s = &g->nodes[soft];
  if (!mf_shape_eq(h, s) || h->dtype != s->dtype || !mf_dtype_is_float(s->dtype)) {
    char sh[80], ss[80];
    mf_shape_str(h, sh, sizeof sh);
    mf_shape_str(s, ss, sizeof ss);
    return mf_graph_fail(g, "straight_through: hard %s (%s) and soft %s (%s) must be float tensors of the same shape and dtype", sh,
                         mf_dtype_name(h->dtype), ss, mf_dtype_name(s->dtype));
  }
  int id = mf_node_like(g, MF_OP_STRAIGHT_THROUGH, soft, 2, src);
  if (id >= 0) g->nodes[id].requires_grad = s->requires_grad; /* only soft's gradient flows */
  return id;
}

static int grad_straight_through(mf_graph *g, int id, int dy, int *dx) {
  (void)g; (void)id;
  dx[1] = dy; /* d out / d soft = identity; hard (dx[0]) gets none */
  return 0;
}

/* ---- round: half to even, same shape and dtype; no gradient (mf_straight_through(round(x), x)) ---- */

mf_tensor mf_round(mf_graph *g, mf_tensor x) {
  if (!mf_graph_check_srcs(g, "round", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  if (!mf_dtype_is_float(nx->dtype)) {
    char sx[80];
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "round: input %s is %s; it must be floating point", sx, mf_dtype_name(nx->dtype));
  }
  return mf_node_like(g, MF_OP_ROUND, x, 1, &x);
}

static double flops_gather(const mf_graph *g, const mf_node *n) { (void)g; (void)n; return 0; }
static double flops_gather_bwd(const mf_graph *g, const mf_node *n) { return (double)mf_node_numel(&g->nodes[n->src[0]]); }
static double flops_argmin(const mf_graph *g, const mf_node *n) { return (double)mf_node_numel(&g->nodes[n->src[0]]); }

/* round and argmin have no gradient rule: autodiff refuses a loss that needs one, naming the node */
const mf_op_def mf_op_def_argmin = {"argmin", NULL, flops_argmin};
const mf_op_def mf_op_def_gather = {"gather", grad_gather, flops_gather};
const mf_op_def mf_op_def_gather_bwd = {"gather_bwd", NULL, flops_gather_bwd};
const mf_op_def mf_op_def_straight_through = {"straight_through", grad_straight_through, flops_gather};
const mf_op_def mf_op_def_round = {"round", NULL, NULL};

/* loss.c — MSE / L1 (mean or sum) and softmax cross-entropy: shape rules, builders, gradients.
 * A loss is a scalar [1] in f32 whatever the input dtype (f64 when the inputs are f64, so that
 * gradient checks stay in double). Kernels: backend/cpu/loss.c. */
#include "ops/ops.h"
#include "graph/dtype.h"

static mf_dtype loss_dtype(mf_dtype in) { return in == MF_F64 ? MF_F64 : MF_F32; }

static const char *loss_name(int kind, int sum) {
  if (kind == MF_LOSS_MSE) return sum ? "mse_loss_sum" : "mse_loss";
  return sum ? "l1_loss_sum" : "l1_loss";
}

/* pred, target: same shape -> [1] = mean or sum of (pred-target)^2 or |pred-target| */
static int loss(mf_graph *g, int kind, int sum, mf_tensor pred, mf_tensor target) {
  const char *nm = loss_name(kind, sum);
  int src[2] = {pred, target};
  if (!mf_graph_check_srcs(g, nm, 2, src)) return -1;
  const mf_node *p = &g->nodes[pred], *t = &g->nodes[target];
  if (!mf_shape_eq(p, t) || !mf_dtype_is_float(p->dtype) || !mf_dtype_is_float(t->dtype)) {
    char sp[64], st[64];
    mf_shape_str(p, sp, sizeof sp);
    mf_shape_str(t, st, sizeof st);
    return mf_graph_fail(g, "%s: prediction %s (%s) and target %s (%s) must have the same shape and a float dtype", nm, sp,
                         mf_dtype_name(p->dtype), st, mf_dtype_name(t->dtype));
  }
  int id = mf_graph_add(g, MF_OP_LOSS, loss_dtype(p->dtype), 1, (int64_t[]){1}, 2, src);
  if (id >= 0) {
    g->nodes[id].ip[0] = kind;
    g->nodes[id].ip[1] = sum;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "%s", nm);
  }
  return id;
}
mf_tensor mf_mse_loss(mf_graph *g, mf_tensor pred, mf_tensor target) { return loss(g, MF_LOSS_MSE, 0, pred, target); }
mf_tensor mf_mse_loss_sum(mf_graph *g, mf_tensor pred, mf_tensor target) { return loss(g, MF_LOSS_MSE, 1, pred, target); }
mf_tensor mf_l1_loss(mf_graph *g, mf_tensor pred, mf_tensor target) { return loss(g, MF_LOSS_L1, 0, pred, target); }

/* pred, target, dL [1] -> dpred (pred's shape and dtype) */
int mf_loss_bwd(mf_graph *g, int pred, int target, int dl, int kind, int sum) {
  int src[3] = {pred, target, dl};
  if (!mf_graph_check_srcs(g, "loss_bwd", 3, src)) return -1;
  int id = mf_node_like(g, MF_OP_LOSS_BWD, pred, 3, src);
  if (id >= 0) {
    g->nodes[id].ip[0] = kind;
    g->nodes[id].ip[1] = sum;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "%s_bwd", loss_name(kind, sum));
  }
  return id;
}

static int grad_loss(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int pred = n->src[0], target = n->src[1];
  int d = mf_loss_bwd(g, pred, target, dy, n->ip[0], n->ip[1]);
  if (d < 0) return -1;
  if (mf_wants_grad(g, pred)) dx[0] = d;
  if (mf_wants_grad(g, target)) dx[1] = mf_mul_scalar(g, d, -1.0); /* d/dtarget = -d/dpred */
  return g->err[0] ? -1 : 0;
}

/* logits [N,K] float, labels i32 [N] -> [1] = mean over rows with a label in [0,K) of
 * logsumexp(logits[n]) - logits[n, label]; rows with another label are ignored. */
mf_tensor mf_softmax_ce(mf_graph *g, mf_tensor logits, mf_tensor labels) {
  int src[2] = {logits, labels};
  if (!mf_graph_check_srcs(g, "softmax_ce", 2, src)) return -1;
  const mf_node *l = &g->nodes[logits], *y = &g->nodes[labels];
  if (l->ndim != 2 || !mf_dtype_is_float(l->dtype) || y->ndim != 1 || y->ne[0] != l->ne[0] || y->dtype != MF_I32) {
    char sl[64], sy[64];
    mf_shape_str(l, sl, sizeof sl);
    mf_shape_str(y, sy, sizeof sy);
    return mf_graph_fail(g, "softmax_ce: logits %s (%s) must be float [N,K] and labels %s (%s) i32 [N]", sl,
                         mf_dtype_name(l->dtype), sy, mf_dtype_name(y->dtype));
  }
  return mf_graph_add(g, MF_OP_SOFTMAX_CE, loss_dtype(l->dtype), 1, (int64_t[]){1}, 2, src);
}

/* logits [N,K], labels [N], dL [1] -> dlogits [N,K] */
int mf_softmax_ce_bwd(mf_graph *g, int logits, int labels, int dl) {
  int src[3] = {logits, labels, dl};
  if (!mf_graph_check_srcs(g, "softmax_ce_bwd", 3, src)) return -1;
  return mf_node_like(g, MF_OP_SOFTMAX_CE_BWD, logits, 3, src);
}

static int grad_softmax_ce(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = mf_softmax_ce_bwd(g, n->src[0], n->src[1], dy);
  return dx[0] < 0 ? -1 : 0;
}

static double flops_loss(const mf_graph *g, const mf_node *n) { return 3.0 * (double)mf_node_numel(&g->nodes[n->src[0]]); }
static double flops_ce(const mf_graph *g, const mf_node *n) { return 12.0 * (double)mf_node_numel(&g->nodes[n->src[0]]); }

const mf_op_def mf_op_def_loss = {"loss", grad_loss, flops_loss};
const mf_op_def mf_op_def_loss_bwd = {"loss_bwd", NULL, flops_loss};
const mf_op_def mf_op_def_softmax_ce = {"softmax_ce", grad_softmax_ce, flops_ce};
const mf_op_def mf_op_def_softmax_ce_bwd = {"softmax_ce_bwd", NULL, flops_ce};

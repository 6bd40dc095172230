/* norm.c — batch norm (train / eval, running statistics) and group norm over x [N,C,...]:
 * shape rules, builders and gradients. The backward kernels recompute the batch/group
 * statistics from x instead of storing them. Kernels: backend/cpu/norm.c.
 *
 * NORM node: src x, gamma [C], beta [C][, rmean [C], rvar [C]]
 *   ip0 = MF_NORM_BATCH / MF_NORM_GROUP, ip1 = groups (group norm), ip2 = training (batch norm),
 *   ip3 = 1 on recompute clones (set by the planner): the kernel then skips the running-stat
 *   update, so recomputing a training batch norm in backward does not update the buffers twice.
 *   fp0 = eps, fp1 = momentum (running = (1-momentum)*running + momentum*batch; the running
 *   variance takes the unbiased batch variance, the normalisation the biased one, as PyTorch).
 *
 * L2NORM node: src x [..., D]; fp0 = eps: y = x / max(||x||_2, eps) over the last axis (PyTorch's
 * F.normalize(x, dim=-1)). L2NORM_BWD: src x, dy -> dx = (dy - y <y, dy>) / ||x|| where ||x|| > eps,
 * else dy / eps (max() passes no gradient to the norm below eps). */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <math.h>

static bool is_vec(const mf_node *n, int64_t C) { return n->ndim == 1 && n->ne[0] == C && mf_dtype_is_float(n->dtype); }

static int norm_build(mf_graph *g, const char *nm, int kind, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean,
                      mf_tensor rvar, int groups, int training, double momentum, double eps) {
  int src[5] = {x, gamma, beta, rmean, rvar};
  int nsrc = (rmean >= 0 || rvar >= 0) ? 5 : 3;
  if (!mf_graph_check_srcs(g, nm, nsrc, src)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[64];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim < 2 || !mf_dtype_is_float(nx->dtype))
    return mf_graph_fail(g, "%s: input %s (%s) must be float [N,C,...]", nm, sx, mf_dtype_name(nx->dtype));
  int64_t C = nx->ne[1];
  for (int i = 1; i < nsrc; i++)
    if (!is_vec(&g->nodes[src[i]], C)) {
      static const char *what[5] = {"x", "gamma", "beta", "running mean", "running var"};
      char s[64];
      mf_shape_str(&g->nodes[src[i]], s, sizeof s);
      return mf_graph_fail(g, "%s: %s has shape %s but input %s needs [%lld]", nm, what[i], s, sx, (long long)C);
    }
  if (!(eps >= 0)) return mf_graph_fail(g, "%s: eps %g must be >= 0", nm, eps);
  if (kind == MF_NORM_GROUP && (groups < 1 || C % groups))
    return mf_graph_fail(g, "%s: %d groups do not divide the %lld channels of %s", nm, groups, (long long)C, sx);
  if (kind == MF_NORM_BATCH) {
    if (!training && nsrc < 5) return mf_graph_fail(g, "%s: eval mode needs running mean and variance (input %s)", nm, sx);
    if (!(momentum >= 0 && momentum <= 1)) return mf_graph_fail(g, "%s: momentum %g is not in [0,1]", nm, momentum);
    if (training && mf_node_numel(nx) / C < 2)
      return mf_graph_fail(g, "%s: training needs more than one value per channel (input %s)", nm, sx);
  }
  int id = mf_node_like(g, MF_OP_NORM, x, nsrc, src);
  if (id < 0) return -1;
  mf_node *n = &g->nodes[id];
  n->ip[0] = kind;
  n->ip[1] = kind == MF_NORM_GROUP ? groups : 1;
  n->ip[2] = kind == MF_NORM_BATCH ? (training != 0) : 1;
  n->ip[3] = 0;
  n->fp[0] = eps;
  n->fp[1] = momentum;
  snprintf(n->name, MF_NAME_LEN, "%s", nm);
  return id;
}

mf_tensor mf_batchnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean, mf_tensor rvar, int training,
                       double momentum, double eps) {
  if ((rmean < 0) != (rvar < 0)) return mf_graph_fail(g, "batchnorm: give both running mean and variance, or neither");
  return norm_build(g, "batchnorm", MF_NORM_BATCH, x, gamma, beta, rmean, rvar, 1, training, momentum, eps);
}

mf_tensor mf_groupnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, int groups, double eps) {
  return norm_build(g, "groupnorm", MF_NORM_GROUP, x, gamma, beta, -1, -1, groups, 1, 0, eps);
}

/* A backward node of NORM node `fwd`: same op parameters, ip3 cleared. */
static int bwd_node(mf_graph *g, int op, int fwd, mf_dtype dt, int ndim, const int64_t *ne, int nsrc, const int *src) {
  int id = mf_graph_add(g, op, dt, ndim, ne, nsrc, src);
  if (id < 0) return -1;
  const mf_node *f = &g->nodes[fwd];
  mf_node *n = &g->nodes[id];
  for (int i = 0; i < 3; i++) n->ip[i] = f->ip[i];
  n->fp[0] = f->fp[0];
  n->fp[1] = f->fp[1];
  snprintf(n->name, MF_NAME_LEN, "%s_%s", f->ip[0] == MF_NORM_BATCH ? "batchnorm" : "groupnorm",
           op == MF_OP_NORM_BWD_DX ? "bwd_dx" : "bwd_param");
  return id;
}

/* dgamma, dbeta: NORM_BWD_PARAM src x, dy[, rmean, rvar] -> [2,C], then sliced.
 * dx: src x, dy, gamma[, rmean, rvar] (running stats only for eval-mode batch norm); training batch norm:
 * src x, dy, gamma, p (the NORM_BWD_PARAM node: a kernel may take sum dy*xhat and sum dy from it, or ignore it). */
static int grad_norm(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0], gamma = n->src[1], beta = n->src[2];
  bool running = n->ip[0] == MF_NORM_BATCH && !n->ip[2];
  int rm = running ? n->src[3] : -1, rv = running ? n->src[4] : -1;
  const mf_node *nx = &g->nodes[x];
  int64_t C = nx->ne[1], xne[MF_MAX_DIMS];
  int xd = nx->ndim;
  mf_dtype xt = nx->dtype, gt = g->nodes[gamma].dtype;
  for (int i = 0; i < MF_MAX_DIMS; i++) xne[i] = nx->ne[i];
  /* training batch norm: dx takes the two channel sums it needs (sum dy, sum dy*xhat) from the parameter
   * gradients, so its kernel reads dy once instead of twice; the [2,C] node then exists for dx alone too */
  bool share = n->ip[0] == MF_NORM_BATCH && n->ip[2] && mf_wants_grad(g, x);
  int p = -1;
  if (share || mf_wants_grad(g, gamma) || mf_wants_grad(g, beta)) {
    int s[4] = {x, dy, rm, rv};
    p = bwd_node(g, MF_OP_NORM_BWD_PARAM, id, gt, 2, (int64_t[]){2, C}, running ? 4 : 2, s);
    if (p < 0) return -1;
    if (mf_wants_grad(g, gamma)) dx[1] = mf_reshape(g, mf_slice(g, p, 0, 0, 1), 1, &C);
    if (mf_wants_grad(g, beta)) dx[2] = mf_reshape(g, mf_slice(g, p, 0, 1, 2), 1, &C);
  }
  if (mf_wants_grad(g, x)) {
    int s[5] = {x, dy, gamma, share ? p : rm, rv};
    dx[0] = bwd_node(g, MF_OP_NORM_BWD_DX, id, xt, xd, xne, running ? 5 : share ? 4 : 3, s);
  }
  return g->err[0] ? -1 : 0;
}

static double flops_of(const mf_graph *g, const mf_node *n, double per) { return per * (double)mf_node_numel(&g->nodes[n->src[0]]); }
static double flops_norm(const mf_graph *g, const mf_node *n) { return flops_of(g, n, 6); }
static double flops_norm_dx(const mf_graph *g, const mf_node *n) { return flops_of(g, n, 12); }
static double flops_norm_param(const mf_graph *g, const mf_node *n) { return flops_of(g, n, 7); }

const mf_op_def mf_op_def_norm = {"norm", grad_norm, flops_norm};
const mf_op_def mf_op_def_norm_bwd_dx = {"norm_bwd_dx", NULL, flops_norm_dx};
const mf_op_def mf_op_def_norm_bwd_param = {"norm_bwd_param", NULL, flops_norm_param};

/* ---- L2 normalisation along the last axis ---- */
mf_tensor mf_l2_normalize(mf_graph *g, mf_tensor x, double eps) {
  if (!mf_graph_check_srcs(g, "l2_normalize", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[64];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim < 1 || !mf_dtype_is_float(nx->dtype))
    return mf_graph_fail(g, "l2_normalize: input %s (%s) must be a float tensor [..., D]", sx, mf_dtype_name(nx->dtype));
  if (!(eps > 0) || !isfinite(eps)) return mf_graph_fail(g, "l2_normalize: eps %g must be above 0 (input %s)", eps, sx);
  int id = mf_node_like(g, MF_OP_L2NORM, x, 1, &x);
  if (id < 0) return -1;
  g->nodes[id].fp[0] = eps;
  snprintf(g->nodes[id].name, MF_NAME_LEN, "l2_normalize");
  return id;
}

static int grad_l2norm(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0];
  double eps = n->fp[0];
  if (!mf_wants_grad(g, x)) { dx[0] = -1; return 0; }
  int src[2] = {x, dy};
  int b = mf_node_like(g, MF_OP_L2NORM_BWD, x, 2, src);
  if (b < 0) return -1;
  g->nodes[b].fp[0] = eps;
  snprintf(g->nodes[b].name, MF_NAME_LEN, "l2_normalize_bwd");
  dx[0] = b;
  return 0;
}

static double flops_l2norm(const mf_graph *g, const mf_node *n) { (void)g; return 3.0 * (double)mf_node_numel(n); }
static double flops_l2norm_bwd(const mf_graph *g, const mf_node *n) { (void)g; return 6.0 * (double)mf_node_numel(n); }

/* ---- softmax and log-softmax along an axis (the SOFTMAX node works on the last axis; another axis is moved
 * there and back with transposes). SOFTMAX: src x [..., D]; ip0 = 1 for log-softmax; per row, in double,
 * y = exp(x - max) / sum exp(x - max), or x - max - log sum exp(x - max). SOFTMAX_BWD: src y, dy ->
 * dx = y (dy - <y, dy>), or for log-softmax dx = dy - exp(y) sum(dy): backward keeps the output, not x. ---- */
static mf_tensor softmax_build(mf_graph *g, const char *nm, int log_, mf_tensor x, int axis) {
  if (!mf_graph_check_srcs(g, nm, 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[64];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim < 1 || !mf_dtype_is_float(nx->dtype))
    return mf_graph_fail(g, "%s: input %s (%s) must be a float tensor", nm, sx, mf_dtype_name(nx->dtype));
  int nd = nx->ndim;
  if (axis < 0) axis += nd;
  if (axis < 0 || axis >= nd) return mf_graph_fail(g, "%s: axis %d is outside the %d dims of input %s", nm, axis, nd, sx);
  mf_tensor in = axis == nd - 1 ? x : mf_transpose(g, x, axis, nd - 1);
  if (in < 0) return -1;
  int id = mf_node_like(g, MF_OP_SOFTMAX, in, 1, &in);
  if (id < 0) return -1;
  g->nodes[id].ip[0] = log_;
  snprintf(g->nodes[id].name, MF_NAME_LEN, "%s", nm);
  return axis == nd - 1 ? id : mf_transpose(g, id, axis, nd - 1);
}
mf_tensor mf_softmax(mf_graph *g, mf_tensor x, int axis) { return softmax_build(g, "softmax", 0, x, axis); }
mf_tensor mf_log_softmax(mf_graph *g, mf_tensor x, int axis) { return softmax_build(g, "log_softmax", 1, x, axis); }

static int grad_softmax(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  if (!mf_wants_grad(g, n->src[0])) { dx[0] = -1; return 0; }
  int src[2] = {id, dy}, lg = n->ip[0];
  int b = mf_node_like(g, MF_OP_SOFTMAX_BWD, id, 2, src);
  if (b < 0) return -1;
  g->nodes[b].ip[0] = lg;
  snprintf(g->nodes[b].name, MF_NAME_LEN, "%s_bwd", lg ? "log_softmax" : "softmax");
  dx[0] = b;
  return 0;
}
static double flops_softmax(const mf_graph *g, const mf_node *n) { (void)g; return 12.0 * (double)mf_node_numel(n); }
static double flops_softmax_bwd(const mf_graph *g, const mf_node *n) { (void)g; return 4.0 * (double)mf_node_numel(n); }
const mf_op_def mf_op_def_softmax = {"softmax", grad_softmax, flops_softmax};
const mf_op_def mf_op_def_softmax_bwd = {"softmax_bwd", NULL, flops_softmax_bwd};

const mf_op_def mf_op_def_l2norm = {"l2norm", grad_l2norm, flops_l2norm};
const mf_op_def mf_op_def_l2norm_bwd = {"l2norm_bwd", NULL, flops_l2norm_bwd};

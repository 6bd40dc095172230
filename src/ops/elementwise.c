/* elementwise.c — binary ops with broadcasting (add/sub/mul/div), scalar forms and unary
 * activations: shape rules, builders and gradient rules. Kernels: backend/cpu/elementwise.c. */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <math.h>
#include <string.h>

int mf_node_like(mf_graph *g, int op, int like, int nsrc, const int *src) {
  if (!mf_graph_check_srcs(g, mf_op_name(op), 1, &like)) return -1;
  const mf_node *l = &g->nodes[like];
  int64_t ne[MF_MAX_DIMS];
  memcpy(ne, l->ne, sizeof ne);
  return mf_graph_add(g, op, l->dtype, l->ndim, ne, nsrc, src);
}

static const char *bin_names[] = {"add", "sub", "mul", "div", "pow", "pow_da", "pow_db"};

static int binary(mf_graph *g, int kind, mf_tensor a, mf_tensor b) {
  int src[2] = {a, b};
  if (!mf_graph_check_srcs(g, bin_names[kind], 2, src)) return -1;
  const mf_node *na = &g->nodes[a], *nb = &g->nodes[b];
  bool ok = nb->ndim <= na->ndim;
  for (int i = 0; ok && i < nb->ndim; i++) {
    int64_t db = nb->ne[nb->ndim - 1 - i], da = na->ne[na->ndim - 1 - i];
    ok = db == da || db == 1;
  }
  if (!ok) {
    char sa[64], sb[64];
    mf_shape_str(na, sa, sizeof sa);
    mf_shape_str(nb, sb, sizeof sb);
    return mf_graph_fail(g, "%s: shapes %s and %s do not broadcast (the second must match the first or be 1 in each dim)",
                         bin_names[kind], sa, sb);
  }
  int id = mf_node_like(g, MF_OP_BINARY, a, 2, src);
  if (id >= 0) {
    g->nodes[id].ip[0] = kind;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "%s", bin_names[kind]);
  }
  return id;
}
mf_tensor mf_add(mf_graph *g, mf_tensor a, mf_tensor b) { return binary(g, MF_BIN_ADD, a, b); }
mf_tensor mf_sub(mf_graph *g, mf_tensor a, mf_tensor b) { return binary(g, MF_BIN_SUB, a, b); }
mf_tensor mf_mul(mf_graph *g, mf_tensor a, mf_tensor b) { return binary(g, MF_BIN_MUL, a, b); }
mf_tensor mf_div(mf_graph *g, mf_tensor a, mf_tensor b) { return binary(g, MF_BIN_DIV, a, b); }
mf_tensor mf_pow(mf_graph *g, mf_tensor a, mf_tensor b) { return binary(g, MF_BIN_POW, a, b); }

static int scalar(mf_graph *g, int kind, mf_tensor a, double c) {
  int id = mf_node_like(g, MF_OP_SCALAR, a, 1, &a);
  if (id >= 0) {
    g->nodes[id].ip[0] = kind;
    g->nodes[id].fp[0] = c;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "%s", kind == MF_SCALAR_ADD ? "add_scalar" : "mul_scalar");
  }
  return id;
}
mf_tensor mf_add_scalar(mf_graph *g, mf_tensor a, double c) { return scalar(g, MF_SCALAR_ADD, a, c); }
mf_tensor mf_mul_scalar(mf_graph *g, mf_tensor a, double c) { return scalar(g, MF_SCALAR_MUL, a, c); }

static const char *un_names[] = {"exp", "log", "sigmoid", "tanh", "relu", "leaky_relu", "silu", "clamp", "sqrt", "erf", "gelu", "pow"};

static int unary(mf_graph *g, int kind, mf_tensor a, double p0, double p1) {
  int id = mf_node_like(g, MF_OP_UNARY, a, 1, &a);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = kind;
    n->fp[0] = p0;
    n->fp[1] = p1;
    snprintf(n->name, MF_NAME_LEN, "%s", un_names[kind]);
  }
  return id;
}
mf_tensor mf_exp(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_EXP, a, 0, 0); }
mf_tensor mf_log(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_LOG, a, 0, 0); }
mf_tensor mf_sigmoid(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_SIGMOID, a, 0, 0); }
mf_tensor mf_tanh(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_TANH, a, 0, 0); }
mf_tensor mf_relu(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_RELU, a, 0, 0); }
mf_tensor mf_leaky_relu(mf_graph *g, mf_tensor a, double slope) { return unary(g, MF_UN_LEAKY, a, slope, 0); }
mf_tensor mf_silu(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_SILU, a, 0, 0); }
mf_tensor mf_sqrt(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_SQRT, a, 0, 0); }
mf_tensor mf_erf(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_ERF, a, 0, 0); }
mf_tensor mf_gelu(mf_graph *g, mf_tensor a) { return unary(g, MF_UN_GELU, a, 0, 0); }
mf_tensor mf_pow_scalar(mf_graph *g, mf_tensor a, double p) {
  if (!isfinite(p)) return mf_graph_fail(g, "pow_scalar: exponent %g is not finite", p);
  return unary(g, MF_UN_POW, a, p, 0);
}
mf_tensor mf_clamp(mf_graph *g, mf_tensor a, double lo, double hi) {
  if (!(lo <= hi)) return mf_graph_fail(g, "clamp: lower bound %g is above upper bound %g", lo, hi);
  return unary(g, MF_UN_CLAMP, a, lo, hi);
}

/* Dropout (ops.h: mf_dropout_keep): the node's own id is its mask key, so two dropouts of one tensor draw
 * different masks and backward, a dropout of dy with the same key, draws the forward's mask again: no mask is
 * stored (0 bytes in the plan) and neither x nor y is kept for backward. */
static int dropout_node(mf_graph *g, mf_tensor x, double ratio, int key) {
  if (!mf_graph_check_srcs(g, "dropout", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  if (!mf_dtype_is_float(nx->dtype)) {
    char sx[80];
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "dropout: input %s (%s) must be floating point", sx, mf_dtype_name(nx->dtype));
  }
  if (!(ratio >= 0 && ratio <= 1)) return mf_graph_fail(g, "dropout: ratio %g is outside [0, 1]", ratio);
  int id = mf_node_like(g, MF_OP_DROPOUT, x, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = key >= 0 ? key : id;
    n->fp[0] = ratio;
    snprintf(n->name, MF_NAME_LEN, "%s", key >= 0 ? "dropout_bwd" : "dropout");
  }
  return id;
}
mf_tensor mf_dropout(mf_graph *g, mf_tensor x, double ratio) { return dropout_node(g, x, ratio, -1); }

static int grad_dropout(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = dropout_node(g, dy, n->fp[0], n->ip[0]);
  return dx[0] < 0 ? -1 : 0;
}

/* sigmoid, tanh, exp and sqrt differentiate from their output y; so do ReLU and a leaky ReLU of slope >= 0,
 * whose derivative (v > 0 ? 1 : slope) is the same on y as on x: their input is then free after the forward
 * (PyTorch's in-place ReLU keeps one tensor, not two, for a BN -> ReLU -> conv); the rest from their input x */
static bool unary_uses_output(int kind, double p0) {
  return kind == MF_UN_EXP || kind == MF_UN_SIGMOID || kind == MF_UN_TANH || kind == MF_UN_SQRT || kind == MF_UN_RELU ||
         (kind == MF_UN_LEAKY && p0 >= 0);
}

int mf_unary_bwd(mf_graph *g, int kind, int x_or_y, int dy, double p0, double p1) {
  int src[2] = {x_or_y, dy};
  int id = mf_node_like(g, MF_OP_UNARY_BWD, dy, 2, src);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = kind;
    n->fp[0] = p0;
    n->fp[1] = p1;
    snprintf(n->name, MF_NAME_LEN, "%s_bwd", un_names[kind]);
  }
  return id;
}

int mf_sum_to(mf_graph *g, int dy, int like) {
  const mf_node *d = &g->nodes[dy], *l = &g->nodes[like];
  if (mf_shape_eq(d, l)) return dy;
  unsigned mask = 0;
  int off = d->ndim - l->ndim;
  for (int i = 0; i < d->ndim; i++)
    if (i < off || (l->ne[i - off] == 1 && d->ne[i] != 1)) mask |= 1u << i;
  int r = mf_reduce(g, dy, mask, 1, 1.0);
  if (r < 0) return -1;
  if (off == 0) return r;
  return mf_reshape(g, r, l->ndim, l->ne);
}

static int grad_binary(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int a = n->src[0], b = n->src[1], kind = n->ip[0];
  dx[0] = dx[1] = -1;
  switch (kind) {
  case MF_BIN_ADD:
    dx[0] = dy;
    if (mf_wants_grad(g, b)) dx[1] = mf_sum_to(g, dy, b);
    break;
  case MF_BIN_SUB:
    dx[0] = dy;
    if (mf_wants_grad(g, b)) dx[1] = mf_sum_to(g, mf_mul_scalar(g, dy, -1.0), b);
    break;
  case MF_BIN_MUL:
    if (mf_wants_grad(g, a)) dx[0] = mf_mul(g, dy, b);
    if (mf_wants_grad(g, b)) dx[1] = mf_sum_to(g, mf_mul(g, dy, a), b);
    break;
  case MF_BIN_DIV:
    if (mf_wants_grad(g, a)) dx[0] = mf_div(g, dy, b);
    if (mf_wants_grad(g, b)) /* d(a/b)/db = -y/b */
      dx[1] = mf_sum_to(g, mf_mul_scalar(g, mf_div(g, mf_mul(g, dy, id), b), -1.0), b);
    break;
  case MF_BIN_POW: /* d/da = b a^(b-1), d/db = a^b ln a: each factor one binary node of (a, b), so a and b are kept */
    if (mf_wants_grad(g, a)) dx[0] = mf_mul(g, dy, binary(g, MF_BIN_POW_DA, a, b));
    if (mf_wants_grad(g, b)) dx[1] = mf_sum_to(g, mf_mul(g, dy, binary(g, MF_BIN_POW_DB, a, b)), b);
    break;
  }
  return g->err[0] ? -1 : 0;
}

static int grad_scalar(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = n->ip[0] == MF_SCALAR_ADD ? dy : mf_mul_scalar(g, dy, n->fp[0]);
  return dx[0] < 0 ? -1 : 0;
}

static int grad_unary(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int kind = n->ip[0];
  dx[0] = mf_unary_bwd(g, kind, unary_uses_output(kind, n->fp[0]) ? id : n->src[0], dy, n->fp[0], n->fp[1]);
  return dx[0] < 0 ? -1 : 0;
}

static double flops_unary(const mf_graph *g, const mf_node *n) {
  (void)g;
  int k = n->ip[0];
  return (double)mf_node_numel(n) * (k == MF_UN_EXP || k == MF_UN_LOG || k == MF_UN_SIGMOID || k == MF_UN_TANH || k == MF_UN_SILU ||
                                    k == MF_UN_SQRT || k == MF_UN_ERF || k == MF_UN_GELU || k == MF_UN_POW ? 8 : 1);
}

const mf_op_def mf_op_def_binary = {"binary", grad_binary, NULL};
const mf_op_def mf_op_def_scalar = {"scalar", grad_scalar, NULL};
const mf_op_def mf_op_def_unary = {"unary", grad_unary, flops_unary};
const mf_op_def mf_op_def_unary_bwd = {"unary_bwd", NULL, flops_unary};
const mf_op_def mf_op_def_dropout = {"dropout", grad_dropout, NULL};

/* conv.c — matmul, linear and conv2d (+ its two backward ops): shape rules, builders, gradient
 * rules and FLOP counts. Kernels and their workspace sizes: backend/cpu/conv.c. */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <string.h>

/* ---------------------------------------------------------------- matmul
 * a [..,M,K] (trans_a: [..,K,M]) x b [K,N] (trans_b: [N,K]) -> [..,M,N].
 * Batch dims: a and b either have the same leading dims, or one of them is 2-D and is shared by
 * every batch entry of the other (the output takes the batched one's leading dims). */
static void mm_dims(const mf_node *a, const mf_node *b, int ta, int tb, int64_t *M, int64_t *K, int64_t *Kb, int64_t *N) {
  *M = a->ne[a->ndim - (ta ? 1 : 2)];
  *K = a->ne[a->ndim - (ta ? 2 : 1)];
  *Kb = b->ne[b->ndim - (tb ? 1 : 2)];
  *N = b->ne[b->ndim - (tb ? 2 : 1)];
}

mf_tensor mf_matmul(mf_graph *g, mf_tensor a, mf_tensor b, int trans_a, int trans_b) {
  int src[2] = {a, b};
  if (!mf_graph_check_srcs(g, "matmul", 2, src)) return -1;
  const mf_node *na = &g->nodes[a], *nb = &g->nodes[b];
  char sa[80], sb[80];
  mf_shape_str(na, sa, sizeof sa);
  mf_shape_str(nb, sb, sizeof sb);
  if (na->ndim < 2 || nb->ndim < 2)
    return mf_graph_fail(g, "matmul: both operands need at least 2 dims, got %s and %s", sa, sb);
  if (!mf_dtype_is_float(na->dtype) || !mf_dtype_is_float(nb->dtype))
    return mf_graph_fail(g, "matmul: operands %s (%s) and %s (%s) must be floating point", sa, mf_dtype_name(na->dtype), sb,
                         mf_dtype_name(nb->dtype));
  int64_t M, K, Kb, N;
  mm_dims(na, nb, trans_a, trans_b, &M, &K, &Kb, &N);
  if (K != Kb)
    return mf_graph_fail(g, "matmul: %s%s has inner size %lld but %s%s has %lld", sa, trans_a ? "^T" : "", (long long)K, sb,
                         trans_b ? "^T" : "", (long long)Kb);
  const mf_node *bat = na->ndim >= nb->ndim ? na : nb;
  if (na->ndim > 2 && nb->ndim > 2) {
    bool same = na->ndim == nb->ndim;
    for (int i = 0; same && i < na->ndim - 2; i++) same = na->ne[i] == nb->ne[i];
    if (!same)
      return mf_graph_fail(g, "matmul: batch dims of %s and %s differ (they must be equal, or one operand 2-D)", sa, sb);
  }
  int64_t ne[MF_MAX_DIMS];
  int nd = bat->ndim;
  for (int i = 0; i < nd - 2; i++) ne[i] = bat->ne[i];
  ne[nd - 2] = M;
  ne[nd - 1] = N;
  int id = mf_graph_add(g, MF_OP_MATMUL, na->dtype, nd, ne, 2, src);
  if (id >= 0) {
    g->nodes[id].ip[0] = trans_a ? 1 : 0;
    g->nodes[id].ip[1] = trans_b ? 1 : 0;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "matmul");
  }
  return id;
}

/* Sums a gradient computed with batch dims down to the 2-D operand it belongs to. */
static int reduce_batch(mf_graph *g, int d, int like) {
  if (d < 0) return -1;
  const mf_node *dn = &g->nodes[d], *l = &g->nodes[like];
  if (dn->ndim == l->ndim) return d;
  unsigned mask = 0;
  for (int i = 0; i < dn->ndim - 2; i++) mask |= 1u << i;
  return mf_reduce(g, d, mask, 0, 1.0);
}

/* Folds the batch dims of a row-major [..,R,C] tensor into the rows: [B*R, C]. */
static int fold_rows(mf_graph *g, int x) {
  const mf_node *n = &g->nodes[x];
  if (n->ndim == 2) return x;
  int64_t ne[2] = {mf_node_numel(n) / n->ne[n->ndim - 1], n->ne[n->ndim - 1]};
  return mf_reshape(g, x, 2, ne);
}

/* With A = op_a(a), B = op_b(b), y = A B:  dA = dy B^T,  dB = A^T dy. */
static int grad_matmul(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int a = n->src[0], b = n->src[1], ta = n->ip[0], tb = n->ip[1];
  int a_nd = g->nodes[a].ndim, b_nd = g->nodes[b].ndim;
  dx[0] = dx[1] = -1;
  if (mf_wants_grad(g, a)) {
    int d = ta ? mf_matmul(g, b, dy, tb, 1)    /* a^T = dA -> a = B dy^T */
               : mf_matmul(g, dy, b, 0, !tb);  /* a = dy B^T */
    dx[0] = reduce_batch(g, d, a);
  }
  if (mf_wants_grad(g, b)) {
    bool fold = b_nd == 2 && a_nd > 2 && !ta; /* a [..,M,K]: sum over batch == one GEMM on folded rows */
    if (fold) {
      int af = fold_rows(g, a), df = fold_rows(g, dy);
      dx[1] = tb ? mf_matmul(g, df, af, 1, 0) : mf_matmul(g, af, df, 1, 0);
    } else {
      int d = tb ? mf_matmul(g, dy, a, 1, ta)   /* b = dB^T = dy^T A */
                 : mf_matmul(g, a, dy, !ta, 0); /* b = A^T dy */
      dx[1] = reduce_batch(g, d, b);
    }
  }
  return g->err[0] ? -1 : 0;
}

static double flops_matmul(const mf_graph *g, const mf_node *n) {
  const mf_node *a = &g->nodes[n->src[0]];
  int64_t K = a->ne[a->ndim - (n->ip[0] ? 2 : 1)];
  return 2.0 * (double)mf_node_numel(n) * (double)K;
}

/* x [N,IN], w [OUT,IN], b [OUT] or -1 -> [N,OUT] = x w^T + b */
mf_tensor mf_linear(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b) {
  int src[2] = {x, w};
  if (!mf_graph_check_srcs(g, "linear", 2, src)) return -1;
  const mf_node *nx = &g->nodes[x], *nw = &g->nodes[w];
  char sx[80], sw[80];
  mf_shape_str(nx, sx, sizeof sx);
  mf_shape_str(nw, sw, sizeof sw);
  if (nw->ndim != 2 || nx->ndim < 2 || nx->ne[nx->ndim - 1] != nw->ne[1])
    return mf_graph_fail(g, "linear: input %s does not fit weight %s (want x [N,IN], w [OUT,IN])", sx, sw);
  if (b >= 0) {
    if (!mf_graph_check_srcs(g, "linear", 1, &b)) return -1;
    const mf_node *nb = &g->nodes[b];
    if (nb->ndim != 1 || nb->ne[0] != nw->ne[0]) {
      char sb[80];
      mf_shape_str(nb, sb, sizeof sb);
      return mf_graph_fail(g, "linear: bias %s does not match weight %s (want [%lld])", sb, sw, (long long)nw->ne[0]);
    }
  }
  int y = mf_matmul(g, x, w, 0, 1);
  if (y >= 0) snprintf(g->nodes[y].name, MF_NAME_LEN, "linear");
  return b >= 0 ? mf_add(g, y, b) : y;
}

/* ---------------------------------------------------------------- conv2d
 * x [N,C,H,W], w [OC,C/groups,KH,KW], b [OC] -> y [N,OC,OH,OW], OH = (H+2p-KH)/s+1. */
static int64_t conv_out(int64_t in, int64_t k, int s, int p) { return (in + 2 * p - k) / s + 1; }

mf_tensor mf_conv2d(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b, int stride, int pad, int groups) {
  int src[3] = {x, w, b};
  int ns = b >= 0 ? 3 : 2;
  if (!mf_graph_check_srcs(g, "conv2d", ns, src)) return -1;
  const mf_node *nx = &g->nodes[x], *nw = &g->nodes[w];
  char sx[80], sw[80];
  mf_shape_str(nx, sx, sizeof sx);
  mf_shape_str(nw, sw, sizeof sw);
  if (nx->ndim != 4 || nw->ndim != 4)
    return mf_graph_fail(g, "conv2d: input %s and weight %s must both be 4-D (x [N,C,H,W], w [OC,C/groups,KH,KW])", sx, sw);
  if (stride < 1 || pad < 0 || groups < 1)
    return mf_graph_fail(g, "conv2d: stride %d, padding %d, groups %d (need stride >= 1, padding >= 0, groups >= 1)", stride,
                         pad, groups);
  if (!mf_dtype_is_float(nx->dtype) || !mf_dtype_is_float(nw->dtype))
    return mf_graph_fail(g, "conv2d: input %s (%s) and weight %s (%s) must be floating point", sx, mf_dtype_name(nx->dtype), sw,
                         mf_dtype_name(nw->dtype));
  int64_t C = nx->ne[1], OC = nw->ne[0];
  if (C % groups || OC % groups)
    return mf_graph_fail(g, "conv2d: groups %d must divide the input channels of %s and the output channels of weight %s", groups,
                         sx, sw);
  if (nw->ne[1] * groups != C)
    return mf_graph_fail(g, "conv2d: input %s has %lld channels but weight %s expects %lld x groups %d", sx, (long long)C, sw,
                         (long long)nw->ne[1], groups);
  if (nx->ne[2] + 2 * pad < nw->ne[2] || nx->ne[3] + 2 * pad < nw->ne[3])
    return mf_graph_fail(g, "conv2d: kernel of weight %s is larger than input %s padded by %d", sw, sx, pad);
  if (b >= 0) {
    const mf_node *nb = &g->nodes[b];
    if (nb->ndim != 1 || nb->ne[0] != OC) {
      char sb[80];
      mf_shape_str(nb, sb, sizeof sb);
      return mf_graph_fail(g, "conv2d: bias %s does not match the %lld output channels of weight %s", sb, (long long)OC, sw);
    }
  }
  int64_t ne[4] = {nx->ne[0], OC, conv_out(nx->ne[2], nw->ne[2], stride, pad), conv_out(nx->ne[3], nw->ne[3], stride, pad)};
  int id = mf_graph_add(g, MF_OP_CONV2D, nx->dtype, 4, ne, ns, src);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = stride;
    n->ip[1] = pad;
    n->ip[2] = groups;
    snprintf(n->name, MF_NAME_LEN, "conv2d");
  }
  return id;
}

/* The two conv2d gradients: checks that x [N,C,H,W], w [OC,C/groups,KH,KW] and dy [N,OC,OH,OW]
 * fit one conv2d, then builds op (srcs a, b) shaped and typed like `like` (x for data, w for weight). */
static int conv2d_bwd(mf_graph *g, int op, const char *name, int a, int b, int x, int w, int dy, int like, int stride,
                      int pad, int groups) {
  int src[2] = {a, b};
  if (!mf_graph_check_srcs(g, name, 2, src) || !mf_graph_check_srcs(g, name, 1, &like)) return -1;
  const mf_node *nx = &g->nodes[x], *nd = &g->nodes[dy], *nw = &g->nodes[w];
  if (nd->ndim != 4 || nw->ndim != 4 || nx->ndim != 4 || nd->ne[1] != nw->ne[0] || nw->ne[1] * groups != nx->ne[1] ||
      nd->ne[0] != nx->ne[0] || nd->ne[2] != conv_out(nx->ne[2], nw->ne[2], stride, pad) ||
      nd->ne[3] != conv_out(nx->ne[3], nw->ne[3], stride, pad)) {
    char sd[80], sw[80], sx[80];
    mf_shape_str(nd, sd, sizeof sd);
    mf_shape_str(nw, sw, sizeof sw);
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "%s: input %s, dy %s and weight %s do not fit a conv2d", name, sx, sd, sw);
  }
  const mf_node *nl = &g->nodes[like];
  int id = mf_graph_add(g, op, nl->dtype, 4, nl->ne, 2, src);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = stride;
    n->ip[1] = pad;
    n->ip[2] = groups;
  }
  return id;
}

/* dy [N,OC,OH,OW], w [OC,C/groups,KH,KW] -> dx shaped (and typed) like x_like [N,C,H,W] */
int mf_conv2d_bwd_data(mf_graph *g, int dy, int w, int x_like, int stride, int pad, int groups) {
  return conv2d_bwd(g, MF_OP_CONV2D_BWD_DATA, "conv2d_bwd_data", dy, w, x_like, w, dy, x_like, stride, pad, groups);
}

/* x [N,C,H,W], dy [N,OC,OH,OW] -> dw shaped (and typed) like w_like [OC,C/groups,KH,KW] */
int mf_conv2d_bwd_weight(mf_graph *g, int x, int dy, int w_like, int stride, int pad, int groups) {
  return conv2d_bwd(g, MF_OP_CONV2D_BWD_WEIGHT, "conv2d_bwd_weight", x, dy, x, w_like, dy, w_like, stride, pad, groups);
}

static int grad_conv2d(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0], w = n->src[1], b = n->nsrc > 2 ? n->src[2] : -1;
  int s = n->ip[0], p = n->ip[1], gr = n->ip[2];
  dx[0] = dx[1] = dx[2] = -1;
  if (mf_wants_grad(g, x)) dx[0] = mf_conv2d_bwd_data(g, dy, w, x, s, p, gr);
  if (mf_wants_grad(g, w)) dx[1] = mf_conv2d_bwd_weight(g, x, dy, w, s, p, gr);
  if (mf_wants_grad(g, b)) dx[2] = mf_reduce(g, dy, 0xDu, 0, 1.0); /* sum over N, H, W -> [OC] */
  return g->err[0] ? -1 : 0;
}

/* 2 x multiply-adds: N * OC * OH * OW * (C/groups) * KH * KW, the same for all three ops */
static double conv_macs(const mf_node *w, const mf_node *y) {
  return (double)y->ne[0] * (double)y->ne[1] * (double)y->ne[2] * (double)y->ne[3] * (double)w->ne[1] * (double)w->ne[2] *
         (double)w->ne[3];
}
static double flops_conv2d(const mf_graph *g, const mf_node *n) { return 2.0 * conv_macs(&g->nodes[n->src[1]], n); }
static double flops_conv2d_bwd_data(const mf_graph *g, const mf_node *n) { /* src dy, w */
  return 2.0 * conv_macs(&g->nodes[n->src[1]], &g->nodes[n->src[0]]);
}
static double flops_conv2d_bwd_weight(const mf_graph *g, const mf_node *n) { /* src x, dy; n is dw */
  return 2.0 * conv_macs(n, &g->nodes[n->src[1]]);
}

const mf_op_def mf_op_def_matmul = {"matmul", grad_matmul, flops_matmul};
const mf_op_def mf_op_def_conv2d = {"conv2d", grad_conv2d, flops_conv2d};
const mf_op_def mf_op_def_conv2d_bwd_data = {"conv2d_bwd_data", NULL, flops_conv2d_bwd_data};
const mf_op_def mf_op_def_conv2d_bwd_weight = {"conv2d_bwd_weight", NULL, flops_conv2d_bwd_weight};

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
 * x [N,C,H,W], w [OC,C/groups,KH,KW], b [OC] -> y [N,OC,OH,OW], OH = (H+pt+pb-dil*(KH-1)-1)/s+1. */
static int64_t conv_out(int64_t in, int64_t k, int s, int d, int p0, int p1) { return (in + p0 + p1 - (int64_t)d * (k - 1) - 1) / s + 1; }

mf_conv_cfg mf_conv_cfg_of(const mf_node *n) {
  mf_conv_cfg c = {n->ip[0], n->ip[3] > 0 ? n->ip[3] : 1, n->ip[2], n->ip[1], n->ip[4], n->ip[5], n->ip[6], 0, 0};
  uint32_t w = (uint32_t)n->ip[7];
  c.sw = (w & 0xfff) ? (int)(w & 0xfff) : c.stride; /* bits 0-11: W stride, 12-23: W dilation (0: as H's), */
  c.dw = ((w >> 12) & 0xfff) ? (int)((w >> 12) & 0xfff) : c.dil; /* 24-31: the fused activation (mf_conv_act) */
  return c;
}

static void conv_cfg_store(mf_node *n, const mf_conv_cfg *c) {
  n->ip[0] = c->stride;
  n->ip[1] = c->pt;
  n->ip[2] = c->groups;
  n->ip[3] = c->dil;
  n->ip[4] = c->pl;
  n->ip[5] = c->pb;
  n->ip[6] = c->pr;
  int sw = mf_conv_sw(c), dw = mf_conv_dw(c);
  n->ip[7] = (int32_t)((uint32_t)(sw != c->stride ? sw : 0) | (uint32_t)(dw != c->dil ? dw : 0) << 12);
}

static int conv_cfg_check(mf_graph *g, const char *name, const mf_conv_cfg *c) {
  if (c->stride < 1 || c->dil < 1 || c->groups < 1 || c->pt < 0 || c->pl < 0 || c->pb < 0 || c->pr < 0 || c->sw < 0 || c->dw < 0)
    return mf_graph_fail(g, "%s: stride %d, dilation %d, groups %d, padding [%d,%d,%d,%d] (need stride, dilation and groups >= 1, "
                            "padding >= 0)", name, c->stride, c->dil, c->groups, c->pt, c->pl, c->pb, c->pr);
  if (c->stride > 4095 || c->dil > 4095 || mf_conv_sw(c) > 4095 || mf_conv_dw(c) > 4095)
    return mf_graph_fail(g, "%s: strides %d,%d or dilations %d,%d above 4095", name, c->stride, mf_conv_sw(c), c->dil, mf_conv_dw(c));
  return 0;
}

static mf_conv_cfg sym_cfg(int stride, int pad, int groups) {
  mf_conv_cfg c = {stride, 1, groups, pad, pad, pad, pad, 0, 0};
  return c;
}

mf_tensor mf_conv2d(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b, int stride, int pad, int groups) {
  mf_conv_cfg c = sym_cfg(stride, pad, groups);
  return mf_conv2d_cfg(g, x, w, b, &c);
}

int mf_conv2d_cfg(mf_graph *g, int x, int w, int b, const mf_conv_cfg *cfg) {
  int src[3] = {x, w, b};
  int ns = b >= 0 ? 3 : 2;
  if (!mf_graph_check_srcs(g, "conv2d", ns, src)) return -1;
  const mf_node *nx = &g->nodes[x], *nw = &g->nodes[w];
  char sx[80], sw[80];
  mf_shape_str(nx, sx, sizeof sx);
  mf_shape_str(nw, sw, sizeof sw);
  if (nx->ndim != 4 || nw->ndim != 4)
    return mf_graph_fail(g, "conv2d: input %s and weight %s must both be 4-D (x [N,C,H,W], w [OC,C/groups,KH,KW])", sx, sw);
  if (conv_cfg_check(g, "conv2d", cfg) < 0) return -1;
  int groups = cfg->groups;
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
  int64_t ekh = (int64_t)cfg->dil * (nw->ne[2] - 1) + 1, ekw = (int64_t)mf_conv_dw(cfg) * (nw->ne[3] - 1) + 1;
  if (nx->ne[2] + cfg->pt + cfg->pb < ekh || nx->ne[3] + cfg->pl + cfg->pr < ekw)
    return mf_graph_fail(g, "conv2d: kernel of weight %s (dilation %d) is larger than input %s padded by [%d,%d,%d,%d]", sw, cfg->dil,
                         sx, cfg->pt, cfg->pl, cfg->pb, cfg->pr);
  if (b >= 0) {
    const mf_node *nb = &g->nodes[b];
    if (nb->ndim != 1 || nb->ne[0] != OC) {
      char sb[80];
      mf_shape_str(nb, sb, sizeof sb);
      return mf_graph_fail(g, "conv2d: bias %s does not match the %lld output channels of weight %s", sb, (long long)OC, sw);
    }
  }
  int64_t ne[4] = {nx->ne[0], OC, conv_out(nx->ne[2], nw->ne[2], cfg->stride, cfg->dil, cfg->pt, cfg->pb),
                   conv_out(nx->ne[3], nw->ne[3], mf_conv_sw(cfg), mf_conv_dw(cfg), cfg->pl, cfg->pr)};
  int id = mf_graph_add(g, MF_OP_CONV2D, nx->dtype, 4, ne, ns, src);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    conv_cfg_store(n, cfg);
    snprintf(n->name, MF_NAME_LEN, "conv2d");
  }
  return id;
}

/* The two conv2d gradients: checks that x [N,C,H,W] (shape xne), w [OC,C/groups,KH,KW] (wne) and dy [N,OC,OH,OW] (dne)
 * fit one conv2d, then builds op (srcs a, b) with shape one and dtype dt. */
static int conv2d_bwd(mf_graph *g, int op, const char *name, int a, int b, const int64_t *xne, const int64_t *wne,
                      const int64_t *dne, const int64_t *one, mf_dtype dt, const mf_conv_cfg *cfg) {
  int src[2] = {a, b};
  if (!mf_graph_check_srcs(g, name, 2, src)) return -1;
  if (conv_cfg_check(g, name, cfg) < 0) return -1;
  if (dne[1] != wne[0] || wne[1] * cfg->groups != xne[1] || wne[0] % cfg->groups || dne[0] != xne[0] ||
      dne[2] != conv_out(xne[2], wne[2], cfg->stride, cfg->dil, cfg->pt, cfg->pb) ||
      dne[3] != conv_out(xne[3], wne[3], mf_conv_sw(cfg), mf_conv_dw(cfg), cfg->pl, cfg->pr) || dne[2] < 1 || dne[3] < 1)
    return mf_graph_fail(g, "%s: input [%lld,%lld,%lld,%lld], dy [%lld,%lld,%lld,%lld] and weight [%lld,%lld,%lld,%lld] do not fit a "
                            "conv2d of strides %d,%d, dilations %d,%d, padding [%d,%d,%d,%d], groups %d",
                         name, (long long)xne[0], (long long)xne[1], (long long)xne[2], (long long)xne[3], (long long)dne[0],
                         (long long)dne[1], (long long)dne[2], (long long)dne[3], (long long)wne[0], (long long)wne[1],
                         (long long)wne[2], (long long)wne[3], cfg->stride, mf_conv_sw(cfg), cfg->dil, mf_conv_dw(cfg), cfg->pt, cfg->pl, cfg->pb, cfg->pr,
                         cfg->groups);
  int id = mf_graph_add(g, op, dt, 4, one, 2, src);
  if (id >= 0) conv_cfg_store(&g->nodes[id], cfg);
  return id;
}

static bool is4d(mf_graph *g, const char *name, int id) {
  if (!mf_graph_check_srcs(g, name, 1, &id)) return false;
  if (g->nodes[id].ndim != 4) {
    char s[80];
    mf_shape_str(&g->nodes[id], s, sizeof s);
    mf_graph_fail(g, "%s: %s is not 4-D", name, s);
    return false;
  }
  return true;
}

/* dy [N,OC,OH,OW], w [OC,C/groups,KH,KW] -> dx shaped (and typed) like x_like [N,C,H,W] */
int mf_conv2d_bwd_data_cfg(mf_graph *g, int dy, int w, int x_like, const mf_conv_cfg *cfg) {
  const char *nm = "conv2d_bwd_data";
  if (!is4d(g, nm, dy) || !is4d(g, nm, w) || !is4d(g, nm, x_like)) return -1;
  const mf_node *nx = &g->nodes[x_like];
  return conv2d_bwd(g, MF_OP_CONV2D_BWD_DATA, nm, dy, w, nx->ne, g->nodes[w].ne, g->nodes[dy].ne, nx->ne, nx->dtype, cfg);
}

/* x [N,C,H,W], dy [N,OC,OH,OW] -> dw shaped (and typed) like w_like [OC,C/groups,KH,KW] */
int mf_conv2d_bwd_weight_cfg(mf_graph *g, int x, int dy, int w_like, const mf_conv_cfg *cfg) {
  const char *nm = "conv2d_bwd_weight";
  if (!is4d(g, nm, dy) || !is4d(g, nm, x) || !is4d(g, nm, w_like)) return -1;
  const mf_node *nw = &g->nodes[w_like];
  return conv2d_bwd(g, MF_OP_CONV2D_BWD_WEIGHT, nm, x, dy, g->nodes[x].ne, nw->ne, g->nodes[dy].ne, nw->ne, nw->dtype, cfg);
}

int mf_conv2d_bwd_data(mf_graph *g, int dy, int w, int x_like, int stride, int pad, int groups) {
  mf_conv_cfg c = sym_cfg(stride, pad, groups);
  return mf_conv2d_bwd_data_cfg(g, dy, w, x_like, &c);
}

int mf_conv2d_bwd_weight(mf_graph *g, int x, int dy, int w_like, int stride, int pad, int groups) {
  mf_conv_cfg c = sym_cfg(stride, pad, groups);
  return mf_conv2d_bwd_weight_cfg(g, x, dy, w_like, &c);
}

/* x [N,IC,H,W], w [IC,OC/groups,KH,KW] -> y [N,OC,(H-1)s-pt-pb+dil*(KH-1)+1+oph, ..] (the conv whose input y is) */
int mf_conv_transpose2d_cfg(mf_graph *g, int x, int w, const mf_conv_cfg *cfg, int oph, int opw) {
  const char *nm = "conv_transpose2d";
  if (!is4d(g, nm, x) || !is4d(g, nm, w)) return -1;
  if (conv_cfg_check(g, nm, cfg) < 0) return -1;
  const mf_node *nx = &g->nodes[x], *nw = &g->nodes[w];
  int mx = cfg->stride > cfg->dil ? cfg->stride : cfg->dil, sw = mf_conv_sw(cfg), dw = mf_conv_dw(cfg), mxw = sw > dw ? sw : dw;
  if (oph < 0 || opw < 0 || oph >= mx || opw >= mxw)
    return mf_graph_fail(g, "%s: output padding %d x %d must be >= 0 and below the stride (%d, %d) or the dilation (%d, %d)", nm,
                         oph, opw, cfg->stride, sw, cfg->dil, dw);
  if (!mf_dtype_is_float(nx->dtype) || !mf_dtype_is_float(nw->dtype))
    return mf_graph_fail(g, "%s: input and weight must be floating point", nm);
  if (nw->ne[0] != nx->ne[1] || nw->ne[0] % cfg->groups) {
    char sx[80], sw[80];
    mf_shape_str(nx, sx, sizeof sx);
    mf_shape_str(nw, sw, sizeof sw);
    return mf_graph_fail(g, "%s: input %s has %lld channels but weight %s [IC,OC/groups,KH,KW] takes %lld (groups %d)", nm, sx,
                         (long long)nx->ne[1], sw, (long long)nw->ne[0], cfg->groups);
  }
  int64_t ne[4] = {nx->ne[0], nw->ne[1] * cfg->groups,
                   (nx->ne[2] - 1) * cfg->stride - cfg->pt - cfg->pb + (int64_t)cfg->dil * (nw->ne[2] - 1) + 1 + oph,
                   (nx->ne[3] - 1) * sw - cfg->pl - cfg->pr + (int64_t)dw * (nw->ne[3] - 1) + 1 + opw};
  if (ne[2] < 1 || ne[3] < 1)
    return mf_graph_fail(g, "%s: padding [%d,%d,%d,%d] leaves an output of %lld x %lld", nm, cfg->pt, cfg->pl, cfg->pb, cfg->pr,
                         (long long)ne[2], (long long)ne[3]);
  int id = conv2d_bwd(g, MF_OP_CONV2D_BWD_DATA, nm, x, w, ne, nw->ne, nx->ne, ne, nx->dtype, cfg);
  if (id >= 0) snprintf(g->nodes[id].name, MF_NAME_LEN, "%s", nm);
  return id;
}

mf_tensor mf_conv_transpose2d(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b, int stride, int pad, int out_pad, int groups) {
  mf_conv_cfg c = sym_cfg(stride, pad, groups);
  mf_tensor y = mf_conv_transpose2d_cfg(g, x, w, &c, out_pad, out_pad);
  if (y < 0 || b < 0) return y;
  if (!mf_graph_check_srcs(g, "conv_transpose2d", 1, &b)) return -1;
  const mf_node *nb = &g->nodes[b];
  if (nb->ndim != 1 || nb->ne[0] != g->nodes[y].ne[1]) {
    char sb[80];
    mf_shape_str(nb, sb, sizeof sb);
    return mf_graph_fail(g, "conv_transpose2d: bias %s does not match the %lld output channels", sb, (long long)g->nodes[y].ne[1]);
  }
  int64_t bs[3] = {nb->ne[0], 1, 1};
  return mf_add(g, y, mf_reshape(g, b, 3, bs));
}

static int grad_conv2d(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0], w = n->src[1], b = n->nsrc > 2 ? n->src[2] : -1;
  mf_conv_cfg c = mf_conv_cfg_of(n);
  dx[0] = dx[1] = dx[2] = -1;
  if (mf_wants_grad(g, x)) dx[0] = mf_conv2d_bwd_data_cfg(g, dy, w, x, &c);
  if (mf_wants_grad(g, w)) dx[1] = mf_conv2d_bwd_weight_cfg(g, x, dy, w, &c);
  if (mf_wants_grad(g, b)) dx[2] = mf_reduce(g, dy, 0xDu, 0, 1.0); /* sum over N, H, W -> [OC] */
  return g->err[0] ? -1 : 0;
}

/* conv2d_bwd_data is linear in dy and w (a transposed convolution as a forward op): with g its output's gradient,
 * d dy = conv2d(g, w) and d w = conv2d_bwd_weight(g, dy), the same geometry. */
static int grad_conv2d_bwd_data(mf_graph *g, int id, int gy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int dyin = n->src[0], w = n->src[1];
  mf_conv_cfg c = mf_conv_cfg_of(n);
  dx[0] = dx[1] = -1;
  if (mf_wants_grad(g, dyin)) dx[0] = mf_conv2d_cfg(g, gy, w, -1, &c);
  if (mf_wants_grad(g, w)) dx[1] = mf_conv2d_bwd_weight_cfg(g, gy, dyin, w, &c);
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
const mf_op_def mf_op_def_conv2d_bwd_data = {"conv2d_bwd_data", grad_conv2d_bwd_data, flops_conv2d_bwd_data};
const mf_op_def mf_op_def_conv2d_bwd_weight = {"conv2d_bwd_weight", NULL, flops_conv2d_bwd_weight};

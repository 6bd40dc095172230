/* shape.c — ops that move data without arithmetic (concat, slice, reshape, permute) and the
 * reductions (sum/mean over an axes mask, and its adjoint expand): shape rules, builders, gradients.
 * Kernels: backend/cpu/shape.c. */
#include "ops/ops.h"
#include <string.h>

/* Normalises a possibly negative axis; returns -1 when out of range. */
static int norm_axis(int axis, int ndim) {
  if (axis < 0) axis += ndim;
  return axis >= 0 && axis < ndim ? axis : -1;
}

/* ---- concat: N inputs equal except along `axis` -> sizes along axis add up ---- */

static int concat_node(mf_graph *g, int n, const mf_tensor *xs, int axis) {
  if (!mf_graph_check_srcs(g, "concat", n, xs)) return -1;
  const mf_node *a = &g->nodes[xs[0]];
  int ax = norm_axis(axis, a->ndim);
  if (ax < 0) {
    char s[64];
    mf_shape_str(a, s, sizeof s);
    return mf_graph_fail(g, "concat: axis %d is out of range for shape %s", axis, s);
  }
  int64_t ne[MF_MAX_DIMS];
  memcpy(ne, a->ne, sizeof ne);
  ne[ax] = 0;
  for (int i = 0; i < n; i++) {
    const mf_node *b = &g->nodes[xs[i]];
    bool ok = b->ndim == a->ndim && b->dtype == a->dtype;
    for (int d = 0; ok && d < a->ndim; d++) ok = d == ax || b->ne[d] == a->ne[d];
    if (!ok) {
      char sa[64], sb[64];
      mf_shape_str(a, sa, sizeof sa);
      mf_shape_str(b, sb, sizeof sb);
      return mf_graph_fail(g, "concat: input %d has shape %s (%s) but input 0 has %s (%s); all must match except along axis %d",
                           i, sb, mf_dtype_name(b->dtype), sa, mf_dtype_name(a->dtype), ax);
    }
    ne[ax] += b->ne[ax];
  }
  int id = mf_graph_add(g, MF_OP_CONCAT, a->dtype, a->ndim, ne, n, xs);
  if (id >= 0) g->nodes[id].ip[0] = ax;
  return id;
}

mf_tensor mf_concat(mf_graph *g, int n, const mf_tensor *xs, int axis) {
  if (g->err[0]) return -1;
  if (n < 1 || !xs) return mf_graph_fail(g, "concat: needs at least one input (got %d)", n);
  if (n == 1) return mf_graph_check_srcs(g, "concat", 1, xs) ? xs[0] : -1;
  /* more inputs than a node holds: a chain, each link taking the previous result + 7 more */
  int acc = concat_node(g, n < MF_MAX_SRC ? n : MF_MAX_SRC, xs, axis);
  for (int i = MF_MAX_SRC; i < n && acc >= 0; i += MF_MAX_SRC - 1) {
    int src[MF_MAX_SRC], k = 1;
    src[0] = acc;
    for (int j = i; j < n && k < MF_MAX_SRC; j++) src[k++] = xs[j];
    acc = concat_node(g, k, src, axis);
  }
  return acc;
}

static int grad_concat(mf_graph *g, int id, int dy, int *dx) {
  int nsrc = g->nodes[id].nsrc, ax = g->nodes[id].ip[0];
  int64_t off = 0;
  for (int i = 0; i < nsrc; i++) {
    int s = g->nodes[id].src[i];
    int64_t len = g->nodes[s].ne[ax];
    if (mf_wants_grad(g, s)) dx[i] = mf_slice(g, dy, ax, off, off + len);
    off += len;
  }
  return g->err[0] ? -1 : 0;
}

/* ---- slice: [..., L, ...] -> [..., end-start, ...] along axis ---- */

mf_tensor mf_slice(mf_graph *g, mf_tensor a, int axis, int64_t start, int64_t end) {
  if (!mf_graph_check_srcs(g, "slice", 1, &a)) return -1;
  const mf_node *na = &g->nodes[a];
  int ax = norm_axis(axis, na->ndim);
  if (ax < 0 || start < 0 || end > na->ne[ax] || start >= end) {
    char s[64];
    mf_shape_str(na, s, sizeof s);
    return mf_graph_fail(g, "slice: axis %d range [%lld,%lld) is not a non-empty part of shape %s", axis,
                         (long long)start, (long long)end, s);
  }
  int64_t ne[MF_MAX_DIMS];
  memcpy(ne, na->ne, sizeof ne);
  ne[ax] = end - start;
  int id = mf_graph_add(g, MF_OP_SLICE, na->dtype, na->ndim, ne, 1, &a);
  if (id >= 0) {
    g->nodes[id].ip[0] = ax;
    g->nodes[id].ip[1] = (int32_t)start;
    g->nodes[id].ip[2] = (int32_t)end;
  }
  return id;
}

/* dy [..., end-start, ...] -> [like's shape] with zeros outside [start, end) along axis */
int mf_slice_bwd(mf_graph *g, int dy, int full_like, int axis, int64_t start) {
  int src2[2] = {dy, full_like};
  if (!mf_graph_check_srcs(g, "slice_bwd", 2, src2)) return -1;
  const mf_node *d = &g->nodes[dy], *l = &g->nodes[full_like];
  int ax = norm_axis(axis, l->ndim);
  bool ok = ax >= 0 && d->ndim == l->ndim && start >= 0 && start + (ax >= 0 ? d->ne[ax] : 0) <= (ax >= 0 ? l->ne[ax] : 0);
  for (int i = 0; ok && i < l->ndim; i++) ok = i == ax || d->ne[i] == l->ne[i];
  if (!ok) {
    char sd[64], sl[64];
    mf_shape_str(d, sd, sizeof sd);
    mf_shape_str(l, sl, sizeof sl);
    return mf_graph_fail(g, "slice_bwd: gradient %s does not fit into %s at axis %d offset %lld", sd, sl, axis, (long long)start);
  }
  int id = mf_graph_add(g, MF_OP_SLICE_BWD, d->dtype, l->ndim, l->ne, 1, &dy);
  if (id >= 0) {
    g->nodes[id].ip[0] = ax;
    g->nodes[id].ip[1] = (int32_t)start;
    g->nodes[id].ip[2] = (int32_t)(start + g->nodes[dy].ne[ax]);
  }
  return id;
}

static int grad_slice(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = mf_slice_bwd(g, dy, n->src[0], n->ip[0], n->ip[1]);
  return dx[0] < 0 ? -1 : 0;
}
static int grad_slice_bwd(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = mf_slice(g, dy, n->ip[0], n->ip[1], n->ip[2]);
  return dx[0] < 0 ? -1 : 0;
}

/* ---- reshape: same element count; one dim may be -1 (inferred) ---- */

mf_tensor mf_reshape(mf_graph *g, mf_tensor a, int ndim, const int64_t *shape) {
  if (!mf_graph_check_srcs(g, "reshape", 1, &a)) return -1;
  const mf_node *na = &g->nodes[a];
  char s[64];
  mf_shape_str(na, s, sizeof s);
  if (ndim < 1 || ndim > MF_MAX_DIMS || !shape) return mf_graph_fail(g, "reshape: %d dims asked for %s (1..%d)", ndim, s, MF_MAX_DIMS);
  int64_t ne[MF_MAX_DIMS], known = 1;
  int infer = -1;
  for (int i = 0; i < ndim; i++) {
    ne[i] = shape[i];
    if (ne[i] == -1 && infer < 0) infer = i;
    else if (ne[i] <= 0) return mf_graph_fail(g, "reshape: dimension %d of the new shape is %lld (input %s)", i, (long long)ne[i], s);
    else known *= ne[i];
  }
  int64_t total = mf_node_numel(na);
  if (infer >= 0 && known > 0 && total % known == 0) ne[infer] = total / known;
  int64_t got = 1;
  for (int i = 0; i < ndim; i++) got *= ne[i];
  if (got != total || ne[infer < 0 ? 0 : infer] <= 0) {
    char t[96];
    size_t o = (size_t)snprintf(t, sizeof t, "[");
    for (int i = 0; i < ndim && o < sizeof t; i++) o += (size_t)snprintf(t + o, sizeof t - o, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (o < sizeof t) snprintf(t + o, sizeof t - o, "]");
    return mf_graph_fail(g, "reshape: %s (%lld elements) cannot become %s", s, (long long)total, t);
  }
  return mf_graph_add(g, MF_OP_RESHAPE, na->dtype, ndim, ne, 1, &a);
}

/* ---- detach: the same values, no gradient flows back (a constant to autodiff) ---- */

mf_tensor mf_detach(mf_graph *g, mf_tensor x) {
  if (!mf_graph_check_srcs(g, "detach", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  int id = mf_graph_add(g, MF_OP_RESHAPE, nx->dtype, nx->ndim, nx->ne, 1, &x); /* [same shape as x] */
  if (id < 0) return -1;
  mf_node *n = &g->nodes[id];
  n->ip[MF_IP_DETACH] = 1;
  n->requires_grad = false; /* what is built from it alone needs no gradient either */
  snprintf(n->name, sizeof n->name, "detach");
  return id;
}

static int grad_reshape(mf_graph *g, int id, int dy, int *dx) {
  if (mf_node_is_detach(&g->nodes[id])) return 0; /* never reached: a detach does not require grad */
  const mf_node *x = &g->nodes[g->nodes[id].src[0]];
  int64_t ne[MF_MAX_DIMS];
  memcpy(ne, x->ne, sizeof ne);
  dx[0] = mf_reshape(g, dy, x->ndim, ne);
  return dx[0] < 0 ? -1 : 0;
}

/* ---- permute: out axis i is input axis perm[i] ---- */

mf_tensor mf_permute(mf_graph *g, mf_tensor a, const int *perm) {
  if (!mf_graph_check_srcs(g, "permute", 1, &a)) return -1;
  const mf_node *na = &g->nodes[a];
  int nd = na->ndim, seen = 0;
  int64_t ne[MF_MAX_DIMS] = {0};
  bool ok = perm != NULL;
  for (int i = 0; ok && i < nd; i++) {
    ok = perm[i] >= 0 && perm[i] < nd && !(seen & (1 << perm[i]));
    if (ok) { seen |= 1 << perm[i]; ne[i] = na->ne[perm[i]]; }
  }
  if (!ok) {
    char s[64], p[64] = "(null)";
    mf_shape_str(na, s, sizeof s);
    if (perm) {
      size_t o = (size_t)snprintf(p, sizeof p, "(");
      for (int i = 0; i < nd && o < sizeof p; i++) o += (size_t)snprintf(p + o, sizeof p - o, i ? ",%d" : "%d", perm[i]);
      if (o < sizeof p) snprintf(p + o, sizeof p - o, ")");
    }
    return mf_graph_fail(g, "permute: %s is not a permutation of the %d axes of %s", p, nd, s);
  }
  int id = mf_graph_add(g, MF_OP_PERMUTE, na->dtype, nd, ne, 1, &a);
  if (id >= 0)
    for (int i = 0; i < nd; i++) g->nodes[id].ip[i] = perm[i];
  return id;
}

mf_tensor mf_transpose(mf_graph *g, mf_tensor a, int axis0, int axis1) {
  if (!mf_graph_check_srcs(g, "transpose", 1, &a)) return -1;
  const mf_node *na = &g->nodes[a];
  int a0 = norm_axis(axis0, na->ndim), a1 = norm_axis(axis1, na->ndim);
  if (a0 < 0 || a1 < 0) {
    char s[64];
    mf_shape_str(na, s, sizeof s);
    return mf_graph_fail(g, "transpose: axes %d and %d are not both axes of %s", axis0, axis1, s);
  }
  int perm[MF_MAX_DIMS];
  for (int i = 0; i < na->ndim; i++) perm[i] = i;
  perm[a0] = a1;
  perm[a1] = a0;
  return mf_permute(g, a, perm);
}

static int grad_permute(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int inv[MF_MAX_DIMS];
  for (int i = 0; i < n->ndim; i++) inv[n->ip[i]] = i;
  dx[0] = mf_permute(g, dy, inv);
  return dx[0] < 0 ? -1 : 0;
}

/* ---- reduce: sum over the axes in mask (0: all) times scale; keepdim keeps them as size 1.
 * Reducing every axis without keepdim gives shape [1] (memfit's scalar). ---- */

int mf_reduce(mf_graph *g, int x, unsigned mask, int keepdim, double scale) {
  if (!mf_graph_check_srcs(g, "sum", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  int nd = nx->ndim;
  if (mask == 0) mask = nd ? (1u << nd) - 1 : 0;
  if (mask >> nd) {
    char s[64];
    mf_shape_str(nx, s, sizeof s);
    return mf_graph_fail(g, "sum: axes mask 0x%x names axes beyond the %d dims of %s", mask, nd, s);
  }
  int64_t ne[MF_MAX_DIMS];
  int od = 0;
  for (int i = 0; i < nd; i++) {
    if (mask & (1u << i)) { if (keepdim) ne[od++] = 1; }
    else ne[od++] = nx->ne[i];
  }
  if (od == 0) ne[od++] = 1;
  int id = mf_graph_add(g, MF_OP_REDUCE, nx->dtype, od, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = (int32_t)mask;
    n->ip[1] = keepdim ? 1 : 0;
    n->fp[0] = scale;
  }
  return id;
}

mf_tensor mf_sum(mf_graph *g, mf_tensor a, unsigned axes_mask, int keepdim) {
  int id = mf_reduce(g, a, axes_mask, keepdim, 1.0);
  if (id >= 0) snprintf(g->nodes[id].name, MF_NAME_LEN, "sum");
  return id;
}

mf_tensor mf_mean(mf_graph *g, mf_tensor a, unsigned axes_mask, int keepdim) {
  if (!mf_graph_check_srcs(g, "mean", 1, &a)) return -1;
  const mf_node *na = &g->nodes[a];
  unsigned m = axes_mask ? axes_mask : (1u << na->ndim) - 1;
  double count = 1;
  for (int i = 0; i < na->ndim; i++)
    if (m & (1u << i)) count *= (double)na->ne[i];
  int id = mf_reduce(g, a, axes_mask, keepdim, 1.0 / count);
  if (id >= 0) snprintf(g->nodes[id].name, MF_NAME_LEN, "mean");
  return id;
}

/* expand: x (size-1 axes, right-aligned) broadcast to like's shape, times scale; dtype of x */
int mf_expand(mf_graph *g, int x, int like, double scale) {
  int src2[2] = {x, like};
  if (!mf_graph_check_srcs(g, "expand", 2, src2)) return -1;
  const mf_node *nx = &g->nodes[x], *nl = &g->nodes[like];
  bool ok = nx->ndim <= nl->ndim;
  for (int i = 0; ok && i < nx->ndim; i++) {
    int64_t e = nx->ne[nx->ndim - 1 - i];
    ok = e == 1 || e == nl->ne[nl->ndim - 1 - i];
  }
  if (!ok) {
    char sx[64], sl[64];
    mf_shape_str(nx, sx, sizeof sx);
    mf_shape_str(nl, sl, sizeof sl);
    return mf_graph_fail(g, "expand: %s does not broadcast to %s", sx, sl);
  }
  int id = mf_graph_add(g, MF_OP_EXPAND, nx->dtype, nl->ndim, nl->ne, 1, &x);
  if (id >= 0) g->nodes[id].fp[0] = scale;
  return id;
}

static int grad_reduce(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0];
  const mf_node *nx = &g->nodes[x];
  unsigned mask = (unsigned)n->ip[0];
  double scale = n->fp[0];
  int d = dy;
  /* dropped axes must come back as size 1 before broadcasting (unless all were reduced: [1]) */
  if (!n->ip[1] && mask != (1u << nx->ndim) - 1) {
    int64_t ne[MF_MAX_DIMS];
    for (int i = 0; i < nx->ndim; i++) ne[i] = (mask & (1u << i)) ? 1 : nx->ne[i];
    d = mf_reshape(g, dy, nx->ndim, ne);
  }
  dx[0] = mf_expand(g, d, x, scale);
  return dx[0] < 0 ? -1 : 0;
}

static int grad_expand(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0];
  const mf_node *nd = &g->nodes[dy], *nx = &g->nodes[x];
  double scale = n->fp[0];
  unsigned mask = 0;
  int off = nd->ndim - nx->ndim;
  for (int i = 0; i < nd->ndim; i++)
    if (i < off || (nx->ne[i - off] == 1 && nd->ne[i] != 1)) mask |= 1u << i;
  if (!mask) { dx[0] = scale == 1.0 ? dy : mf_mul_scalar(g, dy, scale); return dx[0] < 0 ? -1 : 0; }
  int64_t ne[MF_MAX_DIMS];
  int xd = nx->ndim;
  memcpy(ne, nx->ne, sizeof ne);
  int r = mf_reduce(g, dy, mask, 1, scale);
  if (r >= 0 && off) r = mf_reshape(g, r, xd, ne);
  dx[0] = r;
  return r < 0 ? -1 : 0;
}

static double flops_reduce(const mf_graph *g, const mf_node *n) { return (double)mf_node_numel(&g->nodes[n->src[0]]); }
static double flops_move(const mf_graph *g, const mf_node *n) { (void)g; (void)n; return 0; }

const mf_op_def mf_op_def_concat = {"concat", grad_concat, flops_move};
const mf_op_def mf_op_def_slice = {"slice", grad_slice, flops_move};
const mf_op_def mf_op_def_slice_bwd = {"slice_bwd", grad_slice_bwd, flops_move};
const mf_op_def mf_op_def_reshape = {"reshape", grad_reshape, flops_move};
const mf_op_def mf_op_def_permute = {"permute", grad_permute, flops_move};
const mf_op_def mf_op_def_reduce = {"reduce", grad_reduce, flops_reduce};
const mf_op_def mf_op_def_expand = {"expand", grad_expand, NULL};

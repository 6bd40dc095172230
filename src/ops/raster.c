/* raster.c — the Image-GS tile rasteriser (docs/imagegs.md): builders of gauss_raster, its kept top-K map,
 * its backward and its statistics; the gradient rule and FLOP estimates. Kernels: backend/cpu/raster.c,
 * backend/cuda/raster.cu; shared set-up math: ops/raster.h. */
#include "ops/ops.h"
#include "ops/raster.h"
#include "graph/dtype.h"
#include <string.h>

/* Defaults filled in; NULL (err set) on a bad setting. */
static int opts_resolve(const mf_raster_opts *in, mf_raster_opts *o, char *err, size_t len) {
  if (!in) { snprintf(err, len, "no options (mf_raster_opts is NULL)"); return -1; }
  *o = *in;
  if (!o->top_k) o->top_k = 10;
  if (o->max_radius == 0) o->max_radius = MF_RASTER_DEF_RMAX;
  if (o->min_radius == 0) o->min_radius = MF_RASTER_DEF_RMIN;
  if (o->width < 1 || o->height < 1 || o->width > (1 << 20) || o->height > (1 << 20) || (int64_t)o->width * o->height > ((int64_t)1 << 34)) {
    snprintf(err, len, "image size %dx%d: width and height must be 1 .. 1048576, at most 2^34 pixels", o->width, o->height);
    return -1;
  }
  if (o->top_k < 1 || o->top_k > MF_RASTER_MAX_K) { snprintf(err, len, "top_k %d: must be 1 .. %d", o->top_k, MF_RASTER_MAX_K); return -1; }
  if (!(o->max_radius > 0) || !isfinite(o->max_radius) || !(o->min_radius > 0) || !(o->min_radius <= o->max_radius)) {
    snprintf(err, len, "radius clamp [min_radius %g, max_radius %g] pixels: need 0 < min_radius <= max_radius < inf", o->min_radius,
             o->max_radius);
    return -1;
  }
  if (o->max_radius > 1e7) { snprintf(err, len, "max_radius %g pixels: at most 1e7", o->max_radius); return -1; }
  if (!o->full_width) o->full_width = o->width;
  if (!o->full_height) o->full_height = o->height;
  if (o->full_width < 1 || o->full_height < 1 || o->full_width > (1 << 20) || o->full_height > (1 << 20)) {
    snprintf(err, len, "full image size %dx%d: full_width and full_height must be 1 .. 1048576 (0: the output's size)", o->full_width,
             o->full_height);
    return -1;
  }
  if (o->max_pairs < 0) { snprintf(err, len, "max_pairs %lld: must be >= 0 (0: the bound)", (long long)o->max_pairs); return -1; }
  return 0;
}

int64_t mf_raster_pair_bound(int64_t n, const mf_raster_opts *opts) {
  mf_raster_opts o;
  char err[160];
  if (n < 0 || opts_resolve(opts, &o, err, sizeof err) < 0) return -1;
  int64_t per = mf_gs_tiles_bound(o.width, o.height, o.max_radius);
  if (n > 0 && per > INT64_MAX / n) return INT64_MAX;
  return n * per;
}

/* Checks the Gaussians' tensors (pos [N,2], inv_scale [N,2], rot [N,1], feat [N,C] or NULL, mask [N] or -1);
 * fills src (pos, inv_scale, rot[, feat][, mask]), the resolved options and the capacity. Returns nsrc, -1. */
static int raster_srcs(mf_graph *g, const char *op, mf_tensor pos, mf_tensor isc, mf_tensor rot, mf_tensor feat, int with_feat,
                       mf_tensor mask, const mf_raster_opts *opts, int *src, mf_raster_opts *o, int32_t *cap) {
  int ins[4] = {pos, isc, rot, feat};
  if (!mf_graph_check_srcs(g, op, with_feat ? 4 : 3, ins)) return -1;
  if (mask != -1 && !mf_graph_check_srcs(g, op, 1, &mask)) return -1;
  char err[200];
  if (opts_resolve(opts, o, err, sizeof err) < 0) return mf_graph_fail(g, "%s: %s", op, err);
  const mf_node *p = &g->nodes[pos];
  int64_t N = p->ndim == 2 ? p->ne[0] : -1;
  static const char *names[4] = {"pos", "inv_scale", "rot", "feat"};
  for (int i = 0; i < (with_feat ? 4 : 3); i++) {
    const mf_node *t = &g->nodes[ins[i]];
    int64_t want = i == 0 || i == 1 ? 2 : i == 2 ? 1 : t->ne[1];
    if (t->ndim != 2 || t->ne[0] != N || t->ne[1] != want || N < 1 || !mf_dtype_is_float(t->dtype) || t->dtype != p->dtype) {
      char s[80];
      mf_shape_str(t, s, sizeof s);
      return mf_graph_fail(g, "%s: %s is %s (%s); expected %s [N,%s] of pos's float dtype (%s), N >= 1 Gaussians", op, names[i], s,
                           mf_dtype_name(t->dtype), names[i], i == 3 ? "C" : i == 2 ? "1" : "2", mf_dtype_name(p->dtype));
    }
    if (i == 3 && (t->ne[1] < 1 || t->ne[1] > MF_RASTER_MAX_C))
      return mf_graph_fail(g, "%s: feat has %lld channels; 1 .. %d are supported", op, (long long)t->ne[1], MF_RASTER_MAX_C);
  }
  if (N > INT32_MAX - 1) return mf_graph_fail(g, "%s: %lld Gaussians, more than i32 ids reach", op, (long long)N);
  if (mask != -1) {
    const mf_node *m = &g->nodes[mask];
    if (m->ndim != 1 || m->ne[0] != N || !mf_dtype_is_float(m->dtype)) {
      char s[80];
      mf_shape_str(m, s, sizeof s);
      return mf_graph_fail(g, "%s: mask is %s (%s); expected a float [%lld] (mf_active_mask)", op, s, mf_dtype_name(m->dtype), (long long)N);
    }
  }
  int64_t bound = mf_raster_pair_bound(N, o);
  int64_t c = o->max_pairs ? o->max_pairs : bound;
  if (c > INT32_MAX)
    return mf_graph_fail(g, "%s: %lld Gaussians x %lld tiles each (max_radius %g px, %dx%d image) = %lld Gaussian-tile pairs, more than "
                            "an i32 count holds; lower max_radius, or set max_pairs <= %d (a step that needs more then fails)",
                         op, (long long)N, (long long)mf_gs_tiles_bound(o->width, o->height, o->max_radius), o->max_radius, o->width,
                         o->height, (long long)bound, INT32_MAX);
  *cap = (int32_t)(c < 1 ? 1 : c);
  int n = 0;
  src[n++] = pos; src[n++] = isc; src[n++] = rot;
  if (with_feat) src[n++] = feat;
  if (mask != -1) src[n++] = mask;
  return n;
}

static void raster_params(mf_node *n, const mf_raster_opts *o, int32_t cap, int mask_idx, int topk_idx, int origin_idx) {
  n->ip[MF_RIP_ORIGIN] = origin_idx;
  n->fp[2] = o->full_width;
  n->fp[3] = o->full_height;
  n->ip[MF_RIP_W] = o->width;
  n->ip[MF_RIP_H] = o->height;
  n->ip[MF_RIP_K] = o->top_k;
  n->ip[MF_RIP_CAP] = cap;
  n->ip[MF_RIP_MASK] = mask_idx;
  n->ip[MF_RIP_TOPK] = topk_idx;
  n->ip[MF_RIP_KEEP] = o->keep_topk ? 1 : 0;
  n->fp[0] = o->max_radius;
  n->fp[1] = o->min_radius;
}

/* gauss_raster (whole image, origin -1) or a window of it (origin: i32 [2]) */
static mf_tensor raster_build(mf_graph *g, const char *op, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor feat,
                              mf_tensor mask, mf_tensor origin, const mf_raster_opts *opts) {
  if (g->err[0]) return -1;
  int src[MF_MAX_SRC];
  mf_raster_opts o;
  int32_t cap = 1;
  int n = raster_srcs(g, op, pos, inv_scale, rot, feat, 1, mask, opts, src, &o, &cap);
  if (n < 0) return -1;
  if (origin == -1) o.full_width = o.width, o.full_height = o.height;
  else {
    if (!mf_graph_check_srcs(g, op, 1, &origin)) return -1;
    const mf_node *t = &g->nodes[origin];
    if (t->ndim != 1 || t->ne[0] != 2 || t->dtype != MF_I32) {
      char sh[80];
      mf_shape_str(t, sh, sizeof sh);
      return mf_graph_fail(g, "%s: origin is %s (%s); expected an i32 [2] tensor (x0, y0 in pixels)", op, sh, mf_dtype_name(t->dtype));
    }
  }
  int mask_idx = mask != -1 ? 4 : -1, topk_idx = -1;
  if (o.keep_topk) { /* the selection as its own node: i32 [H,W,K], kept until backward reads it */
    int tsrc[5] = {pos, inv_scale, rot}, nt = 3, tmask = -1, torig = -1;
    if (mask != -1) { tmask = nt; tsrc[nt++] = mask; }
    if (origin != -1) { torig = nt; tsrc[nt++] = origin; }
    int64_t ne[3] = {o.height, o.width, o.top_k};
    int t = mf_graph_add(g, MF_OP_GAUSS_TOPK, MF_I32, 3, ne, nt, tsrc);
    if (t < 0) return -1;
    raster_params(&g->nodes[t], &o, cap, tmask, -1, torig);
    g->nodes[t].requires_grad = false;
    topk_idx = n;
    src[n++] = t;
  }
  int origin_idx = -1;
  if (origin != -1) { origin_idx = n; src[n++] = origin; }
  int64_t ne[3] = {g->nodes[feat].ne[1], o.height, o.width}; /* [C,H,W] */
  int id = mf_graph_add(g, MF_OP_GAUSS_RASTER, g->nodes[feat].dtype, 3, ne, n, src);
  if (id >= 0) raster_params(&g->nodes[id], &o, cap, mask_idx, topk_idx, origin_idx);
  return id;
}

mf_tensor mf_gauss_raster(mf_graph *g, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor feat, mf_tensor mask,
                          const mf_raster_opts *opts) {
  return raster_build(g, "gauss_raster", pos, inv_scale, rot, feat, mask, -1, opts);
}

mf_tensor mf_gauss_raster_window(mf_graph *g, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor feat, mf_tensor mask,
                                 mf_tensor origin, const mf_raster_opts *opts) {
  if (origin < 0) {
    if (!g->err[0]) mf_graph_fail(g, "gauss_raster_window: no origin tensor (an i32 [2] input holding x0, y0)");
    return -1;
  }
  return raster_build(g, "gauss_raster_window", pos, inv_scale, rot, feat, mask, origin, opts);
}

mf_tensor mf_gauss_raster_stats(mf_graph *g, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor mask,
                                const mf_raster_opts *opts) {
  if (g->err[0]) return -1;
  int src[MF_MAX_SRC];
  mf_raster_opts o;
  int32_t cap = 1;
  int n = raster_srcs(g, "gauss_raster_stats", pos, inv_scale, rot, -1, 0, mask, opts, src, &o, &cap);
  if (n < 0) return -1;
  int64_t ne[1] = {MF_RSTAT_COUNT};
  int id = mf_graph_add(g, MF_OP_GAUSS_STATS, MF_I32, 1, ne, n, src);
  if (id >= 0) {
    o.full_width = o.width, o.full_height = o.height;
    raster_params(&g->nodes[id], &o, cap, mask != -1 ? 3 : -1, -1, -1);
    g->nodes[id].requires_grad = false;
  }
  return id;
}

/* gauss_raster's backward: src (pos, inv_scale, rot, feat, dy[, mask][, topk]) -> [N, 5+C] in pos's dtype:
 * columns d pos (2), d inv_scale (2), d rot (1), d feat (C); sliced apart by the gradient rule. */
static int grad_gauss_raster(mf_graph *g, int id, int dy, int *dx) {
  mf_node n = g->nodes[id]; /* copy: adding nodes may move the array */
  int want = 0;
  for (int i = 0; i < 4; i++) want |= mf_wants_grad(g, n.src[i]);
  if (!want) return 0;
  int src[MF_MAX_SRC] = {n.src[0], n.src[1], n.src[2], n.src[3], dy};
  int ns = 5, mask_idx = -1, topk_idx = -1;
  if (n.ip[MF_RIP_MASK] >= 0) { mask_idx = ns; src[ns++] = n.src[n.ip[MF_RIP_MASK]]; }
  if (n.ip[MF_RIP_TOPK] >= 0) { topk_idx = ns; src[ns++] = n.src[n.ip[MF_RIP_TOPK]]; }
  int origin_idx = -1;
  if (n.ip[MF_RIP_ORIGIN] >= 0) { origin_idx = ns; src[ns++] = n.src[n.ip[MF_RIP_ORIGIN]]; }
  const mf_node *f = &g->nodes[n.src[3]];
  int64_t C = f->ne[1], ne[2] = {f->ne[0], 5 + C};
  int b = mf_graph_add(g, MF_OP_GAUSS_RASTER_BWD, g->nodes[n.src[0]].dtype, 2, ne, ns, src);
  if (b < 0) return -1;
  mf_node *bn = &g->nodes[b];
  memcpy(bn->ip, n.ip, sizeof bn->ip);
  memcpy(bn->fp, n.fp, sizeof bn->fp);
  bn->ip[MF_RIP_MASK] = mask_idx;
  bn->ip[MF_RIP_TOPK] = topk_idx;
  bn->ip[MF_RIP_ORIGIN] = origin_idx;
  static const int64_t lo[4] = {0, 2, 4, 5};
  int64_t hi[4] = {2, 4, 5, 5 + C};
  for (int i = 0; i < 4; i++)
    if (mf_wants_grad(g, n.src[i])) dx[i] = mf_slice(g, b, 1, lo[i], hi[i]);
  return g->err[0] ? -1 : 0; /* mask and the top-K map get none */
}

/* Estimates for the cost model only (the real work depends on the scales): every pixel scores the Gaussians
 * of its tile (taken as 4 tiles per Gaussian, about 12 flops each) and blends K of them. */
static double scored(const mf_node *n, int64_t N) {
  double TX = (n->ip[MF_RIP_W] + 15) / 16, TY = (n->ip[MF_RIP_H] + 15) / 16, pairs = 4.0 * (double)N;
  double FT = floor((n->fp[2] + 15) / 16) * floor((n->fp[3] + 15) / 16); /* a window sees its share of the image's pairs */
  if (FT > TX * TY) pairs *= TX * TY / FT;
  if (pairs > n->ip[MF_RIP_CAP]) pairs = n->ip[MF_RIP_CAP];
  return pairs * 256.0 * 12.0 * (TX * TY > 0 ? 1 : 0);
}
static double flops_topk(const mf_graph *g, const mf_node *n) { return scored(n, g->nodes[n->src[0]].ne[0]); }
static double flops_raster(const mf_graph *g, const mf_node *n) {
  double px = (double)n->ne[1] * n->ne[2], C = (double)n->ne[0];
  double blend = px * n->ip[MF_RIP_K] * (2 * C + 14);
  return blend + (n->ip[MF_RIP_TOPK] >= 0 ? 0 : scored(n, g->nodes[n->src[0]].ne[0]));
}
static double flops_raster_bwd(const mf_graph *g, const mf_node *n) {
  double px = (double)n->ip[MF_RIP_W] * n->ip[MF_RIP_H], C = (double)n->ne[1] - 5;
  return px * n->ip[MF_RIP_K] * (6 * C + 30) + (n->ip[MF_RIP_TOPK] >= 0 ? 0 : scored(n, g->nodes[n->src[0]].ne[0]));
}
static double flops_stats(const mf_graph *g, const mf_node *n) { return 40.0 * (double)g->nodes[n->src[0]].ne[0]; }

const mf_op_def mf_op_def_gauss_topk = {"gauss_topk", NULL, flops_topk};
const mf_op_def mf_op_def_gauss_raster = {"gauss_raster", grad_gauss_raster, flops_raster};
const mf_op_def mf_op_def_gauss_raster_bwd = {"gauss_raster_bwd", NULL, flops_raster_bwd};
const mf_op_def mf_op_def_gauss_stats = {"gauss_stats", NULL, flops_stats};

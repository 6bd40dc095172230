/* pool.c — average/max pooling, global average pooling, nearest upsampling, nearest and bilinear resize, 2-D padding
 * (+ their backward ops): shape rules, builders and gradient rules. Kernels: backend/cpu/pool.c.
 * POOL params: ip0 MF_POOL_AVG/MAX, the window's geometry in ip1-3, 5-7 (mf_pool_cfg in ops.h), ip4 = 1 for
 * global average pooling ([N,C,H,W] -> [N,C]; the window is the whole plane, the geometry unused). Average pooling
 * divides by the window's pixels inside the padded image (count_include_pad 1, PyTorch's default) or inside the
 * image (exclude_pad, count_include_pad 0). */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <string.h>

mf_pool_cfg mf_pool_cfg_of(const mf_node *n) {
  mf_pool_cfg c;
  uint32_t k = (uint32_t)n->ip[1], st = (uint32_t)n->ip[2], tl = (uint32_t)n->ip[3], d = (uint32_t)n->ip[5], br = (uint32_t)n->ip[6];
  c.kh = (int)(k & 0xffff), c.kw = (int)(k >> 16);
  c.sh = (int)(st & 0xffff), c.sw = (int)(st >> 16);
  c.pt = (int)(tl & 0xffff), c.pl = (int)(tl >> 16);
  c.dh = (int)(d & 0xffff), c.dw = (int)(d >> 16);
  c.pb = (int)(br & 0xffff), c.pr = (int)(br >> 16);
  c.exclude_pad = n->ip[7] & 1;
  c.ceil = (n->ip[7] >> 1) & 1;
  return c;
}

/* output size along an axis of n pixels: floor (or ceil) of (n + p0 + p1 - dilated k) / s, plus 1; with ceil, a last
 * window starting inside the bottom/right padding is dropped (PyTorch's rule) */
static int64_t pool_out(int64_t n, int k, int s, int d, int p0, int p1, int ceil) {
  int64_t span = n + p0 + p1 - ((int64_t)d * (k - 1) + 1);
  if (span < 0) return 0;
  int64_t o = (ceil ? (span + s - 1) / s : span / s) + 1;
  if (ceil && (o - 1) * s >= n + p0) o--;
  return o;
}

int mf_pool2d_cfg(mf_graph *g, int kind, int x, const mf_pool_cfg *c) {
  const char *nm = kind == MF_POOL_AVG ? "avgpool2d" : "maxpool2d";
  if (!mf_graph_check_srcs(g, nm, 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "%s: input %s must be 4-D [N,C,H,W]", nm, sx);
  if (!mf_dtype_is_float(nx->dtype)) return mf_graph_fail(g, "%s: input %s must be floating point", nm, sx);
  const int lim = 65535;
  if (c->kh < 1 || c->kw < 1 || c->sh < 1 || c->sw < 1 || c->dh < 1 || c->dw < 1 || c->kh > lim || c->kw > lim || c->sh > lim ||
      c->sw > lim || c->dh > lim || c->dw > lim)
    return mf_graph_fail(g, "%s: kernel %dx%d, strides %dx%d, dilations %dx%d for input %s (need each in 1..%d)", nm, c->kh, c->kw,
                         c->sh, c->sw, c->dh, c->dw, sx, lim);
  int64_t eh = (int64_t)c->dh * (c->kh - 1) + 1, ew = (int64_t)c->dw * (c->kw - 1) + 1; /* dilated extents */
  if (c->pt < 0 || c->pl < 0 || c->pb < 0 || c->pr < 0 || c->pt >= eh || c->pb >= eh || c->pl >= ew || c->pr >= ew)
    return mf_graph_fail(g, "%s: pads top %d, left %d, bottom %d, right %d for a %lldx%lld window (need 0 <= pad < window)", nm,
                         c->pt, c->pl, c->pb, c->pr, (long long)eh, (long long)ew);
  int64_t oh = pool_out(nx->ne[2], c->kh, c->sh, c->dh, c->pt, c->pb, c->ceil),
          ow = pool_out(nx->ne[3], c->kw, c->sw, c->dw, c->pl, c->pr, c->ceil);
  if (oh < 1 || ow < 1)
    return mf_graph_fail(g, "%s: a %lldx%lld window is larger than input %s padded by %d,%d,%d,%d", nm, (long long)eh, (long long)ew,
                         sx, c->pt, c->pl, c->pb, c->pr);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], oh, ow}; /* [N,C,OH,OW] */
  int id = mf_graph_add(g, MF_OP_POOL, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = kind;
    n->ip[1] = (int32_t)((uint32_t)c->kh | (uint32_t)c->kw << 16);
    n->ip[2] = (int32_t)((uint32_t)c->sh | (uint32_t)c->sw << 16);
    n->ip[3] = (int32_t)((uint32_t)c->pt | (uint32_t)c->pl << 16);
    n->ip[5] = (int32_t)((uint32_t)c->dh | (uint32_t)c->dw << 16);
    n->ip[6] = (int32_t)((uint32_t)c->pb | (uint32_t)c->pr << 16);
    n->ip[7] = (c->exclude_pad ? 1 : 0) | (c->ceil ? 2 : 0);
    snprintf(n->name, MF_NAME_LEN, "%s", nm);
  }
  return id;
}

static int pool2d(mf_graph *g, int kind, mf_tensor x, int k, int stride, int pad) {
  if (k < 1 || stride < 1 || pad < 0 || pad > k / 2)
    return mf_graph_fail(g, "%s: kernel %d, stride %d, padding %d (need k >= 1, stride >= 1, 0 <= padding <= k/2)",
                         kind == MF_POOL_AVG ? "avgpool2d" : "maxpool2d", k, stride, pad);
  mf_pool_cfg c = {k, k, stride, stride, 1, 1, pad, pad, pad, pad, 0, 0};
  return mf_pool2d_cfg(g, kind, x, &c);
}
mf_tensor mf_avgpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad) { return pool2d(g, MF_POOL_AVG, x, k, stride, pad); }
mf_tensor mf_maxpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad) { return pool2d(g, MF_POOL_MAX, x, k, stride, pad); }

/* [N,C,H,W] -> [N,C]: mean over each plane */
mf_tensor mf_global_avgpool(mf_graph *g, mf_tensor x) {
  if (!mf_graph_check_srcs(g, "global_avgpool", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  if (nx->ndim != 4 || !mf_dtype_is_float(nx->dtype)) {
    char sx[80];
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "global_avgpool: input %s (%s) must be a 4-D [N,C,H,W] float tensor", sx, mf_dtype_name(nx->dtype));
  }
  int64_t ne[2] = {nx->ne[0], nx->ne[1]};
  int id = mf_graph_add(g, MF_OP_POOL, nx->dtype, 2, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = MF_POOL_AVG;
    n->ip[4] = 1;
    snprintf(n->name, MF_NAME_LEN, "global_avgpool");
  }
  return id;
}

/* dx shaped like x. Max pooling re-finds the argmax in x (src x, dy); average pooling needs only
 * dy (src dy), so x need not stay alive for it. */
int mf_pool_bwd(mf_graph *g, int x, int dy, const mf_node *pool) {
  int src[2] = {x, dy};
  if (!mf_graph_check_srcs(g, "pool_bwd", 2, src)) return -1;
  int32_t ip[8];
  memcpy(ip, pool->ip, sizeof ip);
  bool is_max = ip[0] == MF_POOL_MAX;
  int id = is_max ? mf_node_like(g, MF_OP_POOL_BWD, x, 2, src) : mf_node_like(g, MF_OP_POOL_BWD, x, 1, &dy);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    memcpy(n->ip, ip, sizeof ip);
    snprintf(n->name, MF_NAME_LEN, "%s_bwd", ip[4] ? "global_avgpool" : is_max ? "maxpool2d" : "avgpool2d");
  }
  return id;
}

static int grad_pool(mf_graph *g, int id, int dy, int *dx) {
  mf_node copy = g->nodes[id];
  dx[0] = mf_pool_bwd(g, copy.src[0], dy, &copy);
  return dx[0] < 0 ? -1 : 0;
}

/* [N,C,H,W] -> [N,C,H*f,W*f], each input element repeated in an f x f block */
mf_tensor mf_upsample_nearest(mf_graph *g, mf_tensor x, int factor) {
  if (!mf_graph_check_srcs(g, "upsample_nearest", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "upsample_nearest: input %s must be 4-D [N,C,H,W]", sx);
  if (factor < 1) return mf_graph_fail(g, "upsample_nearest: factor %d for input %s (need >= 1)", factor, sx);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], nx->ne[2] * factor, nx->ne[3] * factor};
  int id = mf_graph_add(g, MF_OP_UPSAMPLE, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    g->nodes[id].ip[0] = factor;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "upsample_nearest");
  }
  return id;
}

/* dy [N,C,H*f,W*f] -> dx like x_like [N,C,H,W]: sum over each f x f block */
int mf_upsample_bwd(mf_graph *g, int dy, int x_like, int factor) {
  int src[2] = {dy, x_like};
  if (!mf_graph_check_srcs(g, "upsample_bwd", 2, src)) return -1;
  const mf_node *nd = &g->nodes[dy], *nx = &g->nodes[x_like];
  if (nd->ndim != 4 || nx->ndim != 4 || nd->ne[0] != nx->ne[0] || nd->ne[1] != nx->ne[1] || nd->ne[2] != nx->ne[2] * factor ||
      nd->ne[3] != nx->ne[3] * factor) {
    char sd[80], sx[80];
    mf_shape_str(nd, sd, sizeof sd);
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "upsample_bwd: dy %s is not input %s upsampled by %d", sd, sx, factor);
  }
  int id = mf_node_like(g, MF_OP_UPSAMPLE_BWD, x_like, 1, &dy);
  if (id >= 0) g->nodes[id].ip[0] = factor;
  return id;
}

static int grad_upsample(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = mf_upsample_bwd(g, dy, n->src[0], n->ip[0]);
  return dx[0] < 0 ? -1 : 0;
}

/* x [N,C,H,W] -> [N,C,oh,ow], bilinear (mf_resize_src in ops.h: ONNX Resize linear, PyTorch's interpolate) */
int mf_resize_linear(mf_graph *g, int x, int64_t oh, int64_t ow, int mode, double scale_h, double scale_w) {
  if (!mf_graph_check_srcs(g, "resize_linear", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "resize_linear: input %s must be 4-D [N,C,H,W]", sx);
  if (!mf_dtype_is_float(nx->dtype)) return mf_graph_fail(g, "resize_linear: input %s must be floating point", sx);
  if (oh < 1 || ow < 1 || oh > (int64_t)1 << 24 || ow > (int64_t)1 << 24)
    return mf_graph_fail(g, "resize_linear: output size %lld x %lld for input %s", (long long)oh, (long long)ow, sx);
  if (mode < MF_RESIZE_HALF_PIXEL || mode > MF_RESIZE_PYTORCH_HALF_PIXEL) return mf_graph_fail(g, "resize_linear: mode %d", mode);
  if (!(scale_h > 0)) scale_h = (double)oh / (double)nx->ne[2];
  if (!(scale_w > 0)) scale_w = (double)ow / (double)nx->ne[3];
  int64_t ne[4] = {nx->ne[0], nx->ne[1], oh, ow};
  int id = mf_graph_add(g, MF_OP_RESIZE, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = mode;
    n->fp[0] = scale_h;
    n->fp[1] = scale_w;
    snprintf(n->name, MF_NAME_LEN, "resize_linear");
  }
  return id;
}

/* dy [N,C,oh,ow] -> dx shaped like the resize's input: each dy pixel spread back with its four weights */
static int grad_resize(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int x = n->src[0];
  dx[0] = mf_node_like(g, MF_OP_RESIZE_BWD, x, 1, &dy);
  if (dx[0] >= 0) {
    mf_node *b = &g->nodes[dx[0]];
    const mf_node *f = &g->nodes[id];
    b->ip[0] = f->ip[0];
    b->fp[0] = f->fp[0];
    b->fp[1] = f->fp[1];
    snprintf(b->name, MF_NAME_LEN, "resize_linear_bwd");
  }
  return dx[0] < 0 ? -1 : 0;
}
static double flops_resize(const mf_graph *g, const mf_node *n) { (void)g; return 8.0 * (double)mf_node_numel(n); }
static double flops_resize_bwd(const mf_graph *g, const mf_node *n) { return 8.0 * (double)mf_node_numel(&g->nodes[n->src[0]]); }

/* x [N,C,H,W] -> [N,C,oh,ow], nearest (mf_resize_nearest_src in ops.h: ONNX Resize nearest, PyTorch's interpolate) */
mf_tensor mf_resize_nearest(mf_graph *g, mf_tensor x, int64_t oh, int64_t ow, mf_resize_coord coord, mf_resize_round round,
                            double scale_h, double scale_w) {
  if (!mf_graph_check_srcs(g, "resize_nearest", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "resize_nearest: input %s must be 4-D [N,C,H,W]", sx);
  if (!mf_dtype_is_float(nx->dtype)) return mf_graph_fail(g, "resize_nearest: input %s must be floating point", sx);
  if (nx->ne[2] < 1 || nx->ne[3] < 1) return mf_graph_fail(g, "resize_nearest: empty input %s", sx);
  if (oh < 1 || ow < 1 || oh > (int64_t)1 << 24 || ow > (int64_t)1 << 24)
    return mf_graph_fail(g, "resize_nearest: output size %lld x %lld for input %s (need 1 .. 2^24)", (long long)oh, (long long)ow, sx);
  if ((int)coord < MF_RESIZE_HALF_PIXEL || (int)coord > MF_RESIZE_TF_HALF_PIXEL_FOR_NEAREST)
    return mf_graph_fail(g, "resize_nearest: coordinate mode %d for input %s", (int)coord, sx);
  if ((int)round < MF_NEAREST_ROUND_PREFER_FLOOR || (int)round > MF_NEAREST_CEIL)
    return mf_graph_fail(g, "resize_nearest: rounding mode %d for input %s", (int)round, sx);
  if (!(scale_h > 0)) scale_h = (double)oh / (double)nx->ne[2];
  if (!(scale_w > 0)) scale_w = (double)ow / (double)nx->ne[3];
  if (!(scale_h < 1e9) || !(scale_w < 1e9) || scale_h < 1e-9 || scale_w < 1e-9)
    return mf_graph_fail(g, "resize_nearest: scales %g x %g for input %s", scale_h, scale_w, sx);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], oh, ow}; /* [N,C,oh,ow] */
  int id = mf_graph_add(g, MF_OP_RESIZE_NEAREST, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = (int32_t)coord;
    n->ip[1] = (int32_t)round;
    n->fp[0] = scale_h;
    n->fp[1] = scale_w;
    snprintf(n->name, MF_NAME_LEN, "resize_nearest");
  }
  return id;
}

/* dy [N,C,oh,ow] -> dx shaped like the resize's input [N,C,H,W]; keeps neither x nor y */
static int grad_resize_nearest(mf_graph *g, int id, int dy, int *dx) {
  dx[0] = mf_node_like(g, MF_OP_RESIZE_NEAREST_BWD, g->nodes[id].src[0], 1, &dy);
  if (dx[0] >= 0) {
    mf_node *b = &g->nodes[dx[0]];
    const mf_node *f = &g->nodes[id];
    b->ip[0] = f->ip[0];
    b->ip[1] = f->ip[1];
    b->fp[0] = f->fp[0];
    b->fp[1] = f->fp[1];
    snprintf(b->name, MF_NAME_LEN, "resize_nearest_bwd");
  }
  return dx[0] < 0 ? -1 : 0;
}
/* a copy per output pixel; backward one add per dy pixel */
static double flops_resize_nearest_bwd(const mf_graph *g, const mf_node *n) { return (double)mf_node_numel(&g->nodes[n->src[0]]); }

/* x [N,C,H,W] -> [N,C,oh,ow], bicubic (mf_resize_cubic_taps in ops.h: ONNX Resize cubic, PyTorch's bicubic) */
mf_tensor mf_resize_cubic(mf_graph *g, mf_tensor x, int64_t oh, int64_t ow, mf_resize_coord coord, double a, int exclude_outside,
                          double scale_h, double scale_w) {
  if (!mf_graph_check_srcs(g, "resize_cubic", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "resize_cubic: input %s must be 4-D [N,C,H,W]", sx);
  if (!mf_dtype_is_float(nx->dtype)) return mf_graph_fail(g, "resize_cubic: input %s must be floating point", sx);
  if (nx->ne[2] < 1 || nx->ne[3] < 1) return mf_graph_fail(g, "resize_cubic: empty input %s", sx);
  if (oh < 1 || ow < 1 || oh > (int64_t)1 << 24 || ow > (int64_t)1 << 24)
    return mf_graph_fail(g, "resize_cubic: output size %lld x %lld for input %s (need 1 .. 2^24)", (long long)oh, (long long)ow, sx);
  if ((int)coord < MF_RESIZE_HALF_PIXEL || (int)coord > MF_RESIZE_PYTORCH_HALF_PIXEL)
    return mf_graph_fail(g, "resize_cubic: coordinate mode %d for input %s", (int)coord, sx);
  if (!(a >= -8 && a <= 8)) return mf_graph_fail(g, "resize_cubic: cubic coefficient a %g for input %s (need -8 .. 8)", a, sx);
  if (!(scale_h > 0)) scale_h = (double)oh / (double)nx->ne[2];
  if (!(scale_w > 0)) scale_w = (double)ow / (double)nx->ne[3];
  if (!(scale_h < 1e9) || !(scale_w < 1e9) || scale_h < 1e-9 || scale_w < 1e-9)
    return mf_graph_fail(g, "resize_cubic: scales %g x %g for input %s", scale_h, scale_w, sx);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], oh, ow}; /* [N,C,oh,ow] */
  int id = mf_graph_add(g, MF_OP_RESIZE_CUBIC, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = (int32_t)coord;
    n->ip[1] = exclude_outside != 0;
    n->fp[0] = scale_h;
    n->fp[1] = scale_w;
    n->fp[2] = a;
    snprintf(n->name, MF_NAME_LEN, "resize_cubic");
  }
  return id;
}

/* dy [N,C,oh,ow] -> dx shaped like the resize's input [N,C,H,W]; keeps neither x nor y */
static int grad_resize_cubic(mf_graph *g, int id, int dy, int *dx) {
  dx[0] = mf_node_like(g, MF_OP_RESIZE_CUBIC_BWD, g->nodes[id].src[0], 1, &dy);
  if (dx[0] >= 0) {
    mf_node *b = &g->nodes[dx[0]];
    const mf_node *f = &g->nodes[id];
    memcpy(b->ip, f->ip, sizeof b->ip);
    memcpy(b->fp, f->fp, sizeof b->fp);
    snprintf(b->name, MF_NAME_LEN, "resize_cubic_bwd");
  }
  return dx[0] < 0 ? -1 : 0;
}
/* 16 taps of a multiply-add per output pixel (and per dy pixel backward) */
static double flops_resize_cubic(const mf_graph *g, const mf_node *n) { (void)g; return 32.0 * (double)mf_node_numel(n); }
static double flops_resize_cubic_bwd(const mf_graph *g, const mf_node *n) { return 32.0 * (double)mf_node_numel(&g->nodes[n->src[0]]); }

/* x [N,C,H,W] -> [N,C,H+pt+pb,W+pl+pr] (mf_pad_src in ops.h) */
int mf_pad2d(mf_graph *g, int x, int mode, int pt, int pl, int pb, int pr, double value) {
  if (!mf_graph_check_srcs(g, "pad2d", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "pad2d: input %s must be 4-D [N,C,H,W]", sx);
  if (!mf_dtype_is_float(nx->dtype)) return mf_graph_fail(g, "pad2d: input %s must be floating point", sx);
  if (mode < MF_PAD_CONSTANT || mode > MF_PAD_EDGE) return mf_graph_fail(g, "pad2d: mode %d", mode);
  if (pt < 0 || pl < 0 || pb < 0 || pr < 0 || pt > 1 << 20 || pl > 1 << 20 || pb > 1 << 20 || pr > 1 << 20)
    return mf_graph_fail(g, "pad2d: pads [%d,%d,%d,%d] of input %s (need 0 .. 2^20)", pt, pl, pb, pr, sx);
  if (mode == MF_PAD_REFLECT && (pt >= nx->ne[2] || pb >= nx->ne[2] || pl >= nx->ne[3] || pr >= nx->ne[3]))
    return mf_graph_fail(g, "pad2d: reflect pads [%d,%d,%d,%d] must be smaller than the input %s's height and width", pt, pl, pb, pr,
                         sx);
  if (mode == MF_PAD_EDGE && (nx->ne[2] < 1 || nx->ne[3] < 1)) return mf_graph_fail(g, "pad2d: edge padding of an empty input %s", sx);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], nx->ne[2] + pt + pb, nx->ne[3] + pl + pr};
  int id = mf_graph_add(g, MF_OP_PAD, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = mode;
    n->ip[1] = pt, n->ip[2] = pl, n->ip[3] = pb, n->ip[4] = pr;
    n->fp[0] = mode == MF_PAD_CONSTANT ? value : 0;
    snprintf(n->name, MF_NAME_LEN, "pad2d");
  }
  return id;
}

/* dy [N,C,OH,OW] -> dx like the input: each input pixel sums the dy pixels that read it (mf_pad_readers) */
static int grad_pad(mf_graph *g, int id, int dy, int *dx) {
  dx[0] = mf_node_like(g, MF_OP_PAD_BWD, g->nodes[id].src[0], 1, &dy);
  if (dx[0] >= 0) {
    mf_node *b = &g->nodes[dx[0]];
    memcpy(b->ip, g->nodes[id].ip, sizeof b->ip);
    snprintf(b->name, MF_NAME_LEN, "pad2d_bwd");
  }
  return dx[0] < 0 ? -1 : 0;
}

/* one add/compare per window element */
static double flops_pool(const mf_graph *g, const mf_node *n) {
  (void)g;
  mf_pool_cfg c = mf_pool_cfg_of(n);
  double win = n->ip[4] ? (double)g->nodes[n->src[0]].ne[2] * (double)g->nodes[n->src[0]].ne[3] : (double)c.kh * c.kw;
  return (double)mf_node_numel(n) * win;
}
static double flops_pool_bwd(const mf_graph *g, const mf_node *n) {
  (void)g;
  mf_pool_cfg c = mf_pool_cfg_of(n);
  double win = n->ip[4] ? 1.0 : (double)c.kh * c.kw;
  return (double)mf_node_numel(n) * win;
}

const mf_op_def mf_op_def_pool = {"pool", grad_pool, flops_pool};
const mf_op_def mf_op_def_pool_bwd = {"pool_bwd", NULL, flops_pool_bwd};
const mf_op_def mf_op_def_upsample = {"upsample", grad_upsample, NULL};
const mf_op_def mf_op_def_upsample_bwd = {"upsample_bwd", NULL, NULL};
const mf_op_def mf_op_def_resize = {"resize", grad_resize, flops_resize};
const mf_op_def mf_op_def_resize_bwd = {"resize_bwd", NULL, flops_resize_bwd};
const mf_op_def mf_op_def_resize_nearest = {"resize_nearest", grad_resize_nearest, NULL};
const mf_op_def mf_op_def_resize_nearest_bwd = {"resize_nearest_bwd", NULL, flops_resize_nearest_bwd};
const mf_op_def mf_op_def_pad = {"pad", grad_pad, NULL};
const mf_op_def mf_op_def_resize_cubic = {"resize_cubic", grad_resize_cubic, flops_resize_cubic};
const mf_op_def mf_op_def_resize_cubic_bwd = {"resize_cubic_bwd", NULL, flops_resize_cubic_bwd};
const mf_op_def mf_op_def_pad_bwd = {"pad_bwd", NULL, NULL};

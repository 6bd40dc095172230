/* receptive.c — receptive-field radius of a graph output (see receptive.h): a walk over the
 * output's ancestors in id order, tracking per spatial axis the pixel scale, the grid a pixel's
 * footprint is rounded to, and the radius, all in pixels of the largest 4-D input. */
#include "ops/receptive.h"
#include "ops/ops.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* exact non-negative rationals n/d (d > 0), kept reduced */
typedef struct rat { int64_t n, d; } rat;

static int64_t gcd64(int64_t a, int64_t b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b) { int64_t t = a % b; a = b; b = t; }
  return a;
}
static int64_t lcm64(int64_t a, int64_t b) { return a / gcd64(a, b) * b; }
static rat rat_make(int64_t n, int64_t d) {
  int64_t k = gcd64(n, d);
  if (!k) k = 1;
  rat r = {n / k, d / k};
  return r;
}
static rat rat_int(int64_t n) { return rat_make(n, 1); }
static rat rat_add(rat a, rat b) { return rat_make(a.n * b.d + b.n * a.d, a.d * b.d); }
static rat rat_sub(rat a, rat b) { return rat_make(a.n * b.d - b.n * a.d, a.d * b.d); }
static rat rat_mul(rat a, int64_t k) { return rat_make(a.n * k, a.d); }
static rat rat_div(rat a, int64_t k) { return rat_make(a.n, a.d * k); }
static int rat_cmp(rat a, rat b) {
  int64_t l = a.n * b.d, r = b.n * a.d;
  return (l > r) - (l < r);
}
static int64_t rat_ceil(rat a) { return (a.n + a.d - 1) / a.d; }

/* Per node and axis: one pixel of the node is s input pixels wide; its footprint is its cell
 * rounded outward to a multiple of g input pixels (g = s unless it was upsampled); it depends only
 * on inputs within r of its footprint. */
typedef struct rf {
  int spatial; /* depends on a 4-D input */
  rat s[2], r[2];
  int64_t g[2];
} rf;

static int fail(char *err, size_t errlen, const mf_graph *g, int id, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const mf_graph *g, int id, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char sh[80];
  mf_shape_str(&g->nodes[id], sh, sizeof sh);
  snprintf(err, errlen, "receptive field: node %d (%s %s): %s", id, g->nodes[id].name, sh, msg);
  return -1;
}

/* A pixelwise op (elementwise, channel concat/slice): the image-dependent sources must have the
 * node's H and W and one scale; the others (weights, constants) must be 1 where they broadcast over
 * H and W, or the op would depend on the absolute position. */
static int pixelwise(const mf_graph *g, const rf *st, int id, int check_const, rf *o, char *err, size_t errlen) {
  const mf_node *n = &g->nodes[id];
  if (n->ndim != 4) return fail(err, errlen, g, id, "an op of a 4-D image tensor that is not 4-D itself");
  int first = 1;
  for (int i = 0; i < n->nsrc; i++) {
    const mf_node *sn = &g->nodes[n->src[i]];
    const rf *in = &st[n->src[i]];
    if (!in->spatial) {
      if (!check_const) continue;
      for (int a = 0; a < 2; a++) {
        int j = sn->ndim - 2 + a; /* the source dim aligned with node dim 2 + a (trailing broadcast) */
        if (j >= 0 && sn->ne[j] != 1)
          return fail(err, errlen, g, id, "input %d does not depend on the image but varies along %s: the result depends on "
                                          "the absolute position, which tiles cannot reproduce", i, a ? "W" : "H");
      }
      continue;
    }
    if (sn->ndim != 4 || sn->ne[2] != n->ne[2] || sn->ne[3] != n->ne[3])
      return fail(err, errlen, g, id, "input %d has another height or width than the result (a spatial broadcast)", i);
    for (int a = 0; a < 2; a++) {
      if (first) { o->s[a] = in->s[a]; o->r[a] = in->r[a]; o->g[a] = in->g[a]; continue; }
      if (rat_cmp(o->s[a], in->s[a]))
        return fail(err, errlen, g, id, "inputs on different pixel grids (%lld/%lld and %lld/%lld input pixels per pixel)",
                    (long long)o->s[a].n, (long long)o->s[a].d, (long long)in->s[a].n, (long long)in->s[a].d);
      if (rat_cmp(in->r[a], o->r[a]) > 0) o->r[a] = in->r[a];
      o->g[a] = lcm64(o->g[a], in->g[a]);
    }
    first = 0;
  }
  o->spatial = 1;
  return 0;
}

/* A sliding window (conv, pool, DWT) of kernel k[a], stride S, padding p over the pixels of src 0. */
static int window(const mf_graph *g, const rf *st, int id, const int64_t k[2], int64_t S, int64_t p, rf *o, char *err,
                  size_t errlen) {
  const mf_node *n = &g->nodes[id];
  for (int i = 1; i < n->nsrc; i++)
    if (st[n->src[i]].spatial) return fail(err, errlen, g, id, "its weights (input %d) depend on the image", i);
  const rf *in = &st[n->src[0]];
  for (int a = 0; a < 2; a++) {
    int64_t ext = p > k[a] - p - S ? p : k[a] - p - S;
    if (ext < 0) ext = 0;
    /* the window's cells, rounded to the input's footprint grid, spread at most g - s beyond them */
    rat add = rat_add(rat_mul(in->s[a], ext), rat_sub(rat_int(in->g[a]), in->s[a]));
    o->r[a] = rat_add(in->r[a], add);
    o->s[a] = rat_mul(in->s[a], S);
    o->g[a] = o->s[a].n;
  }
  o->spatial = 1;
  return 0;
}

int mf_graph_receptive_field(const mf_graph *g, int out, int64_t radius[2], int64_t align[2], char *err, size_t errlen) {
  if (out < 0 || out >= g->n) {
    snprintf(err, errlen, "receptive field: output %d is not a tensor of this graph", out);
    return -1;
  }
  uint8_t *need = calloc((size_t)out + 1, 1);
  rf *st = calloc((size_t)out + 1, sizeof *st);
  if (!need || !st) {
    free(need); free(st);
    snprintf(err, errlen, "receptive field: out of host memory");
    return -1;
  }
  int rc = -1;
  need[out] = 1;
  for (int id = out; id >= 0; id--)
    if (need[id])
      for (int i = 0; i < g->nodes[id].nsrc; i++) need[g->nodes[id].src[i]] = 1;
  int64_t ref[2] = {0, 0}, al[2] = {1, 1};
  for (int id = 0; id <= out; id++) {
    const mf_node *n = &g->nodes[id];
    if (need[id] && n->op == MF_OP_INPUT && n->ndim == 4)
      for (int a = 0; a < 2; a++)
        if (n->ne[2 + a] > ref[a]) ref[a] = n->ne[2 + a];
  }
  for (int id = 0; id <= out; id++) {
    if (!need[id]) continue;
    const mf_node *n = &g->nodes[id];
    rf *o = &st[id];
    if (n->op == MF_OP_INPUT) {
      if (n->ndim != 4) continue; /* a constant input (a matrix, a table): not an image */
      for (int a = 0; a < 2; a++) {
        if (ref[a] % n->ne[2 + a]) {
          fail(err, errlen, g, id, "an image input whose %s (%lld) does not divide the largest input's (%lld)", a ? "width" : "height",
               (long long)n->ne[2 + a], (long long)ref[a]);
          goto out;
        }
        o->s[a] = rat_int(ref[a] / n->ne[2 + a]);
        o->g[a] = o->s[a].n;
        o->r[a] = rat_int(0);
      }
      o->spatial = 1;
    } else {
      int any = 0;
      for (int i = 0; i < n->nsrc; i++) any |= st[n->src[i]].spatial;
      if (!any) continue; /* weights, constants and what is computed from them alone */
      int r = 0;
      switch (n->op) {
      case MF_OP_BINARY: case MF_OP_SCALAR: case MF_OP_UNARY:
        r = pixelwise(g, st, id, 1, o, err, errlen);
        break;
      case MF_OP_CONCAT: case MF_OP_SLICE:
        if (n->ip[0] >= 2 || n->ip[0] < 0) {
          r = fail(err, errlen, g, id, "a %s along axis %d moves pixels (only the batch and channel axes are supported)",
                   n->op == MF_OP_CONCAT ? "concat" : "slice", n->ip[0]);
          break;
        }
        r = pixelwise(g, st, id, 1, o, err, errlen);
        break;
      case MF_OP_NORM:
        if (n->ip[0] != MF_NORM_BATCH || n->ip[2]) {
          r = fail(err, errlen, g, id, "%s normalises with statistics over the whole image",
                   n->ip[0] == MF_NORM_BATCH ? "training-mode batch norm" : "group norm");
          break;
        }
        for (int i = 1; i < n->nsrc && !r; i++)
          if (st[n->src[i]].spatial) r = fail(err, errlen, g, id, "its statistics or affine parameters depend on the image");
        if (!r) r = pixelwise(g, st, id, 0, o, err, errlen);
        break;
      case MF_OP_CONV2D: {
        mf_conv_cfg cf = mf_conv_cfg_of(n);
        if (!mf_conv_cfg_plain(&cf)) { r = fail(err, errlen, g, id, "a dilated or asymmetrically padded convolution"); break; }
        const mf_node *w = &g->nodes[n->src[1]];
        int64_t k[2] = {w->ne[2], w->ne[3]};
        r = window(g, st, id, k, n->ip[0], n->ip[1], o, err, errlen);
        break;
      }
      case MF_OP_POOL: {
        if (n->ip[4]) { r = fail(err, errlen, g, id, "global pooling sees the whole image"); break; }
        mf_pool_cfg pc = mf_pool_cfg_of(n);
        if (pc.kh != pc.kw || pc.sh != pc.sw || pc.dh != 1 || pc.dw != 1 || pc.pl != pc.pt || pc.pb != pc.pt || pc.pr != pc.pt ||
            pc.ceil) {
          r = fail(err, errlen, g, id, "a pooling window that is not square, undilated and evenly padded");
          break;
        }
        int64_t k[2] = {pc.kh, pc.kh};
        r = window(g, st, id, k, pc.sh, pc.pt, o, err, errlen);
        break;
      }
      case MF_OP_DWT: {
        int64_t k[2] = {2, 2};
        r = window(g, st, id, k, 2, 0, o, err, errlen);
        break;
      }
      case MF_OP_UPSAMPLE: case MF_OP_IDWT: {
        int64_t f = n->op == MF_OP_IDWT ? 2 : n->ip[0];
        const rf *in = &st[n->src[0]];
        for (int a = 0; a < 2; a++) {
          o->s[a] = rat_div(in->s[a], f);
          o->g[a] = in->g[a]; /* each new pixel depends on what its parent pixel depends on */
          o->r[a] = in->r[a];
        }
        o->spatial = 1;
        break;
      }
      default:
        r = fail(err, errlen, g, id, "op %s of an image tensor: its receptive field is not known here (it may see the whole "
                                     "image or move pixels), so tiles cannot be shown to equal the whole-image result",
                 mf_op_name(n->op));
      }
      if (r < 0) goto out;
    }
    for (int a = 0; a < 2; a++) al[a] = lcm64(lcm64(al[a], o->g[a]), o->s[a].n);
    if (al[0] > ((int64_t)1 << 30) || al[1] > ((int64_t)1 << 30) || o->r[0].d > ((int64_t)1 << 30) || o->r[1].d > ((int64_t)1 << 30)) {
      fail(err, errlen, g, id, "pixel grids too fine or too coarse to track");
      goto out;
    }
  }
  if (!st[out].spatial) {
    fail(err, errlen, g, out, "the output does not depend on a 4-D image input");
    goto out;
  }
  for (int a = 0; a < 2; a++) {
    radius[a] = rat_ceil(st[out].r[a]);
    align[a] = al[a];
  }
  rc = 0;
out:
  free(need);
  free(st);
  return rc;
}

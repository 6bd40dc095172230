/* test_grad_resize.c — the ops that resample an image: the bilinear resize (ONNX Resize linear, PyTorch's
 * interpolate bilinear) and 2-D padding (ONNX Pad constant / reflect / edge). Gradients against finite
 * differences in f64 for every mode (resize: every coordinate mode, up and down, integer and fractional scales);
 * values in f64 and f32 against ONNX's own formulas written independently here (resize: edge-padded neighbours
 * of an unclamped coordinate; pad: numpy.pad's mirror and edge rules); bad sizes and modes refused with a message
 * naming the op. */
#include "resize_check.h"

typedef struct { int64_t oh, ow; int mode; double sh, sw; } rs_ctx;

static mf_tensor build_resize(mf_graph *g, const mf_tensor *in, void *c) {
  rs_ctx *o = c;
  return mf_resize_linear(g, in[0], o->oh, o->ow, o->mode, o->sh, o->sw);
}

static const rv_case cases[] = {
    {2, 3, 4, 5, 8, 10, 2, 2},      /* 2x up (torch's scale_factor=2) */
    {1, 2, 5, 4, 15, 12, 3, 3},     /* 3x up */
    {1, 2, 8, 9, 4, 3, 0.5, 1.0 / 3}, /* down */
    {2, 1, 3, 4, 7, 6, 0, 0},       /* sizes given: scales out/in */
    {1, 2, 1, 5, 3, 5, 3, 1},       /* a single input row */
    {1, 1, 4, 4, 1, 1, 0.25, 0.25}, /* a single output pixel */
};

static const char *mode_name(int m) {
  static const char *n[] = {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"};
  return n[m];
}

/* ONNX's linear Resize on one axis: the coordinate of output o (not clamped), its floor and the ratio; the
 * two neighbours are read with edge padding (index clamped into [0, in-1]) */
static double onnx_coord(int mode, int64_t o, int64_t in, int64_t out, double scale) {
  switch (mode) {
  case MF_RESIZE_ALIGN_CORNERS: /* ONNX: the resized length is in * scale, not rounded */
    return in * scale <= 1 ? 0 : (double)o * (double)(in - 1) / ((double)in * scale - 1);
  case MF_RESIZE_ASYMMETRIC: return (double)o / scale;
  case MF_RESIZE_PYTORCH_HALF_PIXEL: if (out == 1) return 0; /* fall through */
  default: return ((double)o + 0.5) / scale - 0.5;
  }
}
static int64_t clampi(int64_t i, int64_t n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

/* ONNX's linear Resize of one output pixel from the stored input, and its bound: computed in double from the same
 * inputs, rounded once to dt */
static double ref_linear(const rv_pixel *px, double *bound, void *ctx) {
  int mode = *(const int *)ctx;
  const rv_case *t = px->t;
  double ch = onnx_coord(mode, px->oh, t->H, t->OH, px->sh), cw = onnx_coord(mode, px->ow, t->W, t->OW, px->sw);
  double fh = floor(ch), fw = floor(cw), rh = ch - fh, rw = cw - fw, ref = 0, mag = 0;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++) {
      double wgt = (a ? rh : 1 - rh) * (b ? rw : 1 - rw);
      double v = px->x[(px->p * t->H + clampi((int64_t)fh + a, t->H)) * t->W + clampi((int64_t)fw + b, t->W)];
      ref += wgt * v;
      mag += fabs(wgt * v);
    }
  *bound = 1e-12 * (mag + 1e-300) + (px->dt == MF_F64 ? 0 : ldexp(1, -24) * fabs(ref));
  return ref;
}

static void values(const rv_case *t, int mode, mf_dtype dt, uint64_t seed) {
  rs_ctx c = {t->OH, t->OW, mode, t->sh, t->sw};
  char nm[128];
  snprintf(nm, sizeof nm, "%s resize %s [%lld,%lld] -> [%lld,%lld]", mf_dtype_name(dt), mode_name(mode), (long long)t->H,
           (long long)t->W, (long long)t->OH, (long long)t->OW);
  rv_result res;
  if (rv_run(nm, t, dt, seed, build_resize, &c, ref_linear, &mode, &res) == 0)
    CHECK(res.worst <= 1, "%s: error %.3g times the bound", nm, res.worst);
}

/* PyTorch's documented corner cases: align_corners keeps the corners; a 2x2 -> 3x3 centre is the mean */
static void known_points(void) {
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 1, 2, 2});
  mf_tensor y = mf_resize_linear(g, x, 3, 3, MF_RESIZE_ALIGN_CORNERS, 0, 0);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  double xv[4] = {1, 2, 3, 5};
  leaf[x] = xv;
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    const double *o = r.data[y];
    CHECK(o[0] == 1 && o[2] == 2 && o[6] == 3 && o[8] == 5 && o[4] == 2.75 && o[1] == 1.5 && o[7] == 4,
          "align_corners 2x2 -> 3x3: %g %g %g / %g %g %g / %g %g %g", o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8]);
    mf_ref_free(&r);
  }
  free(leaf);
  mf_graph_free(g);
}

static void errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 3, (int64_t[]){2, 4, 4});
  mf_resize_linear(g, x, 8, 8, MF_RESIZE_HALF_PIXEL, 0, 0);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "resize_linear") && strstr(e, "[2,4,4]"), "3-D input refused: %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){1, 2, 4, 4});
  mf_resize_linear(g, x, 0, 8, MF_RESIZE_HALF_PIXEL, 0, 0);
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "resize_linear") && strstr(e, "output size"), "empty output refused: %s", e ? e : "(none)");
  mf_graph_free(g);
}

/* ------------------------------------------------------------------ padding */

typedef struct { int mode, pt, pl, pb, pr; double value; } pad_ctx;
static mf_tensor build_pad(mf_graph *g, const mf_tensor *in, void *c) {
  pad_ctx *o = c;
  return mf_pad2d(g, in[0], o->mode, o->pt, o->pl, o->pb, o->pr, o->value);
}

/* numpy.pad's rules, by walking: reflect bounces off the edges without repeating them, edge clamps */
static int64_t np_index(int mode, int64_t i, int64_t n) {
  if (mode == MF_PAD_EDGE) return clampi(i, n);
  if (mode == MF_PAD_CONSTANT) return i >= 0 && i < n ? i : -1;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

static void pad_values(const pad_ctx *pc, mf_dtype dt, uint64_t seed) {
  int64_t N = 2, C = 2, H = 5, W = 4;
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){N, C, H, W});
  mf_tensor y = mf_pad2d(g, x, pc->mode, pc->pt, pc->pl, pc->pb, pc->pr, pc->value);
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return; }
  int64_t OH = H + pc->pt + pc->pb, OW = W + pc->pl + pc->pr;
  CHECK(mf_tensor_dim(g, y, 2) == OH && mf_tensor_dim(g, y, 3) == OW, "pad2d output shape");
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[x] = malloc(mf_node_bytes(&g->nodes[x]));
  for (int64_t j = 0; j < N * C * H * W; j++) mf_st(leaf[x], dt, j, rv_uniform(&seed));
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    int64_t bad = 0;
    for (int64_t p = 0; p < N * C; p++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t h = np_index(pc->mode, oh - pc->pt, H), w = np_index(pc->mode, ow - pc->pl, W);
          double want;
          if (h < 0 || w < 0) { /* the constant, as stored in dt */
            uint64_t tmp;
            mf_st(&tmp, dt, 0, pc->value);
            want = mf_ld(&tmp, dt, 0);
          } else want = mf_ld(leaf[x], dt, (p * H + h) * W + w);
          if (mf_ld(r.data[y], dt, (p * OH + oh) * OW + ow) != want) bad++;
        }
    CHECK(bad == 0, "%s pad2d mode %d pads %d,%d,%d,%d: %lld values differ from numpy.pad's", mf_dtype_name(dt), pc->mode, pc->pt,
          pc->pl, pc->pb, pc->pr, (long long)bad);
    mf_ref_free(&r);
  }
  free(leaf[x]);
  free(leaf);
  mf_graph_free(g);
}

static void pad_checks(uint64_t seed) {
  static const pad_ctx cs[] = {
      {MF_PAD_CONSTANT, 1, 2, 0, 3, 0},   {MF_PAD_CONSTANT, 2, 0, 1, 1, 1.5}, {MF_PAD_REFLECT, 1, 1, 1, 1, 0},
      {MF_PAD_REFLECT, 4, 3, 2, 0, 0},    {MF_PAD_EDGE, 3, 1, 0, 4, 0},       {MF_PAD_EDGE, 1, 0, 2, 2, 0},
  };
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    gc_input in[1] = {{4, {2, 2, 5, 4}, GC_NORMAL}};
    char nm[96];
    snprintf(nm, sizeof nm, "pad2d mode %d pads %d,%d,%d,%d", cs[i].mode, cs[i].pt, cs[i].pl, cs[i].pb, cs[i].pr);
    gc_check(nm, 1, in, build_pad, (void *)&cs[i], 0, 1e-6);
    pad_values(&cs[i], MF_F64, seed + i);
    pad_values(&cs[i], MF_F32, seed + 10 + i);
    pad_values(&cs[i], MF_BF16, seed + 20 + i);
  }
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 2, 3, 6});
  mf_pad2d(g, x, MF_PAD_REFLECT, 3, 0, 0, 0, 0); /* reflect needs pads below the size */
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "pad2d") && strstr(e, "reflect") && strstr(e, "[1,2,3,6]"), "reflect pad of 3 rows refused: %s", e ? e : "(none)");
  mf_graph_free(g);
}

int main(void) {
  uint64_t seed = 0x5eed;
  for (int mode = 0; mode < 4; mode++)
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      const rv_case *t = &cases[i];
      rs_ctx c = {t->OH, t->OW, mode, t->sh, t->sw};
      gc_input in[1] = {{4, {t->N, t->C, t->H, t->W}, GC_NORMAL}};
      char nm[96];
      snprintf(nm, sizeof nm, "resize %s [%lld,%lld] -> [%lld,%lld]", mode_name(mode), (long long)t->H, (long long)t->W,
               (long long)t->OH, (long long)t->OW);
      gc_check(nm, 1, in, build_resize, &c, 0, 1e-6);
      values(t, mode, MF_F64, seed + i);
      values(t, mode, MF_F32, seed + 100 + i);
    }
  known_points();
  errors();
  pad_checks(seed + 1000);
  return check_finish("test_grad_resize");
}

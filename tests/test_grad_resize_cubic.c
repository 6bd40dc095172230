/* test_grad_resize_cubic.c — the bicubic resize (mf_resize_cubic: ONNX Resize cubic with cubic_coeff_a and
 * exclude_outside, PyTorch's bicubic). Gradients against finite differences in f64 in every coordinate mode, a of -0.75
 * and -0.5, with and without exclude_outside; values in f64 and f32 against ONNX's reference algorithm written
 * independently here (the 4 neighbours of the coordinate in the edge-padded axis, Keys' coefficients of the ratio,
 * renormalised inside the image for exclude_outside), separable as ONNX evaluates it; every pixel of the backward in
 * f64 and f32 against an f64 sum by the same rule; bad arguments refused. */
#include "resize_check.h"

static const rv_case cases[] = {
    {1, 2, 4, 5, 8, 10, 2, 2},       /* 2x up */
    {2, 1, 4, 6, 6, 9, 1.5, 1.5},    /* a non-integer scale */
    {1, 2, 8, 9, 3, 4, 0, 0},        /* sizes given, down */
    {1, 1, 6, 7, 3, 2, 0.5, 0.3},    /* scales given, down, H and W differ */
    {1, 2, 3, 5, 7, 2, 7.0 / 3, 0.4}, /* up on H, down on W */
    {1, 1, 2, 3, 5, 1, 2.5, 0.4},    /* 2 x 3 input (taps beyond both borders), one output column */
};

typedef struct { int64_t oh, ow; int coord, excl; double a, sh, sw; } rc_ctx;

static mf_tensor build_rc(mf_graph *g, const mf_tensor *in, void *c) {
  rc_ctx *o = c;
  return mf_resize_cubic(g, in[0], o->oh, o->ow, (mf_resize_coord)o->coord, o->a, o->excl, o->sh, o->sw);
}

static const char *coord_name(int m) {
  static const char *n[] = {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"};
  return n[m];
}

/* ONNX's coordinate_transformation_mode (the reference: the resized length of align_corners is in * scale) */
static double ref_coord(int mode, int64_t o, int64_t in, int64_t out, double scale) {
  double len = (double)in * scale;
  switch (mode) {
  case 1: return len <= 1 ? 0 : (double)o * (double)(in - 1) / (len - 1);
  case 2: return (double)o / scale;
  case 3: return out > 1 ? ((double)o + 0.5) / scale - 0.5 : 0;
  default: return ((double)o + 0.5) / scale - 0.5;
  }
}

/* ONNX's reference cubic on one axis: the data padded by 2 edge pixels on each side, the 4 padded indices closest to
 * x + 2 (ties to the lower index, then in order), the coefficients of the ratio (1 when x is an integer); writes the
 * unpadded source indices and weights (0 outside the image and renormalised with exclude_outside) */
static void ref_cubic(double x, int64_t in, double A, int excl, int64_t src[4], double wgt[4]) {
  int64_t lim = in + 4, best[4] = {-1, -1, -1, -1};
  double xp = x + 2;
  for (int k = 0; k < 4; k++)
    for (int64_t i = 0; i < lim; i++) {
      int taken = 0;
      for (int j = 0; j < k; j++) taken |= best[j] == i;
      if (taken) continue;
      if (best[k] < 0 || fabs(xp - (double)i) < fabs(xp - (double)best[k])) best[k] = i;
    }
  for (int i = 0; i < 4; i++) /* sort */
    for (int j = i + 1; j < 4; j++)
      if (best[j] < best[i]) { int64_t t = best[i]; best[i] = best[j]; best[j] = t; }
  double r = x == floor(x) ? 1 : x - floor(x);
  wgt[0] = ((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A;
  wgt[1] = ((A + 2) * r - (A + 3)) * r * r + 1;
  wgt[2] = ((A + 2) * (1 - r) - (A + 3)) * (1 - r) * (1 - r) + 1;
  wgt[3] = ((A * ((1 - r) + 1) - 5 * A) * ((1 - r) + 1) + 8 * A) * ((1 - r) + 1) - 4 * A;
  double sum = 0;
  for (int k = 0; k < 4; k++) {
    int64_t u = best[k] - 2; /* unpadded; the padding repeats the edge pixels */
    if (excl && (u < 0 || u >= in)) wgt[k] = 0;
    sum += wgt[k];
    src[k] = u < 0 ? 0 : u >= in ? in - 1 : u;
  }
  if (excl)
    for (int k = 0; k < 4; k++) wgt[k] /= sum;
}

typedef struct { int coord, excl; double a; } rc_ref_ctx;

/* ONNX's cubic Resize of one output pixel from the stored input, along W first, then H, as ONNX's reference recurses;
 * its bound: both in double from the same inputs, 16 products' rounding, then one rounding to dt */
static double ref_value(const rv_pixel *px, double *bound, void *ctx) {
  const rc_ref_ctx *o = ctx;
  const rv_case *t = px->t;
  int64_t hs[4], ws[4];
  double hw[4], ww[4], ref = 0, mag = 0;
  ref_cubic(ref_coord(o->coord, px->oh, t->H, t->OH, px->sh), t->H, o->a, o->excl, hs, hw);
  ref_cubic(ref_coord(o->coord, px->ow, t->W, t->OW, px->sw), t->W, o->a, o->excl, ws, ww);
  for (int i = 0; i < 4; i++) {
    double row = 0, rmag = 0;
    for (int j = 0; j < 4; j++) {
      double v = px->x[(px->p * t->H + hs[i]) * t->W + ws[j]];
      row += ww[j] * v;
      rmag += fabs(ww[j] * v);
    }
    ref += hw[i] * row;
    mag += fabs(hw[i]) * rmag;
  }
  *bound = 64 * ldexp(1, -53) * (mag + 1e-300) + (px->dt == MF_F64 ? 0 : ldexp(1, -24) * fabs(ref));
  return ref;
}

/* backward (rv_run_bwd): each input pixel gets R times the weights (the H tap's times the W tap's) of every output
 * pixel whose 16 taps read it, by ONNX's rule as the values use it; extra 64 roundings per term as there (two weights
 * of a few dozen operations each, their product, times R) */
static int ref_taps(const rv_pixel *px, int64_t *idx, double *wgt, void *ctx) {
  const rc_ref_ctx *o = ctx;
  const rv_case *t = px->t;
  int64_t hs[4], ws[4];
  double hw[4], ww[4];
  ref_cubic(ref_coord(o->coord, px->oh, t->H, t->OH, px->sh), t->H, o->a, o->excl, hs, hw);
  ref_cubic(ref_coord(o->coord, px->ow, t->W, t->OW, px->sw), t->W, o->a, o->excl, ws, ww);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      idx[i * 4 + j] = (px->p * t->H + hs[i]) * t->W + ws[j];
      wgt[i * 4 + j] = hw[i] * ww[j];
    }
  return 16;
}

/* values (bwd 0) or the backward (bwd 1) of one geometry and mode in dt, against this file's reference */
static void values(const rv_case *t, int coord, double A, int excl, mf_dtype dt, uint64_t seed, int bwd) {
  rc_ctx c = {t->OH, t->OW, coord, excl, A, t->sh, t->sw};
  rc_ref_ctx rc = {coord, excl, A};
  char nm[160];
  snprintf(nm, sizeof nm, "%s resize cubic%s %s a %g%s [%lld,%lld] -> [%lld,%lld]", mf_dtype_name(dt), bwd ? " backward" : "",
           coord_name(coord), A, excl ? " exclude_outside" : "", (long long)t->H, (long long)t->W, (long long)t->OH, (long long)t->OW);
  rv_result res;
  int st = bwd ? rv_run_bwd(nm, t, dt, seed, build_rc, &c, ref_taps, &rc, 64, &res)
               : rv_run(nm, t, dt, seed, build_rc, &c, ref_value, &rc, &res);
  if (st == 0) CHECK(res.worst <= 1, "%s: error %.3g times the bound", nm, res.worst);
}

/* a constant image stays constant (the weights sum to 1), and an integer coordinate copies its pixel */
static void known_points(void) {
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 1, 3, 3});
  mf_tensor y = mf_resize_cubic(g, x, 6, 6, MF_RESIZE_ASYMMETRIC, -0.75, 0, 2, 2);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  double xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  leaf[x] = xv;
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    const double *o = r.data[y];
    CHECK(o[0] == 1 && o[2] == 2 && o[12] == 4 && o[14] == 5, "asymmetric 2x: even outputs copy: %g %g %g %g", o[0], o[2], o[12], o[14]);
    mf_ref_free(&r);
  }
  for (int i = 0; i < 9; i++) xv[i] = 0.625;
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    double worst = 0;
    for (int i = 0; i < 36; i++) worst = fmax(worst, fabs(((double *)r.data[y])[i] - 0.625));
    CHECK(worst <= 1e-15, "a constant image stays constant (%g)", worst);
    mf_ref_free(&r);
  }
  free(leaf);
  mf_graph_free(g);
}

static void errors(void) {
  struct { int nd; int64_t oh; int coord; double a; const char *want; } bad[] = {
      {3, 8, 0, -0.75, "[2,4,4]"}, {4, 0, 0, -0.75, "output size"}, {4, 8, MF_RESIZE_TF_HALF_PIXEL_FOR_NEAREST, -0.75, "coordinate mode"},
      {4, 8, 0, NAN, "coefficient"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor x = bad[i].nd == 3 ? mf_input(g, "x", 3, (int64_t[]){2, 4, 4}) : mf_input(g, "x", 4, (int64_t[]){1, 2, 4, 4});
    mf_tensor y = mf_resize_cubic(g, x, bad[i].oh, 8, (mf_resize_coord)bad[i].coord, bad[i].a, 0, 0, 0);
    const char *e = mf_graph_error(g);
    CHECK(y < 0 && e && strstr(e, "resize_cubic") && strstr(e, bad[i].want), "refused (%s): %s", bad[i].want, e ? e : "(none)");
    mf_graph_free(g);
  }
}

int main(void) {
  uint64_t seed = 0xc0b1c;
  int n = 0;
  const double as[2] = {-0.75, -0.5};
  for (int coord = 0; coord < 4; coord++)
    for (int ai = 0; ai < 2; ai++)
      for (int excl = 0; excl < 2; excl++)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, n++) {
          const rv_case *t = &cases[i];
          rc_ctx c = {t->OH, t->OW, coord, excl, as[ai], t->sh, t->sw};
          gc_input in[1] = {{4, {t->N, t->C, t->H, t->W}, GC_NORMAL}};
          char nm[128];
          snprintf(nm, sizeof nm, "resize cubic %s a %g%s [%lld,%lld] -> [%lld,%lld]", coord_name(coord), as[ai],
                   excl ? " exclude_outside" : "", (long long)t->H, (long long)t->W, (long long)t->OH, (long long)t->OW);
          gc_check(nm, 1, in, build_rc, &c, 0, 1e-6);
          values(t, coord, as[ai], excl, MF_F64, seed + (uint64_t)n, 0);
          values(t, coord, as[ai], excl, MF_F32, seed + 1000 + (uint64_t)n, 0);
          values(t, coord, as[ai], excl, MF_F64, seed + 2000 + (uint64_t)n, 1);
          values(t, coord, as[ai], excl, MF_F32, seed + 3000 + (uint64_t)n, 1);
        }
  printf("test_grad_resize_cubic: %d geometries x modes, gradients and values\n", n);
  known_points();
  errors();
  return check_finish("test_grad_resize_cubic");
}

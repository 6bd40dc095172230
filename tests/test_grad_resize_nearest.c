/* test_grad_resize_nearest.c — the nearest resize of any geometry (mf_resize_nearest: ONNX Resize nearest in every
 * coordinate and rounding mode, PyTorch's interpolate nearest). Gradients against finite differences in f64; values in
 * f64, f32 and bf16 against ONNX's reference algorithm written independently here (the two neighbours of the
 * coordinate in the edge-padded axis, chosen by the rounding mode's coefficients), and every pixel of the backward
 * scatter-add in f32 and f64 against an f64 sum by that rule; integer factors equal to
 * mf_upsample_nearest's replication; bad sizes and modes refused naming the op. */
#include "resize_check.h"

static const rv_case cases[] = {
    {1, 2, 4, 5, 8, 10, 2, 2},       /* 2x up */
    {2, 1, 4, 6, 6, 9, 1.5, 1.5},    /* a non-integer scale given (torch's scale_factor=1.5) */
    {1, 2, 5, 4, 7, 9, 0, 0},        /* sizes given, up: scales out/in */
    {1, 2, 8, 9, 3, 4, 0, 0},        /* sizes given, down */
    {1, 1, 6, 7, 3, 2, 0.5, 0.3},    /* scales given, down, H and W differ */
    {1, 2, 3, 5, 7, 2, 7.0 / 3, 0.4}, /* up on H, down on W */
    {1, 1, 4, 4, 1, 1, 0.25, 0.25},  /* a single output pixel */
};

typedef struct { int64_t oh, ow; int coord, round; double sh, sw; } rn_ctx;

static mf_tensor build_rn(mf_graph *g, const mf_tensor *in, void *c) {
  rn_ctx *o = c;
  return mf_resize_nearest(g, in[0], o->oh, o->ow, (mf_resize_coord)o->coord, (mf_resize_round)o->round, o->sh, o->sw);
}

static const char *coord_name(int m) {
  static const char *n[] = {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "tf_half_pixel_for_nn"};
  return n[m];
}
static const char *round_name(int m) {
  static const char *n[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  return n[m];
}

/* ONNX's coordinate_transformation_mode (the reference: the resized length of align_corners is in * scale) */
static double ref_coord(int mode, int64_t o, int64_t in, int64_t out, double scale) {
  double len = (double)in * scale;
  switch (mode) {
  case 1: return len == 1 || len < 1 ? 0 : (double)o * (double)(in - 1) / (len - 1);
  case 2: return (double)o / scale;
  case 3: return out > 1 ? ((double)o + 0.5) / scale - 0.5 : 0;
  case 4: return ((double)o + 0.5) / scale;
  default: return ((double)o + 0.5) / scale - 0.5;
  }
}

/* ONNX's reference nearest on one axis: the data padded by one edge pixel on each side, the two padded indices
 * closest to x + 1 (ties to the lower index, then in order), weighted by the mode's coefficients of the ratio
 * (1 when x is an integer); returns the unpadded index of the one with weight 1 */
static int64_t ref_nearest(int round, double x, int64_t in) {
  int64_t lim = in + 2, best[2] = {-1, -1};
  double xp = x + 1;
  for (int k = 0; k < 2; k++) /* the two nearest by (distance, index) */
    for (int64_t i = 0; i < lim; i++) {
      if (i == best[0]) continue;
      if (best[k] < 0 || fabs(xp - (double)i) < fabs(xp - (double)best[k])) best[k] = i;
    }
  if (best[0] > best[1]) { int64_t t = best[0]; best[0] = best[1]; best[1] = t; }
  double ratio = x == floor(x) ? 1 : x - floor(x);
  int second; /* coefficient [0, 1] */
  if (ratio == 1) second = 1;
  else if (round == 0) second = ratio > 0.5;
  else if (round == 1) second = ratio >= 0.5;
  else second = round == 3;
  int64_t i = best[second] - 1; /* the padded edge pixels are the data's first and last */
  return i < 0 ? 0 : i >= in ? in - 1 : i;
}

typedef struct { int coord, round; } rn_ref_ctx;

/* ONNX's nearest Resize of one output pixel: a copy of the stored input pixel its rule picks, exactly (bound 0) */
static double ref_value(const rv_pixel *px, double *bound, void *ctx) {
  const rn_ref_ctx *o = ctx;
  const rv_case *t = px->t;
  int64_t h = ref_nearest(o->round, ref_coord(o->coord, px->oh, t->H, t->OH, px->sh), t->H);
  int64_t w = ref_nearest(o->round, ref_coord(o->coord, px->ow, t->W, t->OW, px->sw), t->W);
  *bound = 0;
  return px->x[(px->p * t->H + h) * t->W + w];
}

static void values(const rv_case *t, int coord, int round, mf_dtype dt, uint64_t seed) {
  rn_ctx c = {t->OH, t->OW, coord, round, t->sh, t->sw};
  rn_ref_ctx rc = {coord, round};
  char nm[160];
  snprintf(nm, sizeof nm, "%s resize nearest %s %s [%lld,%lld] -> [%lld,%lld]", mf_dtype_name(dt), coord_name(coord), round_name(round),
           (long long)t->H, (long long)t->W, (long long)t->OH, (long long)t->OW);
  rv_result res;
  if (rv_run(nm, t, dt, seed, build_rn, &c, ref_value, &rc, &res) == 0)
    CHECK(res.over == 0, "%s: %lld of %lld pixels differ from ONNX's", nm, (long long)res.over, (long long)res.total);
}

/* backward (rv_run_bwd): each input pixel gets the R values of the output pixels that read it by ONNX's rule, weight 1
 * (exact terms: extra 0), f32 sums in f32. Every pixel is checked (the finite differences sample some). */
static int ref_tap(const rv_pixel *px, int64_t *idx, double *wgt, void *ctx) {
  const rn_ref_ctx *o = ctx;
  const rv_case *t = px->t;
  int64_t h = ref_nearest(o->round, ref_coord(o->coord, px->oh, t->H, t->OH, px->sh), t->H);
  int64_t w = ref_nearest(o->round, ref_coord(o->coord, px->ow, t->W, t->OW, px->sw), t->W);
  idx[0] = (px->p * t->H + h) * t->W + w;
  wgt[0] = 1;
  return 1;
}

static void bwd_values(const rv_case *t, int coord, int round, mf_dtype dt, uint64_t seed) {
  rn_ctx c = {t->OH, t->OW, coord, round, t->sh, t->sw};
  rn_ref_ctx rc = {coord, round};
  char nm[160];
  snprintf(nm, sizeof nm, "%s resize nearest backward %s %s [%lld,%lld] -> [%lld,%lld]", mf_dtype_name(dt), coord_name(coord),
           round_name(round), (long long)t->H, (long long)t->W, (long long)t->OH, (long long)t->OW);
  rv_result res;
  if (rv_run_bwd(nm, t, dt, seed, build_rn, &c, ref_tap, &rc, 0, &res) == 0)
    CHECK(res.worst <= 1, "%s: error %.3g times the bound", nm, res.worst);
}

/* ONNX's own documented example (test_resize_upsample_scales_nearest): 1x1x2x2 by scales 2 x 3, half_pixel,
 * round_prefer_floor: each pixel in a 2x3 block */
static void known_points(void) {
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 1, 2, 2});
  mf_tensor y = mf_resize_nearest(g, x, 4, 6, MF_RESIZE_HALF_PIXEL, MF_NEAREST_ROUND_PREFER_FLOOR, 2, 3);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  double xv[4] = {1, 2, 3, 4};
  leaf[x] = xv;
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    const double *o = r.data[y];
    int ok = 1;
    for (int i = 0; i < 24; i++) ok &= o[i] == xv[(i / 6 / 2) * 2 + (i % 6) / 3];
    CHECK(ok, "2x2 by 2 x 3: %g %g %g %g %g %g / .. / %g %g %g %g %g %g", o[0], o[1], o[2], o[3], o[4], o[5], o[18], o[19], o[20], o[21],
          o[22], o[23]);
    mf_ref_free(&r);
  }
  free(leaf);
  mf_graph_free(g);
}

/* an integer factor with half-pixel centres, or asymmetric and floor, is mf_upsample_nearest's replication */
static void same_as_upsample(void) {
  for (int k = 0; k < 2; k++) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 3, 3, 5});
    mf_tensor a = mf_resize_nearest(g, x, 9, 15, k ? MF_RESIZE_ASYMMETRIC : MF_RESIZE_HALF_PIXEL,
                                    k ? MF_NEAREST_FLOOR : MF_NEAREST_ROUND_PREFER_FLOOR, 3, 3);
    mf_tensor b = mf_upsample_nearest(g, x, 3);
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    float xv[90];
    for (int i = 0; i < 90; i++) xv[i] = (float)i * 0.25f - 7;
    leaf[x] = xv;
    mf_ref r;
    char err[256];
    if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
    else {
      CHECK(!memcmp(r.data[a], r.data[b], 2 * 3 * 9 * 15 * sizeof(float)), "factor 3 %s equals upsample_nearest",
            k ? "asymmetric floor" : "half_pixel");
      mf_ref_free(&r);
    }
    free(leaf);
    mf_graph_free(g);
  }
}

static void errors(void) {
  struct { int nd; int64_t oh, ow; int coord, round; const char *want; } bad[] = {
      {3, 8, 8, 0, 0, "[2,4,4]"}, {4, 0, 8, 0, 0, "output size"}, {4, 8, (int64_t)1 << 25, 0, 0, "output size"},
      {4, 8, 8, 7, 0, "coordinate mode 7"}, {4, 8, 8, 0, -1, "rounding mode -1"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor x = bad[i].nd == 3 ? mf_input(g, "x", 3, (int64_t[]){2, 4, 4}) : mf_input(g, "x", 4, (int64_t[]){1, 2, 4, 4});
    mf_tensor y = mf_resize_nearest(g, x, bad[i].oh, bad[i].ow, (mf_resize_coord)bad[i].coord, (mf_resize_round)bad[i].round, 0, 0);
    const char *e = mf_graph_error(g);
    CHECK(y < 0 && e && strstr(e, "resize_nearest") && strstr(e, bad[i].want), "refused (%s): %s", bad[i].want, e ? e : "(none)");
    mf_graph_free(g);
  }
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor l = mf_input_typed(g, "l", MF_I32, 4, (int64_t[]){1, 1, 2, 2});
  mf_resize_nearest(g, l, 4, 4, MF_RESIZE_ASYMMETRIC, MF_NEAREST_FLOOR, 0, 0);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "floating point"), "an integer input refused: %s", e ? e : "(none)");
  mf_graph_free(g);
}

int main(void) {
  uint64_t seed = 0x6e6e;
  int n = 0;
  for (int coord = 0; coord < 5; coord++)
    for (int round = 0; round < 4; round++)
      for (size_t i = 0; i < sizeof cases / sizeof *cases; i++, n++) {
        const rv_case *t = &cases[i];
        rn_ctx c = {t->OH, t->OW, coord, round, t->sh, t->sw};
        gc_input in[1] = {{4, {t->N, t->C, t->H, t->W}, GC_NORMAL}};
        char nm[128];
        snprintf(nm, sizeof nm, "resize nearest %s %s [%lld,%lld] -> [%lld,%lld]", coord_name(coord), round_name(round),
                 (long long)t->H, (long long)t->W, (long long)t->OH, (long long)t->OW);
        gc_check(nm, 1, in, build_rn, &c, 0, 1e-6);
        values(t, coord, round, MF_F64, seed + (uint64_t)n);
        values(t, coord, round, MF_F32, seed + 1000 + (uint64_t)n);
        values(t, coord, round, MF_BF16, seed + 2000 + (uint64_t)n);
        bwd_values(t, coord, round, MF_F32, seed + 3000 + (uint64_t)n);
        bwd_values(t, coord, round, MF_F64, seed + 4000 + (uint64_t)n);
      }
  printf("test_grad_resize_nearest: %d geometries x modes, gradients and values\n", n);
  known_points();
  same_as_upsample();
  errors();
  return check_finish("test_grad_resize_nearest");
}

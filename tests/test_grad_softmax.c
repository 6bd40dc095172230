/* test_grad_softmax.c — the ops ONNX transformers need beyond the CNN set: softmax and log-softmax along any
 * axis, sqrt, erf and GELU (erf form). Gradients against finite differences in f64; forward values against
 * direct f64 formulas (the f32 path within a bound derived from f32 rounding); large inputs stay finite. */
#include "gradcheck.h"
#include "graph/dtype.h"

static int axis_of;
static mf_tensor b_softmax(mf_graph *g, const mf_tensor *in, void *c) { (void)c; return mf_softmax(g, in[0], axis_of); }
static mf_tensor b_log_softmax(mf_graph *g, const mf_tensor *in, void *c) { (void)c; return mf_log_softmax(g, in[0], axis_of); }
static mf_tensor b_sqrt(mf_graph *g, const mf_tensor *in, void *c) { (void)c; return mf_sqrt(g, in[0]); }
static mf_tensor b_erf(mf_graph *g, const mf_tensor *in, void *c) { (void)c; return mf_erf(g, in[0]); }
static mf_tensor b_gelu(mf_graph *g, const mf_tensor *in, void *c) { (void)c; return mf_gelu(g, in[0]); }

static void grads(void) {
  for (axis_of = -1; axis_of >= -3; axis_of--) {
    char nm[64];
    gc_input a[1] = {{3, {3, 4, 5}, GC_NORMAL}};
    snprintf(nm, sizeof nm, "softmax [3,4,5] axis %d", axis_of);
    gc_check(nm, 1, a, b_softmax, NULL, 0, 1e-6);
    snprintf(nm, sizeof nm, "log_softmax [3,4,5] axis %d", axis_of);
    gc_check(nm, 1, a, b_log_softmax, NULL, 0, 1e-6);
  }
  axis_of = 1;
  gc_check("softmax [6,1] (one element per row)", 1, (gc_input[]){{2, {6, 1}, GC_NORMAL}}, b_softmax, NULL, 0, 1e-6);
  gc_check("sqrt [4,5]", 1, (gc_input[]){{2, {4, 5}, GC_POSITIVE}}, b_sqrt, NULL, 0, 1e-6);
  gc_check("erf [4,5]", 1, (gc_input[]){{2, {4, 5}, GC_NORMAL}}, b_erf, NULL, 0, 1e-6);
  gc_check("gelu [4,5]", 1, (gc_input[]){{2, {4, 5}, GC_NORMAL}}, b_gelu, NULL, 0, 1e-6);
}

/* forward of x [R,D] (values xv) in dtype dt through build; f64 copies of the output */
static void fwd(mf_dtype dt, mf_tensor (*build)(mf_graph *, const mf_tensor *, void *), const double *xv, int64_t R, int64_t D,
                double *y) {
  mf_graph *g = mf_graph_init(dt);
  int64_t s[2] = {R, D};
  mf_tensor x = mf_input(g, "x", 2, s);
  mf_tensor yy = build(g, &x, NULL);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[x] = malloc(mf_node_bytes(&g->nodes[x]));
  for (int64_t j = 0; j < R * D; j++) mf_st(leaf[x], g->nodes[x].dtype, j, xv[j]);
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    for (int64_t j = 0; j < R * D; j++) y[j] = mf_ld(r.data[yy], g->nodes[yy].dtype, j);
    mf_ref_free(&r);
  } else
    CHECK(0, "eval: %s", err);
  free(leaf[x]);
  free(leaf);
  mf_graph_free(g);
}

/* Values against f64 formulas. The kernels compute each row in double and round once to the storage dtype,
 * so an f32 result is within u = 2^-24 relative of the f64 one, plus the double sums' own rounding
 * (D 2^-52 relative per row) and, for the inputs, the f32 rounding of x (|dx| <= u |x|) which moves softmax
 * by at most 2 u max|x| relative and log-softmax by 2 u max|x| absolute. */
static void values(void) {
  enum { R = 6, D = 33 };
  static double x[R * D], y64[R * D], y32[R * D];
  uint64_t st = 99;
  double mx = 0;
  for (int i = 0; i < R * D; i++) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = ((double)(st >> 11) / 9007199254740992.0 * 2 - 1) * 8;
    if (i >= 4 * D) x[i] += 1000; /* rows 4 and 5: large values, exp would overflow without the shift */
    mx = fabs(x[i]) > mx ? fabs(x[i]) : mx;
  }
  axis_of = -1;
  for (int lg = 0; lg < 2; lg++) {
    fwd(MF_F64, lg ? b_log_softmax : b_softmax, x, R, D, y64);
    fwd(MF_F32, lg ? b_log_softmax : b_softmax, x, R, D, y32);
    int bad = 0, bad32 = 0;
    for (int r = 0; r < R; r++) {
      double m = -INFINITY, s = 0, sum = 0;
      for (int j = 0; j < D; j++) m = x[r * D + j] > m ? x[r * D + j] : m;
      for (int j = 0; j < D; j++) s += exp(x[r * D + j] - m);
      double rowmax = 0;
      for (int j = 0; j < D; j++) rowmax = fabs(x[r * D + j] - m) > rowmax ? fabs(x[r * D + j] - m) : rowmax;
      for (int j = 0; j < D; j++) {
        double want = lg ? x[r * D + j] - m - log(s) : exp(x[r * D + j] - m) / s, got = y64[r * D + j];
        sum += lg ? exp(got) : got;
        if (!(fabs(got - want) <= 4 * D * 0x1p-52 * (fabs(want) + (lg ? fabs(log(s)) + rowmax : 0)))) bad++;
        double u = 0x1p-24, bound = lg ? u * fabs(want) + 2 * u * mx + 4 * D * 0x1p-52 * (fabs(log(s)) + rowmax)
                                      : u * want + 2 * u * mx * want + 4 * D * 0x1p-52 * want;
        if (!(fabs(y32[r * D + j] - want) <= bound)) {
          if (bad32 < 3) fprintf(stderr, "  %s row %d col %d: f32 %.9g f64 %.17g bound %.3g\n", lg ? "log_softmax" : "softmax", r, j,
                                 y32[r * D + j], want, bound);
          bad32++;
        }
      }
      if (!(fabs(sum - 1) <= 4 * D * 0x1p-52 + (lg ? 4 * D * 0x1p-52 * (fabs(log(s)) + rowmax) : 0))) bad++;
    }
    CHECK(bad == 0, "%s f64: %d values differ from the formula (or rows not summing to 1)", lg ? "log_softmax" : "softmax", bad);
    CHECK(bad32 == 0, "%s f32: %d values outside the derived bound", lg ? "log_softmax" : "softmax", bad32);
  }
  /* sqrt, erf, gelu in f64 against libm */
  double xs[R * D], out[R * D];
  for (int i = 0; i < R * D; i++) xs[i] = fabs(x[i] - (i >= 4 * D ? 1000 : 0));
  fwd(MF_F64, b_sqrt, xs, R, D, out);
  int bad = 0;
  for (int i = 0; i < R * D; i++) bad += out[i] != sqrt(xs[i]);
  CHECK(bad == 0, "sqrt: %d values differ from libm", bad);
  for (int i = 0; i < R * D; i++) xs[i] = x[i] - (i >= 4 * D ? 1000 : 0);
  fwd(MF_F64, b_erf, xs, R, D, out);
  bad = 0;
  for (int i = 0; i < R * D; i++) bad += out[i] != erf(xs[i]);
  CHECK(bad == 0, "erf: %d values differ from libm", bad);
  fwd(MF_F64, b_gelu, xs, R, D, out);
  bad = 0;
  for (int i = 0; i < R * D; i++) {
    double want = 0.5 * xs[i] * (1 + erf(xs[i] / sqrt(2.0)));
    bad += !(fabs(out[i] - want) <= 4 * 0x1p-52 * (fabs(want) + fabs(xs[i])));
  }
  CHECK(bad == 0, "gelu: %d values differ from 0.5 x (1 + erf(x / sqrt 2))", bad);
}

static void refused(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t s[2] = {3, 4};
  mf_tensor x = mf_input(g, "x", 2, s);
  CHECK(mf_softmax(g, x, 2) < 0 && strstr(mf_graph_error(g), "axis 2") && strstr(mf_graph_error(g), "[3,4]"), "axis 2: %s",
        mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_tensor l = mf_input_typed(g, "l", MF_I32, 2, s);
  CHECK(mf_log_softmax(g, l, -1) < 0 && strstr(mf_graph_error(g), "float"), "i32 input: %s", mf_graph_error(g));
  mf_graph_free(g);
}

int main(void) {
  grads();
  values();
  refused();
  return check_finish("test_grad_softmax");
}

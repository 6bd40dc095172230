/* test_grad_l2norm.c — L2 normalisation along the last axis (mf_l2_normalize): gradients against finite
 * differences in f64, the rows at or below eps (output x / eps, gradient dy / eps), the f32 path against f64
 * within a derived bound, and the refusals. */
#include "gradcheck.h"
#include "graph/dtype.h"

static double eps_of;
static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  (void)c;
  return mf_l2_normalize(g, in[0], eps_of);
}

static void grads(void) {
  eps_of = 1e-12;
  gc_input a[1] = {{2, {5, 7}, GC_NORMAL}};
  gc_check("l2_normalize [5,7]", 1, a, build, NULL, 0, 1e-6);
  gc_input b[1] = {{3, {2, 3, 4}, GC_NORMAL}};
  gc_check("l2_normalize [2,3,4]", 1, b, build, NULL, 0, 1e-6);
  gc_input c[1] = {{1, {9}, GC_AWAY_FROM_ZERO}};
  gc_check("l2_normalize [9]", 1, c, build, NULL, 0, 1e-6);
  /* eps larger than every row's norm (normal values, norms about sqrt(3)): y = x / eps, a linear map */
  eps_of = 10;
  gc_check("l2_normalize [4,3], eps above the norms", 1, (gc_input[]){{2, {4, 3}, GC_NORMAL}}, build, NULL, 0, 1e-6);
}

/* x [R,D] and loss sum(y * w) in dtype dt; returns y and dx (f64 copies) */
static void run(mf_dtype dt, const double *xv, const double *wv, int64_t R, int64_t D, double eps, double *y, double *dx) {
  mf_graph *g = mf_graph_init(dt);
  int64_t s[2] = {R, D};
  mf_tensor x = mf_param(g, "x", 2, s, MF_INIT_ZERO, 0), w = mf_input(g, "w", 2, s);
  mf_tensor yy = mf_l2_normalize(g, x, eps);
  mf_tensor loss = mf_sum(g, mf_mul(g, yy, w), 0, 0);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  int ids[2] = {x, w};
  const double *vals[2] = {xv, wv};
  for (int i = 0; i < 2; i++) {
    const mf_node *nn = &g->nodes[ids[i]];
    leaf[ids[i]] = malloc(mf_node_bytes(nn));
    for (int64_t j = 0; j < R * D; j++) mf_st(leaf[ids[i]], nn->dtype, j, vals[i][j]);
  }
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    for (int64_t j = 0; j < R * D; j++) {
      y[j] = mf_ld(r.data[yy], g->nodes[yy].dtype, j);
      dx[j] = mf_ld(r.data[g->nodes[x].grad], MF_F32, j);
      if (dt == MF_F64) dx[j] = ((double *)r.data[g->nodes[x].grad])[j];
    }
    mf_ref_free(&r);
  } else
    CHECK(0, "eval: %s", err);
  for (int i = 0; i < 2; i++) free(leaf[ids[i]]);
  free(leaf);
  mf_graph_free(g);
}

/* the f32 kernel computes each row in double and rounds once: |y32 - y| <= u |y| + D 2^-52 |y|, and
 * |dx32 - dx| <= u |dx| + 4 D 2^-52 (|dy_j| + |x_j| |<x,dy>| / |x|^2) / |x|, u = 2^-24 (inputs are f32 values) */
static void f32_vs_f64(void) {
  enum { R = 37, D = 129 };
  static double xv[R * D], wv[R * D], y32[R * D], y64[R * D], d32[R * D], d64[R * D];
  for (int i = 0; i < R * D; i++) xv[i] = (float)(gc_normal() * 3), wv[i] = (float)gc_normal();
  for (int j = 0; j < D; j++) xv[5 * D + j] = 0; /* a zero row: y 0, dx = dy / eps */
  run(MF_F32, xv, wv, R, D, 1e-12, y32, d32);
  run(MF_F64, xv, wv, R, D, 1e-12, y64, d64);
  int bad_y = 0, bad_d = 0;
  double worst = 0;
  for (int r = 0; r < R; r++) {
    double ss = 0, xd = 0;
    for (int j = 0; j < D; j++) ss += xv[r * D + j] * xv[r * D + j], xd += xv[r * D + j] * wv[r * D + j];
    double nr = sqrt(ss);
    for (int j = 0; j < D; j++) {
      int i = r * D + j;
      double by = 0x1p-24 * fabs(y64[i]) + D * 0x1p-52 * fabs(y64[i]);
      double bd = nr > 1e-12 ? 0x1p-24 * fabs(d64[i]) + 4 * D * 0x1p-52 * (fabs(wv[i]) + fabs(xv[i]) * fabs(xd) / ss) / nr
                             : 0x1p-24 * fabs(d64[i]);
      bad_y += fabs(y32[i] - y64[i]) > by;
      bad_d += fabs(d32[i] - d64[i]) > bd;
      if (bd > 0) worst = fmax(worst, fabs(d32[i] - d64[i]) / bd);
    }
  }
  CHECK(bad_y == 0 && bad_d == 0, "f32 vs f64: %d outputs and %d gradients beyond the bound", bad_y, bad_d);
  /* the zero row: output zeros, gradient dy / eps (max() gives the norm no gradient below eps) */
  int zero_ok = 1;
  for (int j = 0; j < D; j++) zero_ok &= y64[5 * D + j] == 0 && fabs(d64[5 * D + j] - wv[5 * D + j] / 1e-12) <= 1e-3 * fabs(wv[5 * D + j] / 1e-12);
  CHECK(zero_ok, "zero row: y 0 and dx = dy / eps");
  /* unit norm of the other rows in f64 */
  double dev = 0;
  for (int r = 0; r < R; r++) {
    if (r == 5) continue;
    double ss = 0;
    for (int j = 0; j < D; j++) ss += y64[r * D + j] * y64[r * D + j];
    dev = fmax(dev, fabs(ss - 1));
  }
  CHECK(dev <= 4 * D * 0x1p-52, "rows of y have norm 1: deviation %g", dev);
  printf("  l2_normalize f32 vs f64 [%d,%d]: gradient error at most %.3f of its bound\n", R, D, worst);
}

static void errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t s[2] = {2, 3};
  mf_tensor i = mf_input_typed(g, "idx", MF_I32, 2, s);
  CHECK(mf_l2_normalize(g, i, 1e-12) < 0 && strstr(mf_graph_error(g), "l2_normalize") && strstr(mf_graph_error(g), "[2,3]"),
        "int input: %s", mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 2, s);
  CHECK(mf_l2_normalize(g, x, 0) < 0 && strstr(mf_graph_error(g), "eps"), "eps 0: %s", mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
}

int main(void) {
  grads();
  f32_vs_f64();
  errors();
  return check_finish("test_grad_l2norm");
}

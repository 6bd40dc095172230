/* test_grad_wavelet.c — Haar DWT / IDWT: gradient checks, a hand-computed example with the
 * channel order [LL, HL, LH, HH], perfect reconstruction in f64/f32/bf16, and shape errors. */
#include "gradcheck.h"
#include "graph/dtype.h"

static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  int k = *(int *)c;
  if (k == 0) return mf_dwt_haar(g, in[0]);
  if (k == 1) return mf_idwt_haar(g, in[0]);
  return mf_mul(g, mf_idwt_haar(g, mf_mul(g, mf_dwt_haar(g, in[0]), mf_dwt_haar(g, in[0]))), in[0]);
}

/* Runs graph g with input `in` = x and returns node `out` as doubles in y. */
static void eval1(mf_graph *g, mf_tensor in, const double *x, mf_tensor out, double *y) {
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  const mf_node *ni = &g->nodes[in];
  leaf[in] = malloc(mf_node_bytes(ni));
  for (int64_t i = 0; i < mf_node_numel(ni); i++) mf_st(leaf[in], ni->dtype, i, x[i]);
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    const mf_node *no = &g->nodes[out];
    for (int64_t i = 0; i < mf_node_numel(no); i++) y[i] = mf_ld(r.data[out], no->dtype, i);
    mf_ref_free(&r);
  } else CHECK(0, "eval: %s", err);
  free(leaf[in]);
  free(leaf);
}

static void hand_example(mf_dtype dt) {
  /* two channels of 2x2: [[1,2],[3,4]] and 10x that. a=x[0,0]=1, b=x[1,0]=3, c=x[0,1]=2, d=x[1,1]=4:
   * LL=(1+3+2+4)/2=5, HL=(-1-3+2+4)/2=1, LH=(-1+3-2+4)/2=2, HH=(1-3-2+4)/2=0 */
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 2, 2, 2});
  mf_tensor y = mf_dwt_haar(g, x);
  mf_tensor back = mf_idwt_haar(g, y);
  CHECK(mf_tensor_dim(g, y, 1) == 8 && mf_tensor_dim(g, y, 2) == 1 && mf_tensor_dim(g, y, 3) == 1, "dwt shape");
  double xv[8] = {1, 2, 3, 4, 10, 20, 30, 40}, yv[8], want[8] = {5, 50, 1, 10, 2, 20, 0, 0}, bv[8];
  eval1(g, x, xv, y, yv);
  for (int i = 0; i < 8; i++) CHECK_NEAR(yv[i], want[i], 1e-6, "dwt hand example");
  eval1(g, x, xv, back, bv);
  for (int i = 0; i < 8; i++) CHECK_NEAR(bv[i], xv[i], 1e-6, "idwt of the hand example");
  mf_graph_free(g);
}

static void reconstruction(mf_dtype dt, double tol) {
  int64_t shp[4] = {2, 3, 6, 8};
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_input(g, "x", 4, shp);
  mf_tensor dwt = mf_dwt_haar(g, x);
  mf_tensor back = mf_idwt_haar(g, dwt);
  mf_tensor y2 = mf_input(g, "y", 4, (int64_t[]){2, 12, 3, 4});
  mf_tensor fwd = mf_dwt_haar(g, mf_idwt_haar(g, y2));
  double xv[288], bv[288];
  for (int i = 0; i < 288; i++) xv[i] = (float)gc_normal();
  if (dt == MF_BF16) for (int i = 0; i < 288; i++) xv[i] = mf_bf16_to_f32(mf_f32_to_bf16((float)xv[i]));
  eval1(g, x, xv, back, bv);
  double worst = 0;
  for (int i = 0; i < 288; i++) worst = fmax(worst, fabs(bv[i] - xv[i]));
  CHECK(worst <= tol, "IDWT(DWT(x)) == x in %s: worst error %g", mf_dtype_name(dt), worst);
  eval1(g, y2, xv, fwd, bv);
  worst = 0;
  for (int i = 0; i < 288; i++) worst = fmax(worst, fabs(bv[i] - xv[i]));
  CHECK(worst <= tol, "DWT(IDWT(y)) == y in %s: worst error %g", mf_dtype_name(dt), worst);
  /* orthonormal: energy is preserved */
  double yv[288], e0 = 0, e1 = 0;
  eval1(g, x, xv, dwt, yv);
  for (int i = 0; i < 288; i++) { e0 += xv[i] * xv[i]; e1 += yv[i] * yv[i]; }
  CHECK(fabs(e0 - e1) <= 1e-3 * e0 + tol, "DWT preserves energy in %s: %g vs %g", mf_dtype_name(dt), e0, e1);
  mf_graph_free(g);
}

int main(void) {
  int k0 = 0, k1 = 1, k2 = 2;
  gc_input x = {4, {2, 3, 4, 6}, GC_NORMAL}, y = {4, {2, 8, 3, 2}, GC_NORMAL};
  gc_check("dwt_haar", 1, &x, build, &k0, 0, 1e-6);
  gc_check("idwt_haar", 1, &y, build, &k1, 0, 1e-6);
  gc_check("idwt(dwt(x)^2)*x", 1, &x, build, &k2, 0, 1e-6);
  hand_example(MF_F64);
  hand_example(MF_F32);
  hand_example(MF_BF16);
  reconstruction(MF_F64, 1e-12);
  reconstruction(MF_F32, 1e-5);
  reconstruction(MF_BF16, 0.1);

  mf_graph *g = mf_graph_init(MF_F32);
  mf_dwt_haar(g, mf_input(g, "x", 4, (int64_t[]){1, 3, 5, 4}));
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "dwt_haar") && strstr(e, "[1,3,5,4]"), "odd height: error was %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_idwt_haar(g, mf_input(g, "x", 4, (int64_t[]){1, 6, 2, 2}));
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "idwt_haar") && strstr(e, "[1,6,2,2]"), "channels not /4: error was %s", e ? e : "(none)");
  mf_graph_free(g);
  return check_finish("test_grad_wavelet");
}

/* test_grad_pool.c — average/max pooling, global average pooling and nearest upsampling:
 * finite-difference gradient checks in f64, forward/backward values against hand-computed
 * PyTorch semantics (count_include_pad=True, first maximum wins), f32 vs bf16, shape errors. */
#include "gradcheck.h"
#include "graph/dtype.h"

typedef struct { int kind, k, s, p; } op_ctx; /* kind 0 avg, 1 max, 2 global avg, 3 upsample (k = factor) */

static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  switch (o->kind) {
  case 0: return mf_avgpool2d(g, in[0], o->k, o->s, o->p);
  case 1: return mf_maxpool2d(g, in[0], o->k, o->s, o->p);
  case 2: return mf_global_avgpool(g, in[0]);
  default: return mf_upsample_nearest(g, in[0], o->k);
  }
}

static void gradchecks(void) {
  const op_ctx cases[] = {{0, 2, 2, 0}, {0, 3, 1, 1}, {0, 3, 2, 1}, {0, 3, 2, 0}, {1, 2, 2, 0}, {1, 3, 1, 1},
                          {1, 3, 2, 1}, {1, 2, 1, 1}, {2, 0, 0, 0}, {3, 2, 0, 0}, {3, 3, 0, 0}};
  const char *names[] = {"avgpool2d", "maxpool2d", "global_avgpool", "upsample_nearest"};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    gc_input in = {4, {2, 3, 7, 6}, GC_NORMAL};
    char nm[96];
    snprintf(nm, sizeof nm, "%s k%d s%d p%d", names[cases[i].kind], cases[i].k, cases[i].s, cases[i].p);
    op_ctx c = cases[i];
    gc_check(nm, 1, &in, build, &c, 0, 1e-6);
  }
}

/* Builds op(x) and its backward with dy, evaluates with the given values; returns y and dx. */
static int run(mf_dtype dt, const op_ctx *o, int64_t N, int64_t C, int64_t H, int64_t W, const double *xv, const double *dyv,
               double *y, int64_t *ny, double *dx) {
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){N, C, H, W});
  mf_tensor yy = build(g, &x, (void *)o);
  if (yy < 0) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return -1; }
  const mf_node *yn = &g->nodes[yy];
  int64_t ys[MF_MAX_DIMS];
  for (int i = 0; i < yn->ndim; i++) ys[i] = yn->ne[i];
  mf_tensor dy = mf_input(g, "dy", yn->ndim, ys);
  mf_node pool = g->nodes[yy];
  mf_tensor d = o->kind == 3 ? mf_upsample_bwd(g, dy, x, o->k) : mf_pool_bwd(g, x, dy, &pool);
  if (d < 0) { CHECK(0, "build bwd: %s", mf_graph_error(g)); mf_graph_free(g); return -1; }
  *ny = mf_node_numel(&g->nodes[yy]);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[x] = malloc(mf_node_bytes(&g->nodes[x]));
  leaf[dy] = malloc(mf_node_bytes(&g->nodes[dy]));
  for (int64_t i = 0; i < N * C * H * W; i++) mf_st(leaf[x], dt, i, xv[i]);
  for (int64_t i = 0; i < *ny; i++) mf_st(leaf[dy], dt, i, dyv[i]);
  mf_ref r;
  char err[256];
  int rc = mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err);
  if (rc < 0) CHECK(0, "eval: %s", err);
  else {
    for (int64_t i = 0; i < *ny; i++) y[i] = mf_ld(r.data[yy], dt, i);
    for (int64_t i = 0; i < N * C * H * W; i++) dx[i] = mf_ld(r.data[d], dt, i);
    mf_ref_free(&r);
  }
  free(leaf[x]);
  free(leaf[dy]);
  free(leaf);
  mf_graph_free(g);
  return rc;
}

static void values(void) {
  /* x [1,1,3,3] = 1..9 */
  double x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[16], dx[9], ones[16];
  for (int i = 0; i < 16; i++) ones[i] = 1;
  int64_t ny;
  /* avg k3 s2 p1: output 2x2; top-left window covers 1,2,4,5 plus 5 padded zeros -> 12/9 */
  op_ctx avg = {0, 3, 2, 1};
  if (run(MF_F32, &avg, 1, 1, 3, 3, x, ones, y, &ny, dx) == 0) {
    CHECK(ny == 4, "avgpool output size %lld", (long long)ny);
    CHECK_NEAR(y[0], 12.0 / 9, 1e-6, "avg (count_include_pad) y[0]");
    CHECK_NEAR(y[3], (5 + 6 + 8 + 9) / 9.0, 1e-6, "avg y[3]");
    CHECK_NEAR(dx[4], 4.0 / 9, 1e-6, "avg dx of the centre (in all 4 windows)");
    CHECK_NEAR(dx[0], 1.0 / 9, 1e-6, "avg dx of a corner");
  }
  /* max k2 s1 p0 with ties: x all equal -> first element of each window gets the gradient */
  double tie[9] = {2, 2, 2, 2, 2, 2, 2, 2, 2}, dyv[4] = {1, 10, 100, 1000};
  op_ctx mx = {1, 2, 1, 0};
  if (run(MF_F32, &mx, 1, 1, 3, 3, tie, dyv, y, &ny, dx) == 0) {
    CHECK(dx[0] == 1 && dx[1] == 10 && dx[3] == 100 && dx[4] == 1000 && dx[2] == 0 && dx[8] == 0,
          "max ties: first max wins: dx = %g %g %g / %g %g %g / %g %g %g", dx[0], dx[1], dx[2], dx[3], dx[4], dx[5], dx[6], dx[7], dx[8]);
  }
  /* max k3 s2 p1 over 1..9 with negative values padded (padding never wins) */
  double neg[9];
  for (int i = 0; i < 9; i++) neg[i] = -x[i];
  op_ctx mx2 = {1, 3, 2, 1};
  if (run(MF_F32, &mx2, 1, 1, 3, 3, neg, ones, y, &ny, dx) == 0) {
    CHECK(y[0] == -1 && y[1] == -2 && y[2] == -4 && y[3] == -5, "max with padding: %g %g %g %g", y[0], y[1], y[2], y[3]);
    CHECK(dx[0] == 1 && dx[1] == 1 && dx[3] == 1 && dx[4] == 1 && dx[8] == 0, "max bwd with padding");
  }
  /* global average and upsample */
  op_ctx gl = {2, 0, 0, 0};
  if (run(MF_F32, &gl, 1, 1, 3, 3, x, ones, y, &ny, dx) == 0) {
    CHECK(ny == 1 && fabs(y[0] - 5) < 1e-6 && fabs(dx[7] - 1.0 / 9) < 1e-6, "global avg %g, dx %g", y[0], dx[7]);
  }
  op_ctx up = {3, 2, 0, 0};
  double ups[36];
  for (int i = 0; i < 36; i++) ups[i] = i;
  double yb[36];
  if (run(MF_F32, &up, 1, 1, 3, 3, x, ups, yb, &ny, dx) == 0) {
    CHECK(ny == 36 && yb[0] == 1 && yb[1] == 1 && yb[6] == 1 && yb[7] == 1 && yb[2] == 2 && yb[35] == 9, "upsample values");
    CHECK(dx[0] == 0 + 1 + 6 + 7 && dx[8] == 28 + 29 + 34 + 35, "upsample bwd sums blocks: %g %g", dx[0], dx[8]);
  }
}

/* the f32 fast paths and the generic (bf16 / f64) paths agree */
static void dtypes_agree(void) {
  const op_ctx cases[] = {{0, 3, 2, 1}, {1, 3, 2, 1}, {2, 0, 0, 0}, {3, 2, 0, 0}};
  int64_t N = 2, C = 3, H = 9, W = 8, nx = N * C * H * W;
  double *x = malloc((size_t)nx * sizeof(double)), *dy = malloc((size_t)nx * 4 * sizeof(double));
  uint64_t s = 99;
  for (int64_t i = 0; i < nx; i++) { s = s * 6364136223846793005ULL + 1442695040888963407ULL; x[i] = mf_bf16_to_f32(mf_f32_to_bf16((float)((double)(s >> 11) / 9007199254740992.0 - 0.5))); }
  for (int64_t i = 0; i < nx * 4; i++) { s = s * 6364136223846793005ULL + 1442695040888963407ULL; dy[i] = mf_bf16_to_f32(mf_f32_to_bf16((float)((double)(s >> 11) / 9007199254740992.0 - 0.5))); }
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    double *y1 = malloc((size_t)nx * 4 * sizeof(double)), *y2 = malloc((size_t)nx * 4 * sizeof(double));
    double *d1 = malloc((size_t)nx * sizeof(double)), *d2 = malloc((size_t)nx * sizeof(double));
    int64_t n1 = 0, n2 = 0;
    if (run(MF_F32, &cases[c], N, C, H, W, x, dy, y1, &n1, d1) == 0 && run(MF_BF16, &cases[c], N, C, H, W, x, dy, y2, &n2, d2) == 0) {
      double e = 0;
      for (int64_t i = 0; i < n1; i++) e = fmax(e, fabs(y1[i] - y2[i]));
      for (int64_t i = 0; i < nx; i++) e = fmax(e, fabs(d1[i] - d2[i]));
      CHECK(n1 == n2 && e < 1e-2, "kind %d: f32 and bf16 differ by %g", cases[c].kind, e);
    }
    free(y1); free(y2); free(d1); free(d2);
  }
  free(x);
  free(dy);
}

static void shape_errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 3, (int64_t[]){2, 3, 8});
  mf_maxpool2d(g, x, 2, 2, 0);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "maxpool2d") && strstr(e, "[2,3,8]"), "error was: %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){1, 3, 4, 4});
  mf_avgpool2d(g, x, 2, 2, 2); /* padding above k/2 */
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "avgpool2d") && strstr(e, "padding"), "error was: %s", e ? e : "(none)");
  mf_graph_free(g);
}

int main(void) {
  gradchecks();
  values();
  dtypes_agree();
  shape_errors();
  return check_finish("test_grad_pool");
}

/* test_grad_steg_loss.c — the steganography trainer's SSIM and 8x8 block-DCT loss terms
 * (src/models/steg_loss.c), each as one whole term: finite-difference gradient checks in f64, values
 * against direct loop implementations, and the CPU runtime's f32 gradients against the f64 reference. */
#include "gradcheck.h"
#include "models/steg_loss.h"

typedef struct { int kind, k; } term_ctx; /* kind 0: SSIM (window k), 1: DCT with the matrix as a third input */

static mf_tensor build_term(mf_graph *g, const mf_tensor *in, void *c) {
  const term_ctx *t = c;
  return t->kind == 0 ? mf_steg_ssim_loss(g, in[0], in[1], t->k) : mf_steg_dct_loss(g, in[0], in[1], in[2]);
}

/* ---------------- direct implementations (plain loops, double) ---------------- */

/* sum over channels and valid positions of (1 - SSIM) with a k x k uniform window */
static double ssim_term_ref(const double *x, const double *y, int64_t B, int64_t C, int64_t H, int64_t W, int k) {
  const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
  double total = 0;
  for (int64_t p = 0; p < B * C; p++) {
    const double *a = x + p * H * W, *b = y + p * H * W;
    for (int64_t i = 0; i + k <= H; i++)
      for (int64_t j = 0; j + k <= W; j++) {
        double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0, n = (double)k * k;
        for (int u = 0; u < k; u++)
          for (int v = 0; v < k; v++) {
            double va = a[(i + u) * W + j + v], vb = b[(i + u) * W + j + v];
            ma += va; mb += vb; saa += va * va; sbb += vb * vb; sab += va * vb;
          }
        ma /= n; mb /= n;
        double vxa = saa / n - ma * ma, vyb = sbb / n - mb * mb, cov = sab / n - ma * mb;
        total += 1 - ((2 * ma * mb + C1) * (2 * cov + C2)) / ((ma * ma + mb * mb + C1) * (vxa + vyb + C2));
      }
  }
  return total;
}

static double dct_c(int u) { return u ? sqrt(2.0 / 8) : sqrt(1.0 / 8); }

/* coefficient (vertical frequency fv, horizontal fh) of the 8x8 block at (by, bx) of plane p */
static double dct_coef_ref(const double *x, int64_t H, int64_t W, int64_t p, int64_t by, int64_t bx, int fv, int fh) {
  double s = 0;
  for (int yy = 0; yy < 8; yy++)
    for (int xx = 0; xx < 8; xx++)
      s += x[(p * H + by * 8 + yy) * W + bx * 8 + xx] * cos((2 * yy + 1) * fv * M_PI / 16) * cos((2 * xx + 1) * fh * M_PI / 16);
  return dct_c(fv) * dct_c(fh) * s;
}

static double dct_term_ref(const double *x, const double *y, int64_t B, int64_t C, int64_t H, int64_t W) {
  double total = 0;
  for (int64_t p = 0; p < B * C; p++)
    for (int64_t by = 0; by < H / 8; by++)
      for (int64_t bx = 0; bx < W / 8; bx++)
        for (int fv = 0; fv < 8; fv++)
          for (int fh = 0; fh < 8; fh++)
            total += fabs(dct_coef_ref(x, H, W, p, by, bx, fv, fh) - dct_coef_ref(y, H, W, p, by, bx, fv, fh));
  return total;
}

/* ---------------- values that keep the checks away from kinks and flat spots ---------------- */

/* image-like inputs: x uniform in [0.05, 0.95], y = x + N(0, 0.1^2) */
static void fill_images(double *x, double *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    x[i] = 0.05 + 0.9 * gc_uniform();
    y[i] = x[i] + 0.1 * gc_normal();
  }
}

/* D = the DCT matrix; y = x - (the pixels whose block coefficients are delta), every |delta| >= 0.1,
 * so no coefficient of DCT(x) - DCT(y) is near the kink of |.| */
static void fill_dct_away(double *x, double *y, double *D, int64_t B, int64_t C, int64_t H, int64_t W) {
  mf_steg_dct_matrix(D);
  for (int64_t i = 0; i < B * C * H * W; i++) y[i] = x[i];
  for (int64_t p = 0; p < B * C; p++)
    for (int64_t by = 0; by < H / 8; by++)
      for (int64_t bx = 0; bx < W / 8; bx++) {
        double delta[64];
        for (int i = 0; i < 64; i++) {
          double v = gc_normal();
          delta[i] = (v < 0 ? -0.1 : 0.1) + 0.5 * v;
        }
        /* inverse 2-D DCT: pixels = D^T delta D */
        for (int yy = 0; yy < 8; yy++)
          for (int xx = 0; xx < 8; xx++) {
            double s = 0;
            for (int fv = 0; fv < 8; fv++)
              for (int fh = 0; fh < 8; fh++) s += D[fv * 8 + yy] * delta[fv * 8 + fh] * D[fh * 8 + xx];
            y[(p * H + by * 8 + yy) * W + bx * 8 + xx] -= s;
          }
      }
}

typedef struct { int64_t B, C, H, W; } dims;

static void fill_ssim_leaves(const mf_graph *g, const mf_tensor *in, void **leaf, void *c) {
  const dims *d = c;
  (void)g;
  fill_images(leaf[in[0]], leaf[in[1]], d->B * d->C * d->H * d->W);
}
static void fill_dct_leaves(const mf_graph *g, const mf_tensor *in, void **leaf, void *c) {
  const dims *d = c;
  (void)g;
  fill_dct_away(leaf[in[0]], leaf[in[1]], leaf[in[2]], d->B, d->C, d->H, d->W);
}

/* ---------------- gradient checks (f64, finite differences) ---------------- */

static void gradchecks(void) {
  /* SSIM: random positive inputs (means away from 0, where the C1 term alone keeps the ratio finite) */
  {
    term_ctx t = {0, 3};
    gc_input in[2] = {{4, {2, 3, 6, 7}, GC_POSITIVE}, {4, {2, 3, 6, 7}, GC_POSITIVE}};
    gc_check("ssim term k3, random positive inputs", 2, in, build_term, &t, 0, 1e-5);
  }
  /* SSIM: the trainer's 7x7 window on image-like values, several windows per plane */
  {
    term_ctx t = {0, 7};
    dims d = {2, 3, 10, 9};
    gc_input in[2] = {{4, {2, 3, 10, 9}, GC_NORMAL}, {4, {2, 3, 10, 9}, GC_NORMAL}};
    gc_check_fill("ssim term k7, image-like inputs", 2, in, build_term, &t, 0, 1e-5, fill_ssim_leaves, &d);
  }
  /* DCT: the real matrix (its gradient checked too), blocks in both directions, away from |0| */
  {
    term_ctx t = {1, 0};
    dims d = {2, 3, 16, 24};
    gc_input in[3] = {{4, {2, 3, 16, 24}, GC_NORMAL}, {4, {2, 3, 16, 24}, GC_NORMAL}, {2, {8, 8}, GC_NORMAL}};
    gc_check_fill("dct term, 2x3 blocks per plane", 3, in, build_term, &t, 0, 1e-5, fill_dct_leaves, &d);
  }
}

/* ---------------- values against the direct implementations ---------------- */

/* Evaluates the term (kind 0 SSIM window k, 1 DCT) on an f64 graph; returns its value, and with
 * blocks != NULL the DCT blocks of x. */
static double eval_term(int kind, int k, dims d, const double *x, const double *y, const double *D, double *blocks) {
  mf_graph *g = mf_graph_init(MF_F64);
  int64_t s[4] = {d.B, d.C, d.H, d.W}, ds[2] = {8, 8};
  mf_tensor tx = mf_input(g, "x", 4, s), ty = mf_input(g, "y", 4, s), tD = mf_input(g, "D", 2, ds);
  mf_tensor out = kind == 0 ? mf_steg_ssim_loss(g, tx, ty, k) : mf_steg_dct_loss(g, tx, ty, tD);
  mf_tensor bl = kind == 1 ? mf_steg_dct_blocks(g, tx, tD) : -1;
  double v = NAN;
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return v; }
  CHECK(mf_tensor_numel(g, out) == 1, "the term is a scalar (%lld elements)", (long long)mf_tensor_numel(g, out));
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[tx] = (void *)x; leaf[ty] = (void *)y; leaf[tD] = (void *)D;
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    v = ((double *)r.data[out])[0];
    if (blocks) memcpy(blocks, r.data[bl], (size_t)mf_tensor_numel(g, bl) * sizeof(double));
    mf_ref_free(&r);
  } else CHECK(0, "eval: %s", err);
  free(leaf);
  mf_graph_free(g);
  return v;
}

static void values(void) {
  gc_seed_fresh();
  dims d = {2, 3, 16, 24};
  int64_t n = d.B * d.C * d.H * d.W;
  double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y), D[64];
  double *bl = malloc((size_t)n * sizeof *bl);
  fill_images(x, y, n);
  mf_steg_dct_matrix(D);
  for (int k = 3; k <= 7; k += 4) {
    double got = eval_term(0, k, d, x, y, D, NULL), want = ssim_term_ref(x, y, d.B, d.C, d.H, d.W, k);
    CHECK(fabs(got - want) <= 1e-9 * (1 + fabs(want)), "ssim term k%d: graph %.15g, direct loops %.15g", k, got, want);
    CHECK(fabs(eval_term(0, k, d, x, x, D, NULL)) < 1e-9, "ssim term k%d of an image with itself is 0", k);
  }
  double got = eval_term(1, 0, d, x, y, D, bl), want = dct_term_ref(x, y, d.B, d.C, d.H, d.W);
  CHECK(fabs(got - want) <= 1e-9 * (1 + fabs(want)), "dct term: graph %.15g, direct loops %.15g", got, want);
  /* every coefficient where the layout says: blocks[(p*H/8 + by), bx, fh, fv] (transposed per block) */
  int64_t bad = 0;
  for (int64_t p = 0; p < d.B * d.C; p++)
    for (int64_t by = 0; by < d.H / 8; by++)
      for (int64_t bx = 0; bx < d.W / 8; bx++)
        for (int fv = 0; fv < 8; fv++)
          for (int fh = 0; fh < 8; fh++) {
            double c = bl[(((p * (d.H / 8) + by) * (d.W / 8) + bx) * 8 + fh) * 8 + fv];
            bad += fabs(c - dct_coef_ref(x, d.H, d.W, p, by, bx, fv, fh)) > 1e-10;
          }
  CHECK(bad == 0, "dct blocks: %lld coefficients differ from the direct DCT", (long long)bad);
  /* orthonormal: sum of squared coefficients = sum of squared pixels */
  double e1 = 0, e2 = 0;
  for (int64_t i = 0; i < n; i++) { e1 += x[i] * x[i]; e2 += bl[i] * bl[i]; }
  CHECK(fabs(e1 - e2) <= 1e-9 * e1, "dct keeps the energy: %.15g vs %.15g", e1, e2);
  free(x); free(y); free(bl);
}

/* ---------------- the CPU runtime (f32, as in training) against the f64 reference ---------------- */

/* Gradients of the term with respect to x and y (both parameters) on a graph of dtype dt; f64 runs
 * the reference evaluator, f32 a real session (plan, arenas, CPU kernels). */
static int term_grads(mf_dtype dt, int kind, int k, dims d, const double *x, const double *y, double *gx, double *gy) {
  int64_t n = d.B * d.C * d.H * d.W, s[4] = {d.B, d.C, d.H, d.W}, ds[2] = {8, 8};
  mf_graph *g = mf_graph_init(dt);
  mf_tensor tx = mf_param(g, "x", 4, s, MF_INIT_ZERO, 0), ty = mf_param(g, "y", 4, s, MF_INIT_ZERO, 0);
  mf_tensor tD = kind == 1 ? mf_input(g, "D", 2, ds) : -1;
  mf_tensor loss = kind == 0 ? mf_steg_ssim_loss(g, tx, ty, k) : mf_steg_dct_loss(g, tx, ty, tD);
  double D[64];
  mf_steg_dct_matrix(D);
  int rc = -1;
  char err[512];
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); goto out; }
  if (dt == MF_F64) {
    if (mf_autodiff(g, loss) < 0) { CHECK(0, "autodiff: %s", mf_graph_error(g)); goto out; }
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[tx] = (void *)x; leaf[ty] = (void *)y;
    if (tD >= 0) leaf[tD] = D;
    mf_ref r;
    if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
      memcpy(gx, r.data[g->nodes[tx].grad], (size_t)n * sizeof *gx);
      memcpy(gy, r.data[g->nodes[ty].grad], (size_t)n * sizeof *gy);
      mf_ref_free(&r);
      rc = 0;
    } else CHECK(0, "eval: %s", err);
    free(leaf);
    goto out;
  }
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  mf_session *ss = mf_session_init(g, loss, &o, err, sizeof err);
  if (!ss) { CHECK(0, "session: %s", err); goto out; }
  float *f = malloc((size_t)n * sizeof *f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)x[i];
  mf_session_write_param(ss, tx, f, (size_t)n);
  for (int64_t i = 0; i < n; i++) f[i] = (float)y[i];
  mf_session_write_param(ss, ty, f, (size_t)n);
  if (tD >= 0) {
    float Df[64];
    for (int i = 0; i < 64; i++) Df[i] = (float)D[i];
    mf_session_write_input(ss, tD, Df, 64);
  }
  mf_session_micro_step(ss);
  if (mf_session_read_grad(ss, tx, f, (size_t)n) == 0) {
    for (int64_t i = 0; i < n; i++) gx[i] = f[i];
    if (mf_session_read_grad(ss, ty, f, (size_t)n) == 0) {
      for (int64_t i = 0; i < n; i++) gy[i] = f[i];
      rc = 0;
    }
  }
  CHECK(rc == 0, "reading the session's gradients");
  free(f);
  mf_session_free(ss);
out:
  mf_graph_free(g);
  return rc;
}

static void runtime(void) {
  gc_seed_fresh();
  dims d = {2, 3, 16, 16};
  int64_t n = d.B * d.C * d.H * d.W;
  double *v = malloc((size_t)6 * n * sizeof *v);
  double *x = v, *y = v + n, *gx = v + 2 * n, *gy = v + 3 * n, *fx = v + 4 * n, *fy = v + 5 * n, D[64];
  for (int kind = 0; kind < 2; kind++) {
    if (kind == 0) fill_images(x, y, n);
    else {
      for (int64_t i = 0; i < n; i++) x[i] = gc_uniform();
      fill_dct_away(x, y, D, d.B, d.C, d.H, d.W);
    }
    /* the f32 copies are what both sides see */
    for (int64_t i = 0; i < n; i++) { x[i] = (float)x[i]; y[i] = (float)y[i]; }
    if (term_grads(MF_F64, kind, 7, d, x, y, gx, gy) != 0 || term_grads(MF_F32, kind, 7, d, x, y, fx, fy) != 0) continue;
    double scale = 0, e = 0;
    for (int64_t i = 0; i < 2 * n; i++) scale = fmax(scale, fabs(gx[i]));
    for (int64_t i = 0; i < 2 * n; i++) e = fmax(e, fabs(gx[i] - fx[i]));
    CHECK(scale > 0 && e <= 1e-4 * scale, "%s term: f32 session gradients differ from the f64 reference by %.3g (largest %.3g)",
          kind ? "dct" : "ssim", e, scale);
    printf("  %s term: f32 session gradients within %.2g of the f64 reference (largest gradient %.3g)\n", kind ? "dct" : "ssim",
           e, scale);
  }
  free(v);
}

int main(void) {
  gradchecks();
  values();
  runtime();
  return check_finish("test_grad_steg_loss");
}

/* resize_check.h — the loop the resize value tests (test_grad_resize*.c) share: the op on random [N,C,H,W] inputs in
 * one dtype, run by mf_ref_eval, every output pixel against the test's own f64 reference within the test's own bound. */
#ifndef MF_RESIZE_CHECK_H
#define MF_RESIZE_CHECK_H

#include "gradcheck.h"
#include "graph/dtype.h"

/* A geometry: input [N,C,H,W] -> output [N,C,OH,OW]; scales sh, sw as the op takes them (0: out / in) */
typedef struct rv_case { int64_t N, C, H, W, OH, OW; double sh, sw; } rv_case;

/* The next value of the tests' LCG, uniform in [-1, 1) */
static inline double rv_uniform(uint64_t *seed) {
  *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*seed >> 11) / 9007199254740992.0 * 2 - 1;
}

/* What a reference sees of one output pixel */
typedef struct rv_pixel {
  const rv_case *t;
  double sh, sw;     /* the scales in effect: given, or out / in */
  const double *x;   /* the input as stored in dt, [N,C,H,W] */
  mf_dtype dt;
  int64_t p, oh, ow; /* plane (n * C + c), output row, output column */
} rv_pixel;

/* The f64 reference value of one output pixel; writes the bound its error must stay within (0: it must be exact) */
typedef double (*rv_ref_fn)(const rv_pixel *px, double *bound, void *ctx);

typedef struct rv_result {
  double worst;  /* the largest |got - ref| / bound (bound 0: 0 when equal, infinity otherwise; NaN counts as infinity) */
  int64_t over;  /* output pixels beyond their bound */
  int64_t total; /* output pixels */
} rv_result;

/* The pixel walker of geometry t in dt, before the first pixel */
static inline rv_pixel rv_pixel_of(const rv_case *t, mf_dtype dt) {
  double sh = t->sh > 0 ? t->sh : (double)t->OH / (double)t->H, sw = t->sw > 0 ? t->sw : (double)t->OW / (double)t->W;
  return (rv_pixel){t, sh, sw, NULL, dt, 0, 0, 0};
}

/* mf_ref_eval of g on leaf into *r: 0, or -1 after a failed CHECK naming `what` */
static inline int rv_eval(const char *what, const mf_graph *g, void **leaf, mf_ref *r) {
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, r, err, sizeof err) == 0) return 0;
  CHECK(0, "%s: eval: %s", what, err);
  return -1;
}

/* One pixel's error e in units of its bound into res (NaN counts as infinity) */
static inline void rv_note(rv_result *res, double e) {
  if (!(e <= 1)) res->over++;
  if (!(e <= res->worst)) res->worst = e == e ? e : INFINITY;
}

/* Builds `build` (a gradcheck builder; in[0] is x [N,C,H,W]) in dt on x uniform in [-1, 1) from `seed`, evaluates it
 * with mf_ref_eval and compares each output pixel with ref. 0 with *res filled; -1 after a failed CHECK naming `what`
 * (the build or the evaluation failed). */
static inline int rv_run(const char *what, const rv_case *t, mf_dtype dt, uint64_t seed, gc_build_fn build, void *bctx, rv_ref_fn ref,
                         void *rctx, rv_result *res) {
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){t->N, t->C, t->H, t->W});
  mf_tensor y = build(g, &x, bctx); /* [N,C,OH,OW] */
  if (mf_graph_error(g)) {
    CHECK(0, "%s: build: %s", what, mf_graph_error(g));
    mf_graph_free(g);
    return -1;
  }
  rv_pixel px = rv_pixel_of(t, dt);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  int64_t nx = t->N * t->C * t->H * t->W;
  leaf[x] = malloc(mf_node_bytes(&g->nodes[x]));
  double *xv = malloc((size_t)nx * sizeof *xv);
  for (int64_t j = 0; j < nx; j++) {
    mf_st(leaf[x], dt, j, rv_uniform(&seed));
    xv[j] = mf_ld(leaf[x], dt, j);
  }
  px.x = xv;
  mf_ref r;
  int rc = rv_eval(what, g, leaf, &r);
  if (rc == 0) {
    *res = (rv_result){0, 0, t->N * t->C * t->OH * t->OW};
    for (px.p = 0; px.p < t->N * t->C; px.p++)
      for (px.oh = 0; px.oh < t->OH; px.oh++)
        for (px.ow = 0; px.ow < t->OW; px.ow++) {
          double bound = 0, want = ref(&px, &bound, rctx);
          double got = mf_ld(r.data[y], dt, (px.p * t->OH + px.oh) * t->OW + px.ow);
          rv_note(res, bound > 0 ? fabs(got - want) / bound : got == want ? 0 : INFINITY);
        }
    mf_ref_free(&r);
  }
  free(xv);
  free(leaf[x]);
  free(leaf);
  mf_graph_free(g);
  return rc;
}

/* The input pixels output pixel px reads and their weights: writes at most 16 (flat [N,C,H,W] indices, repeats
 * allowed) and returns how many */
typedef int (*rv_taps_fn)(const rv_pixel *px, int64_t *idx, double *wgt, void *ctx);

/* Backward: with x a parameter [N,C,H,W] and loss = sum(y * R), R [N,C,OH,OW] uniform in [-1, 1) from `seed`, dx is R
 * scattered back through the op. Every dx pixel against the f64 sum of its k terms R * weight (taps), within
 * gamma_(k + extra) (unit roundoff u of dx's dtype; extra: the roundings that form one term) of the sum of the terms'
 * magnitudes, plus one rounding to that dtype. px.x is NULL for taps. 0 with *res, or -1 after a failed CHECK. */
static inline int rv_run_bwd(const char *what, const rv_case *t, mf_dtype dt, uint64_t seed, gc_build_fn build, void *bctx, rv_taps_fn taps,
                             void *tctx, double extra, rv_result *res) {
  mf_graph *g = mf_graph_init(dt);
  int64_t xs[4] = {t->N, t->C, t->H, t->W}, ys[4] = {t->N, t->C, t->OH, t->OW};
  mf_tensor x = mf_param(g, "x", 4, xs, MF_INIT_ZERO, 0); /* [N,C,H,W] */
  mf_tensor y = build(g, &x, bctx);                        /* [N,C,OH,OW] */
  mf_tensor R = mf_input(g, "R", 4, ys);                   /* [N,C,OH,OW] */
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  if (mf_graph_error(g) || mf_autodiff(g, loss) < 0 || g->nodes[x].grad < 0) {
    CHECK(0, "%s: build: %s", what, mf_graph_error(g) ? mf_graph_error(g) : "no gradient");
    mf_graph_free(g);
    return -1;
  }
  rv_pixel px = rv_pixel_of(t, dt);
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  int64_t ny = t->N * t->C * t->OH * t->OW, nx = t->N * t->C * t->H * t->W;
  leaf[x] = calloc((size_t)nx, mf_dtype_size(g->nodes[x].dtype));
  leaf[R] = malloc(mf_node_bytes(&g->nodes[R]));
  for (int64_t j = 0; j < ny; j++) mf_st(leaf[R], g->nodes[R].dtype, j, rv_uniform(&seed));
  double *ref = calloc((size_t)nx, sizeof *ref), *mag = calloc((size_t)nx, sizeof *mag);
  int64_t *cnt = calloc((size_t)nx, sizeof *cnt);
  for (px.p = 0; px.p < t->N * t->C; px.p++)
    for (px.oh = 0; px.oh < t->OH; px.oh++)
      for (px.ow = 0; px.ow < t->OW; px.ow++) {
        int64_t idx[16];
        double wgt[16], v = mf_ld(leaf[R], g->nodes[R].dtype, (px.p * t->OH + px.oh) * t->OW + px.ow);
        for (int k = taps(&px, idx, wgt, tctx) - 1; k >= 0; k--) {
          ref[idx[k]] += wgt[k] * v;
          mag[idx[k]] += fabs(wgt[k] * v);
          cnt[idx[k]]++;
        }
      }
  mf_ref r;
  int rc = rv_eval(what, g, leaf, &r);
  if (rc == 0) {
    const mf_node *gn = &g->nodes[g->nodes[x].grad];
    double u = gn->dtype == MF_F64 ? ldexp(1, -53) : ldexp(1, -24);
    *res = (rv_result){0, 0, nx};
    for (int64_t i = 0; i < nx; i++) {
      double k = (double)cnt[i] + extra, bound = k * u / (1 - k * u) * mag[i] + u * fabs(ref[i]) + 1e-300;
      rv_note(res, fabs(mf_ld(r.data[g->nodes[x].grad], gn->dtype, i) - ref[i]) / bound);
    }
    mf_ref_free(&r);
  }
  free(ref);
  free(mag);
  free(cnt);
  free(leaf[x]);
  free(leaf[R]);
  free(leaf);
  mf_graph_free(g);
  return rc;
}

#endif

/* test_grad_ssim.c — the fused SSIM map (mf_ssim_map): gradients against f64 finite differences, values against a
 * direct f64 loop and against the node-built map it replaces (avgpool + elementwise) within derived rounding bounds,
 * an f32 session's gradients against the f64 reference, thread counts, measured == planned, and bad input. */
#include "gradcheck.h"
#include "graph/graph.h"
#include <float.h>

typedef struct { int k, y_input; } ss_ctx; /* y_input: y is an input (no gradient), built here */

static mf_tensor build_map(mf_graph *g, const mf_tensor *in, void *c) {
  const ss_ctx *t = c;
  mf_tensor y = in[1];
  if (t->y_input) {
    int64_t s[4];
    for (int i = 0; i < 4; i++) s[i] = mf_tensor_dim(g, in[0], i);
    y = mf_input(g, "y", 4, s);
  }
  return mf_ssim_map(g, in[0], y, t->k);
}

/* the map as steg's graph built it before the fused op: five average pools and elementwise nodes */
static mf_tensor old_map(mf_graph *g, mf_tensor x, mf_tensor y, int k) {
  const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
  mf_tensor mx = mf_avgpool2d(g, x, k, 1, 0), my = mf_avgpool2d(g, y, k, 1, 0);
  mf_tensor mxx = mf_avgpool2d(g, mf_mul(g, x, x), k, 1, 0), myy = mf_avgpool2d(g, mf_mul(g, y, y), k, 1, 0);
  mf_tensor mxy = mf_avgpool2d(g, mf_mul(g, x, y), k, 1, 0);
  mf_tensor mx2 = mf_mul(g, mx, mx), my2 = mf_mul(g, my, my), mxmy = mf_mul(g, mx, my);
  mf_tensor vx = mf_sub(g, mxx, mx2), vy = mf_sub(g, myy, my2), cxy = mf_sub(g, mxy, mxmy);
  mf_tensor num = mf_mul(g, mf_add_scalar(g, mf_mul_scalar(g, mxmy, 2), C1), mf_add_scalar(g, mf_mul_scalar(g, cxy, 2), C2));
  mf_tensor den = mf_mul(g, mf_add_scalar(g, mf_add(g, mx2, my2), C1), mf_add_scalar(g, mf_add(g, vx, vy), C2));
  return mf_div(g, num, den);
}

typedef struct { int64_t B, C, H, W; } dims;

/* image-like values: x uniform in [0.05, 0.95], y = x + N(0, 0.1^2); flat: every window of x nearly constant */
static void fill_images(double *x, double *y, int64_t n, int flat) {
  double base = 0.05 + 0.9 * gc_uniform();
  for (int64_t i = 0; i < n; i++) {
    x[i] = flat ? base + 1e-3 * gc_uniform() : 0.05 + 0.9 * gc_uniform();
    y[i] = x[i] + (flat ? 1e-3 : 0.1) * gc_normal();
  }
}
static void fill_leaves(const mf_graph *g, const mf_tensor *in, void **leaf, void *c) {
  const dims *d = c;
  int64_t n = d->B * d->C * d->H * d->W;
  double *y = NULL;
  for (int id = 0; id < g->n && !y; id++)
    if (g->nodes[id].op == MF_OP_INPUT && !strcmp(g->nodes[id].name, "y")) y = leaf[id];
  if (!y) y = leaf[in[1]];
  fill_images(leaf[in[0]], y, n, 0);
}

static double gam(double u, double m) { return m * u / (1 - m * u); }

/* The rounding bound of one map entry: (mx, my, exx, eyy, exy) the window's means (from exact-ish f64 sums), e[5]
 * bounds on the absolute errors of the means a kernel used, u the unit roundoff of the formula's arithmetic. First
 * order in e (the caller checks e / B2 < 1e-2, so the second-order terms stay below 1% of the first): the partial
 * derivatives of S = a1 a2 / (b1 b2) times e, plus the formula's own rounding (a2 and b2 cancel: each bounded by
 * gamma times the magnitudes that go into it). */
static double map_bound(const double m[5], const double e[5], double u) {
  const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
  double mx = m[0], my = m[1], a1 = 2 * mx * my + C1, a2 = 2 * (m[4] - mx * my) + C2;
  double b1 = mx * mx + my * my + C1, b2 = (m[2] - mx * mx) + (m[3] - my * my) + C2, den = b1 * b2, s = a1 * a2 / den;
  double dmx = 2 * (my * (a2 - a1) - s * mx * (b2 - b1)) / den, dmy = 2 * (mx * (a2 - a1) - s * my * (b2 - b1)) / den;
  double first = fabs(dmx) * e[0] + fabs(dmy) * e[1] + fabs(s / b2) * (e[2] + e[3]) + fabs(2 * a1 / den) * e[4];
  double da1 = gam(u, 3) * (2 * fabs(mx * my) + C1), da2 = gam(u, 4) * (2 * fabs(m[4]) + 2 * fabs(mx * my) + C2);
  double db1 = gam(u, 3) * (mx * mx + my * my + C1), db2 = gam(u, 5) * (fabs(m[2]) + mx * mx + fabs(m[3]) + my * my + C2);
  double form = (fabs(a2) * da1 + fabs(a1) * da2) / den + fabs(s) * (db1 / b1 + db2 / b2 + gam(u, 3));
  return 2 * (first + form); /* 2: the reference's own rounding, and the second order */
}

/* window (p, i, j)'s means and the sums of |terms| (for the error bounds) by direct loops in double */
static void window_ref(const double *x, const double *y, int64_t H, int64_t W, int64_t p, int64_t i, int64_t j, int k, double m[5],
                       double a[5]) {
  for (int s = 0; s < 5; s++) m[s] = a[s] = 0;
  for (int u = 0; u < k; u++)
    for (int v = 0; v < k; v++) {
      double a_ = x[(p * H + i + u) * W + j + v], b_ = y[(p * H + i + u) * W + j + v];
      double t[5] = {a_, b_, a_ * a_, b_ * b_, a_ * b_};
      for (int s = 0; s < 5; s++) m[s] += t[s], a[s] += fabs(t[s]);
    }
  for (int s = 0; s < 5; s++) m[s] /= (double)k * k, a[s] /= (double)k * k;
}

/* Evaluates map(s) on a graph of dtype dt with the reference evaluator: which 0 the fused op, 1 the node-built one */
static int eval_map(mf_dtype dt, int which, dims d, int k, const double *x, const double *y, double *out) {
  mf_graph *g = mf_graph_init(dt);
  int64_t s[4] = {d.B, d.C, d.H, d.W}, n = d.B * d.C * d.H * d.W;
  mf_tensor tx = mf_input(g, "x", 4, s), ty = mf_input(g, "y", 4, s);
  mf_tensor m = which ? old_map(g, tx, ty, k) : mf_ssim_map(g, tx, ty, k);
  int rc = -1;
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return -1; }
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  size_t es = mf_dtype_size(dt);
  char *bx = malloc((size_t)n * es), *by = malloc((size_t)n * es);
  for (int64_t i = 0; i < n; i++) {
    if (dt == MF_F64) ((double *)bx)[i] = x[i], ((double *)by)[i] = y[i];
    else ((float *)bx)[i] = (float)x[i], ((float *)by)[i] = (float)y[i];
  }
  leaf[tx] = bx;
  leaf[ty] = by;
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    int64_t nm = mf_tensor_numel(g, m);
    for (int64_t i = 0; i < nm; i++) out[i] = dt == MF_F64 ? ((double *)r.data[m])[i] : ((float *)r.data[m])[i];
    mf_ref_free(&r);
    rc = 0;
  } else CHECK(0, "eval: %s", err);
  free(bx); free(by); free(leaf);
  mf_graph_free(g);
  return rc;
}

/* Forward: the fused op (f64 and f32) against direct loops, and against the node-built map (f64 and f32), each
 * entry within map_bound of the errors each side can make. */
static void values(dims d, int k, int flat) {
  gc_seed_fresh();
  int64_t n = d.B * d.C * d.H * d.W, OH = d.H - k + 1, OW = d.W - k + 1, nm = d.B * d.C * OH * OW;
  double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
  double *f64 = malloc((size_t)nm * sizeof *f64), *f32 = malloc((size_t)nm * 8), *o64 = malloc((size_t)nm * 8), *o32 = malloc((size_t)nm * 8);
  fill_images(x, y, n, flat);
  for (int64_t i = 0; i < n; i++) x[i] = (float)x[i], y[i] = (float)y[i]; /* the f32 graphs see the same values */
  if (eval_map(MF_F64, 0, d, k, x, y, f64) || eval_map(MF_F32, 0, d, k, x, y, f32) || eval_map(MF_F64, 1, d, k, x, y, o64) ||
      eval_map(MF_F32, 1, d, k, x, y, o32))
    goto out;
  const double u64 = DBL_EPSILON / 2, u32 = FLT_EPSILON / 2;
  double vmax = 0;
  for (int64_t i = 0; i < n; i++) vmax = fmax(vmax, fmax(fabs(x[i]), fabs(y[i])));
  int64_t bad[4] = {0, 0, 0, 0};
  double worst[4] = {0, 0, 0, 0}, small = 0; /* worst error / bound per comparison; largest e / b2 */
  for (int64_t p = 0; p < d.B * d.C; p++)
    for (int64_t i = 0; i < OH; i++)
      for (int64_t j = 0; j < OW; j++) {
        double m[5], a[5], ef[5], e64[5], e32[5];
        window_ref(x, y, d.H, d.W, p, i, j, k, m, a);
        /* the fused kernel, in double: column sums of k rows sliding down at most H rows (2 adds a row: error
         * gamma_(k+2H) (k+2H) M each), then k of them sliding along at most W columns (the same stored column sums go
         * in and out, so only the window's k errors stay; the running sum adds gamma_(k+2W) (k+2W) (k+1) k M), then
         * times 1/k^2. The node-built pools: k^2 adds (f64) or k + k adds and the f32 products and 1/k^2 (f32). */
        for (int s = 0; s < 5; s++) {
          double M = s < 2 ? vmax : vmax * vmax; /* every |term| of sum s */
          ef[s] = gam(u64, 2.0 * d.H + 2.0 * d.W + 2.0 * k + 2) * ((2.0 * d.H + k) + (2.0 * d.W + k) * (k + 1)) * M / k;
          e64[s] = gam(u64, (double)k * k + 2) * a[s];
          e32[s] = gam(u32, 2.0 * k + 3) * a[s];
        }
        double b2 = (m[2] - m[0] * m[0]) + (m[3] - m[1] * m[1]) + 0.03 * 0.03;
        for (int s = 0; s < 5; s++) small = fmax(small, fmax(ef[s], e32[s]) / b2);
        double bf = map_bound(m, ef, u64), b64 = map_bound(m, e64, u64), b32 = map_bound(m, e32, u32);
        double want = ((2 * m[0] * m[1] + 1e-4) * (2 * (m[4] - m[0] * m[1]) + 9e-4)) /
                      ((m[0] * m[0] + m[1] * m[1] + 1e-4) * (b2));
        int64_t o = (p * OH + i) * OW + j;
        double err[4] = {fabs(f64[o] - want), fabs(f32[o] - want), fabs(f64[o] - o64[o]), fabs(f32[o] - o32[o])};
        double bnd[4] = {bf, bf + u32 * fabs(want) * 1.01, bf + b64, bf + u32 * fabs(want) * 1.01 + b32};
        for (int c = 0; c < 4; c++) {
          if (!(err[c] <= bnd[c])) {
            if (bad[c] < 3)
              fprintf(stderr, "  map (%lld,%lld,%lld) check %d: error %.3g above its bound %.3g (S %.9g)\n", (long long)p, (long long)i,
                      (long long)j, c, err[c], bnd[c], want);
            bad[c]++;
          }
          worst[c] = fmax(worst[c], err[c] / bnd[c]);
        }
      }
  const char *what[4] = {"f64 fused vs direct loops", "f32 fused vs direct loops", "f64 fused vs node-built", "f32 fused vs node-built"};
  for (int c = 0; c < 4; c++)
    CHECK(bad[c] == 0, "[%lld,%lld,%lld,%lld] k%d%s %s: %lld entries above the derived bound", (long long)d.B, (long long)d.C,
          (long long)d.H, (long long)d.W, k, flat ? " flat" : "", what[c], (long long)bad[c]);
  CHECK(small < 1e-2, "the bounds are first order only: error / b2 reached %.3g", small);
  printf("  values [%lld,%lld,%lld,%lld] k%d%s: worst error / bound: %.3g (f64 direct), %.3g (f32 direct), %.3g (f64 old), %.3g (f32 old)\n",
         (long long)d.B, (long long)d.C, (long long)d.H, (long long)d.W, k, flat ? " flat" : "", worst[0], worst[1], worst[2], worst[3]);
out:
  free(x); free(y); free(f64); free(f32); free(o64); free(o32);
}

static void gradchecks(void) {
  struct { dims d; int k, y_input; const char *name; } cs[] = {
    {{1, 1, 7, 7}, 7, 0, "ssim k7, H = W = k (one window)"},
    {{2, 3, 9, 8}, 3, 0, "ssim k3, B 2, C 3, odd sizes"},
    {{1, 2, 13, 7}, 7, 1, "ssim k7, W = k, y an input"},
    {{2, 1, 11, 10}, 1, 0, "ssim k1"},
    {{1, 1, 71, 263}, 7, 0, "ssim k7, several row blocks and column chunks"},
    {{1, 2, 40, 70}, 32, 0, "ssim k32 (the largest window)"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    ss_ctx t = {cs[i].k, cs[i].y_input};
    dims d = cs[i].d;
    gc_input in[2] = {{4, {d.B, d.C, d.H, d.W}, GC_NORMAL}, {4, {d.B, d.C, d.H, d.W}, GC_NORMAL}};
    gc_check_fill(cs[i].name, t.y_input ? 1 : 2, in, build_map, &t, 0, 1e-5, fill_leaves, &d);
  }
  /* random normal inputs (negative means: the C1 term alone keeps the ratio finite) */
  ss_ctx t = {3, 0};
  gc_input in[2] = {{4, {2, 2, 6, 9}, GC_POSITIVE}, {4, {2, 2, 6, 9}, GC_NORMAL}};
  gc_check("ssim k3, one input normal, one positive", 2, in, build_map, &t, 0, 1e-5);
}

/* Gradients of sum(map * R) for x and y on a graph of dtype dt: f64 the reference evaluator, f32 a session with
 * `threads` threads whose arenas are checked measured == planned. Returns 0 on success. */
static int grads(mf_dtype dt, int threads, dims d, int k, const double *x, const double *y, const double *R, double *gx, double *gy) {
  int64_t n = d.B * d.C * d.H * d.W, s[4] = {d.B, d.C, d.H, d.W}, sm[4] = {d.B, d.C, d.H - k + 1, d.W - k + 1}, nm = sm[0] * sm[1] * sm[2] * sm[3];
  mf_graph *g = mf_graph_init(dt);
  mf_tensor tx = mf_param(g, "x", 4, s, MF_INIT_ZERO, 0), ty = mf_param(g, "y", 4, s, MF_INIT_ZERO, 0);
  mf_tensor tr = mf_input(g, "R", 4, sm);
  mf_tensor loss = mf_sum(g, mf_mul(g, mf_ssim_map(g, tx, ty, k), tr), 0, 0);
  int rc = -1;
  char err[512];
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); goto out; }
  if (dt == MF_F64) {
    if (mf_autodiff(g, loss) < 0) { CHECK(0, "autodiff: %s", mf_graph_error(g)); goto out; }
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[tx] = (void *)x; leaf[ty] = (void *)y; leaf[tr] = (void *)R;
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
  o.threads = threads;
  o.debug_memory = 1;
  mf_session *ss = mf_session_init(g, loss, &o, err, sizeof err);
  if (!ss) { CHECK(0, "session: %s", err); goto out; }
  float *f = malloc((size_t)(n > nm ? n : nm) * sizeof *f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)x[i];
  mf_session_write_param(ss, tx, f, (size_t)n);
  for (int64_t i = 0; i < n; i++) f[i] = (float)y[i];
  mf_session_write_param(ss, ty, f, (size_t)n);
  for (int64_t i = 0; i < nm; i++) f[i] = (float)R[i];
  mf_session_write_input(ss, tr, f, (size_t)nm);
  mf_session_micro_step(ss);
  if (mf_session_read_grad(ss, tx, f, (size_t)n) == 0) {
    for (int64_t i = 0; i < n; i++) gx[i] = f[i];
    if (mf_session_read_grad(ss, ty, f, (size_t)n) == 0) {
      for (int64_t i = 0; i < n; i++) gy[i] = f[i];
      rc = 0;
    }
  }
  CHECK(rc == 0, "reading the session's gradients");
  const mf_plan *p = mf_session_plan(ss);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(ss, (mf_arena_kind)a);
    CHECK(planned == measured, "ssim session, %d threads: arena %s planned %zu measured %zu", threads, mf_arena_name((mf_arena_kind)a),
          planned, measured);
  }
  free(f);
  mf_session_free(ss);
out:
  mf_graph_free(g);
  return rc;
}

/* An f32 session's gradients (1 and 3 threads: the same bits) against the f64 reference. Both run the kernel's
 * formulas in double on the same values (x, y and R are f32 values; the map's gradient is R, exact in f32), so the
 * session's gradient is the reference's rounded to f32 once: |error| <= u32 |g| (checked against 2 u32 |g|), plus
 * the double rounding where the two differ (the f32 path moves its column sums down a row in one pass, the f64 path
 * in two: about 1e-16 of the coefficient sums; allowed 1e-9 of the largest gradient). */
static void runtime(void) {
  gc_seed_fresh();
  dims d = {2, 3, 70, 300};
  int k = 7;
  int64_t n = d.B * d.C * d.H * d.W, nm = d.B * d.C * (d.H - k + 1) * (d.W - k + 1);
  double *v = malloc((size_t)8 * n * sizeof *v), *R = malloc((size_t)nm * sizeof *R);
  double *x = v, *y = v + n, *gx = v + 2 * n, *gy = v + 3 * n, *fx = v + 4 * n, *fy = v + 5 * n, *tx = v + 6 * n, *ty = v + 7 * n;
  fill_images(x, y, n, 0);
  for (int64_t i = 0; i < n; i++) x[i] = (float)x[i], y[i] = (float)y[i];
  for (int64_t i = 0; i < nm; i++) R[i] = (float)gc_normal();
  if (grads(MF_F64, 1, d, k, x, y, R, gx, gy) == 0 && grads(MF_F32, 1, d, k, x, y, R, fx, fy) == 0 &&
      grads(MF_F32, 3, d, k, x, y, R, tx, ty) == 0) {
    double scale = 0, e = 0;
    int64_t same = 0, over = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fmax(fabs(gx[i]), fabs(gy[i])));
    for (int64_t i = 0; i < n; i++) {
      double ex = fabs(gx[i] - fx[i]), ey = fabs(gy[i] - fy[i]);
      e = fmax(e, fmax(ex, ey));
      over += ex > FLT_EPSILON * fabs(gx[i]) + 1e-9 * scale || ey > FLT_EPSILON * fabs(gy[i]) + 1e-9 * scale;
    }
    for (int64_t i = 0; i < n; i++) same += fx[i] == tx[i] && fy[i] == ty[i];
    CHECK(scale > 0 && over == 0, "f32 session gradients: %lld entries differ from the f64 reference by more than their f32 rounding "
          "(largest difference %.3g, largest gradient %.3g)", (long long)over, e, scale);
    CHECK(same == n, "1 and 3 threads: %lld of %lld gradient entries differ", (long long)(n - same), (long long)n);
    printf("  f32 session [2,3,70,300] k7: gradients within %.2g of the f64 reference (largest %.3g, %.2g of it); 1 and 3 threads "
           "bit for bit\n", e, scale, e / scale);
  }
  free(v);
  free(R);
}

static void bad_input(void) {
  struct { int64_t sx[4], sy[4]; int k; mf_dtype ydt; const char *word; } cs[] = {
    {{1, 1, 8, 8}, {1, 1, 8, 8}, 9, MF_F32, "k = 9"},
    {{1, 1, 8, 8}, {1, 1, 8, 8}, 0, MF_F32, "k = 0"},
    {{1, 1, 40, 40}, {1, 1, 40, 40}, 33, MF_F32, "k = 33"},
    {{1, 1, 8, 8}, {1, 2, 8, 8}, 3, MF_F32, "[1,2,8,8]"},
    {{1, 1, 8, 8}, {1, 1, 8, 8}, 3, MF_I32, "i32"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor x = mf_input(g, "x", 4, cs[i].sx);
    mf_tensor y = cs[i].ydt == MF_I32 ? mf_input_typed(g, "y", MF_I32, 4, cs[i].sy) : mf_input(g, "y", 4, cs[i].sy);
    mf_tensor m = mf_ssim_map(g, x, y, cs[i].k);
    const char *e = mf_graph_error(g);
    CHECK(m < 0 && e && strstr(e, "ssim_map") && strstr(e, cs[i].word), "bad input %zu refused naming '%s': %s", i, cs[i].word, e ? e : "(none)");
    mf_graph_free(g);
  }
}

int main(void) {
  gradchecks();
  values((dims){2, 3, 19, 23}, 7, 0);
  values((dims){1, 2, 7, 12}, 7, 0);
  values((dims){3, 1, 70, 290}, 7, 0);
  values((dims){1, 3, 16, 9}, 3, 1);
  runtime();
  bad_input();
  return check_finish("test_grad_ssim");
}

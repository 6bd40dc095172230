/* test_grad_pool.c — average/max pooling, global average pooling and nearest upsampling:
 * finite-difference gradient checks in f64, forward/backward values against hand-computed
 * PyTorch semantics (count_include_pad=True, first maximum wins), f32 vs bf16, shape errors; pools of any geometry
 * (unequal kernels and strides, dilation, asymmetric pads, count_include_pad 0 and 1, ceil_mode) against an f64
 * evaluation of the definition; the dense f32 average pool (the SSIM terms' path) against f64 with a derived bound. */
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

/* ---- any geometry: unequal kernels and strides, dilation, asymmetric pads, count_include_pad both ways, ceil ---- */
typedef struct { int kind; mf_pool_cfg c; } geo_ctx;
static mf_tensor build_geo(mf_graph *g, const mf_tensor *in, void *c) {
  geo_ctx *o = c;
  return mf_pool2d_cfg(g, o->kind ? MF_POOL_MAX : MF_POOL_AVG, in[0], &o->c);
}
static const geo_ctx geos[] = {
  {0, {3, 2, 2, 1, 1, 1, 1, 0, 0, 1, 0, 0}},  /* avg 3x2, strides 2,1, pads t1 r1, padding counted */
  {0, {3, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 0}},  /* the same, padding not counted */
  {0, {3, 3, 2, 3, 1, 1, 0, 1, 2, 0, 1, 1}},  /* strides 2,3, pads l1 b2, ceil, not counted */
  {0, {2, 3, 1, 2, 2, 1, 1, 2, 1, 0, 0, 0}},  /* dilation 2 in H */
  {1, {3, 2, 1, 2, 2, 1, 2, 0, 1, 1, 0, 0}},  /* max, dilation 2 in H, pads t2 b1 r1 */
  {1, {2, 3, 2, 1, 1, 2, 0, 2, 1, 0, 0, 1}},  /* max, dilation 2 in W, ceil */
  {1, {3, 3, 3, 2, 2, 2, 1, 1, 0, 2, 0, 1}},  /* max, dilation 2, strides 3,2, ceil */
};

/* f64 reference from the definition: tap t of output o along an axis reads o*s - p0 + t*d */
static void ref_pool(const geo_ctx *o, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, const double *x, const double *dy,
                     double *y, double *dx, double *ybound, double *dxbound) {
  const mf_pool_cfg *c = &o->c;
  for (int64_t i = 0; i < P * H * W; i++) dx[i] = 0, dxbound[i] = 0;
  for (int64_t p = 0; p < P; p++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        double acc = 0, mag = 0, best = -INFINITY, cnt = 0;
        int64_t bi = -1;
        for (int a = 0; a < c->kh; a++)
          for (int b = 0; b < c->kw; b++) {
            int64_t h = oh * c->sh - c->pt + (int64_t)a * c->dh, w = ow * c->sw - c->pl + (int64_t)b * c->dw;
            bool in = h >= 0 && h < H && w >= 0 && w < W;
            bool inpad = h >= -c->pt && h < H + c->pb && w >= -c->pl && w < W + c->pr;
            if (c->exclude_pad ? in : inpad) cnt++;
            if (!in) continue;
            double v = x[(p * H + h) * W + w];
            acc += v, mag += fabs(v);
            if (v > best) best = v, bi = (p * H + h) * W + w;
          }
        int64_t yi = (p * OH + oh) * OW + ow;
        y[yi] = o->kind ? best : acc / cnt;
        ybound[yi] = o->kind ? 0 : (c->kh * c->kw + 2) * 0x1p-52 * mag / cnt;
        for (int a = 0; a < c->kh && !o->kind; a++)
          for (int b = 0; b < c->kw; b++) {
            int64_t h = oh * c->sh - c->pt + (int64_t)a * c->dh, w = ow * c->sw - c->pl + (int64_t)b * c->dw;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            dx[(p * H + h) * W + w] += dy[yi] / cnt;
            dxbound[(p * H + h) * W + w] += (c->kh * c->kw + 4) * 0x1p-52 * fabs(dy[yi] / cnt); /* gamma_n over <= kh kw windows */
          }
        if (o->kind && bi >= 0) dx[bi] += dy[yi], dxbound[bi] += (c->kh * c->kw + 4) * 0x1p-52 * fabs(dy[yi]);
      }
}

static void geometry(void) {
  for (size_t i = 0; i < sizeof geos / sizeof *geos; i++) {
    geo_ctx c = geos[i];
    char nm[160];
    snprintf(nm, sizeof nm, "%s k%dx%d s%d,%d d%d,%d pads %d,%d,%d,%d%s%s", c.kind ? "maxpool" : "avgpool", c.c.kh, c.c.kw, c.c.sh,
             c.c.sw, c.c.dh, c.c.dw, c.c.pt, c.c.pl, c.c.pb, c.c.pr, c.c.exclude_pad ? " exclude_pad" : "", c.c.ceil ? " ceil" : "");
    gc_input in = {4, {2, 2, 8, 7}, GC_NORMAL};
    gc_check(nm, 1, &in, build_geo, &c, 0, 1e-6);
    /* values and gradients in f64 against the definition */
    mf_graph *g = mf_graph_init(MF_F64);
    int64_t N = 2, C = 2, H = 8, W = 7;
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){N, C, H, W});
    mf_tensor y = build_geo(g, &x, &c);
    if (y < 0) { CHECK(0, "%s: %s", nm, mf_graph_error(g)); mf_graph_free(g); continue; }
    int64_t OH = mf_tensor_dim(g, y, 2), OW = mf_tensor_dim(g, y, 3);
    mf_tensor dy = mf_input(g, "dy", 4, (int64_t[]){N, C, OH, OW});
    mf_node pool = g->nodes[y];
    mf_tensor d = mf_pool_bwd(g, x, dy, &pool);
    int64_t nx = N * C * H * W, ny = N * C * OH * OW;
    double *xv = malloc((size_t)nx * sizeof *xv), *dyv = malloc((size_t)ny * sizeof *dyv), *yr = malloc((size_t)ny * sizeof *yr),
           *yb = malloc((size_t)ny * sizeof *yb), *dxr = malloc((size_t)nx * sizeof *dxr), *dxb = malloc((size_t)nx * sizeof *dxb);
    for (int64_t k = 0; k < nx; k++) xv[k] = gc_normal();
    for (int64_t k = 0; k < ny; k++) dyv[k] = gc_normal();
    ref_pool(&c, N * C, H, W, OH, OW, xv, dyv, yr, dxr, yb, dxb);
    /* the output size: ONNX's floor((H + pads - dilated k) / s) + 1, or ceil with the last window starting in the image */
    int64_t eh = (int64_t)c.c.dh * (c.c.kh - 1) + 1, sp = H + c.c.pt + c.c.pb - eh;
    int64_t want_oh = (c.c.ceil ? (sp + c.c.sh - 1) / c.c.sh : sp / c.c.sh) + 1;
    if (c.c.ceil && (want_oh - 1) * c.c.sh >= H + c.c.pt) want_oh--;
    CHECK(OH == want_oh, "%s: output height %lld, want %lld", nm, (long long)OH, (long long)want_oh);
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[x] = xv, leaf[dy] = dyv;
    mf_ref r;
    char err[256];
    if (d < 0 || mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "%s: %s", nm, d < 0 ? mf_graph_error(g) : err);
    else {
      int bad = 0;
      const double *yv = r.data[y], *dv = r.data[d];
      for (int64_t k = 0; k < ny; k++) bad += !(fabs(yv[k] - yr[k]) <= yb[k]);
      for (int64_t k = 0; k < nx; k++) bad += !(fabs(dv[k] - dxr[k]) <= dxb[k]);
      CHECK(bad == 0, "%s: %d values or gradients differ from the definition", nm, bad);
      mf_ref_free(&r);
    }
    free(leaf), free(xv), free(dyv), free(yr), free(yb), free(dxr), free(dxb);
    mf_graph_free(g);
  }
  /* bad geometry names the setting */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, 1, 6, 6});
  mf_pool_cfg bad = {3, 3, 1, 1, 1, 1, 3, 0, 0, 0, 0, 0};
  CHECK(mf_pool2d_cfg(g, MF_POOL_MAX, x, &bad) < 0 && strstr(mf_graph_error(g), "pads top 3"), "error was: %s", mf_graph_error(g));
  mf_graph_free(g);
}

/* The dense average pool in f32 (strides 1, no padding: the CPU's row-sum path, columns in chunks of 512) against
 * an f64 evaluation: each output and each dx within gamma_(kh+kw+4) (u = 2^-24) of the sums of magnitudes. Rows
 * wider than a chunk and kh != kw. */
static void dense_f32(void) {
  const int geo[][4] = {{7, 7, 11, 1100}, {5, 3, 9, 600}, {1, 4, 3, 520}, {3, 3, 3, 3}}; /* kh, kw, H, W */
  for (size_t c = 0; c < sizeof geo / sizeof *geo; c++) {
    int kh = geo[c][0], kw = geo[c][1];
    int64_t P = 3, H = geo[c][2], W = geo[c][3], OH = H - kh + 1, OW = W - kw + 1;
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){1, P, H, W});
    mf_pool_cfg pc = {kh, kw, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    mf_tensor y = mf_pool2d_cfg(g, MF_POOL_AVG, x, &pc);
    mf_tensor dy = mf_input(g, "dy", 4, (int64_t[]){1, P, OH, OW});
    mf_node pool = g->nodes[y];
    mf_tensor d = mf_pool_bwd(g, x, dy, &pool);
    float *xv = malloc((size_t)(P * H * W) * sizeof *xv), *dyv = malloc((size_t)(P * OH * OW) * sizeof *dyv);
    for (int64_t i = 0; i < P * H * W; i++) xv[i] = (float)gc_normal();
    for (int64_t i = 0; i < P * OH * OW; i++) dyv[i] = (float)gc_normal();
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[x] = xv, leaf[dy] = dyv;
    mf_ref r;
    char err[256];
    if (y < 0 || d < 0 || mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) {
      CHECK(0, "dense pool %dx%d: %s", kh, kw, y < 0 || d < 0 ? mf_graph_error(g) : err);
    } else {
      const float *yo = r.data[y], *dxo = r.data[d];
      double u = 0x1p-24, cnt = (double)kh * kw, worst = 0;
      int64_t bad = 0;
      for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < OH; i++)
          for (int64_t j = 0; j < OW; j++) {
            double acc = 0, mag = 0;
            for (int a = 0; a < kh; a++)
              for (int b = 0; b < kw; b++) {
                double v = xv[(p * H + i + a) * W + j + b];
                acc += v, mag += fabs(v);
              }
            double e = fabs(yo[(p * OH + i) * OW + j] - acc / cnt), bound = (kh + kw + 4) * u * mag / cnt;
            worst = fmax(worst, e / bound);
            bad += e > bound;
          }
      for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < H; i++)
          for (int64_t j = 0; j < W; j++) {
            double acc = 0, mag = 0;
            for (int64_t oh = i - kh + 1; oh <= i; oh++)
              for (int64_t ow = j - kw + 1; ow <= j; ow++) {
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                double v = dyv[(p * OH + oh) * OW + ow];
                acc += v, mag += fabs(v);
              }
            double e = fabs(dxo[(p * H + i) * W + j] - acc / cnt), bound = (kh + kw + 4) * u * mag / cnt;
            worst = fmax(worst, bound > 0 ? e / bound : e > 0 ? INFINITY : 0);
            bad += e > bound;
          }
      CHECK(bad == 0, "dense avgpool f32 %dx%d on %lldx%lld: %lld values outside the bound (worst %.3g of it)", kh, kw, (long long)H,
            (long long)W, (long long)bad, worst);
      printf("dense avgpool f32 %dx%d on [1,%lld,%lld,%lld]: largest error %.3g of the bound\n", kh, kw, (long long)P, (long long)H,
             (long long)W, worst);
      mf_ref_free(&r);
    }
    free(xv);
    free(dyv);
    free(leaf);
    mf_graph_free(g);
  }
}

int main(void) {
  gradchecks();
  geometry();
  values();
  dtypes_agree();
  dense_f32();
  shape_errors();
  return check_finish("test_grad_pool");
}

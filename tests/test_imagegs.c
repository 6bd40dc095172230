/* test_imagegs.c — Image-GS's step over image tiles: every window pixel drawn exactly as in the whole image, the
 * tiles' accumulated loss and gradients equal the whole image's within a rounding bound derived from the per-pixel
 * contributions, both backward modes, measured == planned, and bad settings and window origins refused clearly. */
#include "check.h"
#include "models/imagegs.h"
#include "base/rng.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { W = 34, H = 33, C = 3, N = 24 };

typedef struct params { float pos[N * 2], isc[N * 2], rot[N], feat[N * C]; } params;

static void params_init(params *p, uint64_t seed) {
  rng_t r;
  rng_init(&r, seed);
  for (int g = 0; g < N; g++) {
    p->pos[2 * g] = (float)(0.02 + 0.96 * rng_uniform(&r));
    p->pos[2 * g + 1] = (float)(0.02 + 0.96 * rng_uniform(&r));
    p->isc[2 * g] = (float)(1.0 / (2.0 + 6.0 * rng_uniform(&r))); /* standard deviations of 2 .. 8 px */
    p->isc[2 * g + 1] = (float)(1.0 / (2.0 + 6.0 * rng_uniform(&r)));
    p->rot[g] = (float)(3.0 * rng_uniform(&r));
    for (int c = 0; c < C; c++) p->feat[g * C + c] = (float)rng_uniform(&r);
  }
}

typedef struct run {
  mf_graph *g;
  igs_net net;
  mf_session *s;
  int tiles;
} run;

static igs_cfg test_cfg(int tile) {
  igs_cfg c = igs_cfg_default();
  c.width = W;
  c.height = H;
  c.channels = C;
  c.gaussians = N;
  c.initial = N - 4; /* four inactive: they must stay out of every tile */
  c.top_k = 5;
  c.max_radius = 24;
  c.tile_side = tile;
  return c;
}

static int run_init(run *r, mf_dtype dt, int tile, int keep, const params *p, int debug) {
  memset(r, 0, sizeof *r);
  igs_cfg c = test_cfg(tile);
  char err[512];
  r->g = mf_graph_init(dt);
  if (igs_build(r->g, &c, keep, &r->net, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return -1; }
  r->tiles = r->net.tl.nx * r->net.tl.ny;
  mf_train_opts o = mf_train_opts_default();
  o.plan.optim = MF_SGD;
  o.lr = 0; /* updates only zero the gradients */
  o.weight_decay = 0;
  o.threads = 1;
  o.debug_memory = debug;
  o.accum_steps = r->tiles;
  o.n_groups = 4;
  for (int k = 1; k < 4; k++) o.groups[k].lr = 0, o.groups[k].weight_decay = 0;
  o.plan.n_keep = 1;
  o.plan.keep = &r->net.render;
  r->s = mf_session_init(r->g, r->net.loss, &o, err, sizeof err);
  if (!r->s) { fprintf(stderr, "%s\n", err); return -1; }
  mf_session_write_param(r->s, r->net.pos, p->pos, N * 2);
  mf_session_write_param(r->s, r->net.inv_scale, p->isc, N * 2);
  mf_session_write_param(r->s, r->net.rot, p->rot, N);
  mf_session_write_param(r->s, r->net.feat, p->feat, N * C);
  return 0;
}

static void run_free(run *r) {
  mf_session_free(r->s);
  mf_graph_free(r->g);
}

typedef struct bufs { float origin[2], *target, *wpix, *wmap; } bufs;

static void bufs_init(bufs *b, const igs_net *n) {
  const igs_tiling *t = &n->tl;
  b->target = calloc((size_t)C * t->wh * t->ww, sizeof(float));
  b->wpix = calloc((size_t)t->wh * t->ww, sizeof(float));
  b->wmap = calloc((size_t)(t->wh - IGS_SSIM_K + 1) * (t->ww - IGS_SSIM_K + 1), sizeof(float));
}
static void bufs_free(bufs *b) { free(b->target); free(b->wpix); free(b->wmap); }

static void bufs_write(run *r, bufs *b) {
  const igs_tiling *t = &r->net.tl;
  mf_session_write_input(r->s, r->net.origin, b->origin, 2);
  mf_session_write_input(r->s, r->net.target, b->target, (size_t)C * t->wh * t->ww);
  mf_session_write_input(r->s, r->net.wpix, b->wpix, (size_t)t->wh * t->ww);
  mf_session_write_input(r->s, r->net.wmap, b->wmap, (size_t)(t->wh - IGS_SSIM_K + 1) * (t->ww - IGS_SSIM_K + 1));
}

/* the gradients of the four parameters, one vector [N*(5+C)] */
static void grads_read(run *r, double *out) {
  float buf[N * C];
  mf_tensor ps[4] = {r->net.pos, r->net.inv_scale, r->net.rot, r->net.feat};
  int cols[4] = {2, 2, 1, C}, off = 0;
  for (int i = 0; i < 4; i++) {
    mf_session_read_grad(r->s, ps[i], buf, (size_t)N * cols[i]);
    for (int j = 0; j < N * cols[i]; j++) out[off + j] = buf[j];
    off += N * cols[i];
  }
}
#define NG (N * (5 + C))

/* One update over every tile: the mean loss, the gradients, and the render of each window checked against `whole`
 * (the whole image's render, [C,H,W]; NULL: not checked). Returns the number of window pixels that differ. */
static long tiles_step(run *r, const float *image, double *loss, double *grad, const float *whole) {
  bufs b;
  bufs_init(&b, &r->net);
  const igs_tiling *t = &r->net.tl;
  float *rend = malloc(sizeof(float) * C * t->wh * t->ww);
  long differ = 0;
  *loss = 0;
  for (int k = 0; k < r->tiles; k++) {
    igs_tile_inputs(&r->net, image, k, b.origin, b.target, b.wpix, b.wmap);
    bufs_write(r, &b);
    *loss += mf_session_micro_step(r->s) / r->tiles;
    if (!whole) continue;
    mf_session_read(r->s, r->net.render, rend, (size_t)C * t->wh * t->ww);
    int ox = (int)b.origin[0], oy = (int)b.origin[1];
    for (int c = 0; c < C; c++)
      for (int i = 0; i < t->wh; i++)
        for (int j = 0; j < t->ww; j++) {
          float v = rend[((size_t)c * t->wh + i) * t->ww + j];
          int y = oy + i, x = ox + j;
          float want = y < H && x < W ? whole[((size_t)c * H + y) * W + x] : 0.0f;
          if (memcmp(&v, &want, sizeof v)) differ++;
        }
  }
  grads_read(r, grad);
  mf_session_update(r->s);
  free(rend);
  bufs_free(&b);
  return differ;
}

/* S[i] = sum over the loss's terms (each pixel's L1 term and each SSIM position's term) of |its gradient|, in f64:
 * each term alone selected by one-hot weights in the whole-image graph. Tiling only regroups these terms' sums. */
static void contributions(const params *p, const float *image, double *S, double *loss_terms) {
  run r;
  memset(S, 0, sizeof(double) * NG);
  *loss_terms = 0;
  if (run_init(&r, MF_F64, 0, 0, p, 0) < 0) return;
  bufs b;
  bufs_init(&b, &r.net);
  igs_tile_inputs(&r.net, image, 0, b.origin, b.target, b.wpix, b.wmap);
  int mh = H - IGS_SSIM_K + 1, mw = W - IGS_SSIM_K + 1;
  double g[NG];
  for (int q = 0; q < W * H + mh * mw; q++) {
    memset(b.wpix, 0, sizeof(float) * W * H);
    memset(b.wmap, 0, sizeof(float) * mh * mw);
    if (q < W * H) b.wpix[q] = 1;
    else b.wmap[q - W * H] = 1;
    bufs_write(&r, &b);
    *loss_terms += fabs(mf_session_micro_step(r.s));
    grads_read(&r, g);
    mf_session_update(r.s);
    for (int i = 0; i < NG; i++) S[i] += fabs(g[i]);
  }
  bufs_free(&b);
  run_free(&r);
}

static double gamma_n(double n, mf_dtype dt) {
  double u = dt == MF_F64 ? ldexp(1, -53) : ldexp(1, -24);
  return n * u / (1 - n * u);
}

/* whole image vs 16-px tiles (3 x 3 windows of 22 x 22 at a 40 x 36 image: partial tiles at both edges) */
static void test_tiles_equal(void) {
  mf_image im;
  CHECK(mf_image_generate(7, 0, W, H, &im) == 0, "generated image");
  params p;
  params_init(&p, 11);
  double S[NG], terms;
  contributions(&p, im.data, S, &terms);
  /* The longest sum a gradient entry goes through: every loss term (pixels and SSIM positions), each spread over
   * k x k pixels and C channels, each pixel over top-k Gaussians; tiling reorders these sums and no more, since
   * the window's pixels are drawn bit for bit as the whole image's (checked below). Gradients are kept in f32 (also
   * for f64 graphs): each tile's is rounded to f32 and the tiles' are added in f32, gamma_{tiles+1} in f32 more. */
  double m = (double)(W * H + (W - 6) * (H - 6)) + IGS_SSIM_K * IGS_SSIM_K * C * 5 + 64;
  const mf_dtype dts[2] = {MF_F64, MF_F32};
  for (int d = 0; d < 2; d++)
    for (int keep = 0; keep < 2; keep++) {
      run whole, tiled;
      if (run_init(&whole, dts[d], 0, keep, &p, 1) < 0 || run_init(&tiled, dts[d], 16, keep, &p, 1) < 0) {
        CHECK(0, "sessions");
        return;
      }
      CHECK(whole.tiles == 1 && tiled.tiles == 9 && tiled.net.tl.ww == 22 && tiled.net.tl.wh == 22, "tiling: %d tiles of %dx%d",
            tiled.tiles, tiled.net.tl.ww, tiled.net.tl.wh);
      double lw, lt, gw[NG], gt[NG];
      float *wr = malloc(sizeof(float) * C * W * H);
      tiles_step(&whole, im.data, &lw, gw, NULL);
      mf_session_read(whole.s, whole.net.render, wr, (size_t)C * W * H);
      long differ = tiles_step(&tiled, im.data, &lt, gt, wr);
      CHECK(differ == 0, "%s keep %d: %ld window pixels differ from the whole image's", mf_dtype_name(dts[d]), keep, differ);
      double gam = gamma_n(m, dts[d]);
      CHECK(fabs(lw - lt) <= 2 * gam * terms, "%s keep %d: loss whole %.17g tiles %.17g (bound %.3g)", mf_dtype_name(dts[d]), keep, lw,
            lt, 2 * gam * terms);
      int bad = 0, nonzero = 0;
      double worst = 0;
      for (int i = 0; i < NG; i++) {
        double bound = (2 * gam + 2 * gamma_n(tiled.tiles + 1, MF_F32)) * S[i] * (1 + 1e-6) + 1e-300;
        double e = fabs(gw[i] - gt[i]);
        if (e > bound) bad++;
        if (S[i] > 0) { nonzero++; if (e / bound > worst) worst = e / bound; }
      }
      CHECK(bad == 0, "%s keep %d: %d gradient entries differ beyond the bound", mf_dtype_name(dts[d]), keep, bad);
      CHECK(nonzero > NG / 2, "gradients reach most entries (%d of %d)", nonzero, NG);
      printf("tiles vs whole (%s, top-K %s): loss %.9g vs %.9g, largest gradient difference %.3g of its bound\n",
             mf_dtype_name(dts[d]), keep ? "kept" : "recomputed", lw, lt, worst);
      /* the four inactive Gaussians get nothing */
      for (int g = N - 4; g < N; g++) CHECK(gt[2 * g] == 0 && gt[2 * N + 2 * g] == 0, "inactive Gaussian %d has no gradient", g);
      /* measured == planned for the tiled session */
      for (int a = 0; a < MF_ARENA_COUNT; a++) {
        size_t planned = mf_plan_arena_bytes(mf_session_plan(tiled.s), (mf_arena_kind)a);
        size_t measured = mf_session_measured_bytes(tiled.s, (mf_arena_kind)a);
        CHECK(planned == measured, "%s keep %d: arena %s planned %zu measured %zu", mf_dtype_name(dts[d]), keep,
              mf_arena_name((mf_arena_kind)a), planned, measured);
      }
      free(wr);
      run_free(&whole);
      run_free(&tiled);
    }
  mf_image_free(&im);
}

/* a window origin that is not a multiple of 16 fails the step, naming the origin; the builder refuses a bad origin */
static void test_bad_origin(void) {
  params p;
  params_init(&p, 3);
  run r;
  if (run_init(&r, MF_F32, 16, 0, &p, 0) < 0) { CHECK(0, "session"); return; }
  bufs b;
  bufs_init(&b, &r.net);
  mf_image im;
  mf_image_generate(7, 0, W, H, &im);
  igs_tile_inputs(&r.net, im.data, 1, b.origin, b.target, b.wpix, b.wmap);
  b.origin[0] = 8;
  bufs_write(&r, &b);
  double l = mf_session_micro_step(r.s);
  CHECK(isnan(l), "origin (8, 0): the step fails (loss %g)", l);
  mf_image_free(&im);
  bufs_free(&b);
  run_free(&r);

  mf_graph *g = mf_graph_init(MF_F32);
  int64_t s2[2] = {4, 2}, s1[2] = {4, 1}, so[1] = {2};
  mf_tensor pos = mf_param(g, "pos", 2, s2, MF_INIT_UNIFORM, 0.5), isc = mf_param(g, "isc", 2, s2, MF_INIT_CONST, 0.5);
  mf_tensor rot = mf_param(g, "rot", 2, s1, MF_INIT_ZERO, 0), feat = mf_param(g, "feat", 2, s1, MF_INIT_CONST, 0.5);
  mf_tensor of = mf_input(g, "origin", 1, so);
  mf_raster_opts ro = {.width = 32, .height = 32, .full_width = 64, .full_height = 64};
  CHECK(mf_gauss_raster_window(g, pos, isc, rot, feat, -1, of, &ro) < 0 && strstr(mf_graph_error(g), "origin"),
        "an f32 origin is refused: %s", mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
}

static void test_bad_settings(void) {
  char err[256];
  igs_cfg c = test_cfg(0);
  c.gaussians = 0;
  CHECK(igs_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--gaussians 0"), "0 Gaussians: %s", err);
  c.gaussians = W * H + 1;
  CHECK(igs_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "more Gaussians than"), "more than pixels: %s", err);
  c = test_cfg(24);
  CHECK(igs_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--tile 24"), "tile not a multiple of 16: %s", err);
  int w, h;
  CHECK(igs_parse_size("7680x4320", &w, &h, err, sizeof err) == 0 && w == 7680 && h == 4320, "size parsed");
  CHECK(igs_parse_size("7680", &w, &h, err, sizeof err) < 0 && strstr(err, "WIDTHxHEIGHT"), "size without height: %s", err);
}

int main(void) {
  test_tiles_equal();
  test_bad_origin();
  test_bad_settings();
  return check_finish("test_imagegs");
}

/* test_steg_tile.c — tiled hide / reveal equals the whole-image run; a halo 2 pixels short of the
 * receptive radius changes a random-weight model's output; tiles plan = measure; a 4000x3000 photo in
 * 1 GiB gets tiles whose plan fits.
 *
 * Why the exactness checks run in f64: a tile puts each pixel at another column of the convolution
 * GEMMs than the whole image does, and OpenBLAS's FMA kernels (Haswell, Zen, SkylakeX) sum the edge
 * columns of a GEMM in another order than the inner ones, so f32 tiles and the f32 whole image differ
 * by rounding; the random model below amplifies that by orders of magnitude (its reveal divides by
 * exp(s) and its weights are twice Kaiming's). In f64 the same rounding is about 1e-9 of f32's, so a
 * tile differs from the whole image by less than the one f32 rounding of the output that
 * mf_session_read does: the tolerance is one f32 ulp of the value, whatever the CPU and kernel. A
 * tiling error (a halo 2 pixels short) moves the random model's output by 1e-2 or more. The f32 runs,
 * what the product does, are checked against what the product promises: the 8-bit outputs differ by
 * at most one level. */
#include "check.h"
#include "models/steg_infer.h"
#include <float.h>
#include <unistd.h>

#define W 239 /* odd: padded to 240 x 226 inside, as hide / reveal do */
#define H 225
#define TILE 80

/* smooth colour fields with edges and a little noise, different per seed */
static void picture(float *p, int seed) {
  uint64_t rs = 0x9e3779b97f4a7c15ULL * (uint64_t)(seed + 1);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
        double v = 0.5 + 0.3 * sin(0.05 * (x + 7 * seed) + 0.9 * c) * cos(0.07 * (y - 3 * seed)) + ((x / 37 + y / 29 + seed) % 3) * 0.1 +
                   0.03 * ((double)(rs >> 11) / 9007199254740992.0 - 0.5);
        p[((size_t)c * H + y) * W + x] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
      }
}

static double max_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= m)) m = d; /* NaN counts as a difference */
  }
  return m;
}

/* Largest |a - b| in f32 ulps of the larger value. Two reals that differ by far less than an ulp
 * round to the same f32 or to neighbours: at most 1 (FLT_EPSILON * |x| is an ulp or more for a
 * normal x; FLT_TRUE_MIN covers zeros and subnormals). NaN gives infinity. */
static double max_ulps(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double big = fmax(fabs((double)a[i]), fabs((double)b[i]));
    double u = fabs((double)a[i] - b[i]) / (FLT_EPSILON * big + FLT_TRUE_MIN);
    if (!(u <= m)) m = isnan(u) ? INFINITY : u;
  }
  return m;
}

/* the 8-bit level (0..255) a saved PNG holds for v, as mf_image_save_png rounds it (NaN -> 0, clamp, +0.5, truncate) */
static int level8(float v) {
  v = v != v ? 0.0f : v < 0 ? 0.0f : v > 1 ? 1.0f : v;
  return (int)(uint8_t)(v * 255.0f + 0.5f);
}

/* largest difference in 8-bit levels, and how many values differ */
static int max_levels(const float *a, const float *b, size_t n, size_t *count) {
  int m = 0;
  *count = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs(level8(a[i]) - level8(b[i]));
    if (d) (*count)++;
    if (d > m) m = d;
  }
  return m;
}

/* f32 whole vs tiled output: what the 8-bit PNGs would hold is at most one level apart */
static void check_levels(const char *what, const float *whole, const float *tiled, size_t n, int halo) {
  size_t nd;
  int lv = max_levels(whole, tiled, n, &nd);
  printf("%s f32: tiled (halo %d) vs whole max |diff| %.3g, %d level(s) in %zu of %zu 8-bit values\n", what, halo,
         max_diff(whole, tiled, n), lv, nd, n);
  CHECK(lv <= 1, "%s: the tiled PNG differs from the whole-image one by %d levels", what, lv);
}

/* runs hide (a, b) or reveal (a) with the given tiling settings in a graph of dtype dt; 0 on success */
static int run(const mf_steg_config *cfg, const mf_st_file *f, const char *path, int hide, int tile, int halo, mf_dtype dt,
               const float *a, const float *b, float *out, mf_steg_tiling *t) {
  char err[1024];
  if (mf_steg_tiling_choose(cfg, hide, W, H, 0, tile, halo, 2, dt, t, NULL, err, sizeof err) < 0) { CHECK(0, "tiling: %s", err); return -1; }
  mf_steg_runner *r = mf_steg_runner_init(cfg, t, f, path, 2, err, sizeof err);
  if (!r) { CHECK(0, "runner: %s", err); return -1; }
  int rc = mf_steg_runner_run(r, a, b, out, err, sizeof err);
  CHECK(rc == 0, "run: %s", err);
  const mf_plan *p = mf_session_plan(mf_steg_runner_session(r));
  CHECK(mf_plan_total_bytes(p) == t->plan_bytes, "runner plans %zu B, the tiling said %zu B", mf_plan_total_bytes(p), t->plan_bytes);
  for (int k = 0; k < MF_ARENA_COUNT; k++)
    CHECK(mf_session_measured_bytes(mf_steg_runner_session(r), (mf_arena_kind)k) == mf_plan_arena_bytes(p, (mf_arena_kind)k),
          "%s arena: measured %zu B, planned %zu B", mf_arena_name((mf_arena_kind)k),
          mf_session_measured_bytes(mf_steg_runner_session(r), (mf_arena_kind)k), mf_plan_arena_bytes(p, (mf_arena_kind)k));
  mf_steg_runner_free(r);
  return rc;
}

/* A 2-block, growth-8 model with every conv random (uniform, twice Kaiming's range), written to path:
 * pixels at the edge of its receptive field change the output by about 1e-2, where the trained model's
 * (and this one's at Kaiming's range) move it by less than 1e-6. */
static int random_model(const char *path, char *err, size_t errlen) {
  mf_steg_config c = mf_steg_config_default();
  c.blocks = 2;
  c.growth = 8;
  int nt = c.blocks * MF_STEG_SUBNETS * MF_STEG_CONVS * 2, ti = 0;
  float *bufs[2 * MF_STEG_SUBNETS * MF_STEG_CONVS * 2] = {0};
  char names[2 * MF_STEG_SUBNETS * MF_STEG_CONVS * 2][64], pn[64];
  mf_st_writer *w = mf_st_writer_init();
  uint64_t rs = 77;
  for (int i = 0; i < c.blocks; i++)
    for (int sn = 0; sn < MF_STEG_SUBNETS; sn++)
      for (int k = 0; k < MF_STEG_CONVS; k++)
        for (int bias = 0; bias < 2; bias++, ti++) {
          int64_t cin = MF_STEG_WAVE_CH + (int64_t)k * c.growth, cout = k < MF_STEG_CONVS - 1 ? c.growth : MF_STEG_WAVE_CH;
          int64_t ws[4] = {cout, cin, 3, 3}, bs[1] = {cout}, numel = bias ? cout : cout * cin * 9;
          double a = bias ? 0.1 : sqrt(6.0 / (double)(cin * 9)) * (k == MF_STEG_CONVS - 1 ? 0.5 : 1.0) * 2.0;
          bufs[ti] = malloc((size_t)numel * sizeof(float));
          for (int64_t j = 0; j < numel; j++) {
            rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
            bufs[ti][j] = (float)(a * (2.0 * (double)(rs >> 11) / 9007199254740992.0 - 1.0));
          }
          snprintf(names[ti], sizeof names[ti], "param.%s", mf_steg_param_name(pn, sizeof pn, i, sn, k, bias));
          mf_st_writer_add(w, names[ti], MF_F32, bias ? 1 : 4, bias ? bs : ws, bufs[ti]);
        }
  int rc = mf_st_writer_save(w, path, err, errlen);
  mf_st_writer_free(w);
  for (int i = 0; i < nt; i++) free(bufs[i]);
  return rc;
}

int main(void) {
  const char *root = getenv("MEMFIT_ROOT");
  char path[4096], err[1024];
  snprintf(path, sizeof path, "%s/models/steg-small.safetensors", root ? root : ".");
  mf_st_file *f = mf_st_open(path, err, sizeof err);
  if (!f) { CHECK(0, "model: %s", err); return check_finish("test_steg_tile"); }
  mf_steg_config cfg;
  if (mf_steg_model_config(f, path, &cfg, err, sizeof err) < 0) { CHECK(0, "%s", err); mf_st_close(f); return check_finish("test_steg_tile"); }
  size_t n = (size_t)3 * W * H;
  float *cover = malloc(n * sizeof *cover), *secret = malloc(n * sizeof *secret), *st_w = malloc(n * sizeof *st_w),
        *st_t = malloc(n * sizeof *st_t), *rv_w = malloc(n * sizeof *rv_w),
        *rv_t = malloc(n * sizeof *rv_t);
  picture(cover, 1);
  picture(secret, 2);
  mf_steg_tiling tw, tt, th;
  float *st64 = malloc(n * sizeof *st64), *w64 = malloc(n * sizeof *w64), *t64 = malloc(n * sizeof *t64);

  /* The shipped model, f32 (what hide / reveal run): whole image, tiles with the computed halo. The
   * tiles differ from the whole image by f32 rounding only; the PNGs by one level in a few values. */
  if (run(&cfg, f, path, 1, 0, -1, MF_F32, cover, secret, st_w, &tw) == 0 &&
      run(&cfg, f, path, 1, TILE, -1, MF_F32, cover, secret, st_t, &tt) == 0) {
    CHECK(tw.nx == 1 && tw.ny == 1 && tw.rw == W + 1 && tw.rh == H + 1, "whole image: %dx%d tiles of a %dx%d graph", tw.nx, tw.ny, tw.rw, tw.rh);
    CHECK(tt.radius == 70 && tt.align == 2 && tt.halo == 70, "small model: radius %d, grid %d, halo %d (expected 70, 2, 70)", tt.radius,
          tt.align, tt.halo);
    /* real tiles: 3 x 3, each graph smaller than the image along both axes (a middle tile has halos on all sides) */
    CHECK(tt.nx == 3 && tt.ny == 3 && tt.rw < tt.pw && tt.rh < tt.ph, "tiles %dx%d of graphs %dx%d in %dx%d", tt.nx, tt.ny, tt.rw, tt.rh,
          tt.pw, tt.ph);
    check_levels("hide", st_w, st_t, n, tt.halo);
  }
  if (run(&cfg, f, path, 0, 0, -1, MF_F32, st_w, NULL, rv_w, &tw) == 0 &&
      run(&cfg, f, path, 0, TILE, -1, MF_F32, st_w, NULL, rv_t, &tt) == 0) {
    CHECK(tt.radius == 70 && tt.nx == 3 && tt.ny == 3, "reveal: radius %d, %dx%d tiles", tt.radius, tt.nx, tt.ny);
    check_levels("reveal", rv_w, rv_t, n, tt.halo);
  }
  /* The shipped model in f64: tiles equal the whole image to the f32 rounding of the output (its far
   * pixels weigh little: a short halo moves its output by about 3e-8, so the random model below is
   * the one that shows the halo is needed). */
  if (run(&cfg, f, path, 1, 0, -1, MF_F64, cover, secret, st64, &tw) == 0 &&
      run(&cfg, f, path, 1, TILE, -1, MF_F64, cover, secret, t64, &tt) == 0) {
    double u = max_ulps(st64, t64, n);
    printf("hide f64:   tiled (halo %d) vs whole max %.3g f32 ulps\n", tt.halo, u);
    CHECK(u <= 1, "hide f64: tiled stego differs from the whole-image stego by %g f32 ulps", u);
  }
  if (run(&cfg, f, path, 0, 0, -1, MF_F64, st64, NULL, w64, &tw) == 0 &&
      run(&cfg, f, path, 0, TILE, -1, MF_F64, st64, NULL, t64, &tt) == 0) {
    double u = max_ulps(w64, t64, n);
    printf("reveal f64: tiled (halo %d) vs whole max %.3g f32 ulps\n", tt.halo, u);
    CHECK(u <= 1, "reveal f64: tiled secret differs from the whole-image secret by %g f32 ulps", u);
  }
  /* random weights, f64: the radius is needed in full (both graphs, tiles of 64: 4 x 4, graphs of 124 x 124) */
  {
    char rpath[256];
    snprintf(rpath, sizeof rpath, "/tmp/test_steg_tile_%ld.safetensors", (long)getpid());
    mf_st_file *rf = NULL;
    mf_steg_config rc;
    if (random_model(rpath, err, sizeof err) < 0 || !(rf = mf_st_open(rpath, err, sizeof err)) ||
        mf_steg_model_config(rf, rpath, &rc, err, sizeof err) < 0)
      CHECK(0, "random model: %s", err);
    else {
      float *r_st = malloc(n * sizeof *r_st), *r_whole = malloc(n * sizeof *r_whole), *r_tile = malloc(n * sizeof *r_tile),
            *r_short = malloc(n * sizeof *r_short);
      for (int hide = 1; hide >= 0; hide--) {
        const float *in = hide ? cover : r_st; /* reveal runs on this model's own whole-image stego */
        if (run(&rc, rf, rpath, hide, 0, -1, MF_F64, in, secret, r_whole, &tw) != 0 ||
            run(&rc, rf, rpath, hide, 64, -1, MF_F64, in, secret, r_tile, &tt) != 0 ||
            run(&rc, rf, rpath, hide, 64, tt.halo - tt.align, MF_F64, in, secret, r_short, &th) != 0)
          break;
        double u = max_ulps(r_whole, r_tile, n), dh = max_diff(r_whole, r_short, n), big = 0;
        for (size_t i = 0; i < n; i++) big = fmax(big, fabs((double)r_whole[i]));
        printf("random 2-block model f64, %s: radius %d; tiled (halo %d) vs whole max %.3g f32 ulps (values up to %.3g); "
               "halo %d: max |diff| %.3g\n", hide ? "hide" : "reveal", tt.radius, tt.halo, u, big, th.halo, dh);
        CHECK(tt.radius == 30 && tt.nx == 4 && tt.ny == 4 && tt.rw < tt.pw && tt.rh < tt.ph, "random model: radius %d, %dx%d tiles of %dx%d",
              tt.radius, tt.nx, tt.ny, tt.rw, tt.rh);
        CHECK(u <= 1, "random model, %s: tiled with the full halo differs from whole by %g f32 ulps", hide ? "hide" : "reveal", u);
        CHECK(dh > 1e-3, "random model, %s: a halo 2 pixels short of the radius changed the output by only %g: the halo does not matter?",
              hide ? "hide" : "reveal", dh);
        if (hide) memcpy(r_st, r_whole, n * sizeof *r_st);
      }
      free(r_st); free(r_whole); free(r_tile); free(r_short);
    }
    mf_st_close(rf);
    unlink(rpath);
  }
  free(st64); free(w64); free(t64);
  /* bad settings */
  CHECK(mf_steg_tiling_choose(&cfg, 1, W, H, 0, TILE, 69, 2, MF_F32, &tt, NULL, err, sizeof err) < 0 && strstr(err, "multiple of 2"),
        "odd halo accepted or unclear: %s", err);
  size_t need = 0;
  CHECK(mf_steg_tiling_choose(&cfg, 1, W, H, 1 << 20, 0, -1, 2, MF_F32, &tt, &need, err, sizeof err) < 0 && need > (1 << 20) &&
            strstr(err, "smallest tile"),
        "1 MiB: %s (need %zu)", err, need);

  /* the big photo: 4000 x 3000 in 1 GiB (plans only) */
  {
    size_t budget = (size_t)1 << 30, whole = 0;
    mf_steg_tiling tb;
    CHECK(mf_steg_plan_bytes(&cfg, 1, 4000, 3000, 2, MF_F32, &whole, err, sizeof err) == 0 && whole > budget, "whole 4000x3000 plans %zu B",
          whole);
    if (mf_steg_tiling_choose(&cfg, 1, 4000, 3000, budget, 0, -1, 2, MF_F32, &tb, NULL, err, sizeof err) < 0) CHECK(0, "4000x3000: %s", err);
    else {
      size_t check = 0;
      mf_steg_plan_bytes(&cfg, 1, tb.rw, tb.rh, 2, MF_F32, &check, err, sizeof err);
      printf("4000x3000 in 1 GiB: whole image plans %.2f GiB; %d tiles (%dx%d) of %dx%d, %dx%d graphs planning %.1f MiB + %.1f MiB buffer\n",
             (double)whole / (1 << 30), tb.nx * tb.ny, tb.nx, tb.ny, tb.tile_w, tb.tile_h, tb.rw, tb.rh, (double)tb.plan_bytes / (1 << 20),
             (double)tb.buffer_bytes / (1 << 20));
      CHECK(tb.nx * tb.ny > 1 && tb.plan_bytes + tb.buffer_bytes <= budget, "4000x3000: %d tiles, plan %zu + %zu B over %zu", tb.nx * tb.ny,
            tb.plan_bytes, tb.buffer_bytes, budget);
      CHECK(check == tb.plan_bytes, "the tile graph plans %zu B, the tiling says %zu B", check, tb.plan_bytes);
      CHECK(tb.tile_w * tb.nx >= 4000 && tb.tile_h * tb.ny >= 3000 && tb.tile_w % 2 == 0 && tb.tile_h % 2 == 0, "tiles do not cover");
      /* largest: one more tile along either axis would have been chosen only if fewer did not fit; the
       * graph is not tiny either (more than a quarter of the budget) */
      CHECK(tb.plan_bytes > budget / 4, "the chosen tiles use only %zu of %zu B", tb.plan_bytes, budget);
    }
  }
  free(cover); free(secret); free(st_w); free(st_t); free(rv_w); free(rv_t);
  mf_st_close(f);
  return check_finish("test_steg_tile");
}

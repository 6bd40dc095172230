/* imagegs.c — Image-GS's training graph over image tiles: the Gaussians' parameters (the final count from step 0,
 * grown through an active mask), the rasteriser drawing one window (a tile plus the halo SSIM needs), and the loss
 * L1 + 0.1 (1 - SSIM) of the tile's own pixels scaled so that the tiles' gradients add up to the whole image's. */
#include "models/imagegs.h"
#include "models/steg_loss.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

const int IGS_TILE_SIDES[IGS_N_TILES] = {0, 4096, 2048, 1024, 512, 256, 128};
const char *const igs_variant_names[IGS_N_VARIANTS] = {
  "whole image, top-K recomputed", "whole image, top-K kept",
  "4096 px tiles at most, top-K recomputed", "4096 px tiles at most, top-K kept",
  "2048 px tiles at most, top-K recomputed", "2048 px tiles at most, top-K kept",
  "1024 px tiles at most, top-K recomputed", "1024 px tiles at most, top-K kept",
  "512 px tiles at most, top-K recomputed", "512 px tiles at most, top-K kept",
  "256 px tiles at most, top-K recomputed", "256 px tiles at most, top-K kept",
  "128 px tiles at most, top-K recomputed", "128 px tiles at most, top-K kept",
};

igs_cfg igs_cfg_default(void) {
  igs_cfg c;
  memset(&c, 0, sizeof c);
  c.width = 512;
  c.height = 512;
  c.gaussians = 2000;
  c.channels = 3;
  c.top_k = 10;
  c.max_radius = 64;
  c.ssim_weight = 0.1;
  return c;
}

int igs_cfg_check(const igs_cfg *c, char *err, size_t n) {
  if (c->width < IGS_SSIM_K || c->height < IGS_SSIM_K || c->width > (1 << 20) || c->height > (1 << 20)) {
    snprintf(err, n, "--size %dx%d: width and height must be %d .. 1048576 pixels (the SSIM window is %d)", c->width, c->height,
             IGS_SSIM_K, IGS_SSIM_K);
    return -1;
  }
  int64_t px = (int64_t)c->width * c->height;
  if (c->gaussians < 1) { snprintf(err, n, "--gaussians %d: need at least 1 Gaussian", c->gaussians); return -1; }
  if (c->gaussians > px) {
    snprintf(err, n, "--gaussians %d: more Gaussians than the %dx%d image has pixels (%lld); use at most %lld", c->gaussians, c->width,
             c->height, (long long)px, (long long)px);
    return -1;
  }
  if (c->initial < 0 || c->initial > c->gaussians) {
    snprintf(err, n, "--initial %d: must be 1 .. --gaussians (%d), or 0 for half of them", c->initial, c->gaussians);
    return -1;
  }
  if (c->channels < 1 || c->channels > 12) { snprintf(err, n, "--channels %d: must be 1 .. 12", c->channels); return -1; }
  if (c->top_k < 1 || c->top_k > 32) { snprintf(err, n, "--top-k %d: must be 1 .. 32", c->top_k); return -1; }
  if (c->tile_side < 0 || c->tile_side % 16) { snprintf(err, n, "--tile %d: must be a multiple of 16 pixels (0: chosen)", c->tile_side); return -1; }
  if (c->quant_bits < 0 || c->quant_bits > 16) { snprintf(err, n, "--quant-bits %d: 1 .. 16 (0: off)", c->quant_bits); return -1; }
  if (!(c->max_radius >= 1 && c->max_radius <= 4096)) { snprintf(err, n, "--max-radius %g: must be 1 .. 4096 pixels", c->max_radius); return -1; }
  return 0;
}

igs_tiling igs_tiling_of(const igs_cfg *c, int variant) {
  igs_tiling t;
  memset(&t, 0, sizeof t);
  if (variant < 0 || variant >= IGS_N_VARIANTS) variant = 0;
  t.side = c->tile_side > 0 ? c->tile_side : IGS_TILE_SIDES[variant / 2];
  t.keep_topk = variant % 2;
  /* tiles of at most side x side, as even as multiples of 16 allow (a window's origin must be one) */
  t.tw = c->width;
  t.th = c->height;
  if (t.side && t.side < c->width) {
    int nx = (c->width + t.side - 1) / t.side;
    t.tw = ((c->width + nx - 1) / nx + 15) / 16 * 16;
  }
  if (t.side && t.side < c->height) {
    int ny = (c->height + t.side - 1) / t.side;
    t.th = ((c->height + ny - 1) / ny + 15) / 16 * 16;
  }
  /* SSIM position (i, j) reads pixels [i, i+k) x [j, j+k): a tile's positions need k-1 more pixels right and below */
  t.ww = t.tw + (t.tw < c->width ? IGS_SSIM_K - 1 : 0);
  t.wh = t.th + (t.th < c->height ? IGS_SSIM_K - 1 : 0);
  t.nx = (c->width + t.tw - 1) / t.tw;
  t.ny = (c->height + t.th - 1) / t.th;
  return t;
}

void igs_quant_range(int k, double *lo, double *hi) {
  static const double r[4][2] = {{0, 1}, {0, 2}, {-M_PI, M_PI}, {-1, 2}}; /* pos, inv_scale (1/px), rot, colour */
  *lo = r[k][0];
  *hi = r[k][1];
}

float igs_quantize(float v, int k, int bits) {
  double lo, hi, L = ldexp(1, bits) - 1;
  igs_quant_range(k, &lo, &hi);
  float x = v < lo ? (float)lo : v > hi ? (float)hi : v;
  /* the graph's op order in f32: (x - lo) * (L / (hi - lo)), round half to even, * ((hi - lo) / L) + lo */
  float t = nearbyintf((x + (float)-lo) * (float)(L / (hi - lo)));
  return t * (float)((hi - lo) / L) + (float)lo;
}

/* p as drawn: quantised to `bits` in parameter k's range, with p's gradient (straight-through) */
static mf_tensor quantized(mf_graph *g, mf_tensor p, int k, int bits) {
  double lo, hi, L = ldexp(1, bits) - 1;
  igs_quant_range(k, &lo, &hi);
  mf_tensor t = mf_round(g, mf_mul_scalar(g, mf_add_scalar(g, mf_clamp(g, p, lo, hi), -lo), L / (hi - lo)));
  return mf_straight_through(g, mf_add_scalar(g, mf_mul_scalar(g, t, (hi - lo) / L), lo), p);
}

int igs_build(mf_graph *g, const igs_cfg *c, int variant, igs_net *o, char *err, size_t n) {
  memset(o, 0, sizeof *o);
  if (igs_cfg_check(c, err, n) < 0) return -1;
  if (variant < 0 || variant >= IGS_N_VARIANTS) { snprintf(err, n, "imagegs: variant %d: 0 .. %d", variant, IGS_N_VARIANTS - 1); return -1; }
  o->cfg = *c;
  o->tl = igs_tiling_of(c, variant);
  const igs_tiling *t = &o->tl;
  int64_t N = c->gaussians, C = c->channels, k = IGS_SSIM_K;
  int64_t s2[2] = {N, 2}, s1[2] = {N, 1}, sc[2] = {N, C};
  o->pos = mf_param(g, "pos", 2, s2, MF_INIT_UNIFORM, 0.5);      /* [N,2] x, y in [0,1]: written by the fit's init */
  o->inv_scale = mf_param(g, "inv_scale", 2, s2, MF_INIT_CONST, 0.5); /* [N,2] 1/pixels */
  o->rot = mf_param(g, "rot", 2, s1, MF_INIT_ZERO, 0);           /* [N,1] radians */
  o->feat = mf_param(g, "feat", 2, sc, MF_INIT_CONST, 0.5);       /* [N,C] colour */
  mf_param_group_set(g, o->inv_scale, 1);
  mf_param_group_set(g, o->rot, 2);
  mf_param_group_set(g, o->feat, 3);
  o->mask = mf_active_mask(g, "gaussians", N, c->initial ? c->initial : (N + 1) / 2);
  mf_tensor ps[4] = {o->pos, o->inv_scale, o->rot, o->feat};
  for (int i = 0; i < 4; i++) mf_mask_rows(g, o->mask, ps[i]);
  int64_t so[1] = {2}, st[4] = {1, C, t->wh, t->ww}, sw[4] = {1, 1, t->wh, t->ww}, sm[4] = {1, 1, t->wh - k + 1, t->ww - k + 1};
  o->origin = mf_input_typed(g, "origin", MF_I32, 1, so);
  o->target = mf_input(g, "target", 4, st);
  o->wpix = mf_input(g, "wpix", 4, sw);
  o->wmap = mf_input(g, "wmap", 4, sm);
  mf_raster_opts ro = {0};
  ro.width = t->ww;
  ro.height = t->wh;
  ro.full_width = c->width;
  ro.full_height = c->height;
  ro.top_k = c->top_k;
  ro.keep_topk = t->keep_topk;
  ro.max_radius = c->max_radius;
  mf_tensor dp[4] = {o->pos, o->inv_scale, o->rot, o->feat}; /* what the rasteriser draws */
  if (c->quant_bits > 0)
    for (int i = 0; i < 4; i++) dp[i] = quantized(g, dp[i], i, c->quant_bits);
  o->render = mf_gauss_raster_window(g, dp[0], dp[1], dp[2], dp[3], o->mask, o->origin, &ro); /* [C,wh,ww] */
  mf_tensor r4 = mf_reshape(g, o->render, 4, st);                                                       /* [1,C,wh,ww] */
  double tiles = (double)t->nx * t->ny;
  /* L1: sum over the core's pixels of |r - y| / (C H W), times the tiles (the session averages over them) */
  mf_tensor l1 = mf_l1_loss(g, mf_mul(g, r4, o->wpix), mf_mul(g, o->target, o->wpix));
  o->l1 = mf_mul_scalar(g, l1, (double)C * t->wh * t->ww * tiles / ((double)C * c->width * c->height));
  /* 1 - SSIM: sum over the core's positions of (1 - map) / (C (H-k+1) (W-k+1)), times the tiles */
  mf_tensor map = mf_steg_ssim_map(g, r4, o->target, (int)k);                                          /* [1,C,wh-k+1,ww-k+1] */
  mf_tensor dmap = mf_mul(g, mf_add_scalar(g, mf_mul_scalar(g, map, -1.0), 1.0), o->wmap);
  o->dssim = mf_mul_scalar(g, mf_sum(g, dmap, 0, 0), tiles / ((double)C * (c->width - k + 1) * (c->height - k + 1)));
  o->loss = mf_add(g, o->l1, mf_mul_scalar(g, o->dssim, c->ssim_weight));
  mf_raster_opts rs = ro;
  rs.width = c->width;
  rs.height = c->height;
  rs.full_width = rs.full_height = 0;
  rs.max_pairs = 1; /* the stats bin nothing */
  o->stats = mf_gauss_raster_stats(g, o->pos, o->inv_scale, o->rot, o->mask, &rs);
  if (mf_graph_error(g)) { snprintf(err, n, "imagegs: %s", mf_graph_error(g)); return -1; }
  return 0;
}

void igs_tile_inputs(const igs_net *net, const float *image, int t, float origin[2], float *target, float *wpix, float *wmap) {
  const igs_tiling *tl = &net->tl;
  int W = net->cfg.width, H = net->cfg.height, C = net->cfg.channels, k = IGS_SSIM_K;
  int ox = (t % tl->nx) * tl->tw, oy = (t / tl->nx) * tl->th;
  origin[0] = (float)ox;
  origin[1] = (float)oy;
  size_t HW = (size_t)tl->wh * tl->ww;
  for (int i = 0; i < tl->wh; i++)
    for (int j = 0; j < tl->ww; j++) {
      int y = oy + i, x = ox + j, in = y < H && x < W;
      size_t p = (size_t)i * tl->ww + j;
      for (int c = 0; c < C; c++) target[c * HW + p] = in ? image[((size_t)y * W + x) * C + c] : 0.0f;
      wpix[p] = in && i < tl->th && j < tl->tw ? 1.0f : 0.0f;
    }
  int mh = tl->wh - k + 1, mw = tl->ww - k + 1;
  for (int i = 0; i < mh; i++)
    for (int j = 0; j < mw; j++)
      wmap[(size_t)i * mw + j] = i < tl->th && j < tl->tw && oy + i <= H - k && ox + j <= W - k ? 1.0f : 0.0f;
}

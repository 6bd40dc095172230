/* pool.c (CPU) — kernels for average/max pooling (and global average pooling), nearest upsampling, nearest and
 * bilinear resize, 2-D padding and their backward ops; one OpenMP task per (image, channel) plane. f32 fast path, any other
 * float dtype through mf_ld/mf_st with double accumulation. */
#include "backend/cpu/cpu.h"
#include <float.h>
#include <string.h>

/* window geometry of a POOL / POOL_BWD node given x [N,C,H,W] */
typedef struct pool_geo {
  int64_t P, H, W, OH, OW; /* P = N*C planes */
  mf_pool_cfg c;
  int is_max, global;
} pool_geo;

static void pool_geometry(const mf_node *n, const mf_node *x, const mf_node *y, pool_geo *q) {
  q->P = x->ne[0] * x->ne[1];
  q->H = x->ne[2];
  q->W = x->ne[3];
  q->is_max = n->ip[0] == MF_POOL_MAX;
  q->global = n->ip[4] != 0;
  if (q->global) { /* global: one window covering the plane */
    q->OH = q->OW = 1;
    q->c = (mf_pool_cfg){(int)q->H, (int)q->W, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  } else {
    q->OH = y->ne[2];
    q->OW = y->ne[3];
    q->c = mf_pool_cfg_of(n);
  }
}
/* output (oh, ow)'s window: rows hs + t dh for t in [th0, th1), columns ws + t dw for t in [tw0, tw1), and the
 * average's divisor */
typedef struct pool_win { int64_t hs, ws; int th0, th1, tw0, tw1; double div; } pool_win;
static inline pool_win window(const pool_geo *q, int64_t oh, int64_t ow) {
  pool_win w;
  const mf_pool_cfg *c = &q->c;
  int ch, cw;
  mf_pool_taps(oh, c->sh, c->dh, c->kh, c->pt, c->pb, q->H, c->exclude_pad, &w.hs, &w.th0, &w.th1, &ch);
  mf_pool_taps(ow, c->sw, c->dw, c->kw, c->pl, c->pr, q->W, c->exclude_pad, &w.ws, &w.tw0, &w.tw1, &cw);
  w.div = (double)ch * (double)cw;
  return w;
}

/* The dense average pool (f32, strides and dilations 1, no padding, so every window is whole and the divisor kh kw)
 * as two passes of sums: the kh rows of each column, then kw of those column sums, kh + kw adds per output
 * instead of kh kw, in vectorisable loops over a row, threaded over (plane, row). The SSIM terms (7x7 windows)
 * run it on every pixel of an image. Columns go in chunks of PL_CHUNK (stack buffers, nothing planned). */
#define PL_CHUNK 512
#define PL_MAXK 64
static bool pool_dense(const pool_geo *q) {
  const mf_pool_cfg *c = &q->c;
  return !q->is_max && !q->global && c->sh == 1 && c->sw == 1 && c->dh == 1 && c->dw == 1 && !c->pt && !c->pb && !c->pl && !c->pr &&
         c->kw <= PL_MAXK && q->OH == q->H - c->kh + 1 && q->OW == q->W - c->kw + 1;
}

/* y [P,OH,OW] = window sums of x [P,H,W] / (kh kw) */
static void pool_dense_fwd(const pool_geo *q, const float *x, float *y) {
  int kh = q->c.kh, kw = q->c.kw;
  float inv = (float)(1.0 / ((double)kh * kw));
  int64_t H = q->H, W = q->W, OH = q->OH, OW = q->OW;
  #pragma omp parallel for schedule(static) if (q->P * H * W > 32768)
  for (int64_t r = 0; r < q->P * OH; r++) {
    int64_t pl = r / OH, oh = r % OH;
    const float *xr = x + (pl * H + oh) * W;
    float *yr = y + pl * OH * OW + oh * OW;
    float col[PL_CHUNK + PL_MAXK], acc[PL_CHUNK];
    for (int64_t j0 = 0; j0 < OW; j0 += PL_CHUNK) {
      int n = OW - j0 < PL_CHUNK ? (int)(OW - j0) : PL_CHUNK, m = n + kw - 1;
      for (int j = 0; j < m; j++) col[j] = xr[j0 + j];
      for (int th = 1; th < kh; th++) {
        const float *xt = xr + th * W + j0;
        for (int j = 0; j < m; j++) col[j] += xt[j];
      }
      for (int j = 0; j < n; j++) acc[j] = col[j];
      for (int tw = 1; tw < kw; tw++)
        for (int j = 0; j < n; j++) acc[j] += col[j + tw];
      for (int j = 0; j < n; j++) yr[j0 + j] = acc[j] * inv;
    }
  }
}

/* dx [P,H,W] from dy [P,OH,OW] of pool_dense_fwd: pixel (i, j) gathers the dy of the windows holding it (rows
 * oh in [i-kh+1, i], columns ow in [j-kw+1, j], inside the output), their sum / (kh kw); no scatter, so rows
 * run in parallel */
static void pool_dense_bwd(const pool_geo *q, const float *dy, float *dx) {
  int kh = q->c.kh, kw = q->c.kw;
  float inv = (float)(1.0 / ((double)kh * kw));
  int64_t H = q->H, W = q->W, OH = q->OH, OW = q->OW;
  #pragma omp parallel for schedule(static) if (q->P * H * W > 32768)
  for (int64_t r = 0; r < q->P * H; r++) {
    int64_t pl = r / H, i = r % H;
    int64_t oh0 = i - kh + 1 < 0 ? 0 : i - kh + 1, oh1 = i < OH - 1 ? i : OH - 1; /* inclusive */
    const float *dp = dy + pl * OH * OW;
    float *xr = dx + pl * H * W + i * W;
    float col[PL_CHUNK + PL_MAXK], acc[PL_CHUNK];
    for (int64_t j0 = 0; j0 < W; j0 += PL_CHUNK) {
      int n = W - j0 < PL_CHUNK ? (int)(W - j0) : PL_CHUNK, m = n + kw - 1;
      int64_t s = j0 - kw + 1; /* col[t] holds output column s + t (0 outside [0, OW)) */
      for (int t = 0; t < m; t++) col[t] = 0;
      int t0 = s < 0 ? (int)-s : 0, t1 = OW - s < m ? (int)(OW - s) : m;
      for (int64_t oh = oh0; oh <= oh1; oh++) {
        const float *d = dp + oh * OW;
        for (int t = t0; t < t1; t++) col[t] += d[s + t];
      }
      for (int j = 0; j < n; j++) acc[j] = col[j];
      for (int tw = 1; tw < kw; tw++)
        for (int j = 0; j < n; j++) acc[j] += col[j + tw];
      for (int j = 0; j < n; j++) xr[j0 + j] = acc[j] * inv;
    }
  }
}

/* y [N,C,OH,OW] (or [N,C] global) from x [N,C,H,W]: the window's maximum (-FLT_MAX/-DBL_MAX when it holds no pixel),
 * or its sum over the divisor (0 when that is 0) */
void mf_cpu_pool(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  pool_geo q;
  pool_geometry(n, nx, n, &q);
  bool f32 = n->dtype == MF_F32 && nx->dtype == MF_F32;
  if (f32 && pool_dense(&q)) { pool_dense_fwd(&q, src[0], out); return; }
  int64_t dh = q.c.dh, dw = q.c.dw;
  #pragma omp parallel for schedule(static) if (q.P * q.H * q.W > 32768)
  for (int64_t pl = 0; pl < q.P; pl++) {
    int64_t xo = pl * q.H * q.W, yo = pl * q.OH * q.OW;
    for (int64_t oh = 0; oh < q.OH; oh++)
      for (int64_t ow = 0; ow < q.OW; ow++) {
        pool_win w = window(&q, oh, ow);
        double inv = w.div > 0 ? 1.0 / w.div : 0.0;
        if (f32) {
          const float *x = (const float *)src[0] + xo;
          float acc = q.is_max ? -FLT_MAX : 0.0f;
          for (int th = w.th0; th < w.th1; th++)
            for (int tw = w.tw0; tw < w.tw1; tw++) {
              float v = x[(w.hs + th * dh) * q.W + w.ws + tw * dw];
              if (q.is_max) { if (v > acc) acc = v; }
              else acc += v;
            }
          ((float *)out)[yo + oh * q.OW + ow] = q.is_max ? acc : acc * (float)inv;
        } else {
          double acc = q.is_max ? -DBL_MAX : 0.0;
          for (int th = w.th0; th < w.th1; th++)
            for (int tw = w.tw0; tw < w.tw1; tw++) {
              double v = mf_ld(src[0], nx->dtype, xo + (w.hs + th * dh) * q.W + w.ws + tw * dw);
              if (q.is_max) { if (v > acc) acc = v; }
              else acc += v;
            }
          mf_st(out, n->dtype, yo + oh * q.OW + ow, q.is_max ? acc : acc * inv);
        }
      }
  }
}

/* dx [N,C,H,W] from dy: average spreads dy / divisor over the window; max sends dy to the first maximum of the
 * window (row-major order of its taps, strict > so the first of equal values wins; nothing for a window without a
 * pixel) */
void mf_cpu_pool_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  pool_geo q;
  bool is_max = n->ip[0] == MF_POOL_MAX;
  const mf_node *nx = is_max ? mf_src(k, n, 0) : n, *nd = mf_src(k, n, is_max ? 1 : 0);
  const void *x = is_max ? src[0] : NULL, *dy = src[is_max ? 1 : 0];
  pool_geometry(n, n, nd, &q);
  bool f32 = n->dtype == MF_F32 && nd->dtype == MF_F32 && nx->dtype == MF_F32;
  if (f32 && pool_dense(&q)) { pool_dense_bwd(&q, dy, out); return; }
  int64_t dh = q.c.dh, dw = q.c.dw;
  #pragma omp parallel for schedule(static) if (q.P * q.H * q.W > 32768)
  for (int64_t pl = 0; pl < q.P; pl++) {
    int64_t xo = pl * q.H * q.W, yo = pl * q.OH * q.OW;
    if (f32) memset((float *)out + xo, 0, (size_t)(q.H * q.W) * sizeof(float));
    else for (int64_t i = 0; i < q.H * q.W; i++) mf_st(out, n->dtype, xo + i, 0.0);
    for (int64_t oh = 0; oh < q.OH; oh++)
      for (int64_t ow = 0; ow < q.OW; ow++) {
        pool_win w = window(&q, oh, ow);
        if (w.th0 >= w.th1 || w.tw0 >= w.tw1) continue; /* a window of padding only */
        double inv = w.div > 0 ? 1.0 / w.div : 0.0;
        int64_t yi = yo + oh * q.OW + ow;
        int64_t first = (w.hs + w.th0 * dh) * q.W + w.ws + w.tw0 * dw;
        if (f32) {
          float *dx = (float *)out + xo;
          float g = ((const float *)dy)[yi];
          if (q.is_max) {
            const float *xp = (const float *)x + xo;
            int64_t best = first;
            float bv = xp[best];
            for (int th = w.th0; th < w.th1; th++)
              for (int tw = w.tw0; tw < w.tw1; tw++) {
                int64_t i = (w.hs + th * dh) * q.W + w.ws + tw * dw;
                if (xp[i] > bv) { bv = xp[i]; best = i; }
              }
            dx[best] += g;
          } else {
            float gv = g * (float)inv;
            for (int th = w.th0; th < w.th1; th++)
              for (int tw = w.tw0; tw < w.tw1; tw++) dx[(w.hs + th * dh) * q.W + w.ws + tw * dw] += gv;
          }
        } else {
          double g = mf_ld(dy, nd->dtype, yi);
          if (q.is_max) {
            int64_t best = first;
            double bv = mf_ld(x, nx->dtype, xo + best);
            for (int th = w.th0; th < w.th1; th++)
              for (int tw = w.tw0; tw < w.tw1; tw++) {
                int64_t i = (w.hs + th * dh) * q.W + w.ws + tw * dw;
                double v = mf_ld(x, nx->dtype, xo + i);
                if (v > bv) { bv = v; best = i; }
              }
            mf_st(out, n->dtype, xo + best, mf_ld(out, n->dtype, xo + best) + g);
          } else {
            double gv = g * inv;
            for (int th = w.th0; th < w.th1; th++)
              for (int tw = w.tw0; tw < w.tw1; tw++) {
                int64_t i = xo + (w.hs + th * dh) * q.W + w.ws + tw * dw;
                mf_st(out, n->dtype, i, mf_ld(out, n->dtype, i) + gv);
              }
          }
        }
      }
  }
}

/* y [N,C,H*f,W*f] from x [N,C,H,W] */
void mf_cpu_upsample(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  int64_t f = n->ip[0], P = nx->ne[0] * nx->ne[1], H = nx->ne[2], W = nx->ne[3], OW = W * f;
  bool f32 = n->dtype == MF_F32 && nx->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 32768)
  for (int64_t r = 0; r < P * H; r++) { /* one input row -> f output rows */
    int64_t xo = r * W, yo = r * f * OW;
    if (f32) {
      const float *x = (const float *)src[0] + xo;
      float *y = (float *)out + yo;
      for (int64_t w = 0; w < W; w++)
        for (int64_t j = 0; j < f; j++) y[w * f + j] = x[w];
      for (int64_t i = 1; i < f; i++) memcpy(y + i * OW, y, (size_t)OW * sizeof(float));
    } else {
      for (int64_t i = 0; i < f; i++)
        for (int64_t ow = 0; ow < OW; ow++) mf_st(out, n->dtype, yo + i * OW + ow, mf_ld(src[0], nx->dtype, xo + ow / f));
    }
  }
}

/* dx [N,C,H,W] = sum of dy [N,C,H*f,W*f] over each f x f block */
void mf_cpu_upsample_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_src(k, n, 0);
  int64_t f = n->ip[0], P = n->ne[0] * n->ne[1], H = n->ne[2], W = n->ne[3], OW = W * f;
  bool f32 = n->dtype == MF_F32 && nd->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (mf_node_numel(nd) > 32768)
  for (int64_t r = 0; r < P * H; r++) {
    int64_t xo = r * W, yo = r * f * OW;
    for (int64_t w = 0; w < W; w++) {
      if (f32) {
        const float *dy = (const float *)src[0] + yo + w * f;
        float acc = 0;
        for (int64_t i = 0; i < f; i++)
          for (int64_t j = 0; j < f; j++) acc += dy[i * OW + j];
        ((float *)out)[xo + w] = acc;
      } else {
        double acc = 0;
        for (int64_t i = 0; i < f; i++)
          for (int64_t j = 0; j < f; j++) acc += mf_ld(src[0], nd->dtype, yo + w * f + i * OW + j);
        mf_st(out, n->dtype, xo + w, acc);
      }
    }
  }
}

/* ------------------------------------------------------------------ bilinear resize */

/* y [P,OH,OW] from x [P,H,W]: each output pixel mixes its four source pixels (mf_resize_src, ops.h), in double */
void mf_cpu_resize(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  int64_t P = nx->ne[0] * nx->ne[1], H = nx->ne[2], W = nx->ne[3], OH = n->ne[2], OW = n->ne[3];
  int mode = n->ip[0];
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 32768)
  for (int64_t r = 0; r < P * OH; r++) { /* one output row */
    int64_t p = r / OH, oh = r % OH, h0, h1;
    double lh;
    mf_resize_src(mode, oh, H, OH, n->fp[0], &h0, &h1, &lh);
    int64_t x0 = (p * H + h0) * W, x1 = (p * H + h1) * W;
    for (int64_t ow = 0; ow < OW; ow++) {
      int64_t w0, w1;
      double lw;
      mf_resize_src(mode, ow, W, OW, n->fp[1], &w0, &w1, &lw);
      double top = (1 - lw) * mf_ld(src[0], nx->dtype, x0 + w0) + lw * mf_ld(src[0], nx->dtype, x0 + w1);
      double bot = (1 - lw) * mf_ld(src[0], nx->dtype, x1 + w0) + lw * mf_ld(src[0], nx->dtype, x1 + w1);
      mf_st(out, n->dtype, r * OW + ow, (1 - lh) * top + lh * bot);
    }
  }
}

/* dx [P,H,W] from dy [P,OH,OW], gathered: each dx pixel sums, in double and in output order, the dy pixels whose
 * source pixels include it (the same sums for any thread count, no scratch). The maps are monotone, so the output
 * rows that reach input row h are one run [oh_lo, oh_hi), and the output columns that reach column w start at or
 * after those that reached w-1. */
void mf_cpu_resize_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_src(k, n, 0);
  int64_t P = n->ne[0] * n->ne[1], H = n->ne[2], W = n->ne[3], OH = nd->ne[2], OW = nd->ne[3];
  int mode = n->ip[0];
  double sh = n->fp[0], sw = n->fp[1];
  #pragma omp parallel for schedule(static) if (mf_node_numel(nd) > 32768)
  for (int64_t r = 0; r < P * H; r++) { /* one input row of dx */
    int64_t p = r / H, h = r % H, oh_lo = 0, oh_hi, a0, a1;
    double l;
    while (oh_lo < OH && (mf_resize_src(mode, oh_lo, H, OH, sh, &a0, &a1, &l), a1 < h)) oh_lo++;
    for (oh_hi = oh_lo; oh_hi < OH && (mf_resize_src(mode, oh_hi, H, OH, sh, &a0, &a1, &l), a0 <= h); oh_hi++) {}
    int64_t ow_lo = 0;
    for (int64_t w = 0; w < W; w++) {
      while (ow_lo < OW && (mf_resize_src(mode, ow_lo, W, OW, sw, &a0, &a1, &l), a1 < w)) ow_lo++;
      double acc = 0;
      for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
        int64_t h0, h1;
        double lh;
        mf_resize_src(mode, oh, H, OH, sh, &h0, &h1, &lh);
        double wh = (h0 == h ? 1 - lh : 0) + (h1 == h ? lh : 0);
        if (wh == 0) continue;
        for (int64_t ow = ow_lo; ow < OW; ow++) {
          int64_t w0, w1;
          double lw;
          mf_resize_src(mode, ow, W, OW, sw, &w0, &w1, &lw);
          if (w0 > w) break;
          double ww = (w0 == w ? 1 - lw : 0) + (w1 == w ? lw : 0);
          if (ww != 0) acc += wh * ww * mf_ld(src[0], nd->dtype, (p * OH + oh) * OW + ow);
        }
      }
      mf_st(out, n->dtype, r * W + w, acc);
    }
  }
}

/* ------------------------------------------------------------------ nearest resize (mf_resize_nearest_src, ops.h) */

/* y [P,OH,OW] from x [P,H,W]: a copy of the source pixel of each output pixel */
void mf_cpu_resize_nearest(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  int64_t P = nx->ne[0] * nx->ne[1], H = nx->ne[2], W = nx->ne[3], OH = n->ne[2], OW = n->ne[3];
  int mode = n->ip[0], rnd = n->ip[1];
  bool f32 = n->dtype == MF_F32 && nx->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 32768)
  for (int64_t r = 0; r < P * OH; r++) { /* one output row */
    int64_t p = r / OH, h = mf_resize_nearest_src(mode, rnd, r % OH, H, OH, n->fp[0]), xo = (p * H + h) * W;
    if (f32) {
      const float *x = (const float *)src[0] + xo;
      float *y = (float *)out + r * OW;
      for (int64_t ow = 0; ow < OW; ow++) y[ow] = x[mf_resize_nearest_src(mode, rnd, ow, W, OW, n->fp[1])];
    } else {
      for (int64_t ow = 0; ow < OW; ow++)
        mf_st(out, n->dtype, r * OW + ow, mf_ld(src[0], nx->dtype, xo + mf_resize_nearest_src(mode, rnd, ow, W, OW, n->fp[1])));
    }
  }
}

/* dx [P,H,W] from dy [P,OH,OW], gathered: input pixel (h, w) sums, in output order, the dy pixels of the rows
 * [first(h), first(h+1)) and columns [first(w), first(w+1)) (mf_resize_nearest_first), f32 sums in f32,
 * others in double. Each dx pixel is written by one thread: the same sums for any thread count, no scratch. */
void mf_cpu_resize_nearest_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_src(k, n, 0);
  int64_t P = n->ne[0] * n->ne[1], H = n->ne[2], W = n->ne[3], OH = nd->ne[2], OW = nd->ne[3];
  int mode = n->ip[0], rnd = n->ip[1];
  double sh = n->fp[0], sw = n->fp[1];
  bool f32 = n->dtype == MF_F32 && nd->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (mf_node_numel(nd) > 32768)
  for (int64_t r = 0; r < P * H; r++) { /* one input row of dx */
    int64_t p = r / H, h = r % H;
    int64_t oh0 = mf_resize_nearest_first(mode, rnd, h, H, OH, sh), oh1 = mf_resize_nearest_first(mode, rnd, h + 1, H, OH, sh);
    int64_t ow0 = mf_resize_nearest_first(mode, rnd, 0, W, OW, sw);
    for (int64_t w = 0; w < W; w++) {
      int64_t ow1 = mf_resize_nearest_first(mode, rnd, w + 1, W, OW, sw);
      if (f32) {
        const float *dy = (const float *)src[0] + p * OH * OW;
        float acc = 0;
        for (int64_t oh = oh0; oh < oh1; oh++)
          for (int64_t ow = ow0; ow < ow1; ow++) acc += dy[oh * OW + ow];
        ((float *)out)[r * W + w] = acc;
      } else {
        double acc = 0;
        for (int64_t oh = oh0; oh < oh1; oh++)
          for (int64_t ow = ow0; ow < ow1; ow++) acc += mf_ld(src[0], nd->dtype, (p * OH + oh) * OW + ow);
        mf_st(out, n->dtype, r * W + w, acc);
      }
      ow0 = ow1;
    }
  }
}

/* ------------------------------------------------------------------ bicubic resize (mf_resize_cubic_taps, ops.h) */

/* y [P,OH,OW] from x [P,H,W]: 4 x 4 taps per output pixel, in double */
void mf_cpu_resize_cubic(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  int64_t P = nx->ne[0] * nx->ne[1], H = nx->ne[2], W = nx->ne[3], OH = n->ne[2], OW = n->ne[3];
  int mode = n->ip[0], excl = n->ip[1];
  double a = n->fp[2];
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 8192)
  for (int64_t r = 0; r < P * OH; r++) { /* one output row */
    int64_t p = r / OH, hi[4], wi[4];
    double hw[4], ww[4];
    mf_resize_cubic_taps(mode, r % OH, H, OH, n->fp[0], a, excl, hi, hw);
    for (int64_t ow = 0; ow < OW; ow++) {
      mf_resize_cubic_taps(mode, ow, W, OW, n->fp[1], a, excl, wi, ww);
      double acc = 0;
      for (int i = 0; i < 4; i++) {
        double row = 0;
        for (int j = 0; j < 4; j++) row += ww[j] * mf_ld(src[0], nx->dtype, (p * H + hi[i]) * W + wi[j]);
        acc += hw[i] * row;
      }
      mf_st(out, n->dtype, r * OW + ow, acc);
    }
  }
}

/* resize_cubic_bwd's workspace: each axis's taps (mf_resize_cubic_taps: 4 clamped indices and weights per output) and
 * the run of outputs that read each input (mf_resize_cubic_run), computed once per call instead of once per dx pixel */
typedef struct cubic_axis {
  double *wgt;  /* [out][4] */
  int64_t *idx; /* [out][4] */
  int64_t *run; /* [in][2]: [o0, o1) */
} cubic_axis;

static size_t cubic_axis_bytes(int64_t in, int64_t out) { return (size_t)(out * 4) * (sizeof(double) + sizeof(int64_t)) + (size_t)(in * 2) * sizeof(int64_t); }

static char *cubic_axis_fill(cubic_axis *ax, char *ws, int mode, int64_t in, int64_t out, double scale, double a, int excl) {
  ax->wgt = (double *)ws;
  ax->idx = (int64_t *)(ax->wgt + out * 4);
  ax->run = ax->idx + out * 4;
  for (int64_t o = 0; o < out; o++) mf_resize_cubic_taps(mode, o, in, out, scale, a, excl, ax->idx + o * 4, ax->wgt + o * 4);
  for (int64_t i = 0; i < in; i++) mf_resize_cubic_run(mode, i, in, out, scale, ax->run + i * 2, ax->run + i * 2 + 1);
  return (char *)(ax->run + in * 2);
}

/* the weight output o gives input i: mf_resize_cubic_weight from the table (the same sum, in the same order) */
static inline double cubic_axis_weight(const cubic_axis *ax, int64_t o, int64_t i) {
  const int64_t *idx = ax->idx + o * 4;
  const double *w = ax->wgt + o * 4;
  double s = 0;
  for (int k = 0; k < 4; k++) s += idx[k] == i ? w[k] : 0;
  return s;
}

size_t mf_cpu_ws_resize(const mf_graph *g, const mf_node *n) {
  if (n->op != MF_OP_RESIZE_CUBIC_BWD) return 0;
  const mf_node *nd = &g->nodes[n->src[0]];
  return cubic_axis_bytes(n->ne[2], nd->ne[2]) + cubic_axis_bytes(n->ne[3], nd->ne[3]);
}

/* dx [P,H,W] from dy [P,OH,OW], gathered in double: input pixel (h, w) sums, in output order, dy times the weights the
 * outputs of the runs mf_resize_cubic_run(h) x mf_resize_cubic_run(w) read it with; one thread per dx row. Both axes'
 * taps and runs are tabled in ws first (mf_cpu_ws_resize). */
void mf_cpu_resize_cubic_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *nd = mf_src(k, n, 0);
  int64_t P = n->ne[0] * n->ne[1], H = n->ne[2], W = n->ne[3], OH = nd->ne[2], OW = nd->ne[3];
  int mode = n->ip[0], excl = n->ip[1];
  double a = n->fp[2];
  cubic_axis ah, aw;
  cubic_axis_fill(&aw, cubic_axis_fill(&ah, ws, mode, H, OH, n->fp[0], a, excl), mode, W, OW, n->fp[1], a, excl);
  #pragma omp parallel for schedule(static) if (mf_node_numel(nd) > 8192)
  for (int64_t r = 0; r < P * H; r++) {
    int64_t p = r / H, h = r % H, oh0 = ah.run[h * 2], oh1 = ah.run[h * 2 + 1];
    for (int64_t w = 0; w < W; w++) {
      int64_t ow0 = aw.run[w * 2], ow1 = aw.run[w * 2 + 1];
      double acc = 0;
      for (int64_t oh = oh0; oh < oh1; oh++) {
        double wh = cubic_axis_weight(&ah, oh, h), row = 0;
        if (wh == 0) continue;
        for (int64_t ow = ow0; ow < ow1; ow++) row += cubic_axis_weight(&aw, ow, w) * mf_ld(src[0], nd->dtype, (p * OH + oh) * OW + ow);
        acc += wh * row;
      }
      mf_st(out, n->dtype, r * W + w, acc);
    }
  }
}

/* ------------------------------------------------------------------ padding (mf_pad_src, ops.h) */

/* y [P,OH,OW] = x [P,H,W] padded: constant, mirrored or edge pixels outside */
void mf_cpu_pad(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  int64_t P = nx->ne[0] * nx->ne[1], H = nx->ne[2], W = nx->ne[3], OH = n->ne[2], OW = n->ne[3];
  int mode = n->ip[0], pt = n->ip[1], pl = n->ip[2];
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 32768)
  for (int64_t r = 0; r < P * OH; r++) {
    int64_t p = r / OH, h = mf_pad_src(mode, r % OH, pt, H);
    for (int64_t ow = 0; ow < OW; ow++) {
      int64_t w = mf_pad_src(mode, ow, pl, W);
      double v = h < 0 || w < 0 ? n->fp[0] : mf_ld(src[0], nx->dtype, (p * H + h) * W + w);
      mf_st(out, n->dtype, r * OW + ow, v);
    }
  }
}

/* dx [P,H,W]: each pixel sums, in double and in output order, the dy pixels that read it */
void mf_cpu_pad_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_src(k, n, 0);
  int64_t P = n->ne[0] * n->ne[1], H = n->ne[2], W = n->ne[3], OH = nd->ne[2], OW = nd->ne[3];
  int mode = n->ip[0], pt = n->ip[1], pl = n->ip[2];
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 32768)
  for (int64_t r = 0; r < P * H; r++) {
    int64_t p = r / H, h = r % H, rh[6], rw[6];
    mf_pad_readers(mode, h, pt, H, OH, rh);
    for (int64_t w = 0; w < W; w++) {
      mf_pad_readers(mode, w, pl, W, OW, rw);
      double acc = 0;
      for (int a = 0; a < 3; a++)
        for (int64_t oh = rh[2 * a]; oh < rh[2 * a + 1]; oh++)
          for (int b = 0; b < 3; b++)
            for (int64_t ow = rw[2 * b]; ow < rw[2 * b + 1]; ow++) acc += mf_ld(src[0], nd->dtype, (p * OH + oh) * OW + ow);
      mf_st(out, n->dtype, r * W + w, acc);
    }
  }
}

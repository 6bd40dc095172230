/* ssim.c (CPU) — kernels of the fused SSIM map and its backward (ops/ssim.c), threaded over (plane, row block,
 * column chunk) items that are independent of each other, so any thread count gives the same bits. Sums in double:
 * column sums of k rows slide down a block (one row in, one out), k of them are added across; stack buffers only. */
#include "backend/cpu/cpu.h"
#include "ops/ssim.h"
#include <string.h>

#define SS_CH 256    /* the most output (forward) or input (backward) columns of an item */
#define SS_RING 2048 /* k x columns of the backward's ring of coefficient rows */
#define SS_RB_FWD 32 /* output rows of a forward item */
#define SS_RB_BWD 64 /* input rows of a backward item */

/* the columns of an item for window k: SS_CH, fewer for a large k (the backward keeps k rows of them) */
static int ss_chunk(int k) { return SS_RING / k < SS_CH ? SS_RING / k : SS_CH; }

/* m values of row `row` of a [.., W] plane starting at column c0 (those outside [0, W) read 0) */
static void ss_load(double *d, const void *p, mf_dtype t, int64_t row, int64_t W, int64_t c0, int m) {
  int64_t a = c0 < 0 ? -c0 : 0, b = W - c0 < m ? W - c0 : m;
  if (b < a) b = a;
  for (int64_t j = 0; j < a; j++) d[j] = 0;
  for (int64_t j = b; j < m; j++) d[j] = 0;
  int64_t o = row * W + c0;
  if (t == MF_F32)
    for (int64_t j = a; j < b; j++) d[j] = ((const float *)p)[o + j];
  else if (t == MF_F64)
    for (int64_t j = a; j < b; j++) d[j] = ((const double *)p)[o + j];
  else
    for (int64_t j = a; j < b; j++) d[j] = mf_ld(p, t, o + j);
}

static void ss_store(void *p, mf_dtype t, int64_t o, const double *v, int n) {
  if (t == MF_F32)
    for (int j = 0; j < n; j++) ((float *)p)[o + j] = (float)v[j];
  else if (t == MF_F64)
    for (int j = 0; j < n; j++) ((double *)p)[o + j] = v[j];
  else
    for (int j = 0; j < n; j++) mf_st(p, t, o + j, v[j]);
}

/* cs[5][m] += sign * (x, y, x^2, y^2, xy) of row `row` of plane x, y at columns c0 .. c0+m-1 */
typedef struct ss_plane {
  const void *x, *y;
  mf_dtype xt, yt;
  int64_t W;
} ss_plane;
static void ss_cols(const ss_plane *q, int64_t row, int64_t c0, int m, double sign, double (*cs)[SS_CH + 2 * MF_SSIM_MAXK]) {
  double xr[SS_CH + 2 * MF_SSIM_MAXK], yr[SS_CH + 2 * MF_SSIM_MAXK];
  ss_load(xr, q->x, q->xt, row, q->W, c0, m);
  ss_load(yr, q->y, q->yt, row, q->W, c0, m);
  for (int j = 0; j < m; j++) {
    double a = xr[j] * sign, b = yr[j];
    cs[0][j] += a, cs[1][j] += b * sign, cs[2][j] += a * xr[j], cs[3][j] += b * b * sign, cs[4][j] += a * b;
  }
}
/* cs[5][m] += the terms of row rin - the terms of row rout (the column sums move down a row): in one pass straight
 * from f32 rows when both images are f32 and the columns lie inside the image, else through ss_cols */
static void ss_slide(const ss_plane *q, int64_t rout, int64_t rin, int64_t c0, int m, double (*cs)[SS_CH + 2 * MF_SSIM_MAXK]) {
  if (q->xt != MF_F32 || q->yt != MF_F32 || c0 < 0 || c0 + m > q->W) {
    ss_cols(q, rout, c0, m, -1.0, cs);
    ss_cols(q, rin, c0, m, 1.0, cs);
    return;
  }
  const float *xo = (const float *)q->x + rout * q->W + c0, *yo = (const float *)q->y + rout * q->W + c0;
  const float *xi = (const float *)q->x + rin * q->W + c0, *yi = (const float *)q->y + rin * q->W + c0;
  for (int j = 0; j < m; j++) {
    double a = xi[j], b = yi[j], c = xo[j], d = yo[j];
    cs[0][j] += a - c, cs[1][j] += b - d, cs[2][j] += a * a - c * c, cs[3][j] += b * b - d * d, cs[4][j] += a * b - c * d;
  }
}

/* hs[5][n] = sums of k neighbouring column sums: hs[s][j] = cs[s][j] + .. + cs[s][j+k-1], sliding along the row
 * (one in, one out: five independent chains of two adds per column instead of 5k adds) */
static void ss_across(double (*cs)[SS_CH + 2 * MF_SSIM_MAXK], int k, int n, double (*hs)[SS_CH + MF_SSIM_MAXK]) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0;
  for (int t = 0; t < k; t++) a0 += cs[0][t], a1 += cs[1][t], a2 += cs[2][t], a3 += cs[3][t], a4 += cs[4][t];
  hs[0][0] = a0, hs[1][0] = a1, hs[2][0] = a2, hs[3][0] = a3, hs[4][0] = a4;
  for (int j = 1; j < n; j++) {
    a0 += cs[0][j + k - 1] - cs[0][j - 1];
    a1 += cs[1][j + k - 1] - cs[1][j - 1];
    a2 += cs[2][j + k - 1] - cs[2][j - 1];
    a3 += cs[3][j + k - 1] - cs[3][j - 1];
    a4 += cs[4][j + k - 1] - cs[4][j - 1];
    hs[0][j] = a0, hs[1][j] = a1, hs[2][j] = a2, hs[3][j] = a3, hs[4][j] = a4;
  }
}

/* map [P,OH,OW] of x, y [P,H,W] (P = B C) */
void mf_cpu_ssim(const mf_kctx *kc, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(kc, n, 0), *ny = mf_src(kc, n, 1);
  int k = n->ip[0], ch = ss_chunk(k);
  int64_t P = n->ne[0] * n->ne[1], OH = n->ne[2], OW = n->ne[3], W = nx->ne[3];
  int64_t nrb = (OH + SS_RB_FWD - 1) / SS_RB_FWD, ncc = (OW + ch - 1) / ch, items = P * nrb * ncc;
  double inv = 1.0 / ((double)k * k);
  int64_t H = nx->ne[2];
  #pragma omp parallel for schedule(dynamic) if (P * OH * OW > 16384)
  for (int64_t it = 0; it < items; it++) {
    int64_t pl = it / (nrb * ncc), rb = it / ncc % nrb, c0 = it % ncc * ch;
    int64_t p0 = rb * SS_RB_FWD, p1 = p0 + SS_RB_FWD < OH ? p0 + SS_RB_FWD : OH;
    int nn = OW - c0 < ch ? (int)(OW - c0) : ch, m = nn + k - 1;
    ss_plane q = {(const char *)src[0] + (size_t)(pl * H * W) * mf_dtype_size(nx->dtype),
                  (const char *)src[1] + (size_t)(pl * H * W) * mf_dtype_size(ny->dtype), nx->dtype, ny->dtype, W};
    double cs[5][SS_CH + 2 * MF_SSIM_MAXK], hs[5][SS_CH + MF_SSIM_MAXK], row[SS_CH];
    memset(cs, 0, sizeof cs);
    for (int64_t r = p0; r < p0 + k; r++) ss_cols(&q, r, c0, m, 1.0, cs);
    for (int64_t p = p0; p < p1; p++) {
      ss_across(cs, k, nn, hs);
      for (int j = 0; j < nn; j++) row[j] = mf_ssim_window(hs[0][j], hs[1][j], hs[2][j], hs[3][j], hs[4][j], inv, 0, NULL);
      ss_store(out, n->dtype, (pl * OH + p) * OW + c0, row, nn);
      if (p + 1 < p1) ss_slide(&q, p, p + k, c0, m, cs); /* the column sums move down one row */
    }
  }
}

/* dx [P,H,W] = d(sum dmap * map)/dx from x, y [P,H,W], dmap [P,OH,OW] (src 0, 1, 2): pixel q of x gathers, over the
 * windows p that hold it, g_p (c0_p + c1_p x_q + c2_p y_q) / k^2 (mf_ssim_window's coefficients). An item (plane,
 * input rows [r0, r1), input columns [j0, j0+n)) recomputes the window sums of output rows r0-k+1 .. r1-1 over output
 * columns j0-k+1 .. j0+n-1, sums each row's coefficients across k columns, and keeps the last k such rows in a ring
 * whose running sum is what input row p (p = the newest output row) gathers. */
void mf_cpu_ssim_bwd(const mf_kctx *kc, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(kc, n, 0), *ny = mf_src(kc, n, 1), *ng = mf_src(kc, n, 2);
  int k = n->ip[0], ch = ss_chunk(k);
  int64_t P = n->ne[0] * n->ne[1], H = n->ne[2], W = n->ne[3], OH = ng->ne[2], OW = ng->ne[3];
  int64_t nrb = (H + SS_RB_BWD - 1) / SS_RB_BWD, ncc = (W + ch - 1) / ch, items = P * nrb * ncc;
  double inv = 1.0 / ((double)k * k);
  #pragma omp parallel for schedule(dynamic) if (P * H * W > 16384)
  for (int64_t it = 0; it < items; it++) {
    int64_t pl = it / (nrb * ncc), rb = it / ncc % nrb, j0 = it % ncc * ch;
    int64_t r0 = rb * SS_RB_BWD, r1 = r0 + SS_RB_BWD < H ? r0 + SS_RB_BWD : H;
    int nn = W - j0 < ch ? (int)(W - j0) : ch, no = nn + k - 1, m = nn + 2 * k - 2;
    int64_t q0 = j0 - k + 1; /* output column of coefficient t = 0; input column of column sum 0 */
    ss_plane q = {(const char *)src[0] + (size_t)(pl * H * W) * mf_dtype_size(nx->dtype),
                  (const char *)src[1] + (size_t)(pl * H * W) * mf_dtype_size(ny->dtype), nx->dtype, ny->dtype, W};
    const char *gp = (const char *)src[2] + (size_t)(pl * OH * OW) * mf_dtype_size(ng->dtype);
    double cs[5][SS_CH + 2 * MF_SSIM_MAXK], hs[5][SS_CH + MF_SSIM_MAXK], cf[3][SS_CH + MF_SSIM_MAXK], gr[SS_CH + MF_SSIM_MAXK];
    double ring[SS_RING * 3], v[3][SS_CH], h[3][SS_CH], xr[SS_CH + 2 * MF_SSIM_MAXK], yr[SS_CH + 2 * MF_SSIM_MAXK], o[SS_CH];
    memset(cs, 0, sizeof cs);
    memset(v, 0, sizeof v);
    memset(ring, 0, sizeof ring);
    int64_t pa = r0 - k + 1 < 0 ? 0 : r0 - k + 1;
    if (pa < OH)
      for (int64_t r = pa; r < pa + k; r++) ss_cols(&q, r, q0, m, 1.0, cs);
    for (int64_t p = pa; p < r1; p++) {
      if (p < OH) {
        ss_across(cs, k, no, hs);
        ss_load(gr, gp, ng->dtype, p, OW, q0, no); /* 0 outside the output's columns */
        for (int t = 0; t < no; t++) { /* gr is 0 outside the map's columns, and so are those coefficients */
          double c0, c1, c2;
          mf_ssim_window3(hs[0][t], hs[1][t], hs[2][t], hs[3][t], hs[4][t], inv, gr[t], &c0, &c1, &c2);
          cf[0][t] = c0, cf[1][t] = c1, cf[2][t] = c2;
        }
        /* input column j0+j gathers output columns j0+j-k+1 .. j0+j: t = j .. j+k-1, sliding as ss_across */
        double a0 = 0, a1 = 0, a2 = 0;
        for (int t = 0; t < k; t++) a0 += cf[0][t], a1 += cf[1][t], a2 += cf[2][t];
        h[0][0] = a0, h[1][0] = a1, h[2][0] = a2;
        for (int j = 1; j < nn; j++) {
          a0 += cf[0][j + k - 1] - cf[0][j - 1];
          a1 += cf[1][j + k - 1] - cf[1][j - 1];
          a2 += cf[2][j + k - 1] - cf[2][j - 1];
          h[0][j] = a0, h[1][j] = a1, h[2][j] = a2;
        }
        if (p + 1 < OH && p + 1 < r1) ss_slide(&q, p, p + k, q0, m, cs);
      } else
        memset(h, 0, sizeof h);
      double *rg = ring + (size_t)(p % k) * 3 * nn; /* output row p - k leaves, p comes in */
      for (int s = 0; s < 3; s++)
        for (int j = 0; j < nn; j++) {
          v[s][j] += h[s][j] - rg[s * nn + j];
          rg[s * nn + j] = h[s][j];
        }
      if (p >= r0) { /* input row p gathers output rows p-k+1 .. p */
        ss_load(xr, q.x, q.xt, p, W, j0, nn);
        ss_load(yr, q.y, q.yt, p, W, j0, nn);
        for (int j = 0; j < nn; j++) o[j] = (v[0][j] + v[1][j] * xr[j] + v[2][j] * yr[j]) * inv;
        ss_store(out, n->dtype, (pl * H + p) * W + j0, o, nn);
      }
    }
  }
}

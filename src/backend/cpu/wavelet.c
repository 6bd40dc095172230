/* wavelet.c (CPU) — Haar DWT [N,C,H,W] -> [N,4C,H/2,W/2] and its inverse (docs/design.md 3.1).
 * With a=x[2i,2j], b=x[2i+1,2j], c=x[2i,2j+1], d=x[2i+1,2j+1] (first index = row):
 * LL=(a+b+c+d)/2, HL=(-a-b+c+d)/2, LH=(-a+b-c+d)/2, HH=(a-b-c+d)/2; the inverse is the transpose. */
#include "backend/cpu/cpu.h"

/* One output row i of one (n, c): the four bands' rows of length w from input rows 2i and 2i+1. */
void mf_cpu_dwt(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int64_t N = x->ne[0], C = x->ne[1], W = x->ne[3], h = n->ne[2], w = n->ne[3];
  int64_t band = C * h * w; /* distance between LL, HL, LH, HH of the same (c, i, j) */
  int64_t rows = N * C * h;
  bool f32 = n->dtype == MF_F32 && x->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (rows * w > 16384)
  for (int64_t r = 0; r < rows; r++) {
    int64_t i = r % h, nc = r / h, nn = nc / C, c = nc % C;
    int64_t xo = (nc * 2 * h + 2 * i) * W;           /* x[nn, c, 2i, 0] */
    int64_t yo = ((nn * 4 * C + c) * h + i) * w;     /* y[nn, c (LL), i, 0] */
    if (f32) {
      const float *x0 = (const float *)src[0] + xo, *x1 = x0 + W;
      float *ll = (float *)out + yo, *hl = ll + band, *lh = hl + band, *hh = lh + band;
      for (int64_t j = 0; j < w; j++) {
        float a = x0[2 * j], b = x1[2 * j], cc = x0[2 * j + 1], d = x1[2 * j + 1];
        ll[j] = 0.5f * (a + b + cc + d);
        hl[j] = 0.5f * (-a - b + cc + d);
        lh[j] = 0.5f * (-a + b - cc + d);
        hh[j] = 0.5f * (a - b - cc + d);
      }
    } else {
      for (int64_t j = 0; j < w; j++) {
        double a = mf_ld(src[0], x->dtype, xo + 2 * j), b = mf_ld(src[0], x->dtype, xo + W + 2 * j);
        double cc = mf_ld(src[0], x->dtype, xo + 2 * j + 1), d = mf_ld(src[0], x->dtype, xo + W + 2 * j + 1);
        mf_st(out, n->dtype, yo + j, 0.5 * (a + b + cc + d));
        mf_st(out, n->dtype, yo + band + j, 0.5 * (-a - b + cc + d));
        mf_st(out, n->dtype, yo + 2 * band + j, 0.5 * (-a + b - cc + d));
        mf_st(out, n->dtype, yo + 3 * band + j, 0.5 * (a - b - cc + d));
      }
    }
  }
}

/* y [N,4C,h,w] -> x [N,C,2h,2w]: a=(LL-HL-LH+HH)/2, b=(LL-HL+LH-HH)/2, c=(LL+HL-LH-HH)/2, d=(LL+HL+LH+HH)/2 */
void mf_cpu_idwt(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *y = mf_src(k, n, 0);
  int64_t C = n->ne[1], W = n->ne[3], h = y->ne[2], w = y->ne[3];
  int64_t band = C * h * w, rows = n->ne[0] * C * h;
  bool f32 = n->dtype == MF_F32 && y->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (rows * w > 16384)
  for (int64_t r = 0; r < rows; r++) {
    int64_t i = r % h, nc = r / h, nn = nc / C, c = nc % C;
    int64_t xo = (nc * 2 * h + 2 * i) * W, yo = ((nn * 4 * C + c) * h + i) * w;
    if (f32) {
      const float *ll = (const float *)src[0] + yo, *hl = ll + band, *lh = hl + band, *hh = lh + band;
      float *x0 = (float *)out + xo, *x1 = x0 + W;
      for (int64_t j = 0; j < w; j++) {
        float L = ll[j], H = hl[j], V = lh[j], D = hh[j];
        x0[2 * j] = 0.5f * (L - H - V + D);
        x1[2 * j] = 0.5f * (L - H + V - D);
        x0[2 * j + 1] = 0.5f * (L + H - V - D);
        x1[2 * j + 1] = 0.5f * (L + H + V + D);
      }
    } else {
      for (int64_t j = 0; j < w; j++) {
        double L = mf_ld(src[0], y->dtype, yo + j), H = mf_ld(src[0], y->dtype, yo + band + j);
        double V = mf_ld(src[0], y->dtype, yo + 2 * band + j), D = mf_ld(src[0], y->dtype, yo + 3 * band + j);
        mf_st(out, n->dtype, xo + 2 * j, 0.5 * (L - H - V + D));
        mf_st(out, n->dtype, xo + W + 2 * j, 0.5 * (L - H + V - D));
        mf_st(out, n->dtype, xo + 2 * j + 1, 0.5 * (L + H - V - D));
        mf_st(out, n->dtype, xo + W + 2 * j + 1, 0.5 * (L + H + V + D));
      }
    }
  }
}

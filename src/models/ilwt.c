/* ilwt.c — integer lifting wavelets: Haar S-transform and LeGall 5/3 (lossless JPEG 2000) on int32
 * planes of any size, with true floors and symmetric extension; see ilwt.h for the formulas. */
#include "models/ilwt.h"
#include <stdlib.h>

const char *mf_ilwt_name(mf_ilwt_kind k) { return k == MF_ILWT_HAAR ? "haar" : "legall53"; }

/* x[2i+2] with whole-sample symmetric extension: past the end, x[n] = x[n-2]. Indices in samples. */
static inline int32_t even_right(const int32_t *x, int stride, int n, int i) {
  int j = 2 * i + 2;
  if (j >= n) j = 2 * (n - 1) - j; /* j == n -> n-2 (n even, i = nh-1) */
  return x[(size_t)j * (size_t)stride];
}

/* d[i] with symmetric extension d[-1] = d[0], d[nh] = d[nh-1]; nh >= 1 */
static inline int32_t d_at(const int32_t *d, int nh, int i) {
  if (i < 0) i = 0;
  if (i >= nh) i = nh - 1;
  return d[i];
}

void mf_ilwt_1d_forward(int32_t *x, int n, int stride, mf_ilwt_kind k, int32_t *tmp) {
  if (n < 2) return; /* one sample: it is its own low-pass value */
  int nl = (n + 1) / 2, nh = n / 2;
  int32_t *s = tmp, *d = tmp + nl; /* tmp: [s(nl) | d(nh)] */
  size_t st = (size_t)stride;
  if (k == MF_ILWT_HAAR) {
    for (int i = 0; i < nh; i++) {
      int32_t a = x[(size_t)(2 * i) * st], b = x[(size_t)(2 * i + 1) * st];
      d[i] = b - a;
      s[i] = a + mf_floor_div_pow2(d[i], 1);
    }
    if (n % 2) s[nl - 1] = x[(size_t)(n - 1) * st];
  } else {
    for (int i = 0; i < nh; i++) /* predict */
      d[i] = x[(size_t)(2 * i + 1) * st] - mf_floor_div_pow2(x[(size_t)(2 * i) * st] + even_right(x, stride, n, i), 1);
    for (int i = 0; i < nl; i++) /* update */
      s[i] = x[(size_t)(2 * i) * st] + mf_floor_div_pow2(d_at(d, nh, i - 1) + d_at(d, nh, i) + 2, 2);
  }
  for (int i = 0; i < n; i++) x[(size_t)i * st] = tmp[i];
}

void mf_ilwt_1d_inverse(int32_t *x, int n, int stride, mf_ilwt_kind k, int32_t *tmp) {
  if (n < 2) return;
  int nl = (n + 1) / 2, nh = n / 2;
  size_t st = (size_t)stride;
  const int32_t *s = x, *d = x + (size_t)nl * st; /* read through the stride */
  if (k == MF_ILWT_HAAR) {
    for (int i = 0; i < nh; i++) {
      int32_t di = d[(size_t)i * st];
      int32_t a = s[(size_t)i * st] - mf_floor_div_pow2(di, 1);
      tmp[2 * i] = a;
      tmp[2 * i + 1] = di + a;
    }
    if (n % 2) tmp[n - 1] = s[(size_t)(nl - 1) * st];
  } else {
    int32_t *dd = tmp + n; /* contiguous copy of d (tmp holds 2n values) */
    for (int i = 0; i < nh; i++) dd[i] = d[(size_t)i * st];
    for (int i = 0; i < nl; i++) /* undo update: even samples */
      tmp[2 * i] = s[(size_t)i * st] - mf_floor_div_pow2(d_at(dd, nh, i - 1) + d_at(dd, nh, i) + 2, 2);
    for (int i = 0; i < nh; i++) /* undo predict: odd samples */
      tmp[2 * i + 1] = dd[i] + mf_floor_div_pow2(tmp[2 * i] + even_right(tmp, 1, n, i), 1);
  }
  for (int i = 0; i < n; i++) x[(size_t)i * st] = tmp[i];
}

/* One 2-D level on the top-left w x h region of a plane whose rows are `pitch` apart. */
static void level_2d(int32_t *p, int w, int h, int pitch, mf_ilwt_kind k, int inverse, int32_t *tmp) {
  if (!inverse) {
    for (int y = 0; y < h; y++) mf_ilwt_1d_forward(p + (size_t)y * (size_t)pitch, w, 1, k, tmp);
    for (int x = 0; x < w; x++) mf_ilwt_1d_forward(p + x, h, pitch, k, tmp);
  } else {
    for (int x = 0; x < w; x++) mf_ilwt_1d_inverse(p + x, h, pitch, k, tmp);
    for (int y = 0; y < h; y++) mf_ilwt_1d_inverse(p + (size_t)y * (size_t)pitch, w, 1, k, tmp);
  }
}

static int run(int32_t *plane, int w, int h, int levels, mf_ilwt_kind k, int inverse) {
  if (!plane || w < 1 || h < 1 || levels < 1 || (k != MF_ILWT_HAAR && k != MF_ILWT_LEGALL53)) return -1;
  int n = w > h ? w : h;
  int32_t *tmp = malloc(2 * (size_t)n * sizeof *tmp);
  if (!tmp) return -1;
  /* sizes of the region each level works on: level l acts on ceil^l(w) x ceil^l(h) */
  int ws[32], hs[32], nlev = 0;
  for (int cw = w, ch = h; nlev < levels && nlev < 32 && (cw > 1 || ch > 1); nlev++) {
    ws[nlev] = cw;
    hs[nlev] = ch;
    cw = (cw + 1) / 2;
    ch = (ch + 1) / 2;
  }
  if (!inverse)
    for (int l = 0; l < nlev; l++) level_2d(plane, ws[l], hs[l], w, k, 0, tmp);
  else
    for (int l = nlev - 1; l >= 0; l--) level_2d(plane, ws[l], hs[l], w, k, 1, tmp);
  free(tmp);
  return 0;
}

int mf_ilwt_forward(int32_t *plane, int w, int h, int levels, mf_ilwt_kind k) { return run(plane, w, h, levels, k, 0); }
int mf_ilwt_inverse(int32_t *plane, int w, int h, int levels, mf_ilwt_kind k) { return run(plane, w, h, levels, k, 1); }

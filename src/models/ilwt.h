/* ilwt.h — integer lifting wavelets (docs/design.md 3.1 "ILWT"): the integer Haar S-transform and the
 * LeGall 5/3 transform of lossless JPEG 2000, exactly invertible on int32 planes of any size.
 *
 * Both use a true floor (rounding toward minus infinity), never C's truncating division, so the
 * transforms are exact on negative values too.
 *
 * 1-D, length n (n >= 1): nl = ceil(n/2) low-pass samples s, nh = floor(n/2) high-pass samples d.
 *   Haar S:  d[i] = x[2i+1] - x[2i];  s[i] = x[2i] + floor(d[i]/2)      (odd n: s[nl-1] = x[n-1])
 *   LeGall 5/3:
 *            d[i] = x[2i+1] - floor((x[2i] + x[2i+2]) / 2)
 *            s[i] = x[2i]   + floor((d[i-1] + d[i] + 2) / 4)
 *     with whole-sample symmetric extension at both ends (x[n] = x[n-2], d[-1] = d[0],
 *     d[nh] = d[nh-1]), which is what JPEG 2000 does for odd and even lengths alike.
 * 2-D, one level: every row, then every column, each written as [s..., d...] (Mallat layout):
 *   LL = top-left ceil(h/2) x ceil(w/2), HL = top-right (high along x), LH = bottom-left (high
 *   along y), HH = bottom-right. More levels repeat this on the LL quadrant.
 */
#ifndef MF_ILWT_H
#define MF_ILWT_H

#include <stdint.h>

typedef enum mf_ilwt_kind { MF_ILWT_HAAR = 0, MF_ILWT_LEGALL53 } mf_ilwt_kind;

/* floor(a / 2^k) for any sign (k >= 0), without relying on the implementation-defined right shift
 * of negative numbers. */
static inline int32_t mf_floor_div_pow2(int32_t a, int k) {
  int32_t d = (int32_t)1 << k;
  int32_t q = a / d;
  return (a % d != 0 && a < 0) ? q - 1 : q;
}

/* 1-D transforms of n values read and written with a stride (tmp: n int32 of scratch). */
void mf_ilwt_1d_forward(int32_t *x, int n, int stride, mf_ilwt_kind k, int32_t *tmp);
void mf_ilwt_1d_inverse(int32_t *x, int n, int stride, mf_ilwt_kind k, int32_t *tmp);

/* In place on plane[h][w] (row-major, w x h >= 1 x 1), `levels` >= 1 levels (stops early once the
 * LL quadrant is 1 x 1). Returns 0, or -1 on bad arguments or no memory (plane untouched then). */
int mf_ilwt_forward(int32_t *plane, int w, int h, int levels, mf_ilwt_kind k);
int mf_ilwt_inverse(int32_t *plane, int w, int h, int levels, mf_ilwt_kind k);

/* "haar" / "legall53" */
const char *mf_ilwt_name(mf_ilwt_kind k);

#endif

/* ssim.h — the SSIM formula of one window from its five sums, and its gradient coefficients, shared by the CPU
 * and CUDA kernels of the fused SSIM op (ops/ssim.c), so that both compute exactly what mf_ssim_map documents. */
#ifndef MF_OPS_SSIM_H
#define MF_OPS_SSIM_H

#include "ops/ops.h"

#define MF_SSIM_MAXK 32 /* the largest window (the CPU kernels keep k rows of a column chunk on the stack) */
#define MF_SSIM_C1 (0.01 * 0.01)
#define MF_SSIM_C2 (0.03 * 0.03)

#ifdef __CUDACC__
#define MF_SSIM_HD __host__ __device__
#else
#define MF_SSIM_HD
#endif

/* The map of one window from the sums of x, y, x^2, y^2, xy over its n = k^2 pixels (inv = 1/n), as steg's graph
 * computed it: means mx, my, variances vx = E[x^2] - mx^2, vy, covariance cxy = E[xy] - mx my, and
 * S = (2 mx my + C1)(2 cxy + C2) / ((mx^2 + my^2 + C1)(vx + vy + C2)). Also, with c0 non-NULL, the gradient:
 * dS/dx_q = (c0 + c1 x_q + c2 y_q) / n for each pixel q of the window, times g (the map's gradient, folded in). */
static inline MF_SSIM_HD double mf_ssim_window3(double sx, double sy, double sxx, double syy, double sxy, double inv, double g, double *c0,
                                                double *c1, double *c2) {
  double mx = sx * inv, my = sy * inv;
  double a1 = 2 * (mx * my) + MF_SSIM_C1, a2 = 2 * (sxy * inv - mx * my) + MF_SSIM_C2;
  double b1 = mx * mx + my * my + MF_SSIM_C1, b2 = (sxx * inv - mx * mx) + (syy * inv - my * my) + MF_SSIM_C2;
  double den = b1 * b2, s = a1 * a2 / den;
  if (c0) { /* d(a1 a2 / (b1 b2)): da1 = 2 my, da2 = 2 (y_q - my), db1 = 2 mx, db2 = 2 (x_q - mx), all over n */
    double gd = 2 * g / den;
    *c0 = gd * (my * (a2 - a1) - s * mx * (b2 - b1));
    *c1 = -gd * s * b1;
    *c2 = gd * a1;
  }
  return s;
}
/* the same with the coefficients in coef[3] (or none: NULL) */
static inline MF_SSIM_HD double mf_ssim_window(double sx, double sy, double sxx, double syy, double sxy, double inv, double g, double coef[3]) {
  return coef ? mf_ssim_window3(sx, sy, sxx, syy, sxy, inv, g, &coef[0], &coef[1], &coef[2])
              : mf_ssim_window3(sx, sy, sxx, syy, sxy, inv, g, NULL, NULL, NULL);
}
#undef MF_SSIM_HD

#endif

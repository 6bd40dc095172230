/* metrics.c — image quality measures (PSNR, SSIM on RGB and luma, 8-bit rounding) for eval, hide and
 * validation; what each computes is in metrics.h. Moved from the CLI with the arithmetic unchanged. */
#include "data/metrics.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

double psnr_from_mse(double mse) { return mse > 1e-12 ? 10 * log10(1.0 / mse) : 120.0; }

float quant8(float v) {
  v = v != v ? 0.0f : v < 0 ? 0.0f : v > 1 ? 1.0f : v;
  return (float)(uint8_t)(v * 255.0f + 0.5f) / 255.0f;
}
void img_quant8(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = quant8(x[i]);
}

double img_mse(const float *a, const float *b, int w, int h, int luma) {
  size_t n = (size_t)w * (size_t)h;
  double s = 0;
  if (!luma) {
    for (size_t i = 0; i < 3 * n; i++) { double d = (double)a[i] - b[i]; s += d * d; }
    return s / (3.0 * (double)n);
  }
  for (size_t i = 0; i < n; i++) {
    double ya = luma_bt601(a[i], a[n + i], a[2 * n + i]);
    double yb = luma_bt601(b[i], b[n + i], b[2 * n + i]);
    s += (ya - yb) * (ya - yb);
  }
  return s / (double)n;
}

double plane_ssim(const float *a, const float *b, int w, int h) {
  const int R = 5;
  double g[11], gs = 0;
  for (int i = -R; i <= R; i++) gs += g[i + R] = exp(-(double)(i * i) / (2 * 1.5 * 1.5));
  for (int i = 0; i < 11; i++) g[i] /= gs;
  const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
  if (w < 11 || h < 11) {
    double ma = 0, mb = 0, va = 0, vb = 0, cab = 0, n = (double)w * h;
    for (int i = 0; i < w * h; i++) { ma += a[i]; mb += b[i]; }
    ma /= n; mb /= n;
    for (int i = 0; i < w * h; i++) { va += (a[i] - ma) * (a[i] - ma); vb += (b[i] - mb) * (b[i] - mb); cab += (a[i] - ma) * (b[i] - mb); }
    va /= n; vb /= n; cab /= n;
    return ((2 * ma * mb + C1) * (2 * cab + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
  }
  /* separable: the horizontal pass of each row into a ring of the last 11 rows (5 sums each), then the
   * vertical pass of the output row that ends there (memory: 11 rows, not the plane) */
  int ow = w - 2 * R;
  size_t rn = (size_t)11 * ow;
  double *t = malloc(5 * rn * sizeof *t);
  if (!t) return NAN;
  double total = 0;
  for (int y = 0; y < h; y++) {
    size_t ring = (size_t)(y % 11) * ow;
    for (int x = 0; x < ow; x++) {
      double s[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < 11; k++) {
        double va = a[(size_t)y * w + x + k], vb = b[(size_t)y * w + x + k], gk = g[k];
        s[0] += gk * va; s[1] += gk * vb; s[2] += gk * va * va; s[3] += gk * vb * vb; s[4] += gk * va * vb;
      }
      for (int q = 0; q < 5; q++) t[q * rn + ring + x] = s[q];
    }
    if (y < 2 * R) continue;
    int oy = y - 2 * R; /* output row oy reads rows oy .. oy + 10 */
    for (int x = 0; x < ow; x++) {
      double s[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < 11; k++)
        for (int q = 0; q < 5; q++) s[q] += g[k] * t[q * rn + (size_t)((oy + k) % 11) * ow + x];
      double va = s[2] - s[0] * s[0], vb = s[3] - s[1] * s[1], cab = s[4] - s[0] * s[1];
      total += ((2 * s[0] * s[1] + C1) * (2 * cab + C2)) / ((s[0] * s[0] + s[1] * s[1] + C1) * (va + vb + C2));
    }
  }
  free(t);
  return total / ((double)ow * (h - 2 * R));
}

double img_ssim(const float *a, const float *b, int w, int h, int luma) {
  size_t n = (size_t)w * (size_t)h;
  if (!luma) return (plane_ssim(a, b, w, h) + plane_ssim(a + n, b + n, w, h) + plane_ssim(a + 2 * n, b + 2 * n, w, h)) / 3;
  float *ya = malloc(2 * n * sizeof *ya);
  if (!ya) return NAN;
  float *yb = ya + n;
  for (size_t i = 0; i < n; i++) {
    ya[i] = (float)luma_bt601(a[i], a[n + i], a[2 * n + i]);
    yb[i] = (float)luma_bt601(b[i], b[n + i], b[2 * n + i]);
  }
  double s = plane_ssim(ya, yb, w, h);
  free(ya);
  return s;
}

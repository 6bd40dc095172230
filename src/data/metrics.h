/* metrics.h — image quality measures shared by eval, hide and training validation: MSE and PSNR,
 * SSIM (on RGB or on BT.601 luma) and the 8-bit rounding a PNG applies, on planar float images. */
#ifndef MEMFIT_METRICS_H
#define MEMFIT_METRICS_H

#include <stddef.h>

/* PSNR in dB of an MSE for values in [0,1]: 10 log10(1 / mse); 120 dB for mse <= 1e-12. */
double psnr_from_mse(double mse);

/* BT.601 luma, full range: Y = 0.299 R + 0.587 G + 0.114 B. */
static inline double luma_bt601(double r, double g, double b) { return 0.299 * r + 0.587 * g + 0.114 * b; }

/* MSE of two planar 3-channel w x h images (R, G, B planes one after the other); luma = 1: of their
 * BT.601 luma planes instead. */
double img_mse(const float *a, const float *b, int w, int h, int luma);

/* SSIM of one w x h plane (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
 * range 1), averaged over the positions where the window lies inside the plane. A plane smaller than
 * 11 in either direction is measured with one window over the whole plane. Streams rows: besides the
 * planes it holds 5 sums of 11 rows, not a plane. NaN when out of memory. */
double plane_ssim(const float *a, const float *b, int w, int h);

/* SSIM of planar 3-channel images: the mean over R, G and B (luma = 0), or of the luma planes
 * (luma = 1, which holds two float planes while it runs). NaN when out of memory. */
double img_ssim(const float *a, const float *b, int w, int h, int luma);

/* What mf_image_save_png stores for a value in [0,1] (NaN -> 0, clamp, x 255 + 0.5, truncate), as
 * the float the 8-bit file reads back as; img_quant8 applies it to n values in place. */
float quant8(float v);
void img_quant8(float *x, size_t n);

#endif

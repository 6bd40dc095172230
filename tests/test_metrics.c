/* test_metrics.c — the shared image measures (src/data/metrics.c): PSNR of known MSEs, MSE on RGB and
 * luma, SSIM against a direct window-by-window computation; tf_resize_planes against the pipeline's
 * resampling; sample grids (size, labels); the shared RNG streams. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "check.h"
#include "data/data.h"
#include "data/grid.h"
#include "data/metrics.h"
#include "memfit.h"

static float *img_new(int w, int h) { return calloc((size_t)3 * w * h, sizeof(float)); }

static void img_random(float *a, size_t n, uint64_t seed) {
  rng_t r;
  rng_init(&r, seed);
  for (size_t i = 0; i < n; i++) a[i] = (float)rng_uniform(&r);
}

/* SSIM of a plane computed window by window (no separable passes, no ring), in double. */
static double ssim_direct(const float *a, const float *b, int w, int h) {
  double g[11], gs = 0;
  for (int i = -5; i <= 5; i++) gs += g[i + 5] = exp(-(double)(i * i) / (2 * 1.5 * 1.5));
  const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
  double total = 0;
  for (int oy = 0; oy + 11 <= h; oy++)
    for (int ox = 0; ox + 11 <= w; ox++) {
      double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
      for (int ky = 0; ky < 11; ky++)
        for (int kx = 0; kx < 11; kx++) {
          double wt = g[ky] * g[kx] / (gs * gs), va = a[(size_t)(oy + ky) * w + ox + kx], vb = b[(size_t)(oy + ky) * w + ox + kx];
          ma += wt * va; mb += wt * vb; saa += wt * va * va; sbb += wt * vb * vb; sab += wt * va * vb;
        }
      double va = saa - ma * ma, vb = sbb - mb * mb, cab = sab - ma * mb;
      total += ((2 * ma * mb + C1) * (2 * cab + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
    }
  return total / ((double)(w - 10) * (h - 10));
}

static void test_psnr_mse(void) {
  CHECK_NEAR(psnr_from_mse(0.01), 20.0, 1e-12, "PSNR of MSE 0.01");
  CHECK_NEAR(psnr_from_mse(1e-4), 40.0, 1e-12, "PSNR of MSE 1e-4");
  CHECK_NEAR(psnr_from_mse(1.0), 0.0, 1e-12, "PSNR of MSE 1");
  CHECK(psnr_from_mse(0) == 120.0, "identical images: 120 dB, got %g", psnr_from_mse(0));
  int w = 7, h = 5;
  size_t n = (size_t)w * h;
  float *a = img_new(w, h), *b = img_new(w, h);
  for (size_t i = 0; i < 3 * n; i++) b[i] = 0.1f;
  CHECK_NEAR(img_mse(a, b, w, h, 0), (double)0.1f * 0.1f, 1e-15, "MSE of a constant 0.1 difference");
  CHECK_NEAR(psnr_from_mse(img_mse(a, b, w, h, 0)), 20.0, 1e-5, "PSNR of a 0.1 difference");
  /* a difference in red only: RGB MSE is a third of it, luma sees 0.299 of it */
  for (size_t i = 0; i < 3 * n; i++) b[i] = i < n ? 0.5f : 0.0f;
  CHECK_NEAR(img_mse(a, b, w, h, 0), 0.25 / 3, 1e-15, "RGB MSE of a red difference");
  CHECK_NEAR(img_mse(a, b, w, h, 1), (0.299 * 0.5) * (0.299 * 0.5), 1e-15, "luma MSE of a red difference");
  /* grey changes: luma weights sum to 1, so Y MSE == RGB MSE */
  img_random(a, n, 3);
  for (size_t i = 0; i < n; i++) { a[n + i] = a[2 * n + i] = a[i]; b[i] = b[n + i] = b[2 * n + i] = a[i] + 0.01f * (float)(i % 3); }
  CHECK_NEAR(img_mse(a, b, w, h, 1), img_mse(a, b, w, h, 0), 1e-12, "grey images: Y MSE == RGB MSE");
  free(a); free(b);
}

static void test_ssim(void) {
  int w = 37, h = 29;
  size_t n = (size_t)w * h;
  float *a = img_new(w, h), *b = img_new(w, h), *c = img_new(w, h);
  img_random(a, 3 * n, 11); /* smooth colour ramps with a little noise */
  for (int ch = 0; ch < 3; ch++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        size_t i = (size_t)ch * n + (size_t)y * w + x;
        a[i] = (float)(0.5 + 0.4 * sin(0.21 * x * (ch + 1) + 0.13 * y) + 0.05 * (a[i] - 0.5));
      }
  CHECK_NEAR(img_ssim(a, a, w, h, 0), 1.0, 1e-12, "SSIM of identical images (RGB)");
  CHECK_NEAR(img_ssim(a, a, w, h, 1), 1.0, 1e-12, "SSIM of identical images (Y)");
  /* shifted by one pixel plus noise */
  rng_t r;
  rng_init(&r, 5);
  for (int ch = 0; ch < 3; ch++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        size_t i = (size_t)ch * n + (size_t)y * w + x, j = (size_t)ch * n + (size_t)y * w + (x + 1 < w ? x + 1 : x);
        b[i] = (float)(0.8 * a[j] + 0.1 + 0.05 * (rng_uniform(&r) - 0.5));
      }
  double s0 = plane_ssim(a, b, w, h), d0 = ssim_direct(a, b, w, h);
  CHECK_NEAR(s0, d0, 1e-10, "plane SSIM vs window-by-window");
  CHECK(s0 > 0 && s0 < 0.99, "a shifted noisy plane has SSIM in (0, 0.99): %g", s0);
  double rgb = img_ssim(a, b, w, h, 0), want = 0;
  for (int ch = 0; ch < 3; ch++) want += ssim_direct(a + ch * n, b + ch * n, w, h) / 3;
  CHECK_NEAR(rgb, want, 1e-10, "RGB SSIM is the mean over the channels");
  /* Y: SSIM of the luma planes (as float) */
  float *ya = malloc(n * sizeof *ya), *yb = malloc(n * sizeof *yb);
  for (size_t i = 0; i < n; i++) {
    ya[i] = (float)(0.299 * a[i] + 0.587 * a[n + i] + 0.114 * a[2 * n + i]);
    yb[i] = (float)(0.299 * b[i] + 0.587 * b[n + i] + 0.114 * b[2 * n + i]);
  }
  CHECK_NEAR(img_ssim(a, b, w, h, 1), ssim_direct(ya, yb, w, h), 1e-10, "Y SSIM vs the luma planes");
  CHECK(fabs(img_ssim(a, b, w, h, 1) - rgb) > 1e-6, "Y and RGB SSIM differ on colour noise");
  /* smaller than the window: one window over the plane, identical -> 1 */
  CHECK_NEAR(plane_ssim(a, a, 8, 6), 1.0, 1e-12, "small plane, identical");
  double small = plane_ssim(a, b, 8, 6);
  CHECK(small > -1 && small < 1, "small plane SSIM in (-1, 1): %g", small);
  free(ya); free(yb); free(a); free(b); free(c);
}

static void test_quant8(void) {
  CHECK(quant8(0.0f) == 0.0f && quant8(1.0f) == 1.0f, "ends");
  CHECK(quant8(-3.0f) == 0.0f && quant8(7.0f) == 1.0f && quant8(NAN) == 0.0f, "clamp and NaN");
  CHECK(quant8(0.5f) == 128.0f / 255.0f, "0.5 rounds to 128: %g", quant8(0.5f));
  float x[3] = {0.1f, 0.2f, 0.3f};
  img_quant8(x, 3);
  CHECK(x[0] == quant8(0.1f) && x[2] == quant8(0.3f), "in place");
}

static int px_v(int x, int y) { return (x * 37 + y * 91 + (x * y) % 17) & 255; }

static void test_resize(void) {
  /* the float path equals the pipeline's resampling of the same 8-bit image */
  int sw = 23, sh = 17, sizes[][2] = {{8, 6}, {23, 17}, {40, 31}, {11, 30}};
  raw_image raw = {0};
  raw_image_reserve(&raw, sw, sh, 1, 8);
  raw.x0 = raw.y0 = 0; raw.full_w = raw.orig_w = sw; raw.full_h = raw.orig_h = sh; raw.scale = 1;
  float *src = malloc((size_t)sw * sh * sizeof *src);
  for (int y = 0; y < sh; y++)
    for (int x = 0; x < sw; x++) { raw.data[(size_t)y * raw.stride + x] = (uint8_t)px_v(x, y); src[(size_t)y * sw + x] = (float)px_v(x, y) / 255.0f; }
  for (int f = 0; f < 2; f++)
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      int dw = sizes[k][0], dh = sizes[k][1];
      mf_transform_opts o = mf_transform_opts_default();
      o.out_w = dw; o.out_h = dh; o.channels = 1; o.crop = MF_CROP_NONE; o.filter = f ? MF_FILTER_AREA : MF_FILTER_BILINEAR;
      tf_params p;
      memset(&p, 0, sizeof p);
      p.bw = sw; p.bh = sh;
      tf_scratch s = {0};
      float *want = malloc((size_t)dw * dh * sizeof *want), *got = malloc((size_t)dw * dh * sizeof *got);
      float *planes[1] = {want};
      CHECK(tf_apply(&o, &p, &raw, planes, &s) == 0, "pipeline resample");
      CHECK(tf_resize_planes(src, sw, sh, 1, got, dw, dh, o.filter) == 0, "tf_resize_planes");
      double md = 0;
      for (int i = 0; i < dw * dh; i++) md = fmax(md, fabs((double)want[i] - got[i]));
      CHECK(md < 2e-6, "%dx%d -> %dx%d filter %d: max difference %g", sw, sh, dw, dh, f, md);
      if (dw == sw && dh == sh) {
        double mi = 0;
        for (int i = 0; i < dw * dh; i++) mi = fmax(mi, fabs((double)got[i] - src[i]));
        CHECK(mi < 1e-6, "same size is the identity: %g", mi);
      }
      tf_scratch_free(&s);
      free(want); free(got);
    }
  /* antialiased: halving a one-pixel checkerboard gives flat grey (an aliasing bilinear gives 0 or 1) */
  int w = 16;
  float *cb = malloc(3 * (size_t)w * w * sizeof *cb), *half = malloc(3 * (size_t)(w / 2) * (w / 2) * sizeof *half);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < w * w; i++) cb[c * w * w + i] = (float)(((i % w) + (i / w)) & 1);
  CHECK(tf_resize_planes(cb, w, w, 3, half, w / 2, w / 2, MF_FILTER_BILINEAR) == 0, "checkerboard");
  double lo = 1, hi = 0;
  for (int i = 0; i < 3 * (w / 2) * (w / 2); i++) { lo = fmin(lo, half[i]); hi = fmax(hi, half[i]); }
  CHECK(lo > 0.3 && hi < 0.7, "halved checkerboard is grey: %g .. %g", lo, hi);
  CHECK(tf_resize_planes(cb, 0, w, 3, half, 4, 4, MF_FILTER_BILINEAR) == -1, "bad size refused");
  free(cb); free(half); free(src);
  raw_image_free(&raw);
}

static void test_grid(void) {
  int w = 40, h = 24, rows = 2;
  size_t n = (size_t)3 * w * h;
  float *t[4];
  for (int i = 0; i < 4; i++) { t[i] = malloc(n * sizeof(float)); img_random(t[i], n, 100 + (uint64_t)i); }
  const float *c0[2] = {t[0], t[1]}, *c1[2] = {t[2], t[3]};
  grid_col lab[3] = {{"cover", c0, NULL, 0}, {"recovered", c1, NULL, 0}, {"diff x10", c1, c0, 10.0f}};
  grid_col none[3] = {{NULL, c0, NULL, 0}, {NULL, c1, NULL, 0}, {NULL, c1, c0, 10.0f}};
  char p1[64], p2[64], err[256];
  snprintf(p1, sizeof p1, "/tmp/memfit-test-grid-%d-a.png", (int)getpid());
  snprintf(p2, sizeof p2, "/tmp/memfit-test-grid-%d-b.png", (int)getpid());
  CHECK(grid_write_png(p1, lab, 3, rows, w, h, err, sizeof err) == 0, "labelled grid: %s", err);
  CHECK(grid_write_png(p2, none, 3, rows, w, h, err, sizeof err) == 0, "plain grid: %s", err);
  mf_image A = {0}, B = {0};
  CHECK(mf_image_load(p1, 3, &A, err, sizeof err) == 0, "%s", err);
  CHECK(mf_image_load(p2, 3, &B, err, sizeof err) == 0, "%s", err);
  int gw = 3 * w + 2 * GRID_GAP, lh = grid_label_height(w);
  CHECK(lh == 11, "label row of 40-pixel tiles: 11 pixels, got %d", lh);
  CHECK(B.w == gw && B.h == rows * h + GRID_GAP, "plain grid %dx%d", B.w, B.h);
  CHECK(A.w == gw && A.h == lh + rows * h + GRID_GAP, "labelled grid %dx%d", A.w, A.h);
  if (A.data && B.data && A.w == B.w && A.h == B.h + lh) {
    /* below the label row: the same pixels as the plain grid */
    CHECK(memcmp(A.data + (size_t)lh * gw * 3, B.data, (size_t)B.h * gw * 3 * sizeof(float)) == 0, "tiles equal below the labels");
    /* the label row: white with black text in every column */
    for (int col = 0; col < 3; col++) {
      int black = 0, other = 0;
      for (int y = 0; y < lh; y++)
        for (int x = col * (w + GRID_GAP); x < col * (w + GRID_GAP) + w; x++) {
          const float *q = A.data + ((size_t)y * gw + x) * 3;
          if (q[0] == 0 && q[1] == 0 && q[2] == 0) black++;
          else if (!(q[0] == 1 && q[1] == 1 && q[2] == 1)) other++;
        }
      CHECK(black > 10 && other == 0, "column %d label: %d black pixels, %d neither black nor white", col, black, other);
    }
    /* the difference column of the plain grid is 10 |a - b| (as 8 bits) */
    int x = 2 * (w + GRID_GAP) + 3, y = h + GRID_GAP + 5;
    float want = quant8(10.0f * fabsf(t[3][(size_t)5 * w + 3] - t[1][(size_t)5 * w + 3]));
    CHECK(fabsf(B.data[((size_t)y * gw + x) * 3] - want) < 1e-6f, "difference pixel %g vs %g", B.data[((size_t)y * gw + x) * 3], want);
  }
  mf_image_free(&A); mf_image_free(&B);
  remove(p1); remove(p2);
  CHECK(grid_write_png("/nonexistent-dir/g.png", lab, 3, rows, w, h, err, sizeof err) == -1 && strstr(err, "/nonexistent-dir/g.png"),
        "unwritable path named: %s", err);
  for (int i = 0; i < 4; i++) free(t[i]);
}

static void test_rng(void) {
  /* the splitmix64 stream (parameter initialisation) and rng_t (data) are fixed: checkpoints and
   * recorded losses depend on them */
  uint64_t x = 1234;
  uint64_t a = splitmix64_next(&x), b = splitmix64_next(&x);
  uint64_t y = 1234;
  CHECK(splitmix64_uniform(&y) == (double)(a >> 11) / 9007199254740992.0, "uniform from the splitmix stream");
  CHECK(a != b && x == 1234 + 2 * 0x9E3779B97F4A7C15ull, "splitmix advances by the golden gamma");
  rng_t r, s;
  rng_init(&r, 7); rng_init(&s, 7);
  uint64_t sx = 7;
  CHECK(r.s[0] == splitmix64_next(&sx), "rng_t seeded through splitmix64");
  int same = 1;
  for (int i = 0; i < 100; i++) same &= rng_u64(&r) == rng_u64(&s);
  CHECK(same, "rng_t is deterministic");
  for (int i = 0; i < 1000; i++) { uint64_t k = rng_below(&r, 10); if (k >= 10) { CHECK(0, "rng_below out of range"); break; } }
  uint64_t z = 0x9e3779b97f4a7c15ull, z2 = z;
  z2 ^= z2 << 13; z2 ^= z2 >> 7; z2 ^= z2 << 17;
  CHECK(xorshift64_next(&z) == z2 && z == z2, "xorshift64 step");
}

int main(void) {
  test_psnr_mse();
  test_ssim();
  test_quant8();
  test_resize();
  test_grid();
  test_rng();
  return check_finish("test_metrics");
}

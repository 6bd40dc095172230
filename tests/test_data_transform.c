/* test_data_transform.c — each transform checked numerically on small known images: centre and
 * random crops pick the right pixels, resize (bilinear, area), flips and quarter turns, colour jitter,
 * grayscale, blur, noise, normalisation, random-resized-crop ranges, determinism of the parameters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/data.h"
#include "memfit.h"

/* gray 8-bit raw image with value v(x,y) */
static void raw_gray(raw_image *r, int w, int h, int (*v)(int, int)) {
  raw_image_reserve(r, w, h, 1, 8);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) r->data[(size_t)y * r->stride + x] = (uint8_t)v(x, y);
  r->x0 = r->y0 = 0; r->full_w = r->orig_w = w; r->full_h = r->orig_h = h; r->scale = 1;
}
static void raw_rgb(raw_image *r, int w, int h, const uint8_t rgb[3]) {
  raw_image_reserve(r, w, h, 3, 8);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) memcpy(r->data + (size_t)y * r->stride + 3 * x, rgb, 3);
  r->x0 = r->y0 = 0; r->full_w = r->orig_w = w; r->full_h = r->orig_h = h; r->scale = 1;
}
static int v_index(int x, int y) { return y * 10 + x; }
static int v_ramp(int x, int y) { (void)y; return x * 10; }
static int v_check(int x, int y) { return ((x + y) & 1) ? 255 : 0; }
static int v_const(int x, int y) { (void)x; (void)y; return 100; }

typedef struct out3 { float *p[3]; float *mem; } out3;
static void out_init(out3 *o, int w, int h) {
  o->mem = calloc((size_t)3 * w * h, sizeof(float));
  for (int c = 0; c < 3; c++) o->p[c] = o->mem + (size_t)c * w * h;
}

static mf_transform_opts opts(int w, int h, int c) {
  mf_transform_opts o = mf_transform_opts_default();
  o.out_w = w; o.out_h = h; o.channels = c;
  return o;
}
static tf_params box(double x, double y, double w, double h) {
  tf_params p;
  memset(&p, 0, sizeof p);
  p.bx = x; p.by = y; p.bw = w; p.bh = h;
  return p;
}

static void test_center_and_random_crop(void) {
  raw_image r = {0};
  tf_scratch s = {0};
  raw_gray(&r, 10, 8, v_index);
  mf_transform_opts o = opts(4, 4, 1);
  o.crop = MF_CROP_CENTER;
  rng_t g; rng_init(&g, 1);
  tf_params p; char err[200];
  CHECK(tf_params_draw(&o, &g, 10, 8, &p, err, sizeof err) == 0, "centre params");
  CHECK(p.bx == 3 && p.by == 2 && p.bw == 4 && p.bh == 4, "centre box (%g,%g,%g,%g)", p.bx, p.by, p.bw, p.bh);
  out3 out; out_init(&out, 4, 4);
  tf_apply(&o, &p, &r, out.p, &s);
  int ok = 1;
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) ok &= fabsf(out.p[0][y * 4 + x] - v_index(x + 3, y + 2) / 255.0f) < 1e-6f;
  CHECK(ok, "centre crop picks pixels (3..6, 2..5)");
  /* random crop: output equals the source at the drawn offset, offsets cover the range */
  o.crop = MF_CROP_RANDOM;
  int seen[7][5] = {{0}};
  for (int t = 0; t < 400; t++) {
    CHECK(tf_params_draw(&o, &g, 10, 8, &p, err, sizeof err) == 0, "random params");
    int ox = (int)p.bx, oy = (int)p.by;
    if (ox < 0 || ox > 6 || oy < 0 || oy > 4 || p.bx != ox || p.by != oy) { CHECK(0, "random offset (%g,%g)", p.bx, p.by); break; }
    seen[ox][oy] = 1;
    if (t < 20) {
      tf_apply(&o, &p, &r, out.p, &s);
      ok = 1;
      for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) ok &= fabsf(out.p[0][y * 4 + x] - v_index(x + ox, y + oy) / 255.0f) < 1e-6f;
      CHECK(ok, "random crop at (%d,%d) copies pixels", ox, oy);
    }
  }
  int nseen = 0;
  for (int i = 0; i < 7; i++) for (int j = 0; j < 5; j++) nseen += seen[i][j];
  CHECK(nseen == 35, "random crop reaches every offset (%d of 35)", nseen);
  /* too small for the crop: an error, not a padded image */
  o.out_w = o.out_h = 12;
  CHECK(tf_params_draw(&o, &g, 10, 8, &p, err, sizeof err) != 0 && strstr(err, "smaller"), "crop larger than image: %s", err);
  /* resize_short then centre crop: 10x8 -> short side 4 -> 5x4, crop 4x4 at x=0 (round(0.5) = 0) */
  o = opts(4, 4, 1); o.crop = MF_CROP_CENTER; o.resize_short = 4;
  CHECK(tf_params_draw(&o, &g, 10, 8, &p, err, sizeof err) == 0 && fabs(p.bx) < 1e-9 && fabs(p.bw - 8) < 1e-9 && fabs(p.bh - 8) < 1e-9,
        "resize_short + centre crop box (%g,%g,%g,%g)", p.bx, p.by, p.bw, p.bh);
  free(out.mem); raw_image_free(&r); tf_scratch_free(&s);
}

static void test_resize(void) {
  raw_image r = {0};
  tf_scratch s = {0};
  out3 out; out_init(&out, 19, 19);
  /* constant stays constant at any scale, both filters */
  raw_gray(&r, 13, 7, v_const);
  for (int f = 0; f < 2; f++) {
    mf_transform_opts o = opts(19, 5, 1);
    o.filter = f ? MF_FILTER_AREA : MF_FILTER_BILINEAR;
    tf_params p = box(0, 0, 13, 7);
    tf_apply(&o, &p, &r, out.p, &s);
    double e = 0;
    for (int i = 0; i < 19 * 5; i++) e = fmax(e, fabs(out.p[0][i] - 100 / 255.0));
    CHECK(e < 1e-5, "constant image stays constant (filter %d, err %g)", f, e);
  }
  /* area 2x downscale of a checkerboard = 0.5 everywhere */
  raw_gray(&r, 16, 16, v_check);
  mf_transform_opts o = opts(8, 8, 1);
  o.filter = MF_FILTER_AREA;
  tf_params p = box(0, 0, 16, 16);
  tf_apply(&o, &p, &r, out.p, &s);
  double e = 0;
  for (int i = 0; i < 64; i++) e = fmax(e, fabs(out.p[0][i] - 0.5));
  CHECK(e < 1e-5, "area 2x of a checkerboard is 0.5 (err %g)", e);
  /* bilinear 2x upscale of a ramp: interior samples interpolate linearly */
  raw_gray(&r, 8, 2, v_ramp);
  o = opts(16, 4, 1);
  p = box(0, 0, 8, 2);
  tf_apply(&o, &p, &r, out.p, &s);
  /* output x samples source at (x + 0.5)/2 - 0.5 */
  e = 0;
  for (int x = 1; x < 15; x++) e = fmax(e, fabs(out.p[0][x] * 255 - 10 * ((x + 0.5) / 2 - 0.5)));
  CHECK(e < 1e-3, "bilinear upscale of a ramp is linear (err %g)", e);
  /* bilinear 1:1 is the identity; 16-bit input is scaled by 1/65535 */
  raw_image_reserve(&r, 5, 3, 1, 16);
  for (int i = 0; i < 15; i++) ((uint16_t *)r.data)[i] = (uint16_t)(i * 4000);
  r.full_w = r.orig_w = 5; r.full_h = r.orig_h = 3; r.scale = 1; r.x0 = r.y0 = 0;
  o = opts(5, 3, 1);
  p = box(0, 0, 5, 3);
  tf_apply(&o, &p, &r, out.p, &s);
  e = 0;
  for (int i = 0; i < 15; i++) e = fmax(e, fabs(out.p[0][i] - i * 4000 / 65535.0));
  CHECK(e < 1e-6, "16-bit identity resample (err %g)", e);
  free(out.mem); raw_image_free(&r); tf_scratch_free(&s);
}

static void test_flip_rot(void) {
  raw_image r = {0};
  tf_scratch s = {0};
  raw_gray(&r, 10, 8, v_index);
  mf_transform_opts o = opts(6, 6, 3);
  out3 a, b, c; out_init(&a, 6, 6); out_init(&b, 6, 6); out_init(&c, 6, 6);
  tf_params p = box(1, 1, 6, 6);
  tf_apply(&o, &p, &r, a.p, &s);
  p.hflip = 1;
  tf_apply(&o, &p, &r, b.p, &s);
  int ok = 1;
  for (int y = 0; y < 6; y++) for (int x = 0; x < 6; x++) ok &= b.p[1][y * 6 + x] == a.p[1][y * 6 + 5 - x];
  CHECK(ok, "hflip mirrors columns");
  p.hflip = 0; p.vflip = 1;
  tf_apply(&o, &p, &r, b.p, &s);
  ok = 1;
  for (int y = 0; y < 6; y++) for (int x = 0; x < 6; x++) ok &= b.p[2][y * 6 + x] == a.p[2][(5 - y) * 6 + x];
  CHECK(ok, "vflip mirrors rows");
  p.hflip = 1; p.vflip = 1;
  tf_apply(&o, &p, &r, b.p, &s);
  p.hflip = 0; p.vflip = 0; p.rot = 2;
  tf_apply(&o, &p, &r, c.p, &s);
  CHECK(memcmp(b.mem, c.mem, 3 * 36 * sizeof(float)) == 0, "two quarter turns = both flips");
  p.rot = 1;
  tf_apply(&o, &p, &r, b.p, &s);
  ok = 1; /* counter-clockwise: out(y,x) = in(x, n-1-y) */
  for (int y = 0; y < 6; y++) for (int x = 0; x < 6; x++) ok &= b.p[0][y * 6 + x] == a.p[0][x * 6 + 5 - y];
  CHECK(ok, "one quarter turn");
  p.rot = 3;
  tf_apply(&o, &p, &r, c.p, &s);
  ok = 1;
  for (int y = 0; y < 6; y++) for (int x = 0; x < 6; x++) ok &= c.p[0][y * 6 + x] == a.p[0][(5 - x) * 6 + y];
  CHECK(ok, "three quarter turns");
  mf_transform_opts bad = o; bad.rot90 = 1; bad.out_w = 5;
  char err[200];
  CHECK(tf_validate(&bad, err, sizeof err) != 0, "rot90 with a non-square output is refused");
  free(a.mem); free(b.mem); free(c.mem); raw_image_free(&r); tf_scratch_free(&s);
}

static void test_colour(void) {
  raw_image r = {0};
  tf_scratch s = {0};
  mf_transform_opts o = opts(4, 4, 3);
  out3 a; out_init(&a, 4, 4);
  const uint8_t red[3] = {255, 0, 0}, grey[3] = {100, 150, 200};
  tf_params p = box(0, 0, 4, 4);
  p.jitter = 1; p.order[0] = 3; p.order[1] = 0; p.order[2] = 1; p.order[3] = 2;
  p.bright = p.contrast = p.sat = 1; p.hue = 1.0f / 3;
  raw_rgb(&r, 4, 4, red);
  tf_apply(&o, &p, &r, a.p, &s);
  CHECK(fabsf(a.p[0][5]) < 1e-5f && fabsf(a.p[1][5] - 1) < 1e-5f && fabsf(a.p[2][5]) < 1e-5f, "hue +1/3 turns red into green (%g %g %g)",
        a.p[0][5], a.p[1][5], a.p[2][5]);
  raw_rgb(&r, 4, 4, grey);
  p.hue = 0; p.bright = 1.5f;
  tf_apply(&o, &p, &r, a.p, &s);
  CHECK_NEAR(a.p[0][3], 1.5 * 100 / 255, 1e-5, "brightness scales");
  CHECK_NEAR(a.p[2][3], 1.0, 1e-6, "brightness clamps at 1");
  p.bright = 1; p.sat = 0;
  tf_apply(&o, &p, &r, a.p, &s);
  double l = (0.299 * 100 + 0.587 * 150 + 0.114 * 200) / 255;
  CHECK(fabs(a.p[0][7] - l) < 1e-5 && fabs(a.p[1][7] - l) < 1e-5 && fabs(a.p[2][7] - l) < 1e-5, "saturation 0 = luma");
  p.sat = 1; p.contrast = 0.5f;
  tf_apply(&o, &p, &r, a.p, &s);
  CHECK_NEAR(a.p[0][0], 0.5 * 100 / 255 + 0.5 * l, 1e-5, "contrast blends with the mean luma");
  p.jitter = 0; p.gray = 1;
  tf_apply(&o, &p, &r, a.p, &s);
  CHECK(a.p[0][9] == a.p[1][9] && a.p[1][9] == a.p[2][9] && fabs(a.p[0][9] - l) < 1e-5, "grayscale");
  p.gray = 0;
  o.normalize = 1; o.mean[0] = 0.5f; o.mean[1] = 0.25f; o.mean[2] = 0; o.std[0] = 0.5f; o.std[1] = 2; o.std[2] = 0.25f;
  tf_apply(&o, &p, &r, a.p, &s);
  CHECK(fabs(a.p[0][1] - (100 / 255.0 - 0.5) / 0.5) < 1e-5 && fabs(a.p[1][1] - (150 / 255.0 - 0.25) / 2) < 1e-5 &&
        fabs(a.p[2][1] - (200 / 255.0) / 0.25) < 1e-5, "normalisation (%g %g %g)", a.p[0][1], a.p[1][1], a.p[2][1]);
  /* RGB source, 1 output channel = luma */
  mf_transform_opts o1 = opts(4, 4, 1);
  tf_params p1 = box(0, 0, 4, 4);
  tf_apply(&o1, &p1, &r, a.p, &s);
  CHECK_NEAR(a.p[0][0], l, 1e-5, "single-channel output is luma");
  free(a.mem); raw_image_free(&r); tf_scratch_free(&s);
}

static void test_blur_noise(void) {
  raw_image r = {0};
  tf_scratch s = {0};
  mf_transform_opts o = opts(16, 16, 1);
  out3 a; out_init(&a, 16, 16);
  raw_gray(&r, 16, 16, v_const);
  tf_params p = box(0, 0, 16, 16);
  p.blur_sigma = 1.5f;
  tf_apply(&o, &p, &r, a.p, &s);
  double e = 0;
  for (int i = 0; i < 256; i++) e = fmax(e, fabs(a.p[0][i] - 100 / 255.0));
  CHECK(e < 1e-5, "blur keeps a constant image (err %g)", e);
  raw_gray(&r, 16, 16, v_check);
  tf_apply(&o, &p, &r, a.p, &s);
  double sd = 0;
  for (int i = 0; i < 256; i++) sd += (a.p[0][i] - 0.5) * (a.p[0][i] - 0.5) / 256;
  CHECK(sqrt(sd) < 0.05, "blur smooths a checkerboard (sd %g)", sqrt(sd));
  /* noise on a constant 0.5 image: mean ~0.5, sd ~ noise_std */
  raw_gray(&r, 16, 16, v_const);
  mf_transform_opts on = opts(64, 64, 1);
  float *big = malloc(64 * 64 * sizeof(float));
  tf_params pn = box(0, 0, 16, 16);
  pn.noise_std = 0.1f; pn.noise_seed = 42;
  tf_apply(&on, &pn, &r, &big, &s);
  double m = 0, v = 0;
  for (int i = 0; i < 4096; i++) m += big[i] / 4096;
  for (int i = 0; i < 4096; i++) v += (big[i] - m) * (big[i] - m) / 4096;
  CHECK(fabs(m - 100 / 255.0) < 0.01 && fabs(sqrt(v) - 0.1) < 0.01, "noise mean %g sd %g", m, sqrt(v));
  free(big); free(a.mem); raw_image_free(&r); tf_scratch_free(&s);
}

static void test_rrc_and_determinism(void) {
  mf_transform_opts o = opts(32, 32, 3);
  o.crop = MF_CROP_RANDOM_RESIZED; o.hflip = 0.5f; o.brightness = 0.4f; o.hue = 0.1f; o.noise_std = 0.01f;
  rng_t g; rng_init(&g, 9);
  int bad = 0, fallback = 0, flips = 0;
  char err[200];
  for (int t = 0; t < 2000; t++) {
    tf_params p;
    tf_params_draw(&o, &g, 300, 200, &p, err, sizeof err);
    double area = p.bw * p.bh / (300.0 * 200), ar = p.bw / p.bh;
    if (p.bx < 0 || p.by < 0 || p.bx + p.bw > 300 || p.by + p.bh > 200) bad++;
    if (area < 0.08 - 0.01 || area > 1.0 + 1e-9 || ar < 0.75 - 0.02 || ar > 4.0 / 3 + 0.02) fallback++;
    flips += p.hflip;
  }
  CHECK(bad == 0, "random resized crop stays inside the image (%d outside)", bad);
  CHECK(fallback < 40, "crop area and aspect in range (%d out of range of 2000)", fallback);
  CHECK(flips > 900 && flips < 1100, "hflip probability 0.5 (%d of 2000)", flips);
  rng_t a, b; rng_init(&a, 77); rng_init(&b, 77);
  tf_params pa, pb;
  tf_params_draw(&o, &a, 300, 200, &pa, err, sizeof err);
  tf_params_draw(&o, &b, 300, 200, &pb, err, sizeof err);
  CHECK(memcmp(&pa, &pb, sizeof pa) == 0, "same seed, same parameters");
}

int main(void) {
  test_center_and_random_crop();
  test_resize();
  test_flip_rot();
  test_colour();
  test_blur_noise();
  test_rrc_and_determinism();
  return check_finish("test_data_transform");
}

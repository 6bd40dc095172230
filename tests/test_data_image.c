/* test_data_image.c — image decoding (every shared photo; PNG 1/8/16-bit gray/RGB/RGBA/palette and
 * JPEG files this test writes with libpng/libjpeg), region decoding, bad input (truncated, zero-byte,
 * non-image, bad bit depth, bad CRC), the PNG writer and the procedural generator. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "check.h"
#include "data/data.h"
#include "memfit.h"

static char tmpdir[256];

/* writes a PNG: c channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), depth 8/16, value(x,y,ch) */
static unsigned pattern(int x, int y, int ch, int depth) {
  unsigned v = (unsigned)(x * 37 + y * 101 + ch * 53 + x * y);
  return depth == 16 ? (v * 2654435761u) >> 16 : v & 255;
}
static int write_png(const char *path, int w, int h, int c, int depth, int palette) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) { png_destroy_write_struct(&png, &info); fclose(f); return -1; }
  png_init_io(png, f);
  int ct = palette ? PNG_COLOR_TYPE_PALETTE : c == 1 ? PNG_COLOR_TYPE_GRAY : c == 2 ? PNG_COLOR_TYPE_GRAY_ALPHA
         : c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
  png_set_IHDR(png, info, w, h, depth, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (palette) {
    png_color pal[256];
    for (int i = 0; i < 256; i++) { pal[i].red = (png_byte)i; pal[i].green = (png_byte)(255 - i); pal[i].blue = (png_byte)(i * 7); }
    png_set_PLTE(png, info, pal, 256);
    if (palette == 2) { /* transparency for some entries: decoded, then alpha dropped */
      png_byte tr[16];
      for (int i = 0; i < 16; i++) tr[i] = (png_byte)(i * 16);
      png_set_tRNS(png, info, tr, 16, NULL);
    }
  }
  png_write_info(png, info);
  if (depth == 16) png_set_swap(png);
  uint8_t *row = malloc((size_t)w * c * 2);
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < c; ch++) {
        if (depth == 16) ((uint16_t *)row)[x * c + ch] = (uint16_t)pattern(x, y, ch, 16);
        else if (depth == 1) { if (x % 8 == 0) row[x / 8] = 0; row[x / 8] |= (uint8_t)((pattern(x, y, 0, 8) & 1) << (7 - x % 8)); }
        else row[x * c + ch] = (uint8_t)pattern(x, y, ch, 8);
      }
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(row);
  fclose(f);
  return 0;
}

static int write_jpeg(const char *path, int w, int h, int c, int quality) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = (JDIMENSION)w; ci.image_height = (JDIMENSION)h; ci.input_components = c;
  ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, quality, TRUE);
  if (c == 3) for (int i = 0; i < 3; i++) ci.comp_info[i].h_samp_factor = ci.comp_info[i].v_samp_factor = 1; /* 4:4:4 */
  jpeg_start_compress(&ci, TRUE);
  uint8_t *row = malloc((size_t)w * c);
  while (ci.next_scanline < ci.image_height) {
    int y = (int)ci.next_scanline;
    for (int x = 0; x < w; x++) /* smooth content so JPEG error is small */
      for (int ch = 0; ch < c; ch++) row[x * c + ch] = (uint8_t)(128 + 100 * sin(x * 0.05 + ch) * cos(y * 0.04));
    JSAMPROW rp = row;
    jpeg_write_scanlines(&ci, &rp, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  free(row);
  fclose(f);
  return 0;
}

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (n) fwrite(b, 1, n, f);
  fclose(f);
}
static long read_bytes(const char *path, uint8_t **buf) {
  size_t cap = 0; char err[256];
  *buf = NULL;
  return file_read_all(path, buf, &cap, err, sizeof err);
}

static void test_png_formats(void) {
  struct { int c, depth, palette; } cases[] = {{1, 8, 0}, {1, 16, 0}, {1, 1, 0}, {2, 8, 0}, {3, 8, 0}, {3, 16, 0},
                                               {4, 8, 0}, {4, 16, 0}, {1, 8, 1}, {1, 8, 2}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    int c = cases[k].c, depth = cases[k].depth, pal = cases[k].palette, w = 37, h = 23;
    char path[8192];
    snprintf(path, sizeof path, "%s/p%zu.png", tmpdir, k);
    CHECK(write_png(path, w, h, c, depth, pal) == 0, "write %s", path);
    int src_c = pal ? 3 : (c == 1 || c == 2) ? 1 : 3; /* alpha dropped, palette expanded */
    mf_image im; char err[512];
    int rc = mf_image_load(path, src_c, &im, err, sizeof err);
    CHECK(rc == 0, "load c=%d depth=%d palette=%d: %s", c, depth, pal, rc ? err : "");
    if (rc) continue;
    CHECK(im.w == w && im.h == h && im.c == src_c, "size %dx%dx%d", im.w, im.h, im.c);
    double maxerr = 0;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int ch = 0; ch < src_c; ch++) {
          double want;
          if (pal) { unsigned i = pattern(x, y, 0, 8); want = (ch == 0 ? i : ch == 1 ? 255 - i : (i * 7) & 255) / 255.0; }
          else if (depth == 1) want = (pattern(x, y, 0, 8) & 1) ? 1.0 : 0.0;
          else if (depth == 16) want = pattern(x, y, ch, 16) / 65535.0;
          else want = pattern(x, y, ch, 8) / 255.0;
          double e = fabs(im.data[((size_t)y * w + x) * src_c + ch] - want);
          if (e > maxerr) maxerr = e;
        }
    CHECK(maxerr < 1e-6, "PNG c=%d depth=%d palette=%d decodes exactly (max err %g)", c, depth, pal, maxerr);
    /* converting RGB to gray and gray to RGB */
    mf_image im2;
    CHECK(mf_image_load(path, src_c == 3 ? 1 : 3, &im2, err, sizeof err) == 0, "channel conversion: %s", err);
    if (src_c == 1) CHECK(im2.data[3 * 5] == im.data[5] && im2.data[3 * 5 + 2] == im.data[5], "gray replicated");
    else CHECK_NEAR(im2.data[5], 0.299 * im.data[15] + 0.587 * im.data[16] + 0.114 * im.data[17], 1e-6, "luma");
    mf_image_free(&im2);
    mf_image_free(&im);
  }
}

static void test_jpeg(void) {
  for (int c = 1; c <= 3; c += 2) {
    char path[8192];
    snprintf(path, sizeof path, "%s/j%d.jpg", tmpdir, c);
    CHECK(write_jpeg(path, 120, 90, c, 95) == 0, "write jpeg");
    mf_image im; char err[512];
    int rc = mf_image_load(path, c, &im, err, sizeof err);
    CHECK(rc == 0, "load jpeg c=%d: %s", c, rc ? err : "");
    if (rc) continue;
    CHECK(im.w == 120 && im.h == 90, "jpeg size %dx%d", im.w, im.h);
    double sum = 0;
    for (int y = 0; y < 90; y++)
      for (int x = 0; x < 120; x++)
        for (int ch = 0; ch < c; ch++)
          sum += fabs(im.data[((size_t)y * 120 + x) * c + ch] - (uint8_t)(128 + 100 * sin(x * 0.05 + ch) * cos(y * 0.04)) / 255.0);
    double mae = sum / (120.0 * 90 * c);
    CHECK(mae < 2.0 / 255, "JPEG c=%d decodes close to the source (mean abs err %g)", c, mae * 255);
    mf_image_free(&im);
    /* truncated copies of our own JPEG must fail, never give a grey-padded image */
    uint8_t *buf;
    long n = read_bytes(path, &buf);
    for (long cut = 10; cut < n - 2; cut += n / 7) {
      rc = mf_image_decode(buf, (size_t)cut, c, &im, err, sizeof err);
      CHECK(rc != 0, "JPEG cut to %ld of %ld bytes must fail", cut, n);
      if (!rc) mf_image_free(&im);
    }
    free(buf);
  }
}

static int choose_box(void *ctx, int w, int h, decode_region *reg) {
  const double *b = ctx;
  (void)w; (void)h;
  reg->bx = b[0]; reg->by = b[1]; reg->bw = b[2]; reg->bh = b[3]; reg->out_w = 16; reg->out_h = 16; reg->support = 1;
  return 0;
}

/* region decoding must give the same pixels as the whole image */
static void test_region(void) {
  char path[8192];
  snprintf(path, sizeof path, "%s/p4.png", tmpdir); /* RGB 8-bit 37x23 from test_png_formats */
  uint8_t *buf;
  long n = read_bytes(path, &buf);
  raw_image full = {0}, part = {0};
  char err[256];
  double box[4] = {20, 8, 10, 6};
  CHECK(png_decode_mem(buf, (size_t)n, &full, NULL, NULL, err, sizeof err) == 0, "full png: %s", err);
  CHECK(png_decode_mem(buf, (size_t)n, &part, choose_box, box, err, sizeof err) == 0, "region png: %s", err);
  CHECK(part.w < full.w && part.h < full.h, "region is smaller (%dx%d of %dx%d)", part.w, part.h, full.w, full.h);
  int same = 1;
  for (int y = 0; y < part.h; y++)
    if (memcmp(part.data + (size_t)y * part.stride, full.data + (size_t)(y + part.y0) * full.stride + (size_t)part.x0 * 3,
               (size_t)part.w * 3)) same = 0;
  CHECK(same && part.x0 <= 20 && part.y0 <= 8 && part.x0 + part.w >= 30 && part.y0 + part.h >= 14, "PNG region pixels");
  free(buf);
  snprintf(path, sizeof path, "%s/j3.jpg", tmpdir);
  n = read_bytes(path, &buf);
  double jbox[4] = {40, 30, 48, 40};
  CHECK(jpeg_decode_mem(buf, (size_t)n, &full, NULL, NULL, 0, err, sizeof err) == 0, "full jpeg: %s", err);
  CHECK(jpeg_decode_mem(buf, (size_t)n, &part, choose_box, jbox, 0, err, sizeof err) == 0, "region jpeg: %s", err);
  int maxd = 0;
  for (int y = 0; y < part.h; y++)
    for (int x = 0; x < part.w * 3; x++) {
      int d = abs(part.data[(size_t)y * part.stride + x] - full.data[(size_t)(y + part.y0) * full.stride + (size_t)part.x0 * 3 + x]);
      if (d > maxd) maxd = d;
    }
  CHECK(maxd <= 1 && part.x0 <= 40 && part.x0 + part.w >= 88, "JPEG region matches the full decode (max diff %d)", maxd);
  /* draft: a 48x40 box for a 16x16 output may decode at 1/2 */
  CHECK(jpeg_decode_mem(buf, (size_t)n, &part, choose_box, jbox, 1, err, sizeof err) == 0, "draft jpeg: %s", err);
  CHECK(part.scale == 0.5 && part.full_w == 60, "draft decode at 1/2 (scale %g, width %d)", part.scale, part.full_w);
  free(buf);
  raw_image_free(&full); raw_image_free(&part);
}

/* PNG chunk CRC (CRC-32, polynomial 0xEDB88320), bitwise */
static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c ^ 0xffffffffu;
}

/* a PNG with IHDR bit depth 3 (invalid) and a valid CRC */
static void write_bad_depth_png(const char *path) {
  uint8_t b[45] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0, 8, 0, 0, 0, 8, 3, 0, 0, 0, 0};
  uint32_t crc = crc32_png(b + 12, 17);
  b[29] = (uint8_t)(crc >> 24); b[30] = (uint8_t)(crc >> 16); b[31] = (uint8_t)(crc >> 8); b[32] = (uint8_t)crc;
  memcpy(b + 33, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
  write_bytes(path, b, sizeof b);
}

static void expect_fail(const char *path, const char *want, const char *what) {
  mf_image im; char err[512];
  int rc = mf_image_load(path, 3, &im, err, sizeof err);
  CHECK(rc != 0 && strstr(err, want) && strstr(err, path), "%s: want error with '%s' and the path, got rc=%d '%s'", what, want, rc,
        rc ? err : "");
  CHECK(im.data == NULL, "%s: no image on failure", what);
  if (!rc) mf_image_free(&im);
}

static void test_bad_input(void) {
  char p[8192];
  snprintf(p, sizeof p, "%s/zero.png", tmpdir); write_bytes(p, "", 0);
  expect_fail(p, "empty file", "zero-byte");
  snprintf(p, sizeof p, "%s/notes.png", tmpdir); write_bytes(p, "hello, not an image\n", 20);
  expect_fail(p, "not a PNG or JPEG", "text file");
  snprintf(p, sizeof p, "%s/depth3.png", tmpdir); write_bad_depth_png(p);
  expect_fail(p, "bit depth", "bit depth 3");
  int w, h, c, d; char err[256];
  CHECK(image_probe_file(p, &w, &h, &c, &d, err, sizeof err) == -1 - SKIP_UNSUPPORTED, "probe: unsupported depth (%s)", err);
  snprintf(p, sizeof p, "%s/missing.png", tmpdir);
  expect_fail(p, "cannot open", "missing file");
  /* PNG: truncated, and a flipped byte inside IDAT (CRC mismatch) */
  char src[8192];
  snprintf(src, sizeof src, "%s/p4.png", tmpdir);
  uint8_t *buf;
  long n = read_bytes(src, &buf);
  snprintf(p, sizeof p, "%s/trunc.png", tmpdir); write_bytes(p, buf, (size_t)n * 2 / 3);
  expect_fail(p, "corrupt PNG", "truncated PNG");
  CHECK(image_probe_file(p, &w, &h, &c, &d, err, sizeof err) == 0, "a truncated PNG passes the header probe");
  buf[n / 2] ^= 0x5a;
  snprintf(p, sizeof p, "%s/crc.png", tmpdir); write_bytes(p, buf, (size_t)n);
  expect_fail(p, "corrupt PNG", "bad CRC");
  free(buf);
  const char *dd = check_data_dir();
  if (dd) {
    snprintf(p, sizeof p, "%s/bad/truncated.jpg", dd);
    expect_fail(p, "corrupt JPEG", "shared truncated.jpg");
  } else {
    printf("SKIP: ../shared/data absent: shared truncated.jpg not tested\n");
  }
}

static void test_photos(void) {
  const char *dd = check_data_dir();
  if (!dd) { printf("SKIP: ../shared/data absent: photo decoding not tested\n"); return; }
  struct { const char *name; int w, h; } ph[] = {
    {"astronaut.png", 512, 512}, {"brick.png", 512, 512}, {"camera.png", 512, 512}, {"chelsea.png", 451, 300},
    {"coffee.png", 600, 400}, {"grass.png", 512, 512}, {"gravel.png", 512, 512}, {"hubble_deep_field.jpg", 1000, 872},
    {"ihc.png", 512, 512}, {"retina.jpg", 1411, 1411}, {"rocket.jpg", 640, 427}};
  for (size_t i = 0; i < sizeof ph / sizeof *ph; i++) {
    char p[8192], err[512];
    snprintf(p, sizeof p, "%s/photos/%s", dd, ph[i].name);
    if (access(p, R_OK) != 0) { printf("SKIP: %s absent\n", p); continue; }
    mf_image im;
    int rc = mf_image_load(p, 3, &im, err, sizeof err);
    CHECK(rc == 0, "%s: %s", ph[i].name, rc ? err : "");
    if (rc) continue;
    CHECK(im.w == ph[i].w && im.h == ph[i].h, "%s: %dx%d, want %dx%d", ph[i].name, im.w, im.h, ph[i].w, ph[i].h);
    double s = 0, s2 = 0, mn = 1, mx = 0;
    size_t np = (size_t)im.w * im.h * 3;
    for (size_t k = 0; k < np; k++) {
      double v = im.data[k];
      s += v; s2 += v * v;
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    double mean = s / np, sd = sqrt(s2 / np - mean * mean);
    CHECK(mn >= 0 && mx <= 1 && sd > 0.02, "%s: values in [0,1] with contrast (sd %.3f)", ph[i].name, sd);
    mf_image_free(&im);
  }
}

static void test_save_and_generate(void) {
  mf_image a, b, c2;
  CHECK(mf_image_generate(5, 3, 96, 64, &a) == 0, "generate");
  CHECK(mf_image_generate(5, 3, 96, 64, &b) == 0 && memcmp(a.data, b.data, 96 * 64 * 3 * sizeof(float)) == 0,
        "generator is deterministic");
  CHECK(mf_image_generate(5, 4, 96, 64, &c2) == 0 && memcmp(a.data, c2.data, 96 * 64 * 3 * sizeof(float)) != 0,
        "different index, different image");
  char p[8192], err[512];
  snprintf(p, sizeof p, "%s/gen.png", tmpdir);
  CHECK(mf_image_save_png(p, a.data, 96, 64, 3, err, sizeof err) == 0, "save: %s", err);
  mf_image r;
  CHECK(mf_image_load(p, 3, &r, err, sizeof err) == 0, "reload: %s", err);
  double maxe = 0;
  for (size_t i = 0; i < 96 * 64 * 3; i++) maxe = fmax(maxe, fabs(r.data[i] - a.data[i]));
  CHECK(r.w == 96 && r.h == 64 && maxe <= 0.5 / 255 + 1e-6, "PNG round trip (max err %g)", maxe);
  CHECK(mf_image_save_png("/nonexistent-dir/x.png", a.data, 96, 64, 3, err, sizeof err) != 0 && strstr(err, "nonexistent"),
        "unwritable path is an error naming it");
  mf_image_free(&a); mf_image_free(&b); mf_image_free(&c2); mf_image_free(&r);
  /* variety: every image of a set has contrast; sets differ in mean colour */
  double means[24];
  int flat = 0;
  for (int i = 0; i < 24; i++) {
    mf_image g;
    mf_image_generate(11, (uint64_t)i, 64, 64, &g);
    double s = 0, s2 = 0;
    for (int k = 0; k < 64 * 64 * 3; k++) { s += g.data[k]; s2 += g.data[k] * g.data[k]; }
    means[i] = s / (64 * 64 * 3);
    if (sqrt(s2 / (64 * 64 * 3) - means[i] * means[i]) < 0.03) flat++;
    mf_image_free(&g);
  }
  double mm = 0, mv = 0;
  for (int i = 0; i < 24; i++) mm += means[i] / 24;
  for (int i = 0; i < 24; i++) mv += (means[i] - mm) * (means[i] - mm) / 24;
  CHECK(flat <= 1 && sqrt(mv) > 0.03, "generated images vary (flat %d, sd of means %.3f)", flat, sqrt(mv));
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mf_test_img_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  test_png_formats();
  test_jpeg();
  test_region();
  test_bad_input();
  test_photos();
  test_save_and_generate();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_data_image");
}

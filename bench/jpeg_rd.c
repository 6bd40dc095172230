/* jpeg_rd.c — JPEG's rate-distortion on one image, for bench/imagegs_rd.sh: libjpeg-turbo at every quality 1..100
 * (4:2:0, in memory), and for each bits-per-pixel target given the highest quality at or below it, with its bpp,
 * PSNR and SSIM (RGB mean, the metrics memfit's evaluation uses). Usage: jpeg_rd IMAGE BPP...; jpeg_rd --size IMAGE
 * prints the image's width and height. */
#include "memfit.h"
#include "data/metrics.h"
#include <jpeglib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* encodes the interleaved [0,1] image at quality q; returns the bytes (free()) and their count */
static unsigned char *encode(const mf_image *im, int q, unsigned long *size) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  unsigned char *buf = NULL;
  *size = 0;
  jpeg_mem_dest(&c, &buf, size);
  c.image_width = (JDIMENSION)im->w;
  c.image_height = (JDIMENSION)im->h;
  c.input_components = im->c;
  c.in_color_space = im->c == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, q, TRUE);
  jpeg_start_compress(&c, TRUE);
  unsigned char *row = malloc((size_t)im->w * im->c);
  while (c.next_scanline < c.image_height) {
    const float *src = im->data + (size_t)c.next_scanline * im->w * im->c;
    for (int i = 0; i < im->w * im->c; i++) row[i] = (unsigned char)(quant8(src[i]) * 255.0f + 0.5f);
    JSAMPROW r = row;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  free(row);
  return buf;
}

static void planar(const mf_image *im, float *out) {
  for (int ch = 0; ch < im->c; ch++)
    for (size_t p = 0; p < (size_t)im->w * im->h; p++) out[(size_t)ch * im->w * im->h + p] = im->data[p * im->c + ch];
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: jpeg_rd IMAGE BPP... | jpeg_rd --size IMAGE\n"); return 2; }
  char err[512];
  mf_image im;
  int size_only = strcmp(argv[1], "--size") == 0;
  if (mf_image_load(argv[size_only ? 2 : 1], 3, &im, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
  if (size_only) {
    printf("%d %d\n", im.w, im.h);
    mf_image_free(&im);
    return 0;
  }
  size_t P = (size_t)im.w * im.h;
  double bpp[101], psnr[101], ssim[101];
  float *a = malloc(sizeof(float) * 3 * P), *b = malloc(sizeof(float) * 3 * P);
  planar(&im, a);
  for (int q = 1; q <= 100; q++) {
    unsigned long n;
    unsigned char *buf = encode(&im, q, &n);
    mf_image d;
    if (mf_image_decode(buf, n, 3, &d, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
    planar(&d, b);
    bpp[q] = 8.0 * n / (double)P;
    psnr[q] = psnr_from_mse(img_mse(a, b, im.w, im.h, 0));
    ssim[q] = img_ssim(a, b, im.w, im.h, 0);
    mf_image_free(&d);
    free(buf);
  }
  for (int i = 2; i < argc; i++) {
    double t = atof(argv[i]);
    int best = 0;
    for (int q = 1; q <= 100; q++)
      if (bpp[q] <= t && (!best || bpp[q] > bpp[best])) best = q;
    if (!best) printf("target %.3f bpp: below JPEG's smallest (quality 1: %.3f bpp)\n", t, bpp[1]);
    else printf("target %.3f bpp: quality %d, %.3f bpp, PSNR %.2f dB, SSIM %.4f\n", t, best, bpp[best], psnr[best], ssim[best]);
  }
  free(a);
  free(b);
  mf_image_free(&im);
  return 0;
}

/* fuzz_decode.c — libFuzzer harness for the PNG and JPEG decoders (src/data/image.c). Built twice:
 * -DFUZZ_PNG or -DFUZZ_JPEG picks the entry point; each input is decoded whole, then as a cropped,
 * DCT-downscaled region, the two ways the loader calls the decoders. See docs/data.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

static int choose_half(void *ctx, int w, int h, decode_region *reg) {
  (void)ctx;
  reg->bx = w / 4.0; reg->by = h / 3.0; reg->bw = w / 2.0; reg->bh = h / 2.0;
  reg->out_w = 8; reg->out_h = 8; reg->support = 1.0;
  return 0;
}

static void check(const raw_image *r) {
  /* touch every byte so ASan sees any under-allocation */
  volatile unsigned sum = 0;
  for (int y = 0; y < r->h; y++)
    for (size_t i = 0; i < (size_t)r->w * r->c * (r->depth / 8); i++) sum += r->data[(size_t)y * r->stride + i];
  (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  raw_image r = {0};
  char err[256];
#ifdef FUZZ_PNG
  if (png_decode_mem(data, size, &r, NULL, NULL, err, sizeof err) == 0) check(&r);
  if (png_decode_mem(data, size, &r, choose_half, NULL, err, sizeof err) == 0) check(&r);
#else
  if (jpeg_decode_mem(data, size, &r, NULL, NULL, 0, err, sizeof err) == 0) check(&r);
  if (jpeg_decode_mem(data, size, &r, choose_half, NULL, 1, err, sizeof err) == 0) check(&r);
#endif
  raw_image_free(&r);
  return 0;
}

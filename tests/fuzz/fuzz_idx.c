/* fuzz_idx.c — libFuzzer harness for the IDX reader (src/data/idx.c): each input is written to a file and
 * opened as an images file (then its first and last samples are produced through the transforms), and as
 * the labels file of a valid 3-image images file. See docs/data.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memfit.h"

static char path[64], images[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/fuzz_idx.%d", (int)getpid());
    snprintf(images, sizeof images, "/tmp/fuzz_idx_images.%d", (int)getpid());
    static const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2}; /* 3 images of 2 x 2 */
    FILE *g = fopen(images, "wb");
    if (!g) return 0;
    fwrite(hdr, 1, sizeof hdr, g);
    for (int i = 0; i < 12; i++) fputc(i * 20, g);
    fclose(g);
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  char err[512];
  mf_idx_opts o = mf_idx_opts_default();
  o.quiet = 1;
  o.limit = 64; /* a header of many large images must not make each run read megabytes */
  mf_dataset *d = mf_dataset_open_idx(path, NULL, &o, err, sizeof err);
  if (d) {
    mf_transform_opts t = mf_transform_opts_default();
    t.out_w = t.out_h = 4; t.channels = 3; t.crop = MF_CROP_NONE;
    float out[3 * 4 * 4];
    size_t n = mf_dataset_size(d);
    if (n == 0 || mf_dataset_get(d, 0, &t, 1, out, err, sizeof err) != 0 || mf_dataset_get(d, n - 1, &t, 1, out, err, sizeof err) != 0)
      abort(); /* an opened IDX dataset has samples, and each one can be produced */
    mf_dataset_free(d);
  }
  d = mf_dataset_open_idx(images, path, &o, err, sizeof err);
  if (d) {
    for (size_t i = 0; i < mf_dataset_size(d); i++)
      if (mf_dataset_label(d, i) < 0 || mf_dataset_label(d, i) >= mf_dataset_num_classes(d)) abort();
    mf_dataset_free(d);
  }
  return 0;
}

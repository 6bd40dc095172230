/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader (src/train/safetensors.c, its own
 * JSON parser and layout checks) and what memfit reads from such a file next: every tensor's bytes,
 * the non-finite scan, the metadata, and the steganography model's configuration. See docs/data.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/steg_infer.h"
#include "train/safetensors.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_st.%d.safetensors", (int)getpid());
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  char err[512];
  for (int flags = 0; flags < 2; flags++) {
    mf_st_file *st = mf_st_open_flags(path, flags, err, sizeof err);
    if (!st) continue;
    volatile unsigned sum = 0;
    for (int i = 0; i < mf_st_count(st); i++) {
      const mf_st_tensor *t = mf_st_at(st, i);
      const unsigned char *p = t->data; /* touch every byte so ASan sees a bad extent */
      for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
      sum += (unsigned)mf_st_nonfinite(t);
      if (mf_st_find(st, t->name) == NULL) abort(); /* every listed tensor can be found by its name */
      mf_st_get(st, t->name, t->dtype, t->ndim, t->shape, err, sizeof err);
    }
    for (int i = 0; i < mf_st_meta_count(st); i++) {
      const char *k, *v;
      if (mf_st_meta_at(st, i, &k, &v) || mf_st_meta(st, k) == NULL) abort();
      sum += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    (void)sum;
    mf_steg_config cfg;
    if (flags == 0) mf_steg_model_config(st, path, &cfg, err, sizeof err);
    mf_st_close(st);
  }
  return 0;
}

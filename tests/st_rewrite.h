/* st_rewrite.h — the tests' way to damage a checkpoint on purpose: copy a safetensors file with one
 * metadata key changed or removed, or one tensor element poisoned, checksums recomputed. */
#ifndef MF_ST_REWRITE_H
#define MF_ST_REWRITE_H

#include "train/safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies src to dst with metadata `key` set to `value` (NULL: removed) and, when poison is a tensor
 * name, that tensor's element 1 set to `bad`; checksums are recomputed, so only the content is off. */
static int st_rewrite(const char *src, const char *dst, const char *key, const char *value, const char *poison, float bad) {
  char err[512];
  mf_st_file *f = mf_st_open(src, err, sizeof err);
  if (!f) { fprintf(stderr, "%s\n", err); return -1; }
  mf_st_writer *w = mf_st_writer_init();
  void *copies[64] = {0};
  int nc = 0;
  for (int i = 0; i < mf_st_count(f); i++) {
    const mf_st_tensor *t = mf_st_at(f, i);
    const void *data = t->data;
    if (poison && !strcmp(t->name, poison) && nc < 64 && t->nbytes >= 2 * sizeof(float)) {
      float *c = malloc(t->nbytes);
      memcpy(c, t->data, t->nbytes);
      c[1] = bad;
      data = copies[nc++] = c;
    }
    mf_st_writer_add_typed(w, t->name, t->dtype_name, t->ndim, t->shape, data);
  }
  for (int i = 0; i < mf_st_meta_count(f); i++) {
    const char *k, *v;
    mf_st_meta_at(f, i, &k, &v);
    if (!strncmp(k, "memfit.", 7)) continue;
    if (key && !strcmp(k, key)) continue;
    mf_st_writer_meta(w, k, v);
  }
  if (key && value) mf_st_writer_meta(w, key, value);
  int rc = mf_st_writer_save(w, dst, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  mf_st_writer_free(w);
  mf_st_close(f);
  for (int i = 0; i < nc; i++) free(copies[i]);
  return rc;
}

#endif

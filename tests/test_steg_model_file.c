/* test_steg_model_file.c — damaged steganography model files are refused when loaded, naming the
 * file and what is wrong: NaN or infinite weights (valid checksums; they used to give an all-black
 * stego and exit 0) and more coupling blocks than memfit supports (65 used to be cut to 64). */
#include "check.h"
#include "models/steg_infer.h"
#include "memfit.h"
#include "train/safetensors.h"
#include <sys/wait.h>
#include <unistd.h>

/* Copies the shipped model to dst with element 3 of tensor `poison` set to `bad`. */
static int poison_copy(const char *src, const char *dst, const char *poison, float bad) {
  char err[512];
  mf_st_file *f = mf_st_open(src, err, sizeof err);
  if (!f) { fprintf(stderr, "%s\n", err); return -1; }
  mf_st_writer *w = mf_st_writer_init();
  float *copy = NULL;
  for (int i = 0; i < mf_st_count(f); i++) {
    const mf_st_tensor *t = mf_st_at(f, i);
    const void *data = t->data;
    if (!strcmp(t->name, poison) && !copy && (copy = malloc(t->nbytes))) {
      memcpy(copy, t->data, t->nbytes);
      copy[3] = bad;
      data = copy;
    }
    mf_st_writer_add_typed(w, t->name, t->dtype_name, t->ndim, t->shape, data);
  }
  for (int i = 0; i < mf_st_meta_count(f); i++) {
    const char *k, *v;
    mf_st_meta_at(f, i, &k, &v);
    if (strncmp(k, "memfit.", 7)) mf_st_writer_meta(w, k, v);
  }
  int rc = mf_st_writer_save(w, dst, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  mf_st_writer_free(w);
  mf_st_close(f);
  free(copy);
  return rc;
}

/* Runs `memfit hide` with this model on two small generated pictures; returns its exit status with
 * its output in out. */
static int hide(const char *model, const char *dir, char *out, size_t outlen) {
  const char *bin = getenv("MEMFIT_BIN");
  char cover[600], secret[600], cmd[4096], err[256];
  snprintf(cover, sizeof cover, "%s/cover.png", dir);
  snprintf(secret, sizeof secret, "%s/secret.png", dir);
  static float img[3 * 32 * 32];
  for (int i = 0; i < 3 * 32 * 32; i++) img[i] = (float)((i * 37) % 101) / 100.0f;
  if (mf_image_save_png(cover, img, 32, 32, 3, err, sizeof err) || mf_image_save_png(secret, img + 5, 32, 31, 3, err, sizeof err)) {
    snprintf(out, outlen, "%s", err);
    return -1;
  }
  snprintf(cmd, sizeof cmd, "'%s/memfit' hide --model '%s' --cover '%s' --secret '%s' --out '%s/stego.png' --threads 1 > '%s/out.txt' 2>&1",
           bin ? bin : "build", model, cover, secret, dir, dir);
  int rc = system(cmd);
  snprintf(cmd, sizeof cmd, "%s/out.txt", dir);
  FILE *f = fopen(cmd, "r");
  size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
  out[n] = 0;
  if (f) fclose(f);
  unlink(cmd);
  unlink(cover);
  unlink(secret);
  snprintf(cmd, sizeof cmd, "%s/stego.png", dir);
  unlink(cmd);
  return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

int main(void) {
  const char *root = getenv("MEMFIT_ROOT");
  char model[4096], dst[512], err[1024];
  snprintf(model, sizeof model, "%s/models/steg-small.safetensors", root ? root : ".");
  char dir[] = "/tmp/memfit_stegfile_XXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  snprintf(dst, sizeof dst, "%s/m.safetensors", dir);

  int rc = hide(model, dir, err, sizeof err);
  CHECK(rc == 0, "the shipped model: exit %d: %s", rc, err);

  /* non-finite weights, in the first and the last block */
  const char *tensors[2] = {"param.blk0.phi.conv1.w", "param.blk3.eta.conv5.b"};
  const float bads[3] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 3; k++) {
      if (poison_copy(model, dst, tensors[i], bads[k])) { CHECK(0, "poison %s", tensors[i]); continue; }
      err[0] = 0;
      rc = hide(dst, dir, err, sizeof err);
      CHECK(rc == 1, "%s = %g: exit %d, expected 1: %s", tensors[i], bads[k], rc, err);
      CHECK(strstr(err, tensors[i]) && strstr(err, dst) && strstr(err, "non-finite"), "%s = %g: %s", tensors[i], bads[k], err);
    }

  /* 65 coupling blocks (only the tensor the block count is read from; small growth) */
  mf_st_writer *w = mf_st_writer_init();
  static float wt[1 * 12 * 3 * 3];
  int64_t shape[4] = {1, 12, 3, 3};
  char names[65][48];
  for (int b = 0; b < 65; b++) {
    snprintf(names[b], sizeof names[b], "param.blk%d.phi.conv1.w", b);
    mf_st_writer_add(w, names[b], MF_F32, 4, shape, wt);
  }
  CHECK(mf_st_writer_save(w, dst, err, sizeof err) == 0, "save: %s", err);
  mf_st_writer_free(w);
  mf_st_file *f = mf_st_open(dst, err, sizeof err);
  CHECK(f != NULL, "open: %s", err);
  if (f) {
    mf_steg_config cfg;
    err[0] = 0;
    rc = mf_steg_model_config(f, dst, &cfg, err, sizeof err);
    CHECK(rc < 0, "65 blocks accepted as %d", cfg.blocks);
    CHECK(strstr(err, "65") && strstr(err, "64") && strstr(err, dst), "65 blocks: %s", err);
    mf_st_close(f);
  }

  unlink(dst);
  rmdir(dir);
  return check_finish("test_steg_model_file");
}

/* test_data_io.c — files that are not what they seem: loading a directory, FIFO or device as an image,
 * PNG writes that fail (nothing but the writer's own temporary file may be removed), folders with
 * symlinks to themselves, stale checkpoint temporary files of killed runs, and mf_dataset_get telling
 * an image only smaller than the crop (-2) from a broken one (-1). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "memfit.h"
#include "train/safetensors.h"

static char tmpdir[256];

static int exists_l(const char *p) { struct stat st; return lstat(p, &st) == 0; }

/* number of entries of dir whose name starts with prefix */
static int count_prefix(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
  closedir(d);
  return n;
}

static void test_load_not_regular(void) {
  char p[512], err[512];
  mf_image im;
  /* a directory */
  CHECK(mf_image_load(tmpdir, 3, &im, err, sizeof err) != 0, "a directory loaded as an image");
  CHECK(strstr(err, tmpdir) && strstr(err, "directory"), "directory: message '%s'", err);
  /* a FIFO with no writer: refused at once (alarm ends a hang) */
  snprintf(p, sizeof p, "%s/fifo.png", tmpdir);
  CHECK(mkfifo(p, 0600) == 0, "mkfifo: %s", strerror(errno));
  alarm(20);
  CHECK(mf_image_load(p, 3, &im, err, sizeof err) != 0, "a FIFO loaded as an image");
  alarm(0);
  CHECK(strstr(err, p) && strstr(err, "FIFO"), "FIFO: message '%s'", err);
  /* a character device (endless zeros) */
  CHECK(mf_image_load("/dev/zero", 3, &im, err, sizeof err) != 0, "/dev/zero loaded as an image");
  CHECK(strstr(err, "/dev/zero") && strstr(err, "device"), "/dev/zero: message '%s'", err);
  unlink(p);
}

static void test_save_png(void) {
  float px[4 * 4 * 3];
  for (int i = 0; i < 48; i++) px[i] = (float)i / 47.0f;
  /* noise that does not compress: more than stdio's buffer, so libpng itself sees the failed writes */
  enum { NW = 256 };
  float *noise = malloc(sizeof(float) * NW * NW * 3);
  uint32_t x = 12345;
  for (int i = 0; noise && i < NW * NW * 3; i++) { x = x * 1664525u + 1013904223u; noise[i] = (float)(x >> 8) / 16777216.0f; }
  if (!noise) { CHECK(0, "out of memory"); return; }
  char p[512], q[512], err[512];
  mf_image im;
  /* a normal write: the file, and no temporary file left beside it */
  snprintf(p, sizeof p, "%s/ok.png", tmpdir);
  CHECK(mf_image_save_png(p, px, 4, 4, 3, err, sizeof err) == 0, "save: %s", err);
  CHECK(mf_image_load(p, 3, &im, err, sizeof err) == 0 && im.w == 4 && im.h == 4, "reload: %s", err);
  mf_image_free(&im);
  CHECK(count_prefix(tmpdir, "ok.png.") == 0, "a temporary file was left beside ok.png");
  /* overwriting keeps a readable file; a symlink to a regular file still is the symlink afterwards */
  snprintf(q, sizeof q, "%s/link.png", tmpdir);
  CHECK(symlink("ok.png", q) == 0, "symlink: %s", strerror(errno));
  CHECK(mf_image_save_png(q, px, 2, 2, 3, err, sizeof err) == 0, "save through a symlink: %s", err);
  struct stat st;
  CHECK(lstat(q, &st) == 0 && S_ISLNK(st.st_mode), "the symlink was replaced by a file");
  CHECK(mf_image_load(p, 3, &im, err, sizeof err) == 0 && im.w == 2, "the symlink's target was not written: %s", err);
  mf_image_free(&im);
  /* a device that fails every write (a /dev/full of our own): an error naming it, and it still exists */
  snprintf(p, sizeof p, "%s/full", tmpdir);
  if (mknod(p, S_IFCHR | 0600, makedev(1, 7)) == 0) {
    CHECK(mf_image_save_png(p, noise, NW, NW, 3, err, sizeof err) != 0, "a write to a full device succeeded");
    CHECK(strstr(err, p) != NULL, "full device: message '%s'", err);
    CHECK(exists_l(p), "the failed write removed the device file %s", p);
    /* the same through a symlink: the symlink stays */
    snprintf(q, sizeof q, "%s/full-link.png", tmpdir);
    CHECK(symlink("full", q) == 0, "symlink: %s", strerror(errno));
    CHECK(mf_image_save_png(q, noise, NW, NW, 3, err, sizeof err) != 0, "a write through a symlink to a full device succeeded");
    CHECK(mf_image_save_png(p, px, 4, 4, 3, err, sizeof err) != 0, "a small write to a full device succeeded");
    CHECK(exists_l(p), "the failed small write removed the device file %s", p);
    CHECK(exists_l(q) && exists_l(p), "the failed write removed the symlink %s or its device", q);
    unlink(q);
    unlink(p);
  } else printf("(mknod not permitted: full-device checks skipped)\n");
  /* /dev/null: written directly, still the device afterwards */
  CHECK(mf_image_save_png("/dev/null", px, 4, 4, 3, err, sizeof err) == 0, "/dev/null: %s", err);
  CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "/dev/null is no longer a character device");
  /* a folder that does not exist: an error naming the path, nothing created */
  snprintf(p, sizeof p, "%s/missing/x.png", tmpdir);
  CHECK(mf_image_save_png(p, px, 4, 4, 3, err, sizeof err) != 0, "a write into a missing folder succeeded");
  CHECK(strstr(err, p) != NULL, "missing folder: message '%s'", err);
  /* the path is a directory: refused, the directory untouched */
  snprintf(p, sizeof p, "%s/adir.png", tmpdir);
  mkdir(p, 0700);
  CHECK(mf_image_save_png(p, px, 4, 4, 3, err, sizeof err) != 0, "a write over a directory succeeded");
  CHECK(exists_l(p) && count_prefix(tmpdir, "adir.png.") == 0, "directory case: removed, or a temporary file left");
  rmdir(p);
  snprintf(p, sizeof p, "%s/ok.png", tmpdir);
  unlink(p);
  snprintf(p, sizeof p, "%s/link.png", tmpdir);
  unlink(p);
  free(noise);
}

/* a folder of 8 images with one or two symlinks to itself (and one to a sibling outside it) */
static void test_symlink_loops(void) {
  char root[512], p[1200], err[512];
  float px[16 * 16 * 3];
  for (int i = 0; i < 16 * 16 * 3; i++) px[i] = (float)(i % 97) / 96.0f;
  snprintf(root, sizeof root, "%s/loop", tmpdir);
  mkdir(root, 0700);
  for (int i = 0; i < 8; i++) {
    snprintf(p, sizeof p, "%s/img%d.png", root, i);
    CHECK(mf_image_save_png(p, px, 16, 16, 3, err, sizeof err) == 0, "%s", err);
  }
  snprintf(p, sizeof p, "%s/self", root);
  CHECK(symlink(".", p) == 0, "symlink: %s", strerror(errno));
  mf_folder_opts o = mf_folder_opts_default();
  o.quiet = 1;
  mf_dataset *d = mf_dataset_open_folder(root, &o, err, sizeof err);
  CHECK(d && mf_dataset_size(d) == 8, "one loop: %zu images, not 8 (%s)", d ? mf_dataset_size(d) : (size_t)0, d ? "" : err);
  mf_dataset_free(d);
  /* two loops: 2^32 paths before the fix (alarm ends a hang) */
  snprintf(p, sizeof p, "%s/again", root);
  CHECK(symlink(root, p) == 0, "symlink: %s", strerror(errno));
  alarm(60);
  d = mf_dataset_open_folder(root, &o, err, sizeof err);
  alarm(0);
  CHECK(d && mf_dataset_size(d) == 8, "two loops: %zu images, not 8", d ? mf_dataset_size(d) : (size_t)0);
  mf_dataset_free(d);
  /* a symlink to a folder outside the root is followed (once) */
  char other[512];
  snprintf(other, sizeof other, "%s/other", tmpdir);
  mkdir(other, 0700);
  snprintf(p, sizeof p, "%s/extra.png", other);
  CHECK(mf_image_save_png(p, px, 16, 16, 3, err, sizeof err) == 0, "%s", err);
  snprintf(p, sizeof p, "%s/ext", root);
  CHECK(symlink(other, p) == 0, "symlink: %s", strerror(errno));
  d = mf_dataset_open_folder(root, &o, err, sizeof err);
  CHECK(d && mf_dataset_size(d) == 9, "with a linked outside folder: %zu images, not 9", d ? mf_dataset_size(d) : (size_t)0);
  mf_dataset_free(d);
  snprintf(p, sizeof p, "rm -rf '%s' '%s'", root, other);
  CHECK(system(p) == 0, "cleanup");
}

/* checkpoint temporary files of a killed process are removed by the next save in that folder;
 * those of a live process are left alone */
static void test_stale_checkpoint_tmp(void) {
  char ck[512], dead[600], live[600], other[600], err[512];
  snprintf(ck, sizeof ck, "%s/ck.safetensors", tmpdir);
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, NULL, 0); /* a PID that has just ended */
  snprintf(dead, sizeof dead, "%s.tmp.%ld", ck, (long)child);
  snprintf(live, sizeof live, "%s.tmp.%ld", ck, (long)getppid());
  snprintf(other, sizeof other, "%s/other.safetensors.tmp.%ld", tmpdir, (long)child);
  const char *mk[3] = {dead, live, other};
  for (int i = 0; i < 3; i++) {
    FILE *f = fopen(mk[i], "wb");
    CHECK(f != NULL, "%s: %s", mk[i], strerror(errno));
    if (f) { fputs("partial", f); fclose(f); }
  }
  float x[4] = {1, 2, 3, 4};
  int64_t shape[1] = {4};
  mf_st_writer *w = mf_st_writer_init();
  mf_st_writer_add(w, "x", MF_F32, 1, shape, x);
  CHECK(mf_st_writer_save(w, ck, err, sizeof err) == 0, "save: %s", err);
  mf_st_writer_free(w);
  CHECK(!exists_l(dead), "the temporary file of a dead process was left: %s", dead);
  CHECK(exists_l(live), "the temporary file of a live process was removed: %s", live);
  CHECK(exists_l(other), "another file's temporary file was removed: %s", other);
  unlink(live); unlink(other); unlink(ck); unlink(dead);
}

static void test_get_too_small(void) {
  char dir[400], path[500], err[512];
  snprintf(dir, sizeof dir, "%s/small", tmpdir);
  mkdir(dir, 0700);
  float px[3 * 16 * 16];
  for (int i = 0; i < 3 * 16 * 16; i++) px[i] = (float)(i % 7) / 7.0f;
  snprintf(path, sizeof path, "%s/a16.png", dir);
  CHECK(mf_image_save_png(path, px, 16, 16, 3, err, sizeof err) == 0, "save: %s", err);
  /* a 64x64 PNG whose header is whole (so the folder keeps it) and whose pixel data is cut short */
  float *noise = malloc(3 * 64 * 64 * sizeof *noise);
  uint32_t rs = 7;
  for (int i = 0; i < 3 * 64 * 64; i++) { rs = rs * 1664525u + 1013904223u; noise[i] = (float)(rs >> 8) / 16777216.0f; }
  snprintf(path, sizeof path, "%s/b_broken.png", dir);
  CHECK(mf_image_save_png(path, noise, 64, 64, 3, err, sizeof err) == 0, "save: %s", err);
  free(noise);
  struct stat st;
  CHECK(stat(path, &st) == 0 && truncate(path, st.st_size / 2) == 0, "truncate %s", path);
  mf_dataset *d = mf_dataset_open_folder(dir, NULL, err, sizeof err);
  CHECK(d && mf_dataset_size(d) == 2, "folder of a small and a broken PNG: %s", d ? "wrong count" : err);
  if (d) {
    mf_transform_opts t = mf_transform_opts_default();
    t.out_w = t.out_h = 32;
    t.crop = MF_CROP_CENTER;
    float *out = malloc(3 * 32 * 32 * sizeof *out);
    int rc0 = mf_dataset_get(d, 0, &t, 0, out, err, sizeof err);
    CHECK(rc0 == -2, "a 16x16 image with a 32x32 crop: %d (%s), expected -2 (too small)", rc0, err);
    int rc1 = mf_dataset_get(d, 1, &t, 0, out, err, sizeof err);
    CHECK(rc1 == -1, "a PNG cut short: %d (%s), expected -1", rc1, err);
    t.out_w = t.out_h = 8;
    CHECK(mf_dataset_get(d, 0, &t, 0, out, err, sizeof err) == 0, "an 8x8 crop of it: %s", err);
    free(out);
    mf_dataset_free(d);
  }
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/memfit_test_io_%d", (int)getpid());
  mkdir(tmpdir, 0700);
  test_load_not_regular();
  test_save_png();
  test_symlink_loops();
  test_stale_checkpoint_tmp();
  test_get_too_small();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_data_io");
}

/* test_data_idx.c — the IDX dataset (MNIST / Fashion-MNIST files): pixels and labels round-trip through
 * mf_dataset_get and the loader (plain and gzip files, 1 and 3 channels, two views), splits and limits,
 * opening a --data path (labels found beside the images), every bad-input case with its message, and the
 * real Fashion-MNIST files of Debian's dataset-fashion-mnist when they are installed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "check.h"
#include "memfit.h"

static char tmpdir[256];
static void sub(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%.200s", tmpdir, rel); }

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

/* Writes an IDX file: magic, dims (nd of them), then `payload` bytes of data (gzip when gz). */
static void write_idx(const char *path, uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data, size_t payload, int gz) {
  uint8_t h[16];
  put32(h, magic);
  for (int i = 0; i < nd; i++) put32(h + 4 + 4 * i, dims[i]);
  if (gz) {
    gzFile z = gzopen(path, "wb");
    gzwrite(z, h, (unsigned)(4 + 4 * nd));
    if (payload) gzwrite(z, data, (unsigned)payload);
    gzclose(z);
  } else {
    FILE *f = fopen(path, "wb");
    fwrite(h, 1, (size_t)(4 + 4 * nd), f);
    if (payload) fwrite(data, 1, payload, f);
    fclose(f);
  }
}

/* the test set: N images of H rows x W columns, pixel values from a hash of (image, y, x), labels i % K */
enum { N = 40, H = 6, W = 5, K = 4 };
static uint8_t pix[N * H * W], lab[N];
static void make_set(void) {
  for (int i = 0; i < N; i++) {
    lab[i] = (uint8_t)(i % K);
    for (int p = 0; p < H * W; p++) {
      uint64_t v = ((uint64_t)i << 32 | (uint64_t)p) * 0x9e3779b97f4a7c15ull;
      v ^= v >> 31; v *= 0xbf58476d1ce4e5b9ull; v ^= v >> 29;
      pix[i * H * W + p] = (uint8_t)(v >> 40);
    }
  }
}
static void write_set(const char *images, const char *labels, int gz) {
  uint32_t di[3] = {N, H, W}, dl[1] = {N};
  write_idx(images, 0x00000803, di, 3, pix, sizeof pix, gz);
  if (labels) write_idx(labels, 0x00000801, dl, 1, lab, sizeof lab, gz);
}

static mf_transform_opts plain_tf(int channels) {
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = W; t.out_h = H; t.channels = channels; t.crop = MF_CROP_NONE;
  return t;
}

/* sample j of d (1 channel, no resampling) must be file image `index`'s bytes / 255 in each of C planes */
static int sample_matches(const float *s, int C, int index) {
  for (int c = 0; c < C; c++)
    for (int p = 0; p < H * W; p++)
      if (fabsf(s[c * H * W + p] * 255.0f - pix[index * H * W + p]) > 1e-3f) return 0;
  return 1;
}

static void test_round_trip(int gz) {
  char im[512], lb[512], err[512];
  sub(im, sizeof im, gz ? "rt-images-idx3-ubyte.gz" : "rt-images-idx3-ubyte");
  sub(lb, sizeof lb, gz ? "rt-labels-idx1-ubyte.gz" : "rt-labels-idx1-ubyte");
  write_set(im, lb, gz);
  mf_dataset *d = mf_dataset_open_idx(im, lb, NULL, err, sizeof err);
  CHECK(d != NULL, "open %s: %s", im, d ? "" : err);
  if (!d) return;
  CHECK(mf_dataset_size(d) == N, "size %zu", mf_dataset_size(d));
  CHECK(mf_dataset_num_classes(d) == K, "classes %d", mf_dataset_num_classes(d));
  CHECK(mf_dataset_class_name(d, 1) && !strcmp(mf_dataset_class_name(d, 1), "1"), "class name 1: %s", mf_dataset_class_name(d, 1));
  CHECK(mf_dataset_file(d, 0) == NULL, "no file per sample");
  int lab_ok = 1, pix_ok = 1;
  float out[3 * H * W];
  for (int i = 0; i < N; i++) {
    lab_ok &= mf_dataset_label(d, (size_t)i) == lab[i];
    for (int C = 1; C <= 3; C += 2) {
      mf_transform_opts t = plain_tf(C);
      int rc = mf_dataset_get(d, (size_t)i, &t, 5, out, err, sizeof err);
      CHECK(rc == 0, "get %d: %s", i, err);
      pix_ok &= rc == 0 && sample_matches(out, C, i);
    }
  }
  CHECK(lab_ok, "labels round trip (%s)", gz ? "gzip" : "plain");
  CHECK(pix_ok, "pixels round trip, 1 and 3 channels (%s)", gz ? "gzip" : "plain");

  /* the loader: two views, no shuffle, short last batch; every sample once, labels and pixels equal */
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = d; lo.batch_size = 16; lo.views = 2; lo.shuffle = 1; lo.drop_last = 0; lo.workers = 2; lo.seed = 9;
  lo.tf = plain_tf(3);
  lo.quiet = 1;
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L != NULL, "loader: %s", L ? "" : err);
  if (L) {
    int seen[N] = {0}, ok = 1, count = 0;
    for (const mf_batch *b; (b = mf_loader_next(L)); mf_loader_release(L, b))
      for (int j = 0; j < b->n; j++) {
        int i = (int)b->indices[j];
        seen[i]++; count++;
        ok &= b->labels[j] == lab[i];
        for (int v = 0; v < 2; v++) ok &= sample_matches(b->views[v] + (size_t)j * 3 * H * W, 3, i);
      }
    CHECK(count == N, "one epoch gives %d samples, want %d", count, N);
    int once = 1;
    for (int i = 0; i < N; i++) once &= seen[i] == 1;
    CHECK(once, "every sample once per epoch");
    CHECK(ok, "loader batches: labels and both views equal the file's bytes");
    mf_loader_free(L);
  }
  mf_dataset_free(d);
}

/* augmenting transforms run on IDX images too (random resized crop to 32, flips, rot90, noise), and a
 * fixed crop larger than the images is refused at loader start naming the file */
static void test_transforms(void) {
  char im[512], err[512];
  sub(im, sizeof im, "aug-images-idx3-ubyte");
  write_set(im, NULL, 0);
  mf_dataset *d = mf_dataset_open_idx(im, NULL, NULL, err, sizeof err);
  CHECK(d != NULL, "open unlabelled: %s", d ? "" : err);
  if (!d) return;
  CHECK(mf_dataset_num_classes(d) == 0 && mf_dataset_label(d, 3) == -1, "unlabelled: no classes, label -1");
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = d; lo.batch_size = 8; lo.views = 2; lo.seed = 3; lo.quiet = 1; lo.workers = 1;
  lo.tf.out_w = lo.tf.out_h = 32; lo.tf.channels = 3; lo.tf.crop = MF_CROP_RANDOM_RESIZED;
  lo.tf.hflip = 0.5f; lo.tf.rot90 = 1; lo.tf.noise_std = 0.05f; lo.tf.gray_p = 0.2f;
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L != NULL, "augmenting loader: %s", L ? "" : err);
  if (L) {
    const mf_batch *b = mf_loader_next(L);
    CHECK(b != NULL, "a batch");
    if (b) {
      int in_range = 1, differ = 0;
      for (size_t k = 0; k < (size_t)8 * 3 * 32 * 32; k++) {
        in_range &= b->views[0][k] >= 0 && b->views[0][k] <= 1;
        differ |= b->views[0][k] != b->views[1][k];
      }
      CHECK(in_range && differ, "augmented views in [0,1] (%d) and not equal (%d)", in_range, differ);
      CHECK(b->labels[0] == -1, "unlabelled batch label -1");
      mf_loader_release(L, b);
    }
    mf_loader_free(L);
  }
  lo.tf.crop = MF_CROP_CENTER;
  L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L == NULL && strstr(err, im) && strstr(err, "5x6"), "a centre crop of 32 on 5x6 images: %s", err);
  mf_loader_free(L);
  mf_dataset_free(d);
}

static void test_split_limit(void) {
  char im[512], lb[512], err[512];
  sub(im, sizeof im, "sp-images-idx3-ubyte");
  sub(lb, sizeof lb, "sp-labels-idx1-ubyte");
  write_set(im, lb, 0);
  mf_idx_opts o = mf_idx_opts_default();
  o.split = MF_SPLIT_TRAIN; o.val_fraction = 0.3; o.split_seed = 11;
  mf_dataset *tr = mf_dataset_open_idx(im, lb, &o, err, sizeof err);
  o.split = MF_SPLIT_VAL;
  mf_dataset *va = mf_dataset_open_idx(im, lb, &o, err, sizeof err);
  CHECK(tr && va, "split: %s", err);
  if (tr && va) {
    CHECK(mf_dataset_size(tr) + mf_dataset_size(va) == N && mf_dataset_size(va) > 0 && mf_dataset_size(tr) > 0,
          "train %zu + val %zu == %d", mf_dataset_size(tr), mf_dataset_size(va), N);
    /* disjoint and covering: every file image is in exactly one part (found by its pixels) */
    int cover[N] = {0}, ok = 1;
    float out[H * W];
    mf_transform_opts t = plain_tf(1);
    for (int part = 0; part < 2; part++) {
      mf_dataset *d = part ? va : tr;
      for (size_t j = 0; j < mf_dataset_size(d); j++) {
        ok &= mf_dataset_get(d, j, &t, 1, out, err, sizeof err) == 0;
        int found = -1;
        for (int i = 0; i < N && found < 0; i++)
          if (sample_matches(out, 1, i)) found = i;
        ok &= found >= 0 && mf_dataset_label(d, j) == lab[found];
        if (found >= 0) cover[found]++;
      }
    }
    for (int i = 0; i < N; i++) ok &= cover[i] == 1;
    CHECK(ok, "train and validation parts are disjoint, cover the file and keep their labels");
  }
  mf_dataset_free(tr); mf_dataset_free(va);
  o = mf_idx_opts_default();
  o.limit = 7;
  mf_dataset *d = mf_dataset_open_idx(im, lb, &o, err, sizeof err);
  CHECK(d && mf_dataset_size(d) == 7, "limit 7: %s", d ? "" : err);
  if (d) {
    float out[H * W];
    mf_transform_opts t = plain_tf(1);
    CHECK(mf_dataset_get(d, 6, &t, 1, out, err, sizeof err) == 0 && sample_matches(out, 1, 6), "limit keeps the first images");
  }
  mf_dataset_free(d);
}

/* mf_dataset_open_path: an IDX images file (plain or gzip) finds its labels beside it; a folder still works */
static void test_open_path(void) {
  char im[512], lb[512], err[512], dir[512];
  sub(dir, sizeof dir, "std");
  mkdir(dir, 0755);
  sub(im, sizeof im, "std/train-images-idx3-ubyte");
  sub(lb, sizeof lb, "std/train-labels-idx1-ubyte");
  write_set(im, lb, 0);
  sub(im, sizeof im, "std/t10k-images-idx3-ubyte.gz");
  sub(lb, sizeof lb, "std/t10k-labels-idx1-ubyte.gz");
  write_set(im, lb, 1);
  const char *names[2] = {"std/train-images-idx3-ubyte", "std/t10k-images-idx3-ubyte.gz"};
  for (int k = 0; k < 2; k++) {
    sub(im, sizeof im, names[k]);
    mf_folder_opts fo = mf_folder_opts_default();
    fo.labels = 1;
    mf_dataset *d = mf_dataset_open_path(im, &fo, err, sizeof err);
    CHECK(d && mf_dataset_size(d) == N && mf_dataset_num_classes(d) == K && mf_dataset_label(d, 5) == lab[5],
          "open_path %s with the labels beside it: %s", names[k], d ? "" : err);
    mf_dataset_free(d);
  }
  /* the split of a folder's options applies to IDX too */
  sub(im, sizeof im, names[0]);
  mf_folder_opts fo = mf_folder_opts_default();
  fo.split = MF_SPLIT_VAL; fo.val_fraction = 0.5;
  mf_dataset *d = mf_dataset_open_path(im, &fo, err, sizeof err);
  CHECK(d && mf_dataset_size(d) < N, "open_path with a validation split: %s", d ? "" : err);
  mf_dataset_free(d);
  /* labels asked for but absent */
  sub(im, sizeof im, "std/alone-images-idx3-ubyte");
  write_set(im, NULL, 0);
  fo = mf_folder_opts_default();
  fo.labels = 1;
  d = mf_dataset_open_path(im, &fo, err, sizeof err);
  CHECK(!d && strstr(err, "alone-labels-idx1-ubyte"), "labels asked for, none beside: %s", err);
  mf_dataset_free(d);
  fo.labels = 0;
  d = mf_dataset_open_path(im, &fo, err, sizeof err);
  CHECK(d && mf_dataset_num_classes(d) == 0, "unlabelled without a labels file: %s", d ? "" : err);
  mf_dataset_free(d);
  /* the folder of an IDX set: a message saying which file to give */
  d = mf_dataset_open_path(dir, NULL, err, sizeof err);
  CHECK(!d && strstr(err, "holds IDX files") && strstr(err, "std/train-images-idx3-ubyte"), "an IDX folder as data: %s", err);
  mf_dataset_free(d);
  /* a file that is not IDX */
  sub(im, sizeof im, "std/notes.txt");
  FILE *f = fopen(im, "w");
  fputs("hello, not pixels\n", f);
  fclose(f);
  d = mf_dataset_open_path(im, NULL, err, sizeof err);
  CHECK(!d && strstr(err, "notes.txt") && strstr(err, "IDX"), "a text file as data: %s", err);
  mf_dataset_free(d);
}

/* one bad input: opening fails, the message names the file and holds `want` */
static void expect_fail(const char *images, const char *labels, const mf_idx_opts *o, const char *want, const char *what) {
  char err[512] = "";
  mf_dataset *d = mf_dataset_open_idx(images, labels, o, err, sizeof err);
  const char *base = strrchr(labels && strstr(want, "@labels") ? labels : images, '/');
  const char *need = strstr(want, "@labels") ? want + 8 : want;
  CHECK(!d && strstr(err, base ? base + 1 : images) && strstr(err, need), "%s: got '%s', want the file name and '%s'", what, err, need);
  printf("  %s -> %s\n", what, err);
  mf_dataset_free(d);
}

static void test_bad_input(void) {
  char im[512], lb[512], p[512], q[512];
  sub(im, sizeof im, "good-images-idx3-ubyte");
  sub(lb, sizeof lb, "good-labels-idx1-ubyte");
  write_set(im, lb, 0);
  uint32_t di[3] = {N, H, W}, dl[1] = {N};

  sub(p, sizeof p, "bad-magic");
  write_idx(p, 0x00000804, di, 3, pix, sizeof pix, 0);
  expect_fail(p, NULL, NULL, "magic number 0x00000804", "wrong magic (4 dimensions)");
  write_idx(p, 0x00000D03, di, 3, pix, sizeof pix, 0);
  expect_fail(p, NULL, NULL, "data type 0x0d", "float images");
  write_idx(p, 0x12345678, di, 3, pix, sizeof pix, 0);
  expect_fail(p, NULL, NULL, "not an IDX images file", "garbage magic");
  expect_fail(lb, NULL, NULL, "labels file", "labels given as images");
  expect_fail(im, im, NULL, "@labels images file", "images given as labels");

  sub(p, sizeof p, "trunc-images");
  write_idx(p, 0x00000803, di, 3, pix, sizeof pix - H * W / 2, 0);
  expect_fail(p, NULL, NULL, "truncated", "half an image missing");
  write_idx(p, 0x00000803, di, 3, pix, sizeof pix - H * W / 2, 1);
  expect_fail(p, NULL, NULL, "truncated", "half an image missing (gzip)");
  write_idx(p, 0x00000803, di, 1, NULL, 0, 0); /* the magic and N only */
  expect_fail(p, NULL, NULL, "header", "header cut short");
  FILE *f = fopen(p, "wb");
  fclose(f);
  expect_fail(p, NULL, NULL, "shorter than the 4-byte magic", "empty file");

  /* a gzip stream cut in the middle, and one with damaged bytes */
  sub(q, sizeof q, "whole.gz");
  write_idx(q, 0x00000803, di, 3, pix, sizeof pix, 1);
  struct stat st;
  stat(q, &st);
  uint8_t *gzb = malloc((size_t)st.st_size);
  f = fopen(q, "rb");
  size_t gn = fread(gzb, 1, (size_t)st.st_size, f);
  fclose(f);
  f = fopen(p, "wb");
  fwrite(gzb, 1, gn * 2 / 3, f);
  fclose(f);
  {
    char err[512] = "";
    mf_dataset *d = mf_dataset_open_idx(p, NULL, NULL, err, sizeof err);
    CHECK(!d && strstr(err, "trunc-images") && (strstr(err, "truncated") || strstr(err, "gzip")), "gzip cut short: %s", err);
    mf_dataset_free(d);
  }
  for (size_t i = 20; i < gn - 8; i += 7) gzb[i] ^= 0x5a;
  f = fopen(p, "wb");
  fwrite(gzb, 1, gn, f);
  fclose(f);
  {
    char err[512] = "";
    mf_dataset *d = mf_dataset_open_idx(p, NULL, NULL, err, sizeof err);
    CHECK(!d && strstr(err, "trunc-images"), "damaged gzip data: %s", err);
    mf_dataset_free(d);
  }
  free(gzb);

  uint32_t d0[3] = {0, H, W};
  write_idx(p, 0x00000803, d0, 3, NULL, 0, 0);
  expect_fail(p, NULL, NULL, "no images", "zero images");
  uint32_t dbig[3] = {N, 70000, W};
  write_idx(p, 0x00000803, dbig, 3, pix, sizeof pix, 0);
  expect_fail(p, NULL, NULL, "1 to 16384", "absurd size");
  uint32_t dhuge[3] = {2000000000u, 28, 28}; /* a header promising 1.5 TB: refused as truncated without allocating it */
  write_idx(p, 0x00000803, dhuge, 3, pix, sizeof pix, 0);
  expect_fail(p, NULL, NULL, "truncated", "header promises far more than the file holds");
  uint32_t dside[3] = {3, 16384, 16384}; /* three 256 MiB images in a 1.2 kB file */
  write_idx(p, 0x00000803, dside, 3, pix, sizeof pix, 1);
  expect_fail(p, NULL, NULL, "truncated", "huge images promised (gzip)");

  sub(q, sizeof q, "bad-labels");
  uint32_t dl6[1] = {N - 1};
  write_idx(q, 0x00000801, dl6, 1, lab, N - 1, 0);
  expect_fail(im, q, NULL, "@labels 39 labels, but the images file has 40", "labels count != images count");
  write_idx(q, 0x00000801, dl, 1, lab, N - 3, 0);
  expect_fail(im, q, NULL, "@labels truncated", "labels truncated");
  uint8_t l32[N * 4];
  for (int i = 0; i < N; i++) put32(l32 + 4 * i, (uint32_t)(i == 17 ? 300 : i % K));
  write_idx(q, 0x00000C01, dl, 1, l32, sizeof l32, 0);
  expect_fail(im, q, NULL, "@labels label 300 of image 17", "int32 label >= 256");
  put32(l32 + 4 * 17, (uint32_t)-2);
  write_idx(q, 0x00000C01, dl, 1, l32, sizeof l32, 0);
  expect_fail(im, q, NULL, "@labels label -2 of image 17", "negative label");
  put32(l32 + 4 * 17, 1);
  write_idx(q, 0x00000C01, dl, 1, l32, sizeof l32, 0);
  {
    char err[512];
    mf_dataset *d = mf_dataset_open_idx(im, q, NULL, err, sizeof err);
    CHECK(d && mf_dataset_label(d, 17) == 1 && mf_dataset_num_classes(d) == K, "int32 labels read: %s", d ? "" : err);
    mf_dataset_free(d);
  }
  write_idx(q, 0x00000803, dl, 1, lab, N, 0);
  expect_fail(im, q, NULL, "@labels images file", "labels file with the images magic");
  mf_idx_opts o = mf_idx_opts_default();
  o.num_classes = K - 1;
  expect_fail(im, lb, &o, "@labels not below num_classes 3", "label above num_classes");
  o = mf_idx_opts_default();
  o.split = MF_SPLIT_VAL; o.val_fraction = 0;
  expect_fail(im, lb, &o, "validation split", "empty split");
  o.val_fraction = 2;
  expect_fail(im, lb, &o, "val_fraction", "bad val_fraction");

  sub(p, sizeof p, "missing-images");
  expect_fail(p, NULL, NULL, "cannot open", "missing file");
  sub(p, sizeof p, "std");
  expect_fail(p, NULL, NULL, "folder", "a folder given as the images file");
  expect_fail(im, p, NULL, "@labels folder", "a folder given as the labels file");
}

/* The real files of Debian's dataset-fashion-mnist (skipped with a message when absent). */
static void test_fashion_mnist(void) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  char tri[512], trl[512], tei[512], tel[512], err[512];
  snprintf(tri, sizeof tri, "%s/train-images-idx3-ubyte.gz", dir);
  snprintf(trl, sizeof trl, "%s/train-labels-idx1-ubyte.gz", dir);
  snprintf(tei, sizeof tei, "%s/t10k-images-idx3-ubyte.gz", dir);
  snprintf(tel, sizeof tel, "%s/t10k-labels-idx1-ubyte.gz", dir);
  struct stat st;
  if (stat(tri, &st) != 0 || stat(tei, &st) != 0) {
    printf("test_data_idx: SKIP the Fashion-MNIST check: %s not installed (apt-get install dataset-fashion-mnist)\n", dir);
    return;
  }
  mf_dataset *tr = mf_dataset_open_idx(tri, trl, NULL, err, sizeof err);
  CHECK(tr != NULL, "train: %s", tr ? "" : err);
  mf_dataset *te = mf_dataset_open_idx(tei, tel, NULL, err, sizeof err);
  CHECK(te != NULL, "test: %s", te ? "" : err);
  if (tr && te) {
    size_t total = mf_dataset_size(tr) + mf_dataset_size(te);
    printf("fashion-mnist: %zu train + %zu test = %zu images, %d classes (0: %s, 9: %s)\n", mf_dataset_size(tr), mf_dataset_size(te),
           total, mf_dataset_num_classes(tr), mf_dataset_class_name(tr, 0), mf_dataset_class_name(tr, 9));
    CHECK(total == 70000, "70,000 images, got %zu", total);
    CHECK(mf_dataset_num_classes(tr) == 10 && mf_dataset_num_classes(te) == 10, "10 classes");
    CHECK(!strcmp(mf_dataset_class_name(tr, 9), "Ankle boot"), "Fashion-MNIST names: %s", mf_dataset_class_name(tr, 9));
    long counts[10] = {0};
    int in_range = 1;
    for (int part = 0; part < 2; part++) {
      mf_dataset *d = part ? te : tr;
      for (size_t i = 0; i < mf_dataset_size(d); i++) {
        int l = mf_dataset_label(d, i);
        in_range &= l >= 0 && l < 10;
        if (l >= 0 && l < 10) counts[l]++;
      }
    }
    CHECK(in_range, "labels in [0, 10)");
    int balanced = 1; /* the published set: 7,000 images per class */
    for (int k = 0; k < 10; k++) balanced &= counts[k] == 7000;
    CHECK(balanced, "7,000 per class (class 0: %ld)", counts[0]);
    /* the first training image is the 784 bytes after the 16-byte header */
    gzFile z = gzopen(tri, "rb");
    uint8_t raw[16 + 784];
    int got = z ? gzread(z, raw, sizeof raw) : -1;
    if (z) gzclose(z);
    CHECK(got == (int)sizeof raw, "read the file directly");
    mf_transform_opts t = mf_transform_opts_default();
    t.out_w = t.out_h = 28; t.channels = 1; t.crop = MF_CROP_NONE;
    float out[784];
    CHECK(mf_dataset_get(tr, 0, &t, 0, out, err, sizeof err) == 0, "get: %s", err);
    int same = 1;
    for (int k = 0; k < 784; k++) same &= (int)lrintf(out[k] * 255.0f) == raw[16 + k];
    CHECK(same, "first training image equals the file's bytes at offset 16");
  }
  mf_dataset_free(tr);
  mf_dataset_free(te);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mf_test_idx_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  make_set();
  test_round_trip(0);
  test_round_trip(1);
  test_transforms();
  test_split_limit();
  test_open_path();
  test_bad_input();
  test_fashion_mnist();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (getenv("KEEP")) return check_finish("test_data_idx");
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_data_idx");
}

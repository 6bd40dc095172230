/* test_data_loader.c — the threaded loader and the folder dataset: every sample once per epoch,
 * byte-identical batches for 1, 2 and 3 workers, batches equal mf_dataset_get, exact staging bytes
 * through the allocator hook, bad files skipped/replaced and counted, empty and missing folders,
 * train/validation split determinism, class labels, two views, and positions: a loader started where
 * another stood delivers the same bytes (other worker counts too), and refuses other data or seeds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <png.h>

#include "check.h"
#include "memfit.h"

static char tmpdir[256];

static void save_gen(const char *path, uint64_t idx, int w, int h) {
  mf_image im; char err[256];
  mf_image_generate(3, idx, w, h, &im);
  if (mf_image_save_png(path, im.data, w, h, 3, err, sizeof err)) fprintf(stderr, "%s\n", err);
  mf_image_free(&im);
}
static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (n) fwrite(b, 1, n, f);
  fclose(f);
}
static void sub(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%.200s", tmpdir, rel); }

/* runs `epochs` epochs and returns a malloc'd concatenation of all batch bytes */
static uint8_t *run_loader(mf_loader_opts lo, int epochs, size_t *nbytes, int64_t *counts, size_t nsamples) {
  char err[512];
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L != NULL, "loader init: %s", L ? "" : err);
  if (!L) return NULL;
  size_t per = (size_t)lo.batch_size * lo.tf.channels * lo.tf.out_w * lo.tf.out_h * mf_dataset_frames(lo.dataset);
  size_t cap = 0, n = 0;
  uint8_t *all = NULL;
  for (int e = 0; e < epochs; e++) {
    if (counts) memset(counts, 0, nsamples * sizeof *counts);
    const mf_batch *b;
    int nb = 0;
    while ((b = mf_loader_next(L)) != NULL) {
      CHECK(b->epoch == e, "batch epoch %lld, want %d", (long long)b->epoch, e);
      for (int v = 0; v < lo.views; v++) {
        size_t bytes = per / lo.batch_size * b->n * sizeof(float);
        if (n + bytes + b->n * 12 > cap) { cap = 2 * (n + bytes + b->n * 12) + 4096; all = realloc(all, cap); }
        memcpy(all + n, b->views[v], bytes); n += bytes;
      }
      memcpy(all + n, b->labels, b->n * 4); n += b->n * 4;
      memcpy(all + n, b->indices, b->n * 8); n += b->n * 8;
      if (counts) for (int i = 0; i < b->n; i++) counts[b->indices[i]]++;
      nb++;
      mf_loader_release(L, b);
    }
    CHECK((size_t)nb == mf_loader_batches_per_epoch(L), "epoch %d: %d batches, want %zu", e, nb, mf_loader_batches_per_epoch(L));
    if (counts) {
      int once = 1;
      for (size_t i = 0; i < nsamples; i++) once &= counts[i] == 1;
      CHECK(once, "epoch %d delivers every sample exactly once", e);
    }
  }
  mf_loader_stats st = mf_loader_get_stats(L);
  CHECK(st.wait_s >= 0 && st.batches == (int64_t)mf_loader_batches_per_epoch(L) * epochs, "stats: %lld batches, wait %.3f s",
        (long long)st.batches, st.wait_s);
  mf_loader_free(L);
  *nbytes = n;
  return all;
}

/* The next batch (past an epoch's closing NULL) as bytes: n, epoch, step, indices, labels, each view. */
static uint8_t *take_batch(mf_loader *L, const mf_loader_opts *lo, size_t *len) {
  const mf_batch *b = mf_loader_next(L);
  if (!b && !mf_loader_error(L)) b = mf_loader_next(L);
  if (!b) return NULL;
  size_t img = (size_t)b->n * lo->tf.channels * lo->tf.out_w * lo->tf.out_h * mf_dataset_frames(lo->dataset) * sizeof(float);
  size_t n = 24 + (size_t)b->n * 12 + (size_t)lo->views * img;
  uint8_t *o = malloc(n), *p = o;
  int64_t hdr[3] = {b->n, b->epoch, b->step};
  memcpy(p, hdr, 24); p += 24;
  memcpy(p, b->indices, (size_t)b->n * 8); p += (size_t)b->n * 8;
  memcpy(p, b->labels, (size_t)b->n * 4); p += (size_t)b->n * 4;
  for (int v = 0; v < lo->views; v++) { memcpy(p, b->views[v], img); p += img; }
  mf_loader_release(L, b);
  *len = n;
  return o;
}

/* Takes `total` batches with one worker, noting the position before each; then starts new loaders at
 * some of those positions (with other worker and prefetch counts) and compares every later batch. */
static void check_restart(const char *what, mf_loader_opts lo, int total) {
  enum { MAXB = 32 };
  char err[512];
  uint8_t *ref[MAXB] = {0};
  size_t len[MAXB];
  mf_loader_pos pos[MAXB + 1];
  if (total > MAXB) total = MAXB;
  lo.workers = 1; lo.prefetch = 2;
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L != NULL, "%s: loader: %s", what, L ? "" : err);
  if (!L) return;
  int64_t per = (int64_t)mf_loader_batches_per_epoch(L);
  int taken = 0;
  for (; taken < total; taken++) {
    pos[taken] = mf_loader_position(L);
    if (!(ref[taken] = take_batch(L, &lo, &len[taken]))) break;
  }
  pos[taken] = mf_loader_position(L);
  mf_loader_free(L);
  CHECK(taken == total, "%s: %d of %d batches", what, taken, total);
  int counted = 1;
  for (int k = 0; k <= taken; k++)
    counted &= pos[k].epoch == k / per && pos[k].batch == k % per && pos[k].seed == lo.seed && pos[k].data_id &&
               pos[k].data_id == pos[0].data_id;
  CHECK(counted, "%s: positions count epochs (%lld batches each) and batches; seed and data id stay", what, (long long)per);
  int ks[] = {1, (int)per - 1, (int)per, (int)per + 1, taken - 1};
  for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
    int k = ks[i];
    if (k < 0 || k >= taken) continue;
    lo.start = pos[k]; lo.workers = 2 + (int)(i % 2); lo.prefetch = 1 + (int)(i % 3);
    L = mf_loader_init(&lo, err, sizeof err);
    CHECK(L != NULL, "%s: loader started at batch %d: %s", what, k, L ? "" : err);
    if (!L) continue;
    int same = 1;
    for (int j = k; j < taken && same; j++) {
      size_t n;
      uint8_t *b = take_batch(L, &lo, &n);
      same = b && n == len[j] && memcmp(b, ref[j], n) == 0;
      free(b);
    }
    CHECK(same, "%s: started at epoch %lld, batch %lld with %d workers: batches %d..%d byte-identical to the run that got there",
          what, (long long)pos[k].epoch, (long long)pos[k].batch, lo.workers, k, taken - 1);
    mf_loader_free(L);
  }
  for (int k = 0; k < taken; k++) free(ref[k]);
}

typedef struct hook { size_t bytes, calls, live; } hook;
static void *hook_alloc(size_t n, void *ctx) { hook *h = ctx; h->bytes += n; h->calls++; h->live++; return malloc(n); }
static void hook_free(void *p, size_t n, void *ctx) { hook *h = ctx; (void)n; h->live--; free(p); }

static void test_generated(void) {
  char err[512];
  mf_dataset *ds = mf_dataset_generated(37, 48, 40, 5, err, sizeof err);
  CHECK(ds && mf_dataset_size(ds) == 37, "generated dataset");
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = ds; lo.batch_size = 4; lo.drop_last = 0; lo.seed = 99;
  lo.tf.out_w = 24; lo.tf.out_h = 20;
  lo.tf.crop = MF_CROP_RANDOM_RESIZED; lo.tf.hflip = 0.5f; lo.tf.vflip = 0.5f;
  lo.tf.brightness = lo.tf.contrast = lo.tf.saturation = 0.4f; lo.tf.hue = 0.1f; lo.tf.gray_p = 0.2f;
  lo.tf.blur_p = 0.5f; lo.tf.noise_std = 0.02f;
  int64_t counts[37];
  size_t n1, n2, n3;
  lo.workers = 1;
  uint8_t *a = run_loader(lo, 3, &n1, counts, 37);
  lo.workers = 2;
  uint8_t *b = run_loader(lo, 3, &n2, counts, 37);
  lo.workers = 3; lo.prefetch = 1;
  uint8_t *c = run_loader(lo, 3, &n3, NULL, 0);
  CHECK(a && b && c && n1 == n2 && n2 == n3 && memcmp(a, b, n1) == 0 && memcmp(a, c, n1) == 0,
        "batches byte-identical with 1, 2 and 3 workers (%zu bytes)", n1);
  /* the first batch's first sample equals mf_dataset_get with the loader's seed (epoch 0) */
  size_t per = 3 * 24 * 20;
  float *one = malloc(per * sizeof(float));
  int64_t first_idx;
  memcpy(&first_idx, a + 4 * per * sizeof(float) + 4 * 4, 8);
  CHECK(mf_dataset_get(ds, (size_t)first_idx, &lo.tf, lo.seed, one, err, sizeof err) == 0, "get: %s", err);
  CHECK(memcmp(one, a, per * sizeof(float)) == 0, "loader sample == mf_dataset_get(sample %lld)", (long long)first_idx);
  free(one);
  /* epochs are shuffled differently */
  size_t ep = n1 / 3;
  CHECK(memcmp(a, a + ep, ep) != 0, "epoch 1 differs from epoch 0");
  free(a); free(b); free(c);
  /* shuffle off: order 0..n-1 */
  lo.shuffle = 0; lo.workers = 2; lo.prefetch = 2;
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  const mf_batch *bt = mf_loader_next(L);
  CHECK(bt && bt->indices[0] == 0 && bt->indices[3] == 3 && bt->labels[0] == -1, "no shuffle: in order, unlabelled");
  mf_loader_release(L, bt);
  mf_loader_free(L);
  /* staging bytes: what the hook allocates, exactly; buffers are the batches */
  hook h = {0, 0, 0};
  lo.alloc = hook_alloc; lo.free = hook_free; lo.alloc_ctx = &h; lo.prefetch = 3; lo.views = 2;
  size_t want = mf_loader_staging_bytes(&lo);
  L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L && h.bytes == want && h.calls == 4, "staging: hook got %zu bytes in %zu buffers, predicted %zu", h.bytes, h.calls, want);
  size_t img = (size_t)4 * 3 * 24 * 20 * 4;
  CHECK(want >= 4 * (2 * img + 16) && want <= 4 * (2 * img + 16 + 3 * 64), "staging size %zu for 4 x (2 views x %zu + labels)", want, img);
  bt = mf_loader_next(L);
  CHECK(bt && bt->views[1] == (float *)((uint8_t *)bt->views[0] + ((img + 63) & ~(size_t)63)), "second view follows the first");
  CHECK(bt && memcmp(bt->views[0], bt->views[1], img) != 0, "two views differ");
  mf_loader_release(L, bt);
  mf_loader_free(L);
  CHECK(h.live == 0, "every staging buffer freed through the hook");
  /* bad settings are errors, not crashes */
  lo.views = 3;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "views"), "views = 3 refused: %s", err);
  CHECK(mf_loader_staging_bytes(&lo) == 0, "staging bytes of bad settings = 0");
  lo.views = 1; lo.batch_size = 40; lo.drop_last = 1;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "fewer than one batch"), "batch > dataset: %s", err);

  /* positions: restart anywhere, two views, a short last batch per epoch */
  lo = mf_loader_opts_default();
  lo.dataset = ds; lo.batch_size = 4; lo.drop_last = 0; lo.seed = 7; lo.views = 2;
  lo.tf.out_w = 16; lo.tf.out_h = 12;
  lo.tf.crop = MF_CROP_RANDOM_RESIZED; lo.tf.hflip = 0.5f; lo.tf.brightness = 0.4f; lo.tf.noise_std = 0.02f;
  check_restart("generated", lo, 25);
  /* a position only fits the loader it came from */
  lo.views = 1;
  mf_loader *P = mf_loader_init(&lo, err, sizeof err);
  for (int i = 0; P && i < 3; i++) mf_loader_release(P, mf_loader_next(P));
  mf_loader_pos pos = mf_loader_position(P);
  mf_loader_free(P);
  CHECK(pos.epoch == 0 && pos.batch == 3, "position after 3 batches: epoch %lld batch %lld", (long long)pos.epoch, (long long)pos.batch);
  lo.start = pos; lo.seed = 8;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "seed 7") && strstr(err, "seed 8"), "other seed refused: %s", err);
  lo.seed = 7; lo.batch_size = 5;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "other data"), "other batch size refused: %s", err);
  lo.batch_size = 4; lo.tf.hflip = 0.25f;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "other data"), "other transforms refused: %s", err);
  lo.tf.hflip = 0.5f;
  mf_dataset *ds2 = mf_dataset_generated(36, 48, 40, 5, err, sizeof err);
  lo.dataset = ds2;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "other data"), "other dataset refused: %s", err);
  lo.dataset = ds;
  lo.start.batch = 10;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "10 batches"), "batch past the epoch refused: %s", err);
  /* set by hand (no data id): nothing checked, batches past an epoch run on into the next */
  memset(&lo.start, 0, sizeof lo.start);
  lo.start.batch = 12; lo.workers = 2;
  P = mf_loader_init(&lo, err, sizeof err);
  const mf_batch *hb = P ? mf_loader_next(P) : NULL;
  CHECK(hb && hb->epoch == 1 && hb->step == 12, "hand-set start at batch 12 of 10-batch epochs: epoch %lld step %lld",
        hb ? (long long)hb->epoch : -1LL, hb ? (long long)hb->step : -1LL);
  if (hb) mf_loader_release(P, hb);
  mf_loader_free(P);
  lo.start.batch = -1;
  CHECK(mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, ">= 0"), "negative start refused: %s", err);
  mf_dataset_free(ds2);
  mf_dataset_free(ds);
}

static void test_folder(void) {
  char p[8192], q[256], err[512];
  /* 2 classes of good images, one image too small for the crop, and bad files */
  sub(p, sizeof p, "cats"); mkdir(p, 0755);
  sub(p, sizeof p, "dogs"); mkdir(p, 0755);
  sub(p, sizeof p, "dogs/deep"); mkdir(p, 0755);
  for (int i = 0; i < 6; i++) {
    snprintf(q, sizeof q, "cats/c%d.png", i); sub(p, sizeof p, q); save_gen(p, (uint64_t)i, 40 + i, 36);
    snprintf(q, sizeof q, "dogs/deep/d%d.png", i); sub(p, sizeof p, q); save_gen(p, (uint64_t)(i + 10), 36, 44);
  }
  sub(p, sizeof p, "cats/tiny.png"); save_gen(p, 99, 16, 16);           /* smaller than the 32x32 crop */
  sub(p, sizeof p, "cats/zero.png"); write_bytes(p, "", 0);               /* zero bytes */
  sub(p, sizeof p, "dogs/readme.txt"); write_bytes(p, "not an image", 12); /* not an image */
  /* a PNG cut short after its header: passes the probe, fails when decoded */
  sub(p, sizeof p, "cats/c0.png");
  FILE *f = fopen(p, "rb");
  uint8_t buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  sub(p, sizeof p, "dogs/cut.png"); write_bytes(p, buf, n / 3);
  mf_folder_opts fo = mf_folder_opts_default();
  fo.labels = 1; fo.quiet = 1;
  mf_dataset *ds = mf_dataset_open_folder(tmpdir, &fo, err, sizeof err);
  CHECK(ds != NULL, "open folder: %s", ds ? "" : err);
  if (!ds) return;
  CHECK(mf_dataset_size(ds) == 14 && mf_dataset_skipped(ds) == 2, "14 usable (incl. tiny and cut), 2 skipped: %zu, %zu",
        mf_dataset_size(ds), mf_dataset_skipped(ds));
  CHECK(mf_dataset_num_classes(ds) == 2 && strcmp(mf_dataset_class_name(ds, 0), "cats") == 0 &&
        strcmp(mf_dataset_class_name(ds, 1), "dogs") == 0, "classes cats, dogs");
  int labels_ok = 1;
  for (size_t i = 0; i < mf_dataset_size(ds); i++)
    labels_ok &= mf_dataset_label(ds, i) == (strncmp(mf_dataset_file(ds, i), "dogs", 4) == 0);
  CHECK(labels_ok, "labels follow the class folder");
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = ds; lo.batch_size = 3; lo.workers = 2; lo.quiet = 1; lo.drop_last = 0;
  lo.tf.out_w = lo.tf.out_h = 32; lo.tf.crop = MF_CROP_RANDOM; lo.tf.hflip = 0.5f;
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  CHECK(L != NULL, "loader: %s", L ? "" : err);
  if (!L) { mf_dataset_free(ds); return; }
  CHECK(mf_loader_batches_per_epoch(L) == 5, "13 usable samples in batches of 3 = 5 (got %zu)", mf_loader_batches_per_epoch(L));
  int zero_images = 0, cut_seen = 0;
  for (int e = 0; e < 2; e++) {
    const mf_batch *b;
    while ((b = mf_loader_next(L)) != NULL) {
      for (int i = 0; i < b->n; i++) {
        const float *im = b->images + (size_t)i * 3 * 32 * 32;
        double s = 0;
        for (int k = 0; k < 3 * 32 * 32; k++) s += im[k];
        if (s == 0) zero_images++;
        if (strcmp(mf_dataset_file(ds, (size_t)b->indices[i]), "dogs/cut.png") == 0) cut_seen++;
        CHECK(b->labels[i] == mf_dataset_label(ds, (size_t)b->indices[i]), "label matches its sample");
      }
      mf_loader_release(L, b);
    }
  }
  mf_loader_stats st = mf_loader_get_stats(L);
  CHECK(zero_images == 0 && cut_seen == 0, "no zero images (%d), the cut file never delivered (%d)", zero_images, cut_seen);
  /* 2 epochs replace it twice; a third time if the prefetched next epoch already reached it */
  CHECK(st.bad_files == 1 && st.bad_samples >= 2 && st.bad_samples <= 3 && st.skipped_files == 3,
        "counted: %lld bad file, %lld replaced samples, %lld skipped", (long long)st.bad_files, (long long)st.bad_samples,
        (long long)st.skipped_files);
  char *sum = NULL; size_t sl = 0;
  FILE *mf = open_memstream(&sum, &sl);
  mf_loader_summary(L, mf);
  fclose(mf);
  CHECK(strstr(sum, "1 empty file") && strstr(sum, "1 not a PNG or JPEG image") && strstr(sum, "1 smaller than the crop") &&
        strstr(sum, "truncated or corrupt"), "summary names the reasons: %s", sum);
  free(sum);
  mf_loader_free(L);
  check_restart("folder with a replaced file", lo, 12);
  mf_dataset_free(ds);

  /* split: deterministic, disjoint, complete; labels need class folders */
  fo.labels = 0; fo.val_fraction = 0.3;
  fo.split = MF_SPLIT_TRAIN;
  mf_dataset *tr = mf_dataset_open_folder(tmpdir, &fo, err, sizeof err);
  fo.split = MF_SPLIT_VAL;
  mf_dataset *va = mf_dataset_open_folder(tmpdir, &fo, err, sizeof err);
  mf_dataset *va2 = mf_dataset_open_folder(tmpdir, &fo, err, sizeof err);
  CHECK(tr && va && va2, "split datasets open");
  if (tr && va && va2) {
    size_t nt = mf_dataset_size(tr), nv = mf_dataset_size(va);
    int disjoint = 1, same = mf_dataset_size(va2) == nv;
    for (size_t i = 0; i < nv; i++) {
      for (size_t j = 0; j < nt; j++) disjoint &= strcmp(mf_dataset_file(va, i), mf_dataset_file(tr, j)) != 0;
      if (same) same = strcmp(mf_dataset_file(va, i), mf_dataset_file(va2, i)) == 0;
    }
    size_t sk = mf_dataset_skipped(tr) + mf_dataset_skipped(va);
    CHECK(nt + nv == 14 && sk == 2 && nv >= 1 && nt >= 7, "train %zu + val %zu = 14 usable", nt, nv);
    CHECK(disjoint && same, "split is disjoint and the same when reopened");
  }
  mf_dataset_free(tr); mf_dataset_free(va); mf_dataset_free(va2);

  /* empty, missing, all-bad folders are errors */
  sub(p, sizeof p, "empty"); mkdir(p, 0755);
  fo = mf_folder_opts_default(); fo.quiet = 1;
  CHECK(mf_dataset_open_folder(p, &fo, err, sizeof err) == NULL && strstr(err, "empty"), "empty folder: %s", err);
  sub(p, sizeof p, "nope");
  CHECK(mf_dataset_open_folder(p, &fo, err, sizeof err) == NULL && strstr(err, "not found"), "missing folder: %s", err);
  sub(p, sizeof p, "allbad"); mkdir(p, 0755);
  sub(p, sizeof p, "allbad/a.jpg"); write_bytes(p, "", 0);
  sub(p, sizeof p, "allbad/b.png"); write_bytes(p, "xyz", 3);
  sub(p, sizeof p, "allbad");
  CHECK(mf_dataset_open_folder(p, &fo, err, sizeof err) == NULL && strstr(err, "no usable file"), "all-bad folder: %s", err);
  /* a folder whose only image is too small for a fixed crop: the loader refuses */
  sub(p, sizeof p, "small"); mkdir(p, 0755);
  sub(p, sizeof p, "small/s.png"); save_gen(p, 1, 16, 16);
  sub(p, sizeof p, "small");
  ds = mf_dataset_open_folder(p, &fo, err, sizeof err);
  lo.dataset = ds; lo.tf.crop = MF_CROP_CENTER;
  CHECK(ds && mf_loader_init(&lo, err, sizeof err) == NULL && strstr(err, "empty"), "only too-small images: %s", err);
  mf_dataset_free(ds);
}

static void test_photos(void) {
  const char *dd = check_data_dir();
  if (!dd) { printf("SKIP: ../shared/data absent: loader over photos not tested\n"); return; }
  char p[8192], err[512];
  snprintf(p, sizeof p, "%s/photos", dd);
  mf_folder_opts fo = mf_folder_opts_default(); fo.quiet = 1;
  mf_dataset *ds = mf_dataset_open_folder(p, &fo, err, sizeof err);
  CHECK(ds && mf_dataset_size(ds) >= 5, "photos folder: %s", ds ? "" : err);
  if (!ds) return;
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = ds; lo.batch_size = 2; lo.quiet = 1;
  lo.tf.crop = MF_CROP_RANDOM_RESIZED; lo.tf.hflip = 0.5f; lo.tf.brightness = lo.tf.contrast = lo.tf.saturation = 0.4f;
  lo.tf.hue = 0.1f; lo.tf.out_w = lo.tf.out_h = 64;
  size_t n1, n2;
  lo.workers = 1;
  uint8_t *a = run_loader(lo, 2, &n1, NULL, 0);
  lo.workers = 2;
  uint8_t *b = run_loader(lo, 2, &n2, NULL, 0);
  CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "photos (JPEG draft + region decode): identical for 1 and 2 workers");
  free(a); free(b);
  mf_dataset_free(ds);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mf_test_loader_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  test_generated();
  test_folder();
  test_photos();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_data_loader");
}

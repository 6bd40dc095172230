/* moco_baselines.c — the raw-pixel baselines MoCo's quality target is compared with, on the full
 * Fashion-MNIST (Debian's dataset-fashion-mnist): kNN (k 200, T 0.1, cosine over L2-normalised raw pixels,
 * the 60,000 training images as the bank, the 10,000 test images as queries) and the linear probe
 * (softmax regression on standardised raw pixels). Prints accuracies and times.
 *   build/moco_baselines [DIR] [--threads N] [--epochs E] [--train N] [--test N]
 * (DIR defaults to /usr/share/datasets/fashion-mnist; --train/--test keep the first N images.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memfit.h"
#include "train/probe.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* the images of an IDX pair as [n, 784] floats in [0,1] (through mf_dataset_get: no resampling) */
static float *load(const char *dir, const char *prefix, size_t limit, int32_t **labels, size_t *n, int *d) {
  char im[4096], lb[4096], err[512];
  snprintf(im, sizeof im, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  snprintf(lb, sizeof lb, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  mf_idx_opts o = mf_idx_opts_default();
  o.limit = limit;
  mf_dataset *ds = mf_dataset_open_idx(im, lb, &o, err, sizeof err);
  if (!ds) { fprintf(stderr, "moco_baselines: %s\n(install Debian's dataset-fashion-mnist, or give its folder)\n", err); return NULL; }
  *n = mf_dataset_size(ds);
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = t.out_h = 28; t.channels = 1; t.crop = MF_CROP_NONE;
  *d = 28 * 28;
  float *x = malloc(*n * (size_t)*d * sizeof *x);
  *labels = malloc(*n * sizeof **labels);
  for (size_t i = 0; x && *labels && i < *n; i++) {
    if (mf_dataset_get(ds, i, &t, 0, x + i * (size_t)*d, err, sizeof err) != 0) {
      fprintf(stderr, "moco_baselines: %s\n", err);
      free(x); x = NULL;
      break;
    }
    (*labels)[i] = mf_dataset_label(ds, i);
  }
  mf_dataset_free(ds);
  if (!x || !*labels) { free(x); free(*labels); *labels = NULL; return NULL; }
  return x;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* each figure as soon as it is known, also into a file */
  const char *dir = "/usr/share/datasets/fashion-mnist";
  int threads = 0, epochs = 0;
  size_t ntr = 0, nte = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) epochs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--train") && i + 1 < argc) ntr = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--test") && i + 1 < argc) nte = (size_t)atol(argv[++i]);
    else if (argv[i][0] != '-') dir = argv[i];
    else { fprintf(stderr, "usage: %s [DIR] [--threads N] [--epochs E] [--train N] [--test N]\n", argv[0]); return 2; }
  }
  double t0 = now_s();
  int32_t *ytr = NULL, *yte = NULL;
  size_t n_tr = 0, n_te = 0;
  int d = 0;
  float *xtr = load(dir, "train", ntr, &ytr, &n_tr, &d);
  float *xte = xtr ? load(dir, "t10k", nte, &yte, &n_te, &d) : NULL;
  if (!xtr || !xte) { free(xtr); free(ytr); return 1; }
  double t1 = now_s();
  printf("Fashion-MNIST raw pixels: %zu train, %zu test images of %d pixels (read in %.2f s)\n", n_tr, n_te, d, t1 - t0);

  char err[512];
  knn_opts ko = knn_opts_default();
  ko.n_classes = 10; ko.threads = threads;
  int32_t *pred = malloc(n_te * sizeof *pred);
  double acc = 0;
  if (!pred || knn_classify(xtr, ytr, (int64_t)n_tr, xte, yte, (int64_t)n_te, d, &ko, pred, &acc, err, sizeof err) != 0) {
    fprintf(stderr, "moco_baselines: knn: %s\n", pred ? err : "out of memory");
    return 1;
  }
  double t2 = now_s();
  printf("kNN (k %d, T %g, cosine, bank %zu): test accuracy %.2f%%   (%.2f s, workspace %.1f MiB)\n", ko.k, ko.temperature,
         n_tr, 100 * acc, t2 - t1, knn_workspace_bytes(&ko, (int64_t)n_tr, (int64_t)n_te, d) / 1048576.0);

  linprobe_opts lo = linprobe_opts_default();
  lo.n_classes = 10;
  if (epochs > 0) lo.epochs = epochs;
  linprobe_result r;
  if (linprobe_train(xtr, ytr, (int64_t)n_tr, xte, yte, (int64_t)n_te, d, &lo, &r, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "moco_baselines: linear probe: %s\n", err);
    return 1;
  }
  double t3 = now_s();
  printf("linear probe (softmax regression on standardised pixels, %d epochs, batch %d, SGD lr %g momentum %g cosine, wd %g): "
         "train %.2f%%, test %.2f%%, final loss %.4f   (%.2f s)\n", lo.epochs, lo.batch, lo.lr, lo.momentum, lo.weight_decay,
         100 * r.train_acc, 100 * r.test_acc, r.train_loss, t3 - t2);
  free(pred); free(xtr); free(ytr); free(xte); free(yte);
  return 0;
}

/* test_probe.c — the evaluation math of src/train/probe.c: the weighted kNN monitor against a direct f64
 * implementation (full similarity matrix, sorted) on clustered random data, for several k, temperatures,
 * block sizes and thread counts, excluding only queries whose answer a derived f32 rounding bound leaves
 * open; deterministic ties (lower bank index, lower class); 100% on well-separated clusters; the linear
 * probe's first gradient step exactly (dyadic data, where f32 is exact), 100% training accuracy on
 * linearly separable data with a falling loss; bad arguments; and both probes on Fashion-MNIST raw pixels
 * when Debian's dataset-fashion-mnist is installed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/rng.h"
#include "check.h"
#include "memfit.h"
#include "train/probe.h"

static double normal(rng_t *r) {
  double u = rng_uniform(r), v = rng_uniform(r);
  return sqrt(-2.0 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

/* n points in d dims around C random centres (spread `sep`), Gaussian noise `sigma`; labels = centre */
static void clusters(rng_t *r, const double *centres, int C, int d, int64_t n, double sigma, float *x, int32_t *y) {
  for (int64_t i = 0; i < n; i++) {
    int c = (int)rng_below(r, (uint64_t)C);
    y[i] = c;
    for (int j = 0; j < d; j++) x[i * d + j] = (float)(centres[c * d + j] + sigma * normal(r));
  }
}

typedef struct ref_nb { double s; int64_t i; } ref_nb;
static int ref_cmp(const void *a, const void *b) {
  const ref_nb *p = a, *q = b;
  if (p->s != q->s) return p->s > q->s ? -1 : 1;
  return p->i < q->i ? -1 : p->i > q->i;
}

/* Checks knn_classify against the f64 reference. Returns the number of queries compared. */
static int64_t knn_vs_ref(const float *bank, const int32_t *bl, int64_t nb, const float *q, const int32_t *ql, int64_t nq, int d,
                          const knn_opts *o, const char *what) {
  int32_t *pred = malloc((size_t)nq * sizeof *pred);
  double acc = -1;
  char err[256];
  int rc = knn_classify(bank, bl, nb, q, ql, nq, d, o, pred, &acc, err, sizeof err);
  CHECK(rc == 0, "%s: %s", what, err);
  if (rc != 0) { free(pred); return 0; }
  /* f32 rounding bound on a similarity: the dot product's error is at most gamma_d sum|q_j b_j| <= gamma_d |q||b|
   * (Cauchy-Schwarz), plus a rounding of each inverse norm and of the two products: 4u more (|sim| <= 1) */
  const double u = 1.0 / 16777216.0, gamma = d * u / (1 - d * u), eps = gamma + 6 * u;
  int64_t k = o->k < nb ? o->k : nb, compared = 0, agree = 0, correct = 0;
  ref_nb *all = malloc((size_t)nb * sizeof *all);
  double *sc = malloc((size_t)o->n_classes * sizeof *sc), *bn = malloc((size_t)nb * sizeof *bn);
  for (int64_t j = 0; j < nb; j++) {
    double s = 0;
    for (int t = 0; t < d; t++) s += (double)bank[j * d + t] * bank[j * d + t];
    bn[j] = sqrt(s);
  }
  for (int64_t i = 0; i < nq; i++) {
    correct += pred[i] == ql[i];
    double qn = 0;
    for (int t = 0; t < d; t++) qn += (double)q[i * d + t] * q[i * d + t];
    qn = sqrt(qn);
    for (int64_t j = 0; j < nb; j++) {
      double s = 0;
      for (int t = 0; t < d; t++) s += (double)q[i * d + t] * bank[j * d + t];
      all[j].s = s / (qn * bn[j]);
      all[j].i = j;
    }
    qsort(all, (size_t)nb, sizeof *all, ref_cmp);
    if (k < nb && all[k - 1].s - all[k].s <= 2 * eps) continue; /* the k-th and (k+1)-th may swap in f32 */
    for (int c = 0; c < o->n_classes; c++) sc[c] = 0;
    for (int64_t t = 0; t < k; t++) sc[bl[all[t].i]] += exp((all[t].s - all[0].s) / o->temperature);
    int best = 0, second = -1;
    for (int c = 1; c < o->n_classes; c++)
      if (sc[c] > sc[best]) best = c;
    for (int c = 0; c < o->n_classes; c++)
      if (c != best && (second < 0 || sc[c] > sc[second])) second = c;
    /* each weight may move by a factor exp(+-eps/T) besides a common one: the order of two scores is certain
     * when they differ by more than exp(2 eps / T) (and the sums' own f64 rounding) */
    if (second >= 0 && sc[best] <= sc[second] * exp(2 * eps / o->temperature) * (1 + 1e-12)) continue;
    compared++;
    agree += pred[i] == best;
    if (pred[i] != best && compared - agree <= 3)
      fprintf(stderr, "  %s: query %lld: predicted %d, reference %d\n", what, (long long)i, pred[i], best);
  }
  CHECK(agree == compared, "%s: %lld of %lld predictions equal the f64 reference", what, (long long)agree, (long long)compared);
  CHECK(compared >= nq * 9 / 10, "%s: only %lld of %lld queries clear of the rounding bound", what, (long long)compared, (long long)nq);
  CHECK(fabs(acc - (double)correct / (double)nq) < 1e-12, "%s: accuracy %g, the predictions give %g", what, acc,
        (double)correct / (double)nq);
  printf("  knn %-34s k %4lld T %.2f: accuracy %.4f, %lld/%lld queries compared, all equal the f64 reference\n", what,
         (long long)k, o->temperature, acc, (long long)compared, (long long)nq);
  free(all); free(sc); free(bn); free(pred);
  return compared;
}

static void test_knn_reference(void) {
  enum { C = 5, D = 24, NB = 1500, NQ = 300 };
  rng_t r;
  rng_init(&r, 42);
  double centres[C * D];
  for (int i = 0; i < C * D; i++) centres[i] = normal(&r);
  float *bank = malloc(sizeof(float) * NB * D), *q = malloc(sizeof(float) * NQ * D);
  int32_t bl[NB], ql[NQ];
  clusters(&r, centres, C, D, NB, 1.6, bank, bl); /* overlapping: neither 0 nor 100% */
  clusters(&r, centres, C, D, NQ, 1.6, q, ql);
  knn_opts o = knn_opts_default();
  o.n_classes = C;
  knn_vs_ref(bank, bl, NB, q, ql, NQ, D, &o, "defaults");
  o.k = 1;
  knn_vs_ref(bank, bl, NB, q, ql, NQ, D, &o, "k 1");
  o.k = 20; o.temperature = 0.5;
  knn_vs_ref(bank, bl, NB, q, ql, NQ, D, &o, "k 20");
  o.k = 5000; o.temperature = 0.07;
  knn_vs_ref(bank, bl, NB, q, ql, NQ, D, &o, "k > bank: the whole bank");
  o = knn_opts_default();
  o.n_classes = C; o.query_block = 7; o.bank_block = 33; o.threads = 2;
  knn_vs_ref(bank, bl, NB, q, ql, NQ, D, &o, "blocks 7 x 33, 2 threads");
  o.query_block = 3; o.bank_block = 5; o.threads = 1; o.k = 50;
  knn_vs_ref(bank, bl, NB, q, ql, NQ, D, &o, "blocks 3 x 5, 1 thread");
  /* a zero query and a zero bank row: similarity 0, no NaN */
  memset(q, 0, sizeof(float) * D);
  memset(bank + 5 * D, 0, sizeof(float) * D);
  o = knn_opts_default();
  o.n_classes = C;
  int32_t pred[NQ];
  char err[256];
  CHECK(knn_classify(bank, bl, NB, q, ql, NQ, D, &o, pred, NULL, err, sizeof err) == 0 && pred[0] >= 0 && pred[0] < C,
        "zero rows: %s", err);
  free(bank); free(q);
}

/* Equal similarities: the lower bank index wins the last neighbour places, also across bank blocks; equal
 * class scores: the lower class. Small integer vectors make every similarity exact in f32 whatever the order. */
static void test_knn_ties(void) {
  enum { D = 16, NB = 20 };
  float bank[NB * D], q[D];
  int32_t bl[NB];
  for (int j = 0; j < D; j++) q[j] = (float)(j % 3);
  for (int i = 0; i < NB; i++) {
    for (int j = 0; j < D; j++) bank[i * D + j] = i < 10 ? q[j] : (float)((j + i) % 2); /* rows 0-9: the query itself */
    bl[i] = i < 3 ? 1 : i < 10 ? 0 : 2;
  }
  char err[256];
  for (int bb = 1; bb <= 8; bb *= 2) {
    knn_opts o = knn_opts_default();
    o.n_classes = 3; o.k = 3; o.bank_block = bb;
    int32_t pred = -1;
    CHECK(knn_classify(bank, bl, NB, q, NULL, 1, D, &o, &pred, NULL, err, sizeof err) == 0 && pred == 1,
          "ten equal neighbours, k 3, bank block %d: rows 0-2 (class 1) win, got class %d %s", bb, pred, err);
  }
  /* now rows 0-2 are class 0 and 3-9 class 1: the same rule gives class 0 */
  for (int i = 0; i < 10; i++) bl[i] = i < 3 ? 0 : 1;
  knn_opts o = knn_opts_default();
  o.n_classes = 3; o.k = 3; o.bank_block = 2;
  int32_t pred = -1;
  CHECK(knn_classify(bank, bl, NB, q, NULL, 1, D, &o, &pred, NULL, err, sizeof err) == 0 && pred == 0, "lower index wins: %d", pred);
  /* two equal neighbours of classes 2 and 1: equal scores, class 1 */
  bl[0] = 2; bl[1] = 1;
  o.k = 2;
  CHECK(knn_classify(bank, bl, NB, q, NULL, 1, D, &o, &pred, NULL, err, sizeof err) == 0 && pred == 1, "equal scores: lower class, got %d", pred);
}

static void test_knn_separated(void) {
  enum { C = 10, D = 32, NB = 2000, NQ = 500 };
  rng_t r;
  rng_init(&r, 7);
  double centres[C * D] = {0};
  for (int c = 0; c < C; c++) centres[c * D + c] = 10; /* orthogonal directions, noise 0.3 */
  float *bank = malloc(sizeof(float) * NB * D), *q = malloc(sizeof(float) * NQ * D);
  int32_t *bl = malloc(sizeof(int32_t) * NB), *ql = malloc(sizeof(int32_t) * NQ), *pred = malloc(sizeof(int32_t) * NQ);
  clusters(&r, centres, C, D, NB, 0.3, bank, bl);
  clusters(&r, centres, C, D, NQ, 0.3, q, ql);
  knn_opts o = knn_opts_default();
  o.n_classes = C;
  double acc = 0;
  char err[256];
  CHECK(knn_classify(bank, bl, NB, q, ql, NQ, D, &o, pred, &acc, err, sizeof err) == 0, "%s", err);
  printf("  knn on well-separated clusters: accuracy %.4f\n", acc);
  CHECK(acc == 1.0, "well-separated clusters: accuracy %g, want 1", acc);
  free(bank); free(q); free(bl); free(ql); free(pred);
}

static void test_bad_args(void) {
  float x[8] = {1, 0, 0, 1, 1, 1, 0, 0};
  int32_t y[4] = {0, 1, 0, 1}, pred[4];
  char err[256];
  knn_opts o = knn_opts_default();
  o.n_classes = 2;
  struct { const char *want; knn_opts o; } cases[4] = {{"k = 0", o}, {"temperature 0", o}, {"n_classes = 0", o}, {"blocks", o}};
  cases[0].o.k = 0; cases[1].o.temperature = 0; cases[2].o.n_classes = 0; cases[3].o.bank_block = 0;
  for (int i = 0; i < 4; i++) {
    err[0] = 0;
    CHECK(knn_classify(x, y, 4, x, y, 4, 2, &cases[i].o, pred, NULL, err, sizeof err) == -1 && strstr(err, cases[i].want),
          "knn bad option: want '%s', got '%s'", cases[i].want, err);
  }
  int32_t bad[4] = {0, 1, 2, 1};
  CHECK(knn_classify(x, bad, 4, x, y, 4, 2, &o, pred, NULL, err, sizeof err) == -1 && strstr(err, "label 2 of row 2"),
        "bank label out of range: %s", err);
  float nanx[8] = {1, 0, 0, NAN, 1, 1, 0, 0};
  CHECK(knn_classify(x, y, 4, nanx, y, 4, 2, &o, pred, NULL, err, sizeof err) == -1 && strstr(err, "queries: row 1"),
        "NaN query: %s", err);
  CHECK(knn_workspace_bytes(&cases[0].o, 4, 4, 2) == 0 && knn_workspace_bytes(&o, 4, 4, 2) > 0, "workspace bytes");
  linprobe_opts lo = linprobe_opts_default();
  lo.n_classes = 2; lo.epochs = 1;
  linprobe_result res;
  lo.momentum = 1;
  CHECK(linprobe_train(x, y, 4, NULL, NULL, 0, 2, &lo, &res, NULL, err, sizeof err) == -1 && strstr(err, "momentum"),
        "momentum 1: %s", err);
  lo.momentum = 0.9; lo.n_classes = 1;
  CHECK(linprobe_train(x, y, 4, NULL, NULL, 0, 2, &lo, &res, NULL, err, sizeof err) == -1 && strstr(err, "n_classes"),
        "one class: %s", err);
  lo.n_classes = 2;
  CHECK(linprobe_train(x, bad, 4, NULL, NULL, 0, 2, &lo, &res, NULL, err, sizeof err) == -1 && strstr(err, "label 2"),
        "train label out of range: %s", err);
  CHECK(linprobe_train(x, y, 4, nanx, y, 4, 2, &lo, &res, NULL, err, sizeof err) == -1 && strstr(err, "test: row 1"),
        "NaN test feature: %s", err);
}

/* One full-batch step from zero, on dyadic data where every f32 operation is exact: W1 = -lr X^T (1/C - Y) / n,
 * b1 = -lr sum(1/C - Y) / n. The second epoch's loss is the cross-entropy at (W1, b1), which the f64 reference
 * computes from the same exact logits: they differ by the f64 rounding of exp and log only. */
static void test_linprobe_step(void) {
  enum { N = 64, D = 6, C = 4 };
  float x[N * D];
  int32_t y[N];
  rng_t r;
  rng_init(&r, 5);
  for (int i = 0; i < N; i++) {
    y[i] = (int32_t)rng_below(&r, C);
    for (int j = 0; j < D; j++) x[i * D + j] = (float)((int)rng_below(&r, 9) - 4);
  }
  linprobe_opts o = linprobe_opts_default();
  o.n_classes = C; o.epochs = 2; o.batch = N; o.lr = 0.5; o.standardize = 0;
  linprobe_result res;
  double loss[2];
  char err[256];
  CHECK(linprobe_train(x, y, N, x, y, N, D, &o, &res, loss, err, sizeof err) == 0, "%s", err);
  double W[D * C] = {0}, b[C] = {0};
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) {
      double g = (1.0 / C - (c == y[i])) / N;
      b[c] -= o.lr * g;
      for (int j = 0; j < D; j++) W[j * C + c] -= o.lr * x[i * D + j] * g;
    }
  double ref = 0;
  for (int i = 0; i < N; i++) {
    double z[C], zmax = -1e300, se = 0;
    for (int c = 0; c < C; c++) {
      z[c] = b[c];
      for (int j = 0; j < D; j++) z[c] += x[i * D + j] * W[j * C + c];
      zmax = z[c] > zmax ? z[c] : zmax;
    }
    for (int c = 0; c < C; c++) se += exp(z[c] - zmax);
    ref += log(se) - (z[y[i]] - zmax);
  }
  ref /= N;
  printf("  linear probe: loss at zero %.15f (log %d = %.15f), after one step %.15f (f64 reference %.15f)\n", loss[0], C,
         log(C), loss[1], ref);
  CHECK(fabs(loss[0] - log(C)) <= 1e-12 * log(C), "first loss %.17g, want log C", loss[0]);
  CHECK(fabs(loss[1] - ref) <= 1e-12 * ref, "loss after one step %.17g, reference %.17g", loss[1], ref);
  CHECK(loss[1] < loss[0], "one step lowers the loss");
}

/* linearly separable data (labels from a random linear map, points near the boundaries dropped) */
static void test_linprobe_separable(void) {
  enum { N = 2000, D = 12, C = 4 };
  rng_t r;
  rng_init(&r, 11);
  double A[C * D], off[C];
  for (int i = 0; i < C * D; i++) A[i] = normal(&r);
  for (int c = 0; c < C; c++) off[c] = 0.5 * normal(&r);
  float *x = malloc(sizeof(float) * N * D);
  int32_t *y = malloc(sizeof(int32_t) * N);
  for (int i = 0; i < N;) {
    float v[D];
    for (int j = 0; j < D; j++) v[j] = (float)(3 * normal(&r) + 1); /* not centred, not unit scale: standardisation matters */
    double s[C];
    int best = 0;
    for (int c = 0; c < C; c++) {
      s[c] = off[c];
      for (int j = 0; j < D; j++) s[c] += A[c * D + j] * v[j];
      if (s[c] > s[best]) best = c;
    }
    int clear = 1;
    for (int c = 0; c < C; c++) clear &= c == best || s[best] - s[c] > 4.0;
    if (!clear) continue;
    memcpy(x + i * D, v, sizeof v);
    y[i++] = best;
  }
  linprobe_opts o = linprobe_opts_default();
  o.n_classes = C; o.epochs = 40; o.batch = 64; o.seed = 3;
  linprobe_result res, res2;
  double loss[40];
  char err[256];
  CHECK(linprobe_train(x, y, N / 2, x + N / 2 * D, y + N / 2, N / 2, D, &o, &res, loss, err, sizeof err) == 0, "%s", err);
  printf("  linear probe on separable data: train %.4f test %.4f, loss epoch 1 %.4f, 10 %.4f, 40 %.4f\n", res.train_acc,
         res.test_acc, loss[0], loss[9], loss[39]);
  CHECK(res.train_acc == 1.0, "separable: train accuracy %g, want 1", res.train_acc);
  CHECK(res.test_acc > 0.95, "separable: test accuracy %g", res.test_acc);
  int falling = 1;
  for (int e = 10; e < 40; e += 10) falling &= loss[e] < loss[e - 10];
  CHECK(falling && loss[39] < 0.25 * loss[0], "loss falls: %g, %g, %g, %g", loss[0], loss[10], loss[20], loss[39]);
  CHECK(res.train_loss == loss[39], "result loss is the last epoch's");
  CHECK(linprobe_train(x, y, N / 2, x + N / 2 * D, y + N / 2, N / 2, D, &o, &res2, NULL, err, sizeof err) == 0, "%s", err);
  CHECK(res2.train_acc == res.train_acc && res2.test_acc == res.test_acc && res2.train_loss == res.train_loss,
        "same seed: same result");
  free(x); free(y);
}

/* Fashion-MNIST raw pixels: 20,000 training and 1,000 test images (the first of each file) */
static void test_fashion_mnist(void) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  char p[4][512];
  const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                          "t10k-labels-idx1-ubyte.gz"};
  struct stat st;
  for (int i = 0; i < 4; i++) {
    snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
    if (stat(p[i], &st) != 0) {
      printf("test_probe: SKIP the Fashion-MNIST probes: %s not installed (apt-get install dataset-fashion-mnist)\n", p[i]);
      return;
    }
  }
  enum { D = 784 };
  size_t n[2] = {20000, 1000};
  float *x[2] = {NULL, NULL};
  int32_t *y[2] = {NULL, NULL};
  char err[512];
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = t.out_h = 28; t.channels = 1; t.crop = MF_CROP_NONE;
  for (int s = 0; s < 2; s++) {
    mf_idx_opts o = mf_idx_opts_default();
    o.limit = n[s];
    mf_dataset *ds = mf_dataset_open_idx(p[2 * s], p[2 * s + 1], &o, err, sizeof err);
    CHECK(ds && mf_dataset_size(ds) == n[s], "open %s: %s", p[2 * s], ds ? "" : err);
    if (!ds) return;
    x[s] = malloc(n[s] * D * sizeof(float));
    y[s] = malloc(n[s] * sizeof(int32_t));
    for (size_t i = 0; i < n[s]; i++) {
      if (mf_dataset_get(ds, i, &t, 0, x[s] + i * D, err, sizeof err) != 0) { CHECK(0, "%s", err); break; }
      y[s][i] = mf_dataset_label(ds, i);
    }
    mf_dataset_free(ds);
  }
  knn_opts ko = knn_opts_default();
  ko.n_classes = 10;
  int32_t *pred = malloc(n[1] * sizeof *pred);
  double acc = 0;
  CHECK(knn_classify(x[0], y[0], (int64_t)n[0], x[1], y[1], (int64_t)n[1], D, &ko, pred, &acc, err, sizeof err) == 0, "%s", err);
  linprobe_opts lo = linprobe_opts_default();
  lo.n_classes = 10; lo.epochs = 20;
  linprobe_result res = {0};
  CHECK(linprobe_train(x[0], y[0], (int64_t)n[0], x[1], y[1], (int64_t)n[1], D, &lo, &res, NULL, err, sizeof err) == 0, "%s", err);
  printf("  fashion-mnist raw pixels, 20000 train / 1000 test: kNN (k 200, T 0.1) %.2f%%, linear probe (20 epochs) train %.2f%% "
         "test %.2f%%\n", 100 * acc, 100 * res.train_acc, 100 * res.test_acc);
  CHECK(acc > 0.70, "kNN on raw pixels %g, want > 0.70", acc);
  CHECK(res.test_acc > 0.70, "linear probe on raw pixels %g, want > 0.70", res.test_acc);
  free(pred);
  for (int s = 0; s < 2; s++) { free(x[s]); free(y[s]); }
}

int main(void) {
  test_knn_reference();
  test_knn_ties();
  test_knn_separated();
  test_bad_args();
  test_linprobe_step();
  test_linprobe_separable();
  test_fashion_mnist();
  return check_finish("test_probe");
}

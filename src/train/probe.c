/* probe.c — evaluation of frozen features (probe.h): the weighted kNN monitor of MoCo's CIFAR demo and the
 * linear probe. Similarities and logits are sgemm calls (OpenBLAS, as the CPU backend) on blocks; kNN's
 * per-query top-k runs with OpenMP over rows; the linear probe runs on one thread. Each function makes one allocation, of the
 * size its _workspace_bytes reports. */
#include "train/probe.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

#define WS_ALIGN 64
/* kNN loops over fewer elements run on one thread: a parallel region costs more than they do */
#define PAR_MIN ((int64_t)1 << 18)
static size_t align_up(size_t b) { return (b + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

/* carves n bytes at *off from a workspace at base (NULL: only counts the bytes) */
static void *ws_take(uint8_t *base, size_t *off, size_t n) {
  void *p = base ? base + *off : NULL;
  *off += align_up(n);
  return p;
}

/* Checks that x [n, d] is finite; -1 with err naming the first bad row of `what`. */
static int check_finite(const float *x, int64_t n, int d, const char *what, char *err, size_t errlen) {
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      if (!isfinite(x[i * d + j])) {
        snprintf(err, errlen, "%s: row %lld, feature %d is %g (features must be finite)", what, (long long)i, j,
                 (double)x[i * d + j]);
        return -1;
      }
  return 0;
}

/* Checks labels [n] in [0, nc); -1 with err naming the first bad one. */
static int check_labels(const int32_t *y, int64_t n, int nc, const char *what, char *err, size_t errlen) {
  for (int64_t i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= nc) {
      snprintf(err, errlen, "%s: label %d of row %lld is not in [0, %d) (n_classes)", what, y[i], (long long)i, nc);
      return -1;
    }
  return 0;
}

/* ================================================================ kNN */

knn_opts knn_opts_default(void) {
  knn_opts o = {200, 0.1, 0, 0, 256, 4096};
  return o;
}

static int knn_check(const knn_opts *o, int64_t n_bank, int64_t n_q, int d, char *err, size_t errlen) {
  if (!o) { snprintf(err, errlen, "knn: null options"); return -1; }
  if (n_bank < 1 || n_bank > INT32_MAX) { snprintf(err, errlen, "knn: bank of %lld rows (must be 1 to 2^31-1)", (long long)n_bank); return -1; }
  if (n_q < 0) { snprintf(err, errlen, "knn: %lld queries", (long long)n_q); return -1; }
  if (d < 1) { snprintf(err, errlen, "knn: feature dimension %d (must be >= 1)", d); return -1; }
  if (o->k < 1) { snprintf(err, errlen, "knn: k = %d (must be >= 1)", o->k); return -1; }
  if (!(o->temperature > 0) || !isfinite(o->temperature)) {
    snprintf(err, errlen, "knn: temperature %g (must be > 0)", o->temperature);
    return -1;
  }
  if (o->n_classes < 1) { snprintf(err, errlen, "knn: n_classes = %d (must be >= 1)", o->n_classes); return -1; }
  if (o->query_block < 1 || o->bank_block < 1 || (int64_t)o->query_block * o->bank_block > ((int64_t)1 << 30)) {
    snprintf(err, errlen, "knn: blocks of %d queries x %d bank rows (each >= 1, at most 2^30 floats)", o->query_block,
             o->bank_block);
    return -1;
  }
  return 0;
}

/* the workspace's parts, in order */
typedef struct knn_ws {
  float *inv_b;   /* [n_bank] 1 / |bank row| (0 for a zero row) */
  float *inv_q;   /* [qb] */
  float *sim;     /* [qb, bb] raw dot products of a block */
  float *hs;      /* [qb, k] each query's heap: similarities */
  int32_t *hi;    /* [qb, k] and bank indices */
  int32_t *hn;    /* [qb] heap sizes */
  double *score;  /* [qb, n_classes] */
} knn_ws;

static size_t knn_layout(const knn_opts *o, int64_t n_bank, int64_t n_q, uint8_t *base, knn_ws *w) {
  int64_t k = o->k < n_bank ? o->k : n_bank;
  int64_t qb = n_q < o->query_block ? (n_q > 0 ? n_q : 1) : o->query_block;
  int64_t bb = n_bank < o->bank_block ? n_bank : o->bank_block;
  size_t off = 0;
  knn_ws t;
  t.inv_b = ws_take(base, &off, (size_t)n_bank * sizeof(float));
  t.inv_q = ws_take(base, &off, (size_t)qb * sizeof(float));
  t.sim = ws_take(base, &off, (size_t)(qb * bb) * sizeof(float));
  t.hs = ws_take(base, &off, (size_t)(qb * k) * sizeof(float));
  t.hi = ws_take(base, &off, (size_t)(qb * k) * sizeof(int32_t));
  t.hn = ws_take(base, &off, (size_t)qb * sizeof(int32_t));
  t.score = ws_take(base, &off, (size_t)(qb * o->n_classes) * sizeof(double));
  if (w) *w = t;
  return off;
}

size_t knn_workspace_bytes(const knn_opts *o, int64_t n_bank, int64_t n_q, int d) {
  char err[256];
  if (knn_check(o, n_bank, n_q, d, err, sizeof err) != 0) return 0;
  return knn_layout(o, n_bank, n_q, NULL, NULL);
}

/* 1 / L2 norm of each row of x [n, d] (0 for a zero row), the norm summed in double */
static void inv_norms(const float *x, int64_t n, int d, float *out) {
#pragma omp parallel for schedule(static) if (n * d >= PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
    out[i] = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
  }
}

/* heap order: a is worse than b (lower similarity; equal similarity: higher bank index) */
static inline int knn_worse(float sa, int32_t ia, float sb, int32_t ib) { return sa < sb || (sa == sb && ia > ib); }

static void heap_sift_down(float *hs, int32_t *hi, int n, int p) {
  for (;;) {
    int l = 2 * p + 1, r = l + 1, m = p;
    if (l < n && knn_worse(hs[l], hi[l], hs[m], hi[m])) m = l;
    if (r < n && knn_worse(hs[r], hi[r], hs[m], hi[m])) m = r;
    if (m == p) return;
    float ts = hs[p]; hs[p] = hs[m]; hs[m] = ts;
    int32_t ti = hi[p]; hi[p] = hi[m]; hi[m] = ti;
    p = m;
  }
}
static void heap_push(float *hs, int32_t *hi, int n, float s, int32_t idx) { /* n: size before the push */
  int p = n;
  hs[p] = s; hi[p] = idx;
  while (p > 0) {
    int q = (p - 1) / 2;
    if (!knn_worse(hs[p], hi[p], hs[q], hi[q])) return;
    float ts = hs[p]; hs[p] = hs[q]; hs[q] = ts;
    int32_t ti = hi[p]; hi[p] = hi[q]; hi[q] = ti;
    p = q;
  }
}

int knn_classify(const float *bank, const int32_t *bank_labels, int64_t n_bank, const float *queries,
                 const int32_t *q_labels, int64_t n_q, int d, const knn_opts *o, int32_t *pred, double *accuracy,
                 char *err, size_t errlen) {
  if (knn_check(o, n_bank, n_q, d, err, errlen) != 0) return -1;
  if (!bank || !bank_labels || (n_q > 0 && (!queries || !pred))) { snprintf(err, errlen, "knn: null bank, labels, queries or pred"); return -1; }
  if (check_labels(bank_labels, n_bank, o->n_classes, "knn bank", err, errlen) != 0) return -1;
  if (q_labels && check_labels(q_labels, n_q, o->n_classes, "knn queries", err, errlen) != 0) return -1;
  if (check_finite(bank, n_bank, d, "knn bank", err, errlen) != 0) return -1;
  if (n_q > 0 && check_finite(queries, n_q, d, "knn queries", err, errlen) != 0) return -1;
  size_t bytes = knn_layout(o, n_bank, n_q, NULL, NULL);
  uint8_t *mem = aligned_alloc(WS_ALIGN, bytes);
  if (!mem) { snprintf(err, errlen, "knn: out of memory for its %zu-byte workspace", bytes); return -1; }
  knn_ws w;
  knn_layout(o, n_bank, n_q, mem, &w);
  int saved_threads = omp_get_max_threads();
  if (o->threads > 0) omp_set_num_threads(o->threads);

  int k = (int)(o->k < n_bank ? o->k : n_bank), C = o->n_classes;
  int64_t qb = o->query_block, bb = o->bank_block;
  double inv_t = 1.0 / o->temperature;
  int64_t correct = 0;
  inv_norms(bank, n_bank, d, w.inv_b);
  for (int64_t q0 = 0; q0 < n_q; q0 += qb) {
    int64_t nq = n_q - q0 < qb ? n_q - q0 : qb;
    inv_norms(queries + q0 * d, nq, d, w.inv_q);
    memset(w.hn, 0, (size_t)nq * sizeof *w.hn);
    for (int64_t b0 = 0; b0 < n_bank; b0 += bb) {
      int64_t nb = n_bank - b0 < bb ? n_bank - b0 : bb;
      /* sim [nq, nb] = Q [nq, d] . B[b0 : b0+nb]^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nb, (blasint)d, 1.0f, queries + q0 * d,
                  (blasint)d, bank + b0 * d, (blasint)d, 0.0f, w.sim, (blasint)nb);
#pragma omp parallel for schedule(static) if (nq * nb >= PAR_MIN)
      for (int64_t i = 0; i < nq; i++) {
        float *hs = w.hs + i * k;
        int32_t *hi = w.hi + i * k;
        int n = w.hn[i];
        const float *row = w.sim + i * nb;
        float iq = w.inv_q[i];
        for (int64_t j = 0; j < nb; j++) {
          float s = row[j] * iq * w.inv_b[b0 + j];
          int32_t idx = (int32_t)(b0 + j);
          if (n < k) heap_push(hs, hi, n++, s, idx);
          else if (knn_worse(hs[0], hi[0], s, idx)) { hs[0] = s; hi[0] = idx; heap_sift_down(hs, hi, k, 0); }
        }
        w.hn[i] = n;
      }
    }
    /* class scores and predictions */
#pragma omp parallel for schedule(static) if (nq * k >= PAR_MIN)
    for (int64_t i = 0; i < nq; i++) {
      const float *hs = w.hs + i * k;
      const int32_t *hi = w.hi + i * k;
      double *sc = w.score + i * C;
      float smax = hs[0];
      for (int t = 1; t < k; t++) smax = hs[t] > smax ? hs[t] : smax;
      for (int c = 0; c < C; c++) sc[c] = 0;
      for (int t = 0; t < k; t++) sc[bank_labels[hi[t]]] += exp(((double)hs[t] - smax) * inv_t);
      int best = 0;
      for (int c = 1; c < C; c++)
        if (sc[c] > sc[best]) best = c;
      pred[q0 + i] = best;
    }
    /* counted here, not by an OpenMP reduction (clang's runtime would export a lock symbol from the library) */
    for (int64_t i = 0; q_labels && i < nq; i++) correct += pred[q0 + i] == q_labels[q0 + i];
  }
  if (o->threads > 0) omp_set_num_threads(saved_threads);
  free(mem);
  if (accuracy) *accuracy = q_labels && n_q > 0 ? (double)correct / (double)n_q : 0.0;
  return 0;
}

/* ================================================================ linear probe */

linprobe_opts linprobe_opts_default(void) {
  linprobe_opts o = {0, 100, 256, 0.1, 0.9, 0.0, 0, 1};
  return o;
}

static int linprobe_check(const linprobe_opts *o, int64_t n_train, int64_t n_test, int d, char *err, size_t errlen) {
  if (!o) { snprintf(err, errlen, "linear probe: null options"); return -1; }
  if (n_train < 1 || n_train > INT32_MAX) {
    snprintf(err, errlen, "linear probe: %lld training rows (must be 1 to 2^31-1)", (long long)n_train);
    return -1;
  }
  if (n_test < 0) { snprintf(err, errlen, "linear probe: %lld test rows", (long long)n_test); return -1; }
  if (d < 1) { snprintf(err, errlen, "linear probe: feature dimension %d (must be >= 1)", d); return -1; }
  if (o->n_classes < 2) { snprintf(err, errlen, "linear probe: n_classes = %d (must be >= 2)", o->n_classes); return -1; }
  if (o->epochs < 1) { snprintf(err, errlen, "linear probe: epochs = %d (must be >= 1)", o->epochs); return -1; }
  if (o->batch < 1) { snprintf(err, errlen, "linear probe: batch = %d (must be >= 1)", o->batch); return -1; }
  if (!(o->lr > 0) || !isfinite(o->lr)) { snprintf(err, errlen, "linear probe: lr %g (must be > 0)", o->lr); return -1; }
  if (!(o->momentum >= 0 && o->momentum < 1)) { snprintf(err, errlen, "linear probe: momentum %g (must be in [0, 1))", o->momentum); return -1; }
  if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay)) {
    snprintf(err, errlen, "linear probe: weight_decay %g (must be >= 0)", o->weight_decay);
    return -1;
  }
  return 0;
}

typedef struct lp_ws {
  float *mean, *inv_std;  /* [d] */
  double *acc;            /* [2, d] sums for the mean and the variance */
  float *W, *V, *dW;      /* [d, C] weights, momentum, gradient */
  double *b, *vb, *db;    /* [C] */
  float *X;               /* [B, d] a standardised mini-batch (or evaluation block) */
  float *Z;               /* [B, C] logits, then dlogits */
  int32_t *perm;          /* [n_train] */
} lp_ws;

static size_t lp_layout(const linprobe_opts *o, int64_t n_train, int d, uint8_t *base, lp_ws *w) {
  int64_t B = o->batch, C = o->n_classes;
  size_t off = 0;
  lp_ws t;
  t.mean = ws_take(base, &off, (size_t)d * sizeof(float));
  t.inv_std = ws_take(base, &off, (size_t)d * sizeof(float));
  t.acc = ws_take(base, &off, (size_t)d * 2 * sizeof(double));
  t.W = ws_take(base, &off, (size_t)(d * C) * sizeof(float));
  t.V = ws_take(base, &off, (size_t)(d * C) * sizeof(float));
  t.dW = ws_take(base, &off, (size_t)(d * C) * sizeof(float));
  t.b = ws_take(base, &off, (size_t)C * sizeof(double));
  t.vb = ws_take(base, &off, (size_t)C * sizeof(double));
  t.db = ws_take(base, &off, (size_t)C * sizeof(double));
  t.X = ws_take(base, &off, (size_t)(B * d) * sizeof(float));
  t.Z = ws_take(base, &off, (size_t)(B * C) * sizeof(float));
  t.perm = ws_take(base, &off, (size_t)n_train * sizeof(int32_t));
  if (w) *w = t;
  return off;
}

size_t linprobe_workspace_bytes(const linprobe_opts *o, int64_t n_train, int64_t n_test, int d) {
  char err[256];
  if (linprobe_check(o, n_train, n_test, d, err, sizeof err) != 0) return 0;
  return lp_layout(o, n_train, d, NULL, NULL);
}

/* X [n, d] = standardised rows rows[0..n) of x (rows NULL: r0 .. r0+n) */
static void lp_gather(const lp_ws *w, const float *x, const int32_t *rows, int64_t r0, int64_t n, int d) {
  for (int64_t r = 0; r < n; r++) {
    const float *src = x + (rows ? (int64_t)rows[r] : r0 + r) * d;
    float *dst = w->X + r * d;
    for (int j = 0; j < d; j++) dst[j] = (src[j] - w->mean[j]) * w->inv_std[j];
  }
}

/* Z [n, C] = X W + b */
static void lp_logits(const lp_ws *w, int64_t n, int d, int C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)C, (blasint)d, 1.0f, w->X, (blasint)d, w->W,
              (blasint)C, 0.0f, w->Z, (blasint)C);
  for (int64_t r = 0; r < n; r++)
    for (int c = 0; c < C; c++) w->Z[r * C + c] += (float)w->b[c];
}

/* correct predictions (argmax of the logits; equal: the lower class) over x [n, d] */
static int64_t lp_correct(const lp_ws *w, const linprobe_opts *o, const float *x, const int32_t *y, int64_t n, int d) {
  int C = o->n_classes;
  int64_t correct = 0;
  for (int64_t r0 = 0; r0 < n; r0 += o->batch) {
    int64_t nb = n - r0 < o->batch ? n - r0 : o->batch;
    lp_gather(w, x, NULL, r0, nb, d);
    lp_logits(w, nb, d, C);
    for (int64_t r = 0; r < nb; r++) {
      const float *z = w->Z + r * C;
      int best = 0;
      for (int c = 1; c < C; c++)
        if (z[c] > z[best]) best = c;
      correct += best == y[r0 + r];
    }
  }
  return correct;
}

int linprobe_train(const float *train_x, const int32_t *train_y, int64_t n_train, const float *test_x,
                   const int32_t *test_y, int64_t n_test, int d, const linprobe_opts *o, linprobe_result *res,
                   double *epoch_loss, char *err, size_t errlen) {
  if (linprobe_check(o, n_train, n_test, d, err, errlen) != 0) return -1;
  if (!train_x || !train_y || !res || (n_test > 0 && (!test_x || !test_y))) {
    snprintf(err, errlen, "linear probe: null features, labels or result");
    return -1;
  }
  if (check_labels(train_y, n_train, o->n_classes, "linear probe train", err, errlen) != 0) return -1;
  if (n_test > 0 && check_labels(test_y, n_test, o->n_classes, "linear probe test", err, errlen) != 0) return -1;
  if (check_finite(train_x, n_train, d, "linear probe train", err, errlen) != 0) return -1;
  if (n_test > 0 && check_finite(test_x, n_test, d, "linear probe test", err, errlen) != 0) return -1;
  size_t bytes = lp_layout(o, n_train, d, NULL, NULL);
  uint8_t *mem = aligned_alloc(WS_ALIGN, bytes);
  if (!mem) { snprintf(err, errlen, "linear probe: out of memory for its %zu-byte workspace", bytes); return -1; }
  lp_ws w;
  lp_layout(o, n_train, d, mem, &w);
  int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1); /* OpenBLAS (OpenMP build) takes its thread count from here */
  int C = o->n_classes;

  /* per-dimension mean and 1/std of the training features (population std; a constant dimension: 1),
   * summed row by row in double (rows are contiguous) */
  for (int j = 0; j < d; j++) w.acc[j] = w.acc[d + j] = 0;
  if (o->standardize) {
    for (int64_t i = 0; i < n_train; i++)
      for (int j = 0; j < d; j++) w.acc[j] += train_x[i * d + j];
    for (int j = 0; j < d; j++) w.acc[j] /= (double)n_train;
    for (int64_t i = 0; i < n_train; i++)
      for (int j = 0; j < d; j++) { double t = train_x[i * d + j] - w.acc[j]; w.acc[d + j] += t * t; }
  }
  for (int j = 0; j < d; j++) {
    double m = w.acc[j], sd = sqrt(w.acc[d + j] / (double)n_train);
    w.mean[j] = (float)m;
    w.inv_std[j] = o->standardize && sd > 1e-12 * (fabs(m) + 1) ? (float)(1.0 / sd) : 1.0f;
  }
  memset(w.W, 0, (size_t)d * C * sizeof *w.W);
  memset(w.V, 0, (size_t)d * C * sizeof *w.V);
  for (int c = 0; c < C; c++) w.b[c] = w.vb[c] = 0;

  int64_t steps_per_epoch = (n_train + o->batch - 1) / o->batch, total = steps_per_epoch * o->epochs, t = 0;
  double last_loss = 0;
  for (int e = 0; e < o->epochs; e++) {
    for (int64_t i = 0; i < n_train; i++) w.perm[i] = (int32_t)i;
    rng_t r;
    rng_init(&r, hash_words(o->seed, (uint64_t)e, 0x6c696e70726f6265ull));
    for (int64_t i = n_train - 1; i > 0; i--) {
      int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
      int32_t tmp = w.perm[i]; w.perm[i] = w.perm[j]; w.perm[j] = tmp;
    }
    double loss_sum = 0;
    for (int64_t r0 = 0; r0 < n_train; r0 += o->batch, t++) {
      int64_t nb = n_train - r0 < o->batch ? n_train - r0 : o->batch;
      lp_gather(&w, train_x, w.perm + r0, 0, nb, d);
      lp_logits(&w, nb, d, C);
      /* softmax cross-entropy: Z becomes dL/dZ = (softmax - onehot) / nb */
      double bl = 0;
      for (int64_t rr = 0; rr < nb; rr++) {
        float *z = w.Z + rr * C;
        int y = train_y[w.perm[r0 + rr]];
        double zmax = z[0], se = 0;
        for (int c = 1; c < C; c++) zmax = z[c] > zmax ? z[c] : zmax;
        for (int c = 0; c < C; c++) se += exp((double)z[c] - zmax);
        bl += log(se) - ((double)z[y] - zmax);
        for (int c = 0; c < C; c++) z[c] = (float)((exp((double)z[c] - zmax) / se - (c == y)) / (double)nb);
      }
      loss_sum += bl;
      /* dW [d, C] = X^T [d, nb] . dZ [nb, C]; db = column sums of dZ */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)d, (blasint)C, (blasint)nb, 1.0f, w.X, (blasint)d, w.Z,
                  (blasint)C, 0.0f, w.dW, (blasint)C);
      for (int c = 0; c < C; c++) w.db[c] = 0;
      for (int64_t rr = 0; rr < nb; rr++)
        for (int c = 0; c < C; c++) w.db[c] += w.Z[rr * C + c];
      double lr = o->lr * 0.5 * (1.0 + cos(M_PI * (double)t / (double)total));
      float m = (float)o->momentum, wd = (float)o->weight_decay, flr = (float)lr;
      int64_t nw = (int64_t)d * C;
      for (int64_t i = 0; i < nw; i++) {
        w.V[i] = m * w.V[i] + w.dW[i] + wd * w.W[i];
        w.W[i] -= flr * w.V[i];
      }
      for (int c = 0; c < C; c++) {
        w.vb[c] = o->momentum * w.vb[c] + w.db[c];
        w.b[c] -= lr * w.vb[c];
      }
    }
    last_loss = loss_sum / (double)n_train;
    if (epoch_loss) epoch_loss[e] = last_loss;
  }
  res->train_loss = last_loss;
  res->train_acc = (double)lp_correct(&w, o, train_x, train_y, n_train, d) / (double)n_train;
  res->test_acc = n_test > 0 ? (double)lp_correct(&w, o, test_x, test_y, n_test, d) / (double)n_test : 0.0;
  omp_set_num_threads(saved_threads);
  free(mem);
  return 0;
}

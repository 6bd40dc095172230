/* probe.h — evaluation of frozen features: the kNN monitor of MoCo's CIFAR demo (InstDisc's weighted kNN:
 * cosine similarity, top-k, weights exp(sim / T)) and the linear probe (softmax regression by SGD on
 * standardised features). Both work in blocks with one allocation each, sized up front. */
#ifndef MF_PROBE_H
#define MF_PROBE_H

#include <stddef.h>
#include <stdint.h>

/* ---- kNN monitor ---- */
typedef struct knn_opts {
  int k;              /* neighbours (default 200); more than the bank holds: the whole bank */
  double temperature; /* weight of a neighbour exp(sim / T) (default 0.1); > 0 */
  int n_classes;      /* labels are in [0, n_classes) */
  int threads;        /* OpenMP and OpenBLAS threads while it runs (0: as they are) */
  int query_block;    /* queries per similarity block (default 256) */
  int bank_block;     /* bank rows per similarity block (default 4096): the block is query_block x bank_block floats */
} knn_opts;
knn_opts knn_opts_default(void);

/* Bytes knn_classify allocates (its one workspace) for these options and sizes; 0 when invalid. */
size_t knn_workspace_bytes(const knn_opts *o, int64_t n_bank, int64_t n_q, int d);

/* Weighted kNN classification. bank [n_bank, d] with bank_labels [n_bank]; queries [n_q, d]. Every row
 * is L2-normalised (a zero row has similarity 0 to everything); sim = cosine similarity, computed with
 * sgemm in blocks of query_block x bank_block so the n_q x n_bank matrix never exists. Each query keeps
 * its top k (higher similarity first; equal similarities: the lower bank index wins), class score =
 * sum over those neighbours of exp(sim / T) (computed as exp((sim - sim_max) / T), the same argmax
 * without overflow), prediction = the highest score (equal scores: the lower class). Writes pred[n_q];
 * with q_labels [n_q] (may be NULL) and accuracy non-NULL, *accuracy = share of pred == q_labels.
 * Returns 0, or -1 with err naming the bad argument (sizes, k, T, a label outside [0, n_classes), a
 * non-finite feature) or out of memory. */
int knn_classify(const float *bank, const int32_t *bank_labels, int64_t n_bank, const float *queries,
                 const int32_t *q_labels, int64_t n_q, int d, const knn_opts *o, int32_t *pred, double *accuracy,
                 char *err, size_t errlen);

/* ---- linear probe ---- */
typedef struct linprobe_opts {
  int n_classes;       /* labels are in [0, n_classes) */
  int epochs;          /* passes over the training set (default 100) */
  int batch;           /* mini-batch (default 256; the last one of an epoch may be short) */
  double lr;           /* peak learning rate, cosine to 0 over all steps (default 0.1) */
  double momentum;     /* SGD momentum (default 0.9) */
  double weight_decay; /* L2 on the weights, not the bias (default 0) */
  uint64_t seed;       /* the shuffled order of each epoch */
  int standardize;     /* 1 (default): features minus the training mean, over the training std per dimension */
} linprobe_opts;
linprobe_opts linprobe_opts_default(void);

typedef struct linprobe_result {
  double train_acc, test_acc; /* with the final weights, over the whole sets */
  double train_loss;          /* mean cross-entropy over the last epoch's mini-batches */
} linprobe_result;

/* Bytes linprobe_train allocates (its one workspace); 0 when invalid. */
size_t linprobe_workspace_bytes(const linprobe_opts *o, int64_t n_train, int64_t n_test, int d);

/* Multinomial logistic regression on frozen features: W [d, n_classes] and b [n_classes] from zero,
 * on one thread (a step's GEMMs, batch x d x n_classes, are too small to share: threads only wait),
 * softmax cross-entropy, mini-batches in a shuffled order drawn from (seed, epoch), SGD with momentum
 * (v = m v + g; w -= lr_t v) and weight decay, lr_t = lr (1 + cos(pi t / steps)) / 2. train_x
 * [n_train, d] with train_y; test_x [n_test, d] with test_y (n_test may be 0). epoch_loss [epochs]
 * (may be NULL) gets each epoch's mean mini-batch loss. Returns 0 with *res, or -1 with err naming the
 * bad argument (sizes, a setting out of range, a label outside [0, n_classes), a non-finite feature)
 * or out of memory. */
int linprobe_train(const float *train_x, const int32_t *train_y, int64_t n_train, const float *test_x,
                   const int32_t *test_y, int64_t n_test, int d, const linprobe_opts *o, linprobe_result *res,
                   double *epoch_loss, char *err, size_t errlen);

#endif

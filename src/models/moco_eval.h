/* moco_eval.h — MoCo's evaluation side: the eval-mode query backbone as a feature extractor (its own small
 * forward-only session), the model file it is saved to and read from, features of a data set, and the kNN
 * monitor over them. Used by moco_train.c (validation, model file) and `memfit eval moco`. */
#ifndef MF_MOCO_EVAL_H
#define MF_MOCO_EVAL_H

#include "models/moco.h"
#include "train/probe.h"
#include "train/safetensors.h"

#define MOCO_MODEL_FORMAT "memfit-moco-backbone-1"
#define MOCO_EXTRACT_BATCH 128 /* images per forward pass of the extractor at 32x32 and below */
/* Images per forward pass of the extractor: MOCO_EXTRACT_BATCH at 32x32, fewer for larger images (the same
 * pixels per pass, at least 1), so the feature pass a training run holds beside its step stays small. */
int moco_extract_batch(const moco_cfg *c);

typedef struct moco_extractor moco_extractor;

/* The eval-mode query backbone of c (batch norm with running statistics) in a forward-only session of
 * moco_extract_batch(c) images; its parameters come from moco_extractor_copy or moco_extractor_open. NULL with err. */
moco_extractor *moco_extractor_init(const moco_cfg *c, int threads, char *err, size_t n);
void moco_extractor_free(moco_extractor *x);
/* Bytes its session's plan holds (all arenas): it exists next to the training session during validation. */
size_t moco_extractor_bytes(const moco_extractor *x);
/* The same bytes before any extractor exists: the plan moco_extractor_init would make (0 if it cannot be planned). */
size_t moco_extractor_plan_bytes(const moco_cfg *c, int threads);
int moco_extractor_dim(const moco_extractor *x);          /* D of the features [count, D] */
const moco_cfg *moco_extractor_cfg(const moco_extractor *x);
/* Copies the query backbone (parameters, running statistics averaged over the bn splits) from a training session. */
int moco_extractor_copy(moco_extractor *x, mf_session *train, const moco_net *net, char *err, size_t n);
/* Writes the backbone's parameters and running statistics under their torchvision-style names
 * ("encoder_q.conv1.weight", "encoder_q.bn1.running_mean", ...), f32, with the settings in the metadata. */
int moco_extractor_save(moco_extractor *x, const char *path, int64_t steps, const char *note, char *err, size_t n);
/* Opens a model file written by moco_extractor_save: its settings, an extractor with its weights. NULL with err
 * naming the file and what is wrong (not a MoCo model, a missing or misshapen tensor, non-finite values). */
moco_extractor *moco_extractor_open(const char *path, int threads, char *err, size_t n);

/* Features [count, D] of the first `count` samples of d (each resized whole to the model's size, its
 * channels), into feats; labels[count] (may be NULL) gets their labels. Samples that fail to load are left
 * out (counted in *skipped): *got says how many rows were written. 0, or -1 with err. */
int moco_extract(moco_extractor *x, mf_dataset *d, size_t count, float *feats, int32_t *labels, size_t *got, int64_t *skipped,
                 char *err, size_t n);
/* kNN top-1 accuracy of the first n_test samples of test against the first n_bank of bank (both labelled), and
 * when po is not NULL a linear probe trained on the bank's features (*probe_acc: its accuracy on test's). */
int moco_knn_eval(moco_extractor *x, mf_dataset *bank, size_t n_bank, mf_dataset *test, size_t n_test, const knn_opts *o,
                  const linprobe_opts *po, double *accuracy, double *probe_acc, int64_t *skipped, char *err, size_t n);

#endif

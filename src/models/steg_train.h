/* steg_train.h — what the steganography commands share with its training side (steg_train.c): the model
 * file (parameters and settings, read back by hide/reveal/eval) and the labelled sample grid. */
#ifndef MF_STEG_TRAIN_H
#define MF_STEG_TRAIN_H

#include "models/steg.h"

#define MF_STEG_MODEL_FORMAT "memfit-steg-model-1"

/* Writes the parameters only (no optimizer state) to path, with the settings and note (the command line)
 * in the metadata. 0, or -1 with err. */
int mf_steg_model_save(mf_session *s, mf_graph *g, const mf_steg_model *m, const char *path, const char *note, char *err,
                       size_t errlen);
/* Writes rows of [cover | stego | |stego-cover| x10 | secret | recovered | |recovered-secret| x10] under
 * column labels, each tile w x h (planar [3,h,w] inputs, n rows). 0, or -1 with err. */
int mf_steg_grid_write(const char *path, int n, const float *const *cover, const float *const *stego,
                       const float *const *secret, const float *const *rec, int w, int h, char *err, size_t errlen);

#endif

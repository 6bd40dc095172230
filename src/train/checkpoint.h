/* checkpoint.h — checkpoints with caller metadata: what a trainer adds next to the session's own
 * state (for example the data loader's position, so that a resumed run sees the same batches). */
#ifndef MF_CHECKPOINT_H
#define MF_CHECKPOINT_H

#include "memfit.h"

/* mf_session_save plus n_meta extra metadata strings (keys[i] -> values[i], copied). The keys may not
 * be the session's own ("format", "step", "rng", ...: err names the key) nor "memfit.*"; mf_session_load
 * ignores them, so a checkpoint with extra keys resumes like any other. Read them back with mf_st_open
 * and mf_st_meta (train/safetensors.h). Returns 0, or -1 with err naming the path. */
int mf_checkpoint_save(mf_session *s, const char *path, int n_meta, const char *const *keys, const char *const *values,
                       char *err, size_t errlen);

#endif

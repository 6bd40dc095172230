/* vqgan_workload.h — VQGAN's settings by name and its exact planning of both phases (generator and
 * discriminator) over micro-batch, precision and recompute, for `memfit plan vqgan`, `memfit presets vqgan`
 * and `memfit train vqgan`. */
#ifndef MF_MODELS_VQGAN_WORKLOAD_H
#define MF_MODELS_VQGAN_WORKLOAD_H

#include "models/vqgan.h"
#include <stdio.h>

/* One setting ("preset", "size", "codes", "fsq-levels"...); 0, or -1 with err naming it. */
int vqgan_cfg_set(vqgan_cfg *c, const char *key, const char *val, char *err, size_t n);
void vqgan_cfg_help(FILE *f);

typedef struct vqgan_cand {
  int micro, accum, recompute;
  mf_dtype dtype;
  size_t arena[MF_ARENA_COUNT], total, peak[2];
  char peak_op[2][128];
  double flops, time;          /* flops per micro-step (both phases); predicted seconds per effective batch */
  int fits;
} vqgan_cand;

/* Plans one setting of cfg (checked) exactly; with keep_plan the plan and its graph are returned (free both). */
int vqgan_plan_one(const vqgan_cfg *c, int micro, mf_dtype dt, int recompute, const char *backend, int threads, vqgan_cand *out,
                   mf_plan **keep_plan, mf_graph **keep_graph, char *err, size_t n);

typedef struct vqgan_search_opts {
  int64_t budget;              /* 0: none */
  const char *backend;
  int threads;
  unsigned dtypes;             /* bit per mf_dtype (f32, bf16) */
  int mode;                    /* -1 search, 0 store all, 1 recompute all */
  int micro;                   /* 0 search, else this micro-batch */
} vqgan_search_opts;
/* Plans every candidate (micro-batches dividing the batch x precisions x store/recompute) and ranks them:
 * those that fit the budget first, then by predicted time. 0 (cands[0] the best; *n_out planned), or -1. */
int vqgan_search(const vqgan_cfg *c, const vqgan_search_opts *o, vqgan_cand *cands, int max, int *n_out, char *err, size_t n);
void vqgan_cand_describe(const vqgan_cand *c, char *buf, size_t n);

#endif

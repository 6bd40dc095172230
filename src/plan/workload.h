/* workload.h — the interface every built-in model implements (src/models/) and the planner's search
 * and the trainer use: its settings, how to build its training graph for a micro-batch, the graph
 * variants it offers (e.g. which recompute units exist), its constraints and its data staging
 * buffers; and its adapter to the public mf_model_builder. The registry of built-in workloads is
 * src/models/workload.h. */
#ifndef MF_PLAN_WORKLOAD_H
#define MF_PLAN_WORKLOAD_H

#include "memfit.h"
#include <stdio.h>

struct mf_workload_train;

typedef struct mf_workload {
  const char *name, *summary;
  void *(*cfg_new)(void);                 /* defaults; free with free() */
  /* Applies one setting ("preset", "size", "blocks"...); 0, or -1 with err naming the setting. */
  int (*cfg_set)(void *cfg, const char *key, const char *val, char *err, size_t errlen);
  void (*cfg_help)(FILE *f);
  /* Optional: checks the settings together once all are given; 0, or -1 with err naming the setting (a usage error). */
  int (*cfg_check)(const void *cfg, char *err, size_t errlen);
  void (*cfg_describe)(const void *cfg, char *buf, size_t n);
  /* Optional: the job's data-parallel ranks, for a model whose graph gathers across them (mf_allgather: MoCo); the
   * planner and the trainer call it before building. NULL: the graph is the same for any ranks. */
  void (*cfg_ranks)(void *cfg, int ranks);
  int (*effective_batch)(const void *cfg);
  int (*default_micro_batch)(const void *cfg); /* the micro-batch a plain plan uses */
  int n_variants;                         /* graph structures the planner may choose between */
  const char *const *variant_names;
  /* Builds the training graph for one micro-batch; *state keeps model structures alive while the
   * graph is used (free with state_free). Returns 0 or -1 with err. */
  int (*build)(mf_graph *g, const void *cfg, int variant, int micro_batch, mf_tensor *loss, void **state, char *err,
               size_t errlen);
  void (*state_free)(void *state);
  /* Constraint on the micro-batch (NULL: any divisor of the effective batch); 0 ok, -1 with why. */
  int (*batch_ok)(const void *cfg, int micro_batch, char *why, size_t n);
  /* Host bytes of the data loader's staging buffers for this micro-batch. */
  size_t (*staging_bytes)(const void *cfg, int micro_batch);
  /* Optional: the training graph of a batch of `batch` samples in one micro-step, for any batch the model
   * accepts (not only divisors of the effective batch): `memfit plan --budget` then also answers "the
   * largest batch that fits" (e.g. MoCo's, with the queue unchanged), storing every activation (variant 0)
   * and recomputing every segment of each variant that has segments. 0, or -1 with err. */
  int (*build_batch)(mf_graph *g, const void *cfg, int variant, int batch, mf_tensor *loss, void **state, char *err,
                     size_t errlen);
  /* Optional: micro-steps per optimizer update of a variant (Image-GS: the image tiles it cuts the image into; the
   * search's accumulation). NULL: effective batch / micro-batch. */
  int (*micro_steps)(const void *cfg, int variant, int micro_batch);
  /* Optional: a few lines on what a chosen variant means for these settings (e.g. the tile size and count), printed
   * by `memfit plan` under the plan. */
  void (*explain)(const void *cfg, int variant, int micro_batch, FILE *f);
  /* Optional: mf_model_builder.preferred_variant (a variant that runs faster than `variant` when it fits, or -1). */
  int (*preferred_variant)(const void *cfg, int variant);
  int default_variant;                    /* the variant a plan or run without --budget or --variant takes (0) */
  /* Optional: device bytes a run holds besides the training step's plan, at the same time (mf_model_builder's
   * side_bytes: MoCo's eval-mode feature pass); *what (may be NULL) names them. */
  size_t (*side_bytes)(const void *cfg, int threads, const char *backend, const char **what);
  const char *wider_option;               /* the setting that widens the model, for the utilisation line ("--growth") */
  const char *batch_note;                 /* after that answer, e.g. " (the queue of negatives stays as it is)" */

  /* training: `memfit train NAME` (NULL: the workload can be planned, not trained); the training half
   * of the interface is defined with the registry, src/models/workload.h */
  const struct mf_workload_train *train;
} mf_workload;

/* A workload with its settings seen as an mf_model_builder (builder.ctx points at the adapter, which
 * must outlive the builder's use; each graph's model state is freed by the builder's release). */
typedef struct mf_workload_adapter {
  const mf_workload *w;
  const void *cfg;
  void *state;
  mf_model_builder builder;
} mf_workload_adapter;
const mf_model_builder *mf_workload_builder(mf_workload_adapter *a, const mf_workload *w, const void *cfg);

#endif

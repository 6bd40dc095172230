/* workload.h — what the planner and the CLI need to know about a built-in workload: its settings,
 * how to build its training graph for a micro-batch, the graph variants it offers (e.g. which
 * recompute units exist), its constraints and its data staging buffers. Every workload plugs in here. */
#ifndef MF_WORKLOAD_H
#define MF_WORKLOAD_H

#include "memfit.h"
#include <stdio.h>

typedef struct mf_workload {
  const char *name, *summary;
  void *(*cfg_new)(void);                 /* defaults; free with free() */
  /* Applies one setting ("preset", "size", "blocks"...); 0, or -1 with err naming the setting. */
  int (*cfg_set)(void *cfg, const char *key, const char *val, char *err, size_t errlen);
  void (*cfg_help)(FILE *f);
  void (*cfg_describe)(const void *cfg, char *buf, size_t n);
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
} mf_workload;

const mf_workload *mf_workload_find(const char *name);
/* "steg" etc., comma-separated */
const char *mf_workload_names(void);

extern const mf_workload mf_workload_steg;

#endif

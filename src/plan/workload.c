/* workload.c — a workload (plan/workload.h) seen as the public mf_model_builder, so that one budget
 * search serves built-in models and a library user's own. */
#include "plan/workload.h"

static int wl_build(mf_graph *g, int variant, int micro_batch, void *ctx, mf_tensor *loss, char *err, size_t errlen) {
  mf_workload_adapter *a = ctx;
  return a->w->build(g, a->cfg, variant, micro_batch, loss, &a->state, err, errlen);
}
static void wl_release(void *ctx) {
  mf_workload_adapter *a = ctx;
  if (a->state) a->w->state_free(a->state);
  a->state = NULL;
}
static int wl_batch_ok(int micro_batch, void *ctx, char *why, size_t n) {
  mf_workload_adapter *a = ctx;
  return a->w->batch_ok(a->cfg, micro_batch, why, n);
}
static size_t wl_staging(int micro_batch, void *ctx) {
  mf_workload_adapter *a = ctx;
  return a->w->staging_bytes(a->cfg, micro_batch);
}

static int wl_micro_steps(int variant, int micro_batch, void *ctx) {
  mf_workload_adapter *a = ctx;
  return a->w->micro_steps(a->cfg, variant, micro_batch);
}

static size_t wl_side(void *ctx, int threads, const char *backend, const char **what) {
  mf_workload_adapter *a = ctx;
  return a->w->side_bytes(a->cfg, threads, backend, what);
}

const mf_model_builder *mf_workload_builder(mf_workload_adapter *a, const mf_workload *w, const void *cfg) {
  a->w = w;
  a->cfg = cfg;
  a->state = NULL;
  a->builder = (mf_model_builder){.name = w->name, .effective_batch = w->effective_batch(cfg), .n_variants = w->n_variants,
                                  .variant_names = w->variant_names, .build = wl_build, .ctx = a, .release = wl_release,
                                  .batch_ok = w->batch_ok ? wl_batch_ok : NULL, .staging_bytes = w->staging_bytes ? wl_staging : NULL,
                                  .micro_steps = w->micro_steps ? wl_micro_steps : NULL,
                                  .side_bytes = w->side_bytes ? wl_side : NULL};
  return &a->builder;
}

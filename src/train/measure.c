/* measure.c — the budget search with the machine's figures: mf_search calibrates the backend (running
 * sessions, train/calibrate.c) and hands the figures to the planner's search (plan/search.c); and the
 * timing of one candidate by training it for a few steps (bench/bench_search.c checks the ranking). */
#include "train/measure.h"
#include "train/calibrate.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

int mf_search(const mf_model_builder *m, const mf_search_opts *o, mf_search_result *r, char *err, size_t errlen) {
  mf_calibration cal;
  if (mf_calibrate(o->backend, o->threads, &cal, err, errlen) < 0) {
    /* the plan needs no device; only the ranking does: use nominal figures and say so */
    char why[300];
    snprintf(why, sizeof why, "%s", err);
    mf_calibration_nominal(&cal, why);
  }
  return mf_search_plans(m, o, &cal, r, err, errlen);
}

int mf_workload_search(const mf_workload *w, const void *cfg, const mf_search_opts *o, mf_search_result *r, char *err,
                       size_t errlen) {
  mf_workload_adapter a;
  return mf_search(mf_workload_builder(&a, w, cfg), o, r, err, errlen);
}

double mf_candidate_measure(const mf_workload *w, const void *cfg, const mf_candidate *c, const char *backend, int threads,
                            int steps, char *err, size_t errlen) {
  mf_graph *g = mf_graph_init(c->dtype);
  void *state = NULL;
  mf_tensor loss;
  if (!g || w->build(g, cfg, c->variant, c->micro_batch, &loss, &state, err, errlen) < 0) {
    mf_graph_free(g);
    return -1;
  }
  mf_train_opts o = mf_train_opts_default();
  mf_candidate_apply(c, &o.plan);
  o.plan.backend = backend;
  o.threads = threads;
  o.accum_steps = c->accum;
  mf_session *s = mf_session_init(g, loss, &o, err, errlen);
  double t = -1;
  if (s) {
    for (int i = 0; i < c->accum; i++) mf_session_micro_step(s);
    mf_session_update(s);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < steps; k++) {
      for (int i = 0; i < c->accum; i++) mf_session_micro_step(s);
      mf_session_update(s);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    t = ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) / steps;
    mf_session_free(s);
  }
  w->state_free(state);
  mf_graph_free(g);
  return t;
}

/* measure.h — the budget search with the machine's figures (public: mf_search) and the timing of a
 * candidate by running it (the search itself plans only: plan/search.h). */
#ifndef MF_MEASURE_H
#define MF_MEASURE_H

#include "plan/search.h"

/* mf_search for a built-in workload with its settings (what `memfit plan` and `train` use). */
int mf_workload_search(const mf_workload *w, const void *cfg, const mf_search_opts *o, mf_search_result *r, char *err,
                       size_t errlen);
/* Builds the candidate's graph and session options and runs `steps` optimizer steps (after one
 * warm-up) with zero inputs; returns seconds per effective batch, or -1 with err. */
double mf_candidate_measure(const mf_workload *w, const void *cfg, const mf_candidate *c, const char *backend, int threads,
                            int steps, char *err, size_t errlen);

#endif

/* search.h — fit to a budget (the public part is in memfit.h: mf_search_opts, mf_candidate,
 * mf_search_result, mf_model_builder): the search itself, given the cost model's figures. Calibrating
 * and timing by running sessions is the train layer's (train/calibrate.h, train/measure.h). */
#ifndef MF_SEARCH_H
#define MF_SEARCH_H

#include "plan/plan.h"
#include "plan/workload.h"

/* Plans every setting of model m and ranks those that fit with the figures in cal (copied into
 * r->cal). Returns as mf_search does. */
int mf_search_plans(const mf_model_builder *m, const mf_search_opts *o, const mf_calibration *cal, mf_search_result *r, char *err,
                    size_t errlen);
/* Figures to rank with when the backend could not be measured: source says "nominal (why)". */
void mf_calibration_nominal(mf_calibration *c, const char *why);

#endif

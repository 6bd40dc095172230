/* calibrate.h — the cost model's figures, measured by running sessions on the backend (mf_calibrate
 * and mf_calibration are public, in memfit.h): a forced measurement and the cache's path. */
#ifndef MF_CALIBRATE_H
#define MF_CALIBRATE_H

#include "memfit.h"

/* Measures now whatever the cache holds, and rewrites the cache (`memfit calibrate`). */
int mf_calibrate_refresh(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen);
/* The cache file of a backend and thread count (threads <= 0: all cores). */
void mf_calibration_cache_path(const char *backend, int threads, char *buf, size_t n);

#endif

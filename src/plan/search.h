/* search.h — fit to a budget: searches micro-batch x accumulation (keeping the effective batch),
 * storage precision, graph variant, which segments to recompute or invert, and optimizer offload,
 * plans every candidate exactly, and ranks the ones that fit by a calibrated cost model. */
#ifndef MF_SEARCH_H
#define MF_SEARCH_H

#include "models/workload.h"
#include "plan/plan.h"

typedef struct mf_calibration {
  double flops_per_s[MF_DTYPE_COUNT]; /* compute-bound ops (GEMM, conv) by storage dtype */
  double bytes_per_s[MF_DTYPE_COUNT]; /* memory-bound ops by storage dtype */
  double op_overhead_s;               /* fixed cost of running one node (dispatch, thread wake-up) */
  double gemm_overhead_s;             /* fixed cost of one GEMM-based node (conv, matmul): BLAS call, packing */
  double offload_bytes_per_s;         /* host <-> device link (offloaded optimizer state) */
  char source[320];                   /* "measured now...", "cached in FILE...", "MEMFIT_CALIBRATION", "nominal..." */
  char path[1024];                    /* the cache file ("" with MEMFIT_CALIBRATION) */
  char note[256];                     /* "" or what was unusual (a busy machine, a stale or corrupt cache) */
  int busy;                           /* the machine looked busy while measuring: figures are approximate */
} mf_calibration;

/* Figures for the planner's cost model: read from the cache file
 * $XDG_CACHE_HOME/memfit/calibration-BACKEND-tTHREADS.txt (~/.cache/memfit without XDG_CACHE_HOME),
 * or measured and written there when it is missing, corrupt, from another memfit cache version, older
 * than 30 days, or measured on a busy machine more than an hour ago. A measurement times a convolution
 * per dtype, a large elementwise op and chains of tiny ops, each the minimum of several repeats, and
 * repeats it when the repeats disagree or N threads run slower than one (a busy machine).
 * MEMFIT_CALIBRATION="f32,bf16,f16,bytes[,op_seconds]" overrides (bytes/s for every dtype). */
int mf_calibrate(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen);
/* Measures now whatever the cache holds, and rewrites the cache (`memfit calibrate`). */
int mf_calibrate_refresh(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen);
/* The cache file of a backend and thread count (threads <= 0: all cores). */
void mf_calibration_cache_path(const char *backend, int threads, char *buf, size_t n);

typedef struct mf_search_opts {
  int64_t budget;            /* device bytes the plan must fit (0: no limit) */
  int64_t host_budget;       /* host bytes for offloaded optimizer state (0: no limit) */
  const char *backend;
  int threads;
  unsigned dtypes;           /* bit per mf_dtype allowed (f32/bf16/f16); 0: f32 only */
  int allow_offload;         /* offload only makes sense when the backend has device memory */
  int fixed_micro_batch;     /* > 0: only this micro-batch */
  int fixed_variant;         /* >= 0: only this variant */
  int fixed_mode;            /* -1: search; 0: store all; 1: recompute all (invert where possible) */
} mf_search_opts;
mf_search_opts mf_search_opts_default(void);

#define MF_SEARCH_MAX_SEG 512
typedef struct mf_candidate {
  int variant, micro_batch, accum;
  mf_dtype dtype;
  int invertible, offload;
  int n_seg, n_recomputed;
  uint8_t mask[MF_SEARCH_MAX_SEG];  /* per segment: 1 recompute (invert when invertible) */
  size_t arena[MF_ARENA_COUNT];
  size_t device_bytes;       /* what must fit the budget */
  size_t staging_bytes;      /* loader's host staging buffers */
  double step_s;             /* predicted seconds per effective batch (accum micro-steps + update) */
  double recompute_flops;    /* extra FLOPs per effective batch spent recomputing */
  char peak_desc[160];
  int fits;
  char note[200];            /* why it lost, or what it is */
} mf_candidate;

typedef struct mf_search_result {
  int found;                 /* 1: best fits the budget */
  mf_candidate best;
  mf_candidate runners[3];   /* next best that fit, different in kind */
  int n_runners;
  mf_candidate unconstrained;/* fastest plan with no budget */
  mf_candidate smallest;     /* smallest device bytes of any setting */
  int n_planned;             /* plans computed during the search */
  mf_calibration cal;
  mf_candidate *all;         /* every candidate planned, ranked (fits first, then cost) */
  int n_all;
} mf_search_result;
void mf_search_result_free(mf_search_result *r);
/* Builds the candidate's graph and session options and runs `steps` optimizer steps (after one
 * warm-up) with zero inputs; returns seconds per effective batch, or -1 with err. */
double mf_candidate_measure(const mf_workload *w, const void *cfg, const mf_candidate *c, const char *backend, int threads,
                            int steps, char *err, size_t errlen);

int mf_search(const mf_workload *w, const void *cfg, const mf_search_opts *o, mf_search_result *r, char *err, size_t errlen);
/* "micro-batch 2 x 16, bf16, invertible blocks, 10/20 segments inverted" */
void mf_candidate_describe(const mf_candidate *c, const mf_workload *w, char *buf, size_t n);
/* Applies a candidate's choices to plan/train options (mask must outlive the options). */
void mf_candidate_apply(const mf_candidate *c, mf_plan_opts *po);

#endif

/* profile.h — MEMFIT_PROFILE=1: wall time of every kernel a session runs, summed per kind of node (op, pass,
 * implementation) and printed when the session ends, so "where does a step's time go" has an answer. */
#ifndef MF_PROFILE_H
#define MF_PROFILE_H

#include "plan/plan.h"
#include <stdio.h>

typedef struct mf_profile {
  int n;              /* graph nodes */
  double *sec;        /* [n]: seconds in node id's kernel, over the run */
  int64_t *calls;     /* [n]: times it ran */
  int64_t steps;      /* training-program runs (the table's per-step divisor); evaluation runs are not timed */
  double step_sec;    /* their wall time, kernels and the gaps between them (optimizer updates not included) */
  const void *warmed[8]; /* programs whose first run (first touch of the arenas' pages) was left out */
  int n_warmed;
  int64_t update_warm; /* updates seen, the first not timed */
  double update_sec;  /* optimizer updates (mf_session_update and the phase updates), over the run */
  int64_t updates;
} mf_profile;

/* 1 when this run of program pr is to be timed: every run but each program's first, whose kernels also fault the
 * arenas' pages in (up to 8 programs; later ones are timed from their first run). */
int mf_profile_take(mf_profile *p, const void *pr);
/* NULL (and nothing allocated) unless MEMFIT_PROFILE is set to something other than "0" or n < 1. */
mf_profile *mf_profile_init(int n_nodes);
void mf_profile_free(mf_profile *p);
/* The table: one row per kind of node (op name, forward / backward / recompute, the implementation the backend
 * chose), milliseconds per training step and share of the kernels' time, largest first. */
void mf_profile_print(const mf_profile *p, const mf_plan *plan, FILE *f);

#endif

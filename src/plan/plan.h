/* plan.h — the one place that decides memory: execution programs (forward, backward and the
 * recompute rewrite), tensor lifetimes, and every tensor's arena and offset. */
#ifndef MF_PLAN_H
#define MF_PLAN_H

#include "graph/graph.h"
#include "backend/backend.h"

#define MF_ALIGN 64
#define MF_NO_OFFSET ((size_t)-1)

/* One execution order of nodes with its own activation-arena offsets. */
typedef struct mf_program {
  int *steps;              /* node ids in execution order */
  int n_steps;
  size_t *act_off;         /* per node id: offset in the ACT arena, MF_NO_OFFSET if not live here */
  size_t *ws_off, *ws_size;/* per step: workspace offset/size in the ACT arena */
  size_t act_peak;         /* bytes of the ACT arena this program touches */
  int peak_step;           /* step at which act_peak is first reached */
  size_t *live;            /* per step: activation bytes allocated while it runs (workspace included) */
  double flops;
} mf_program;

struct mf_plan {
  mf_graph *g;
  const mf_backend *be;
  mf_plan_opts opts;
  int loss, seed;
  size_t *pers_off;        /* per node id: offset in its persistent arena (PARAM, PARAM_LP, GRAD, DATA) */
  size_t *opt_off;         /* per node id (PARAM): offset of its optimizer state in the OPT arena */
  size_t arena[MF_ARENA_COUNT];
  mf_program train, fwd;   /* training step (forward+backward) and forward-only evaluation */
  int has_train;
  int n_recomputed;        /* segments recomputed or inverted */
  int input_slots;         /* copies of the DATA arena's inputs (2: next batch copied during the step) */
  size_t input_slot_bytes; /* distance between the copies (slot k of input id: pers_off[id] + k * this) */
  size_t input_convert_bytes; /* host, page-locked mirror of the DATA arena (same offsets) where inputs not
                                 stored as f32 are converted before their asynchronous copy (0: none) */
  char peak_desc[160];
};

/* Arena of a node by its role. */
mf_arena_kind mf_node_arena(const mf_node *n);
/* Builds the programs (applying the recompute rewrite to g) and assigns offsets. */
int mf_plan_build(mf_plan *p, char *err, size_t errlen);
int mf_program_build_train(mf_graph *g, int loss, const mf_plan_opts *o, mf_program *pr, int *n_recomputed, char *err, size_t errlen);
int mf_program_build_fwd(mf_graph *g, int loss, const mf_plan_opts *o, mf_program *pr, char *err, size_t errlen);
void mf_program_free(mf_program *pr);
/* Number of optimizer-state floats per parameter element. */
int mf_optim_state_per_param(mf_optim_kind k);

#endif

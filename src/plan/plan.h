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

/* One phase of the training step (mf_plan_init_phases): a loss of the shared graph with its own backward
 * and program; the programs share the persistent arenas and one activation arena sized for the largest. */
typedef struct mf_plan_phase {
  char name[MF_NAME_LEN];
  int loss, seed;
  unsigned groups;         /* parameter groups it trains (bit k: group k); 0: all */
  int bwd_first, bwd_end;  /* its backward nodes [bwd_first, bwd_end) in the plan's graph */
  mf_program *prog;        /* its step program: &mf_plan.train for phase 0, else &own */
  mf_program own;
  uint8_t *rg;             /* per forward node: gets a gradient in this phase (NULL: graph differentiated by the caller) */
  uint8_t *trains;         /* per node id (< n_fwd): a parameter this phase builds a gradient for */
  size_t nograd_bytes;     /* forward activations of its program that need no gradient */
  size_t nograd_kept;      /* of those, bytes that backward still reads (inputs of weight gradients) */
  char peak_desc[160];
} mf_plan_phase;

struct mf_plan {
  mf_graph *g;
  const mf_backend *be;
  mf_plan_opts opts;
  int loss, seed;
  size_t *pers_off;        /* per node id: offset in its persistent arena (PARAM, PARAM_LP, GRAD, DATA) */
  size_t *opt_off;         /* per node id (PARAM): offset of its optimizer state in the OPT arena */
  size_t arena[MF_ARENA_COUNT];
  mf_program train, fwd;   /* training step (forward+backward; phase 0's) and forward-only evaluation (phase 0's loss) */
  int n_phases;            /* 1 for mf_plan_init */
  mf_plan_phase phase[MF_MAX_PHASES];
  int peak_phase;          /* phase whose program sets the ACT arena, -1: the forward program */
  int *keep_ids;           /* opts.keep with detaches resolved (opts.keep points here) */
  int has_train;
  int n_recomputed;        /* segments recomputed or inverted */
  int input_slots;         /* copies of the DATA arena's inputs (2: next batch copied during the step) */
  size_t input_slot_bytes; /* distance between the copies (slot k of input id: pers_off[id] + k * this) */
  size_t input_convert_bytes; /* host, page-locked mirror of the DATA arena (same offsets) where inputs not
                                 stored as f32 are converted before their asynchronous copy (0: none) */
  char peak_desc[160];
  /* data parallel (opts.ranks > 1): the gradient arena as all-reduce buckets, in the order backward finishes
   * them; ready_step: the step of the training program after which no kernel writes the bucket again (-1:
   * only after backward, e.g. a step of several phases) */
  int n_buckets;
  struct mf_grad_bucket { size_t off, bytes; int ready_step; } *buckets;
  /* ZeRO-1 (opts.shard_optimizer): rank r owns bytes [r * shard_bytes, (r+1) * shard_bytes) of the gradient arena;
   * per parameter node id, the first element and the count of its slice there (opt_off: the slice's state) */
  size_t shard_bytes;
  int64_t *shard_lo, *shard_n;
};

/* Arena of a node by its role. */
mf_arena_kind mf_node_arena(const mf_node *n);
/* Builds the programs (applying the recompute rewrite to g) and assigns offsets. */
int mf_plan_build(mf_plan *p, char *err, size_t errlen);
/* The step program of the loss whose backward nodes are [bwd_first, bwd_end); keep_all 0: of o->keep,
 * only the tensors that program computes anyway are kept (phases after the first). */
int mf_program_build_train(mf_graph *g, int loss, int bwd_first, int bwd_end, int keep_all, const mf_plan_opts *o,
                           mf_program *pr, int *n_recomputed, char *err, size_t errlen);
/* The node a tensor's storage is: itself, or for a detach the tensor it detaches (aliased). */
static inline int mf_node_alias_root(const mf_graph *g, int id) {
  while (id >= 0 && mf_node_is_detach(&g->nodes[id])) id = g->nodes[id].src[0];
  return id;
}
int mf_program_build_fwd(mf_graph *g, int loss, const mf_plan_opts *o, mf_program *pr, char *err, size_t errlen);
void mf_program_free(mf_program *pr);
/* The all-reduce buckets of a plan for opts.ranks > 1 (after the offsets are known); 0 or -1 (out of memory). */
int mf_plan_buckets(mf_plan *p);
/* Number of optimizer-state floats per parameter element. */
int mf_optim_state_per_param(mf_optim_kind k);

#endif

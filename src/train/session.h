/* session.h — the runtime state of a training session: one allocation per arena, sized by the
 * plan, the optimizer and loss-scaling state, and the debug high-water counters. */
#ifndef MF_SESSION_H
#define MF_SESSION_H

#include "plan/plan.h"
#include "dist/dist.h"
#include "train/profile.h"

/* What a step may read from an input (mf_session_stage_inputs). */
enum mf_input_state {
  MF_INPUT_SPENT = 0,    /* staged for an earlier step only: the next step refuses to run */
  MF_INPUT_WRITTEN = 1,  /* written (or never touched: zeros): readable by every step */
  MF_INPUT_STAGED = 2,   /* taken from a staged batch: readable by the step now running */
};

struct mf_session {
  mf_plan *plan;
  mf_train_opts opts;
  uint8_t *arena[MF_ARENA_COUNT];   /* host allocations (sized by the plan, + guard in debug) */
  size_t measured[MF_ARENA_COUNT];  /* highest byte written, by the runtime's own counter */
  size_t scanned[MF_ARENA_COUNT];   /* highest byte changed, found by scanning the sentinel */
  int64_t step;                     /* optimizer updates done */
  int micro;                        /* micro-steps since the last update (phases: the sum over phases) */
  int phase_micro[MF_MAX_PHASES];   /* phase steps since that phase's last update */
  double loss_scale;
  int clean_steps;                  /* f16: updates since the last overflow */
  int64_t skipped;                  /* f16: updates skipped because of inf/NaN */
  uint64_t rng;                     /* session RNG (data order, noise), saved in checkpoints */
  double last_lr, last_grad_norm;
  /* parameter groups (opts.groups[0] is filled from the top-level settings at init) */
  char group_name[MF_MAX_PARAM_GROUPS][32];
  int64_t group_step[MF_MAX_PARAM_GROUPS];    /* updates each group has taken (its bias correction) */
  double group_lr[MF_MAX_PARAM_GROUPS];       /* each group's lr in its last update */
  uint8_t group_frozen[MF_MAX_PARAM_GROUPS];  /* mf_session_group_freeze; not saved */
  /* reduce-on-plateau (MF_SCHED_PLATEAU): saved in checkpoints */
  double plateau_best;                        /* +inf before the first report */
  int plateau_bad;                            /* reports since the last improvement (or cut) */
  double plateau_scale;                       /* factor^cuts, 1 at first */
  const mf_program *last_prog;
  const mf_backend *be;
  void *stream;
  uint8_t *host_mirror[MF_ARENA_COUNT]; /* device backends: host copies for checkpoints, made on demand */
  void **bound;                     /* per node id: caller memory an input is bound to, or NULL */
  int opt_on_host;                  /* optimizer state offloaded to page-locked host memory */
  /* Staged batches (mf_session_stage_inputs): a queue of at most two, each step takes the oldest. */
  int cur_slot;                     /* input slot the steps read */
  int n_staged;
  struct mf_staged {
    int slot, n;
    mf_tensor *t;                   /* [number of inputs] */
    const float **data;
  } staged[2];
  uint8_t *input_state;             /* per node id: an mf_input_state */
  uint8_t *convert;                 /* page-locked host mirror of the DATA arena (plan->input_convert_bytes) */
  int64_t *n_active;                /* per node id: a mask's active entries (mf_active_mask); NULL without masks */
  /* data parallel (mf_session_set_comm; src/dist): gradients all-reduced over comm in the plan's buckets */
  mf_comm *comm;                    /* NULL: one process. Host values (losses, norms) are reduced over it */
  mf_comm *acomm;                   /* the arenas' collectives (gradients, all-gather nodes): comm itself when the arenas
                                       are host memory; on a device, NCCL or comm through a host staging buffer (owned) */
  int comm_loss_sum;                /* 1: the loss sums over samples, so the ranks' gradients add up; 0: a mean (averaged) */
  int comm_live;                    /* the running micro-step is its update's last: buckets start as backward ends them */
  uint8_t *comm_started;            /* [plan->n_buckets]: started in this update */
  int64_t comm_early;               /* buckets started during backward, over the run */
  int64_t comm_late;                /* buckets started after backward */
  double comm_wait_s;               /* seconds the updates waited for the gradients' reduction after backward */
  mf_profile *prof;                 /* MEMFIT_PROFILE=1: kernel times, printed at mf_session_free; NULL otherwise */
};

/* Makes the session one rank of a data-parallel job: on the last micro-step of each update every gradient
 * bucket's sum over the ranks is started as soon as backward has finished it, and mf_session_update waits for
 * them before the optimizer (which then sees the same gradients on every rank). loss_sum 1: the loss is a sum
 * over the micro-batch's samples (the global loss is the ranks' sum, as one process with the whole batch);
 * 0: a mean (each rank's gradient is scaled by 1/size). The plan must have been made with opts.ranks equal
 * to the communicator's size (else err says so). A communicator of size 1 changes nothing. On a device backend the
 * arenas' collectives run on NCCL when it is built in and every rank has its own device, else on c through a host
 * staging buffer; MEMFIT_DIST_DEVICE=nccl or =host forces one of them, even for one process (=host on the CPU stages
 * too: the tests check that path there). 0, or -1. */
int mf_session_set_comm(mf_session *s, mf_comm *c, int loss_sum, char *err, size_t errlen);
/* Values every rank computed on its share of the batch (the loss, its terms) made the global batch's: summed over
 * the ranks, then divided by their number for a mean loss. Without a communicator nothing changes. 0 or -1. */
int mf_session_reduce_values(mf_session *s, double *v, int n);
/* The index over the run (updates x accum_steps + micro-step) of the micro-step the next batch staged now
 * (mf_session_stage_inputs) will run in: batches already staged and waiting come first. The same on every rank,
 * and after a resume (from the update count), so inputs drawn from it (MoCo's shuffle) are. */
int64_t mf_session_next_micro(const mf_session *s);
/* The session's rank (0 without a communicator) and the hash of its parameters (f32 masters) and states. */
int mf_session_rank(const mf_session *s);
uint64_t mf_session_param_hash(mf_session *s);

/* Host view of a persistent arena: the arena itself on the CPU; on a device, a host mirror filled
 * from the device. After changing a mirror, mf_session_push_arena copies it back. */
uint8_t *mf_session_host_arena(mf_session *s, mf_arena_kind a);
int mf_session_push_arena(mf_session *s, mf_arena_kind a);
/* Host pointer of a persistent node inside mf_session_host_arena's view. */
void *mf_session_host_ptr(mf_session *s, int id);
void mf_session_refresh_lp(mf_session *s);

/* Storage of node `id` in program pr (persistent arenas ignore pr). NULL if not live there. */
void *mf_session_ptr(mf_session *s, const mf_program *pr, int id);
/* Runs a program; returns 0. */
int mf_session_run(mf_session *s, const mf_program *pr);
/* Scans each arena for the highest byte that differs from the sentinel (debug_memory only). */
void mf_session_scan(mf_session *s);

/* Persistent state (src/train/state.c). state_init: after the parameters are initialised in the host
 * views of the PARAM and STATE arenas (before they are pushed): EMA averages copy their parameters,
 * masks get their initial entries. after_update: the EMA averages follow the updated masters (before
 * the low-precision copies are refreshed).
 * active_rows: elements of param node n the optimizer updates (all, or the active rows of its mask).
 * load_check: the masks and ring positions of a checkpoint are valid (err names the tensor);
 * load_done: the session's mask counts follow the loaded masks. */
int mf_state_init(mf_session *s, char *err, size_t errlen);
int mf_state_after_update(mf_session *s);
/* after_update for the EMA averages of the parameters only[] marks (per node id; a phase update) */
int mf_state_after_update_some(mf_session *s, const uint8_t *only);
/* after_micro: micro-step `index` of the optimizer step (0-based) ran program pr: a ring pushed with
 * mf_ring_push_steps(..., steps) stages its keys while index < steps - 1, and at index steps - 1 takes the
 * staged keys and these at once. before_update: an update after only `pending` micro-steps (fewer than a
 * ring's steps) pushes what waits in the stage. check_steps: every ring's steps equal accum_steps. */
int mf_state_after_micro(mf_session *s, const mf_program *pr, int index);
int mf_state_before_update(mf_session *s, int pending);
int mf_state_check_steps(const mf_session *s, char *err, size_t errlen);
int64_t mf_state_active_elems(const mf_session *s, const mf_node *n);
typedef const void *(*mf_state_lookup_fn)(void *ctx, const char *name);
int mf_state_load_check(mf_session *s, mf_state_lookup_fn lookup, void *ctx, const char *path, char *err, size_t errlen);
void mf_state_load_done(mf_session *s);
/* "state.<name>" or "buffer.<name>": a state leaf's checkpoint key */
void mf_state_key(const mf_node *n, char *buf, size_t len);

#define MF_SENTINEL 0xA5
#define MF_GUARD_BYTES 4096

#endif

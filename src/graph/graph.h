/* graph.h — internal graph representation: every tensor is one node (the output of one op),
 * nodes are appended in topological order while model code builds the forward graph. */
#ifndef MF_GRAPH_H
#define MF_GRAPH_H

#include "memfit.h"
#include <stdbool.h>

#define MF_MAX_SRC 8
#define MF_NAME_LEN 64

/* What a node is for; decides its arena. */
typedef enum mf_role {
  MF_ROLE_ACT = 0,   /* transient activation / backward temporary: ACT arena, reused by liveness */
  MF_ROLE_INPUT,     /* data staging buffer: DATA arena */
  MF_ROLE_PARAM,     /* f32 master parameter: PARAM arena */
  MF_ROLE_PARAM_LP,  /* low-precision copy of a parameter: PARAM_LP arena */
  MF_ROLE_BUFFER,    /* persistent state gradients do not train (bn running stats, mf_state...): STATE arena */
  MF_ROLE_GRAD,      /* f32 accumulated gradient of a parameter: GRAD arena */
  MF_ROLE_STATE_LP,  /* low-precision copy of an EMA average (op PARAM_LP, master = the average): STATE arena */
} mf_role;

/* What a state leaf (MF_ROLE_BUFFER) is; decides how the session updates and checks it (src/graph/state.c). */
typedef enum mf_state_kind {
  MF_STATE_BUFFER = 0, /* mf_buffer: the ops update it (bn running stats); checkpoint key "buffer.<name>" */
  MF_STATE_PLAIN,      /* mf_state: the caller updates it (mf_session_write_state) */
  MF_STATE_EMA,        /* mf_ema: link = the parameter's f32 master, fp[0] = momentum */
  MF_STATE_RING,       /* mf_ring: link = its position */
  MF_STATE_RING_POS,   /* i32 [1] write position of a ring: link = the ring, ip[0] = the pushed tensor (-1: none),
                          ip[1] = micro-steps per push (mf_ring_push_steps), ip[2] = its stage (-1: none) */
  MF_STATE_RING_STAGE, /* [(steps-1)*B, cols] keys of a step's earlier micro-steps: link = the ring's position */
  MF_STATE_MASK,       /* mf_active_mask */
} mf_state_kind;

/* Where a node runs in the training step. */
typedef enum mf_phase { MF_PHASE_FWD = 0, MF_PHASE_BWD, MF_PHASE_RECOMPUTE } mf_phase;

typedef struct mf_node {
  int op;                         /* MF_OP_* (ops/ops.h) */
  int ndim;
  int64_t ne[MF_MAX_DIMS];        /* shape, outermost first: (N,C,H,W) */
  mf_dtype dtype;
  int nsrc;
  int src[MF_MAX_SRC];            /* input node ids */
  int32_t ip[8];                  /* integer op parameters */
  double fp[4];                   /* real op parameters */
  uint8_t role, phase;
  uint8_t impl;                   /* the kernel implementation the planner chose for it (backend-specific, e.g. a CPU conv
                                     on oneDNN or on memfit's GEMM algorithms: backend.h choose); 0: none chosen */
  int16_t impl_threads;           /* threads that implementation was prepared for (a oneDNN primitive's team), or Winograd's tile side (2, 4); 0: any */
  int seg;                        /* recompute segment that built it, -1 if none */
  int grad;                       /* PARAM / PARAM_LP: id of its GRAD node (-1 if none yet) */
  int master;                     /* PARAM_LP: its f32 master; GRAD: its PARAM */
  int init; double init_scale;    /* PARAM / BUFFER initialisation */
  int group;                      /* PARAM: optimizer parameter group (mf_param_group_set), 0 by default */
  uint8_t state_kind;             /* BUFFER role: an mf_state_kind */
  int link;                       /* BUFFER role: see mf_state_kind; PARAM: its mask (mf_mask_rows); -1 none */
  bool requires_grad;             /* depends on a parameter */
  char name[MF_NAME_LEN];
} mf_node;

typedef struct mf_segment {
  char name[MF_NAME_LEN];
  int first, last;                /* node id range built inside the segment */
  int n_in, n_out;
  int ins[MF_MAX_SRC], outs[MF_MAX_SRC];
  mf_inverse_fn inverse;
  void *ctx;
} mf_segment;

struct mf_graph {
  mf_node *nodes;
  int n, cap;
  mf_dtype act_dtype;             /* storage dtype of activations and weight copies */
  mf_segment *segs;
  int nseg, segcap;
  int open_seg;                   /* -1 when no segment is open; autodiff sets it to tag backward nodes */
  int build_phase;                /* mf_phase given to new nodes (autodiff sets MF_PHASE_BWD) */
  int n_fwd;                      /* nodes [0, n_fwd) are the forward graph (set by autodiff) */
  int fuse_conv_act;              /* set by the planner on its copy: conv -> ReLU pairs are fused (plan/fuse.c), those an
                                     inverse builds too */
  int fuse_norm_act;              /* set by the planner on its copy before that pass: norm -> ReLU pairs fuse as well */
  /* set by the planner on its copy (plan/concat.c; NULL: off): per node id < cat_n, the concat whose buffer stores the
   * node (-1: its own storage) and its byte offset there; cat_stored: nodes stored inside another's buffer */
  int *cat_root;
  size_t *cat_off;
  int cat_n, cat_stored;
  uint64_t seed;
  char err[512];
};

static inline mf_node *mf_node_at(const mf_graph *g, int id) { return &g->nodes[id]; }
int64_t mf_node_numel(const mf_node *n);
size_t mf_node_bytes(const mf_node *n);
/* "[2,3,4,5]" */
void mf_shape_str(const mf_node *n, char *buf, size_t len);
bool mf_shape_eq(const mf_node *a, const mf_node *b);

/* The state leaf (MF_ROLE_BUFFER) behind t, an EMA's low-precision copy standing for its average; else -1. */
int mf_state_node(const mf_graph *g, mf_tensor t);
/* Appends a node; returns its id, or -1 (with g->err set) on a bad src or a sticky error. */
int mf_graph_add(mf_graph *g, int op, mf_dtype dt, int ndim, const int64_t *ne, int nsrc, const int *src);
/* Records a build error (first one wins) naming the op; returns -1. */
int mf_graph_fail(mf_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when every id is valid and no error is recorded; otherwise records one. */
bool mf_graph_check_srcs(mf_graph *g, const char *opname, int nsrc, const int *src);

#endif

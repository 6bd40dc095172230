/* ops.h — the op registry. One line in MF_OP_LIST (graph/oplist.h) per op; its shape rules, gradient
 * rule and FLOP count live in src/ops/<family>.c, its kernels in src/backend/<backend>/<family>.c. */
#ifndef MF_OPS_H
#define MF_OPS_H

#include "graph/graph.h"
#include "graph/oplist.h"


enum { MF_BIN_ADD = 0, MF_BIN_SUB, MF_BIN_MUL, MF_BIN_DIV };
enum { MF_SCALAR_ADD = 0, MF_SCALAR_MUL };
enum { MF_UN_EXP = 0, MF_UN_LOG, MF_UN_SIGMOID, MF_UN_TANH, MF_UN_RELU, MF_UN_LEAKY, MF_UN_SILU, MF_UN_CLAMP,
       MF_UN_SQRT, MF_UN_ERF, MF_UN_GELU };
enum { MF_LOSS_MSE = 0, MF_LOSS_L1 };
enum { MF_NORM_BATCH = 0, MF_NORM_GROUP };
enum { MF_POOL_AVG = 0, MF_POOL_MAX };

typedef struct mf_op_def {
  const char *name;
  /* Builds the backward nodes of node `id` given dy (gradient of its output), writing into dx[i]
   * the gradient of src i, or -1 where src i gets none. NULL: not differentiable. */
  int (*grad)(mf_graph *g, int id, int dy, int *dx);
  /* Multiply-adds x2 etc. for one execution; NULL means one flop per output element. */
  double (*flops)(const mf_graph *g, const mf_node *n);
  /* Node kernel reads its own output before writing (accumulates): output must not alias. */
} mf_op_def;

#define MF_OP_DECL(E, n) extern const mf_op_def mf_op_def_##n;
MF_OP_LIST(MF_OP_DECL)
#undef MF_OP_DECL

const mf_op_def *mf_op_get(int op);
double mf_node_flops(const mf_graph *g, const mf_node *n);

static inline bool mf_wants_grad(const mf_graph *g, int id) { return id >= 0 && g->nodes[id].requires_grad; }
/* mf_detach is a RESHAPE to the same shape with ip[MF_IP_DETACH] = 1 and requires_grad false: no new
 * kernel; the planner aliases it to its source (plan.c), so it costs no copy and no memory. */
#define MF_IP_DETACH 7
static inline bool mf_node_is_detach(const mf_node *n) { return n->op == MF_OP_RESHAPE && n->ip[MF_IP_DETACH]; }
/* Builds a node of op `op` with the shape of node `like`. */
int mf_node_like(mf_graph *g, int op, int like, int nsrc, const int *src);

/* Internal builders used by gradient rules (public builders are in memfit.h). */
int mf_unary_bwd(mf_graph *g, int kind, int x_or_y, int dy, double p0, double p1);
int mf_slice_bwd(mf_graph *g, int dy, int full_like, int axis, int64_t start);
int mf_reduce(mf_graph *g, int x, unsigned mask, int keepdim, double scale);
int mf_expand(mf_graph *g, int x, int like, double scale);
/* Sums dy over the axes where `like` has size 1 but dy does not (gradient of broadcasting). */
int mf_sum_to(mf_graph *g, int dy, int like);
int mf_conv2d_bwd_data(mf_graph *g, int dy, int w, int x_like, int stride, int pad, int groups);
int mf_conv2d_bwd_weight(mf_graph *g, int x, int dy, int w_like, int stride, int pad, int groups);
int mf_loss_bwd(mf_graph *g, int pred, int target, int dl, int kind, int sum);
int mf_softmax_ce_bwd(mf_graph *g, int logits, int labels, int dl);
int mf_pool_bwd(mf_graph *g, int x, int dy, const mf_node *pool);
int mf_upsample_bwd(mf_graph *g, int dy, int x_like, int factor);
/* VQGAN's adaptive GAN weight (ops/adaptive.c): x's value; its gradient dy * lambda, lambda = factor * weight *
 * clamp(rec_norm / (|conv2d_bwd_weight(h, dy)| / seed + 1e-4), 0, max), the lambda node id left in ip[2];
 * lam_state (a state [1], or -1) receives lambda at each backward. */
int mf_adaptive_tap(mf_graph *g, int x, int h, int w, int rec_norm, int factor, int lam_state, int stride, int pad, double weight,
                    double max);

#endif

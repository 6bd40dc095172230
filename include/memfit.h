/* memfit.h — the public API of libmemfit: build a training step as a static graph,
 * plan its memory exactly before allocating anything, then train inside that plan.
 *
 * Usage (a two-layer regression net; error checks shortened):
 *
 *   mf_graph *g = mf_graph_init(MF_F32);                   // activation storage dtype
 *   int64_t xs[2] = {32, 16}, ws[2] = {16, 8}, w2s[2] = {8, 1}, ys[2] = {32, 1};
 *   mf_tensor x  = mf_input(g, "x", 2, xs);                // data: batch 32 x 16 features
 *   mf_tensor y  = mf_input(g, "y", 2, ys);
 *   mf_tensor w1 = mf_param(g, "w1", 2, ws, MF_INIT_KAIMING, 0);
 *   mf_tensor w2 = mf_param(g, "w2", 2, w2s, MF_INIT_KAIMING, 0);
 *   mf_tensor h  = mf_relu(g, mf_matmul(g, x, w1, 0, 0));  // [32,8]
 *   mf_tensor loss = mf_mse_loss(g, mf_matmul(g, h, w2, 0, 0), y);
 *   if (mf_graph_error(g)) { fprintf(stderr, "%s\n", mf_graph_error(g)); exit(1); }
 *   mf_train_opts to = mf_train_opts_default();            // AdamW, lr 1e-3
 *   char err[512];
 *   mf_session *s = mf_session_init(g, loss, &to, err, sizeof err);  // plans, then allocates once
 *   mf_plan_print(mf_session_plan(s), stdout);             // bytes per arena, peak op
 *   for (int step = 0; step < 100; step++) {
 *     memcpy(mf_session_input(s, x), xdata, 32*16*4);     // fill staging buffers
 *     memcpy(mf_session_input(s, y), ydata, 32*4);
 *     mf_session_micro_step(s);                            // forward + backward, accumulate
 *     mf_session_update(s);                                // optimizer step
 *   }
 *   mf_session_free(s); mf_graph_free(g);
 */
#ifndef MEMFIT_H
#define MEMFIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MF_MAX_DIMS 5

typedef enum mf_dtype { MF_F32 = 0, MF_F16, MF_BF16, MF_F64, MF_I32, MF_U8, MF_DTYPE_COUNT } mf_dtype;

size_t mf_dtype_size(mf_dtype t);
const char *mf_dtype_name(mf_dtype t);
/* Parses "f32", "f16", "bf16", "f64", "i32", "u8"; returns -1 when unknown. */
int mf_dtype_parse(const char *s);

/* A tensor is an index into its graph; negative means "failed to build" (see mf_graph_error). */
typedef int mf_tensor;
typedef struct mf_graph mf_graph;

typedef enum mf_init { MF_INIT_ZERO = 0, MF_INIT_ONE, MF_INIT_CONST, MF_INIT_UNIFORM, MF_INIT_NORMAL,
                       MF_INIT_KAIMING, MF_INIT_XAVIER } mf_init;

/* ---- graph building (allocates no tensor data) ---- */
mf_graph *mf_graph_init(mf_dtype act_dtype);
void mf_graph_free(mf_graph *g);
/* NULL while all went well; otherwise the first error, naming the op and the shapes. */
const char *mf_graph_error(const mf_graph *g);
void mf_graph_set_seed(mf_graph *g, uint64_t seed);

mf_tensor mf_input(mf_graph *g, const char *name, int ndim, const int64_t *shape);
mf_tensor mf_input_typed(mf_graph *g, const char *name, mf_dtype dt, int ndim, const int64_t *shape);
/* Trainable parameter (f32 master copy; ops see a low-precision copy when act_dtype is f16/bf16).
 * MF_INIT_CONST/UNIFORM/NORMAL use `scale` as value/half-range/std; KAIMING and XAVIER use fan-in/out. */
mf_tensor mf_param(mf_graph *g, const char *name, int ndim, const int64_t *shape, mf_init init, double scale);
/* Non-trainable persistent state (batch-norm running statistics). */
mf_tensor mf_buffer(mf_graph *g, const char *name, int ndim, const int64_t *shape, mf_init init, double scale);

int mf_tensor_ndim(const mf_graph *g, mf_tensor t);
int64_t mf_tensor_dim(const mf_graph *g, mf_tensor t, int axis);
int64_t mf_tensor_numel(const mf_graph *g, mf_tensor t);
mf_dtype mf_tensor_dtype(const mf_graph *g, mf_tensor t);
void mf_tensor_set_name(mf_graph *g, mf_tensor t, const char *name);

/* elementwise (b broadcasts when each of its dims equals a's or is 1) */
mf_tensor mf_add(mf_graph *g, mf_tensor a, mf_tensor b);
mf_tensor mf_sub(mf_graph *g, mf_tensor a, mf_tensor b);
mf_tensor mf_mul(mf_graph *g, mf_tensor a, mf_tensor b);
mf_tensor mf_div(mf_graph *g, mf_tensor a, mf_tensor b);
mf_tensor mf_add_scalar(mf_graph *g, mf_tensor a, double c);
mf_tensor mf_mul_scalar(mf_graph *g, mf_tensor a, double c);
mf_tensor mf_exp(mf_graph *g, mf_tensor a);
mf_tensor mf_log(mf_graph *g, mf_tensor a);
mf_tensor mf_sigmoid(mf_graph *g, mf_tensor a);
mf_tensor mf_tanh(mf_graph *g, mf_tensor a);
mf_tensor mf_relu(mf_graph *g, mf_tensor a);
mf_tensor mf_leaky_relu(mf_graph *g, mf_tensor a, double slope);
mf_tensor mf_silu(mf_graph *g, mf_tensor a);
mf_tensor mf_clamp(mf_graph *g, mf_tensor a, double lo, double hi);
/* shape */
mf_tensor mf_concat(mf_graph *g, int n, const mf_tensor *xs, int axis);
mf_tensor mf_slice(mf_graph *g, mf_tensor a, int axis, int64_t start, int64_t end);
mf_tensor mf_reshape(mf_graph *g, mf_tensor a, int ndim, const int64_t *shape);
mf_tensor mf_permute(mf_graph *g, mf_tensor a, const int *perm);
mf_tensor mf_transpose(mf_graph *g, mf_tensor a, int axis0, int axis1);
/* reductions: axes_mask bit i reduces axis i (0 = all axes -> scalar); keepdim keeps size-1 axes */
mf_tensor mf_sum(mf_graph *g, mf_tensor a, unsigned axes_mask, int keepdim);
mf_tensor mf_mean(mf_graph *g, mf_tensor a, unsigned axes_mask, int keepdim);
/* linear algebra: a [..,M,K] x b [K,N] (trans flags transpose the last two axes) */
mf_tensor mf_matmul(mf_graph *g, mf_tensor a, mf_tensor b, int trans_a, int trans_b);
/* x [N,IN], w [OUT,IN], b [OUT] or -1 -> [N,OUT] */
mf_tensor mf_linear(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b);
/* x [N,C,H,W], w [OC,C/groups,KH,KW], b [OC] or -1 */
mf_tensor mf_conv2d(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b, int stride, int pad, int groups);
/* losses: f32 scalars. mse/l1 reduce with mean (mf_*_sum: sum). labels: i32 [N] */
mf_tensor mf_mse_loss(mf_graph *g, mf_tensor pred, mf_tensor target);
mf_tensor mf_mse_loss_sum(mf_graph *g, mf_tensor pred, mf_tensor target);
mf_tensor mf_l1_loss(mf_graph *g, mf_tensor pred, mf_tensor target);
mf_tensor mf_softmax_ce(mf_graph *g, mf_tensor logits, mf_tensor labels);
/* normalisation: gamma/beta [C]; batch norm keeps running stats in buffers rmean/rvar */
mf_tensor mf_batchnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean,
                       mf_tensor rvar, int training, double momentum, double eps);
mf_tensor mf_groupnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, int groups, double eps);
/* pooling */
mf_tensor mf_avgpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad);
mf_tensor mf_maxpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad);
mf_tensor mf_global_avgpool(mf_graph *g, mf_tensor x); /* [N,C,H,W] -> [N,C] */
mf_tensor mf_upsample_nearest(mf_graph *g, mf_tensor x, int factor);
/* Haar wavelet (DESIGN.md 3.1): [N,C,H,W] -> [N,4C,H/2,W/2], order LL,HL,LH,HH; and inverse */
mf_tensor mf_dwt_haar(mf_graph *g, mf_tensor x);
mf_tensor mf_idwt_haar(mf_graph *g, mf_tensor x);

/* ---- recompute segments ----
 * Nodes built between begin and end form one segment. A checkpoint segment drops its inner
 * activations after forward and recomputes them in backward. An invertible segment also drops
 * its inputs: backward rebuilds them from its outputs with `inverse`, which builds (on the same
 * graph, with the same parameters) the inputs from the outputs. */
typedef void (*mf_inverse_fn)(mf_graph *g, void *ctx, int n_out, const mf_tensor *outs, int n_in,
                              mf_tensor *ins_out);
int mf_segment_begin(mf_graph *g, const char *name);
/* Ends the open segment. `inverse` may be NULL (checkpoint only). Returns the segment id. */
int mf_segment_end(mf_graph *g, int n_in, const mf_tensor *ins, int n_out, const mf_tensor *outs,
                   mf_inverse_fn inverse, void *ctx);
int mf_graph_segment_count(const mf_graph *g);

/* ---- plan ---- */
typedef enum mf_arena_kind { MF_ARENA_PARAM = 0, MF_ARENA_PARAM_LP, MF_ARENA_GRAD, MF_ARENA_OPT,
                             MF_ARENA_ACT, MF_ARENA_DATA, MF_ARENA_COUNT } mf_arena_kind;
const char *mf_arena_name(mf_arena_kind a);

typedef enum mf_recompute { MF_RECOMPUTE_NONE = 0, MF_RECOMPUTE_SELECTED, MF_RECOMPUTE_ALL } mf_recompute;
typedef enum mf_optim_kind { MF_SGD = 0, MF_ADAM, MF_ADAMW } mf_optim_kind;

typedef struct mf_plan_opts {
  mf_optim_kind optim;       /* decides optimizer-state size */
  int training;              /* 0: forward only (evaluation) */
  mf_recompute recompute;    /* NONE, ALL segments, or SELECTED via segment_mask */
  const uint8_t *segment_mask; /* per segment: 0 keep, 1 recompute (invertible segments invert) */
  int invertible;            /* 1: invertible segments rebuild inputs (memory-free backprop) */
  int offload_opt;           /* 1: optimizer state lives in host memory (not counted on device) */
} mf_plan_opts;
mf_plan_opts mf_plan_opts_default(void);

typedef struct mf_plan mf_plan;
mf_plan *mf_plan_init(mf_graph *g, mf_tensor loss, const mf_plan_opts *o, char *err, size_t errlen);
void mf_plan_free(mf_plan *p);
size_t mf_plan_arena_bytes(const mf_plan *p, mf_arena_kind a);
size_t mf_plan_total_bytes(const mf_plan *p);
/* The op at which the activation arena peaks, and whether it is in backward. */
const char *mf_plan_peak_op(const mf_plan *p, int *is_backward);
double mf_plan_flops(const mf_plan *p); /* per micro-step, recompute included */
void mf_plan_print(const mf_plan *p, FILE *f);

/* ---- training session ---- */
typedef enum mf_schedule { MF_SCHED_CONSTANT = 0, MF_SCHED_STEP, MF_SCHED_COSINE } mf_schedule;

typedef struct mf_train_opts {
  mf_plan_opts plan;
  double lr, beta1, beta2, eps, weight_decay, momentum;
  double clip_norm;          /* 0: no clipping */
  mf_schedule schedule;
  int warmup_steps, total_steps, step_every; double step_gamma;
  int accum_steps;           /* micro-steps per update (loss scaled by 1/accum_steps) */
  int loss_scaling;          /* dynamic loss scaling (default on when act dtype is f16) */
  int threads;               /* 0: all cores */
  uint64_t seed;
  int debug_memory;          /* fill arenas with a sentinel and check the high-water after each step */
} mf_train_opts;
mf_train_opts mf_train_opts_default(void);

typedef struct mf_session mf_session;
mf_session *mf_session_init(mf_graph *g, mf_tensor loss, const mf_train_opts *o, char *err, size_t errlen);
void mf_session_free(mf_session *s);
const mf_plan *mf_session_plan(const mf_session *s);
/* Staging buffer of an input (host memory, stored in the input's dtype). */
void *mf_session_input(mf_session *s, mf_tensor input);
/* Runs forward + backward, accumulating gradients. Returns the (unscaled) loss. */
double mf_session_micro_step(mf_session *s);
/* Applies the optimizer; returns 1 if applied, 0 if skipped (f16 overflow). */
int mf_session_update(mf_session *s);
/* Forward only with the evaluation program (batch norm in eval mode unless built otherwise). */
double mf_session_forward(mf_session *s);
/* Copies a tensor's current value as f32 (params, activations still live, grads). Returns 0 on success. */
int mf_session_read(mf_session *s, mf_tensor t, float *dst, size_t n);
int mf_session_write_param(mf_session *s, mf_tensor param, const float *src, size_t n);
/* Gradient of a parameter (f32, accumulated). */
int mf_session_read_grad(mf_session *s, mf_tensor param, float *dst, size_t n);
double mf_session_loss_scale(const mf_session *s);
int64_t mf_session_step(const mf_session *s);
/* Real high-water mark of each arena, as written by the runtime (debug counter). */
size_t mf_session_measured_bytes(const mf_session *s, mf_arena_kind a);
/* Checkpoints (safetensors, written atomically). Return 0 on success, else fill err. */
int mf_session_save(mf_session *s, const char *path, char *err, size_t errlen);
int mf_session_load(mf_session *s, const char *path, char *err, size_t errlen);

/* ---- misc ---- */
/* Parses "4GiB", "6000MiB", "512KiB", "123" (bytes), "1.5GB". Returns -1 on error. */
int64_t mf_parse_bytes(const char *s);
void mf_format_bytes(size_t bytes, char *buf, size_t n);
size_t mf_peak_rss_bytes(void);

#ifdef __cplusplus
}
#endif
#endif

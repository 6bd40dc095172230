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

/* libmemfit.so exports exactly the functions this header declares: the library is built with
 * hidden visibility, and every declaration between here and the end of the header has default
 * visibility (tests/cli_exports.sh checks it). Functions of src/ are internal. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
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
/* Puts a parameter (as mf_param returned it) into optimizer group `group`, 0 .. MF_MAX_PARAM_GROUPS - 1;
 * every parameter starts in group 0. The group's settings are mf_train_opts.groups[group]: its own
 * learning rate, weight decay, betas, momentum and epsilon. Groups add no memory to the plan. Returns 0,
 * or -1 with mf_graph_error naming the tensor and the group. mf_param_group_get: the group, or -1. */
#define MF_MAX_PARAM_GROUPS 8
int mf_param_group_set(mf_graph *g, mf_tensor param, int group);
int mf_param_group_get(const mf_graph *g, mf_tensor param);
/* Non-trainable persistent state of the ops (batch-norm running statistics): f32, in the STATE arena,
 * saved in checkpoints as "buffer.<name>". */
mf_tensor mf_buffer(mf_graph *g, const char *name, int ndim, const int64_t *shape, mf_init init, double scale);

/* ---- persistent state that gradients do not train (docs/design.md 4) ----
 * Every tensor below lives in the STATE arena (planned, whole run), gets no gradient and no optimizer
 * state, and is saved in checkpoints as "state.<name>" (mf_session_load checks its shape and dtype and
 * refuses a missing or mismatched one, naming it). Names must be unique among the states.
 * Errors (bad shape, dtype, operand) are recorded in mf_graph_error, naming the tensor; the call
 * returns -1. */

/* A state of dtype dt (MF_F32, MF_I32, or the graph's activation dtype) initialised like mf_param.
 * The ops may read it; the caller updates it between steps with mf_session_write_state (e.g. VQGAN's
 * EMA codebook sums and counts). */
mf_tensor mf_state(mf_graph *g, const char *name, mf_dtype dt, int ndim, const int64_t *shape, mf_init init, double scale);
/* An exponential moving average of a parameter (as mf_param returned it): same shape, starts equal to
 * the parameter's initial value, and after every applied optimizer update (mf_session_update returning
 * 1) becomes k = momentum*k + (1-momentum)*q, q the parameter's f32 master, computed in f32
 * (0 <= momentum <= 1). Use the returned tensor as an operand like a parameter (MoCo's key encoder):
 * nothing downstream of it gets a gradient unless it also depends on a trained parameter. The average
 * is kept in f32; in bf16/f16 graphs the ops read a low-precision copy (also in the STATE arena)
 * refreshed after each average update, as parameters have; mf_session_read gives the f32 value.
 * mf_session_write_param on the parameter does not move the average (use mf_session_write_state). */
mf_tensor mf_ema(mf_graph *g, const char *name, mf_tensor param, double momentum);
/* A ring buffer [rows, cols] in the activation dtype (zeros at first) with a write position (an i32
 * state saved as "state.<name>.pos"), e.g. MoCo's queue of negatives. The graph may read it like any
 * tensor (logits = matmul(q, queue, 0, 1)). */
mf_tensor mf_ring(mf_graph *g, const char *name, int64_t rows, int64_t cols);
/* Registers that the ring takes the rows of `keys` [B, cols] (same dtype as the ring, any B >= 1) once per
 * optimizer update, all `steps` micro-steps' keys together (steps = the session's accum_steps; MoCo's
 * queue: accumulation does not change the negatives a step reads). Micro-steps 0 .. steps-2 of an update
 * copy their keys into a stage, a state [(steps-1)*B, cols] named "<ring>.stage" (STATE arena, planned,
 * saved in checkpoints; none when steps is 1); after the backward of the last one (so every micro-step of
 * the update reads the ring as it was before the update) the staged keys, then that micro-step's, are
 * copied into the ring at its position in order, wrapping around (rows not a multiple of B, and more keys
 * than the rows left or than the ring, are fine: later rows win), and the position advances by steps*B
 * modulo rows. An update after fewer micro-steps pushes the staged ones; a skipped update (f16 overflow)
 * still pushes (the keys were computed). With phases, phase 0's steps count. The plan keeps `keys` alive
 * to the end of the training step and counts it. Evaluation (mf_session_forward) pushes nothing. One push
 * per ring. mf_session_init refuses a session whose accum_steps differs from steps, naming the ring.
 * Returns 0 or -1 (mf_graph_error: not a ring, keys not [B, cols] of its dtype, steps < 1, a second push). */
int mf_ring_push_steps(mf_graph *g, mf_tensor ring, mf_tensor keys, int steps);
/* mf_ring_push_steps(g, ring, keys, 1): for sessions without accumulation. */
int mf_ring_push(mf_graph *g, mf_tensor ring, mf_tensor keys);

/* ---- models that grow (Image-GS adds Gaussians at fixed steps) ----
 * The plan is made for the final size n_max from the start and growing never changes it. The mask is
 * a state [n_max] in the activation dtype: 1 for the active entries [0, n_active), 0 for the rest;
 * n_initial entries start active. The model multiplies it into what it computes (so inactive entries
 * get zero gradient). Returns the mask, or -1. */
mf_tensor mf_active_mask(mf_graph *g, const char *name, int64_t n_max, int64_t n_initial);
/* Ties a parameter shaped [n_max, ...] (as mf_param returned it) to a mask: mf_session_update leaves
 * its inactive rows exactly as they are (no Adam step, no weight decay: the update covers the active
 * rows only), and mf_session_grow zeroes the new rows' optimizer state and gradient. Returns 0 or -1
 * (mf_graph_error: not a parameter, first axis not n_max, already tied). */
int mf_mask_rows(mf_graph *g, mf_tensor mask, mf_tensor param);

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
/* a^b elementwise (ONNX Pow, torch.pow), with C's pow: a negative base with a non-integer exponent gives NaN, as
 * in ONNX and NumPy; 0^0 = 1. mf_pow: b broadcasts to a; gradients b a^(b-1) for a (0 where b is 0) and a^b ln a
 * for b (0 where a is 0 and b >= 0, as PyTorch; NaN for a negative a), so backward keeps a and b. mf_pow_scalar:
 * a constant exponent p (any finite value; gradient p a^(p-1), keeping a). Same shape and dtype as a; a bad
 * broadcast or a non-finite p is recorded in mf_graph_error and the builder returns -1. */
mf_tensor mf_pow(mf_graph *g, mf_tensor a, mf_tensor b);
mf_tensor mf_pow_scalar(mf_graph *g, mf_tensor a, double p);
mf_tensor mf_exp(mf_graph *g, mf_tensor a);
mf_tensor mf_log(mf_graph *g, mf_tensor a);
mf_tensor mf_sigmoid(mf_graph *g, mf_tensor a);
mf_tensor mf_tanh(mf_graph *g, mf_tensor a);
mf_tensor mf_relu(mf_graph *g, mf_tensor a);
mf_tensor mf_leaky_relu(mf_graph *g, mf_tensor a, double slope);
mf_tensor mf_silu(mf_graph *g, mf_tensor a);
mf_tensor mf_clamp(mf_graph *g, mf_tensor a, double lo, double hi);
/* sqrt (gradient 0.5 / y, from the output: infinite at 0), erf, and GELU in its exact erf form
 * 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's F.gelu, approximate='none'); same shape and dtype as a. */
mf_tensor mf_sqrt(mf_graph *g, mf_tensor a);
mf_tensor mf_erf(mf_graph *g, mf_tensor a);
mf_tensor mf_gelu(mf_graph *g, mf_tensor a);
/* Dropout (PyTorch's nn.Dropout, ONNX Dropout): in a training step each element of x is kept with probability
 * 1 - ratio and scaled by 1 / (1 - ratio), or set to 0; in evaluation (mf_session_forward) it is x. Same shape and
 * dtype as x. The mask is drawn by hashing the session's seed, the update count, the micro-step, the rank and the
 * element's index, so a resumed run draws the same masks, and backward draws it again instead of storing it: it
 * costs no memory in the plan and keeps neither x nor the output for backward. A ratio outside [0, 1] or a
 * non-float x is recorded in mf_graph_error and the builder returns -1. */
mf_tensor mf_dropout(mf_graph *g, mf_tensor x, double ratio);
/* Softmax and log-softmax of x along `axis` (negative counts from the end), same shape and dtype; each row is
 * computed in double after subtracting its maximum, so large inputs do not overflow. Backward keeps the output
 * y (not x): dx = y (dy - <y,dy>), or dy - exp(y) sum(dy). An axis other than the last is moved there and back
 * with transposes (two more activations). Refuses (mf_graph_error naming the shape) a non-float input or an
 * axis outside its dims. */
mf_tensor mf_softmax(mf_graph *g, mf_tensor x, int axis);
mf_tensor mf_log_softmax(mf_graph *g, mf_tensor x, int axis);
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
/* Transposed convolution (PyTorch's ConvTranspose2d, ONNX ConvTranspose; the upsampling layer of decoders): x [N,IC,H,W],
 * w [IC,OC/groups,KH,KW] (PyTorch's layout), b [OC] or -1 -> [N,OC,(H-1)*stride-2*pad+KH+out_pad, ..]. It is the
 * gradient of mf_conv2d with respect to its input, run as a forward op; its own gradients are a conv2d (for x) and a
 * conv2d weight gradient (for w). A shape that does not fit, groups that do not divide IC, or out_pad outside
 * [0, stride) is recorded in mf_graph_error naming the shapes, and the builder returns -1. */
mf_tensor mf_conv_transpose2d(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b, int stride, int pad, int out_pad, int groups);
/* losses: f32 scalars. mse/l1 reduce with mean (mf_*_sum: sum). labels: i32 [N] */
mf_tensor mf_mse_loss(mf_graph *g, mf_tensor pred, mf_tensor target);
mf_tensor mf_mse_loss_sum(mf_graph *g, mf_tensor pred, mf_tensor target);
mf_tensor mf_l1_loss(mf_graph *g, mf_tensor pred, mf_tensor target);
mf_tensor mf_softmax_ce(mf_graph *g, mf_tensor logits, mf_tensor labels);
/* SSIM map of x and y [B,C,H,W] (float, one shape; dtypes may differ) with uniform k x k windows at the valid
 * positions -> [B,C,H-k+1,W-k+1] in x's dtype: entry (i, j) is the SSIM of the windows at rows i..i+k-1, columns
 * j..j+k-1, from their means mx, my, variances vx = E[x^2] - mx^2, vy and covariance cxy = E[xy] - mx my:
 * (2 mx my + C1)(2 cxy + C2) / ((mx^2 + my^2 + C1)(vx + vy + C2)), C1 = 0.01^2, C2 = 0.03^2 (data range 1). One fused
 * op, sums in double: its backward recomputes the window sums from x and y (nothing saved beyond x and y) and gives
 * x's gradient (and y's, the same rule with x and y swapped) in one pass. k outside 1..32 or above H or W, shapes
 * that differ or a non-float input: mf_graph_error naming them, and -1. */
mf_tensor mf_ssim_map(mf_graph *g, mf_tensor x, mf_tensor y, int k);
/* normalisation: gamma/beta [C]; batch norm keeps running stats in buffers rmean/rvar */
mf_tensor mf_batchnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean,
                       mf_tensor rvar, int training, double momentum, double eps);
mf_tensor mf_groupnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, int groups, double eps);
/* L2 normalisation along the last axis: x [..., D] -> x / max(||x||_2, eps), same shape and dtype (PyTorch's
 * F.normalize(x, dim=-1), eps 1e-12 there; MoCo's embeddings). The norm is taken in double per row. Gradient:
 * (dy - y <y,dy>) / ||x||, or dy / eps for a row whose norm is at most eps. Refuses (mf_graph_error naming
 * the shape) a non-float input and eps <= 0. */
mf_tensor mf_l2_normalize(mf_graph *g, mf_tensor x, double eps);
/* pooling */
mf_tensor mf_avgpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad);
mf_tensor mf_maxpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad);
mf_tensor mf_global_avgpool(mf_graph *g, mf_tensor x); /* [N,C,H,W] -> [N,C] */
mf_tensor mf_upsample_nearest(mf_graph *g, mf_tensor x, int factor);
/* How a resize maps output pixel o (of `out` along an axis) to a coordinate in the input (of `in` pixels): ONNX
 * Resize's coordinate_transformation_mode, with scale = out/in as the model gives it (its scales, or sizes / input
 * size). HALF_PIXEL (o+0.5)/scale-0.5; ALIGN_CORNERS o*(in-1)/(in*scale-1), 0 when in*scale <= 1 (ONNX takes the
 * unrounded in*scale); ASYMMETRIC o/scale; PYTORCH_HALF_PIXEL half_pixel, 0 when out is 1; TF_HALF_PIXEL_FOR_NEAREST
 * (o+0.5)/scale (ONNX's tf_half_pixel_for_nn; nearest only). */
typedef enum mf_resize_coord { MF_RESIZE_HALF_PIXEL = 0, MF_RESIZE_ALIGN_CORNERS, MF_RESIZE_ASYMMETRIC, MF_RESIZE_PYTORCH_HALF_PIXEL,
                               MF_RESIZE_TF_HALF_PIXEL_FOR_NEAREST } mf_resize_coord;
/* How a nearest resize rounds that coordinate c (ONNX's nearest_mode): ROUND_PREFER_FLOOR (ONNX's default) the
 * nearest integer, floor(c) at a tie; ROUND_PREFER_CEIL the same, ceil(c) at a tie; FLOOR floor(c); CEIL ceil(c). */
typedef enum mf_resize_round { MF_NEAREST_ROUND_PREFER_FLOOR = 0, MF_NEAREST_ROUND_PREFER_CEIL, MF_NEAREST_FLOOR,
                               MF_NEAREST_CEIL } mf_resize_round;
/* Nearest-neighbour resize of any geometry (ONNX Resize mode nearest; PyTorch's F.interpolate(mode='nearest') is
 * ASYMMETRIC with FLOOR): x [N,C,H,W] -> [N,C,oh,ow]; output pixel (i,j) is input pixel (r(c_h(i)), r(c_w(j))), each
 * coordinate from `coord` with scale_h / scale_w (<= 0: oh/H, ow/W), rounded by `round`, clamped into the image. Up or
 * down, H and W independent. Gradient: each input pixel sums the output gradients of the pixels that copied it (a
 * gather over the monotone index maps: the same sums for any thread count and on CUDA, no atomics). A non-4-D or
 * non-float input, an output size outside 1..2^24 or an unknown mode is recorded in mf_graph_error naming the op and
 * the input's shape, and the builder returns -1. */
mf_tensor mf_resize_nearest(mf_graph *g, mf_tensor x, int64_t oh, int64_t ow, mf_resize_coord coord, mf_resize_round round,
                            double scale_h, double scale_w);
/* Bicubic resize (ONNX Resize mode cubic; PyTorch's F.interpolate(mode='bicubic') is a = -0.75 with PYTORCH_HALF_PIXEL,
 * or ALIGN_CORNERS): x [N,C,H,W] -> [N,C,oh,ow]; along each axis output o reads the 4 input pixels floor(c)-1 ..
 * floor(c)+2 around its coordinate c (`coord`, scales as mf_resize_nearest; edge pixels repeat past the border) with
 * Keys' cubic weights of parameter a (ONNX's cubic_coeff_a); exclude_outside != 0 gives the taps outside the image
 * weight 0 and divides the others by their sum. Computed in double. Gradient: each input pixel gathers the output
 * gradients times the weights they read it with (the same sums for any thread count and on CUDA, no atomics). Errors
 * as mf_resize_nearest's (TF_HALF_PIXEL_FOR_NEAREST is refused). */
mf_tensor mf_resize_cubic(mf_graph *g, mf_tensor x, int64_t oh, int64_t ow, mf_resize_coord coord, double a, int exclude_outside,
                          double scale_h, double scale_w);
/* Haar wavelet (docs/design.md 3.1): [N,C,H,W] -> [N,4C,H/2,W/2], order LL,HL,LH,HH; and inverse */
mf_tensor mf_dwt_haar(mf_graph *g, mf_tensor x);
mf_tensor mf_idwt_haar(mf_graph *g, mf_tensor x);
/* Integer and non-differentiable ops (vector quantisation: codebook look-up, rounding). A shape or
 * dtype error is recorded in mf_graph_error naming the op and the shapes, and the builder returns -1.
 * argmin: x float [.., K, ..] -> i32 indices of the smallest value along `axis` (negative counts from
 * the end), that axis removed ([K] -> [1]); ties give the lowest index, a NaN counts as the smallest
 * (the first NaN wins). The indices carry no gradient. */
mf_tensor mf_argmin(mf_graph *g, mf_tensor x, int axis);
/* table float [K,D], idx i32 [N] -> [N,D]: row n is table[idx[n], :]. The gradient goes to the table
 * (the rows of dy summed into the rows they came from, in row order: the same sums every run, on the
 * CPU for any thread count and on CUDA without atomics), none to idx. An index outside [0, K) at run
 * time is never read: its output row is NaN and the step fails (mf_session_micro_step returns NaN
 * with a message naming the node, the count and the first bad row); in backward it adds nothing. */
mf_tensor mf_gather(mf_graph *g, mf_tensor table, mf_tensor idx);
/* The value of `hard` with the gradient of `soft` (same shape and float dtype): dy goes unchanged
 * to soft, nothing to hard. E.g. quantise with mf_straight_through(g, mf_round(g, x), x). */
mf_tensor mf_straight_through(mf_graph *g, mf_tensor hard, mf_tensor soft);
/* Rounds to the nearest integer, halves to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2); same shape and
 * dtype. It has no gradient of its own: a loss that needs one is refused by planning (wrap it in
 * mf_straight_through). */
mf_tensor mf_round(mf_graph *g, mf_tensor x);
/* Nearest codebook row of each vector (vector quantisation): z float [N,D], codebook float [K,D] ->
 * i32 [N], argmin_k ||z_n - e_k||^2 evaluated as ||e_k||^2 - 2 z_n.e_k (f32 arithmetic, f64 for f64
 * graphs), ties to the lowest k, a row with a NaN distance gives the first NaN's k. The distances are
 * computed for a tile of rows at a time (at most 2^18 distances, in the kernel's planned workspace), so
 * the [N,K] matrix never exists whole. No gradient (use mf_gather and mf_straight_through). Refuses
 * (mf_graph_error naming both shapes) non-float or non-2-D operands, different D, a codebook with 0 rows. */
mf_tensor mf_vq_nearest(mf_graph *g, mf_tensor z, mf_tensor codebook);
/* Scaled dot-product attention, one fused op: q [..., Nq, D], k and v [..., Nk, D] (the same leading
 * axes, e.g. [B, heads]; one float dtype) -> softmax(scale q k^T) v [..., Nq, D], the softmax over the
 * Nk keys; scale 0 means 1/sqrt(D). keep_scores 0: the [Nq, Nk] scores exist only one tile of query rows
 * at a time (at most 2^20 scores, in the kernel's planned workspace) and backward recomputes them;
 * keep_scores 1: the probabilities are an activation [..., Nq, Nk] (in the graph's dtype) that the plan
 * keeps for backward (more memory, less arithmetic). Gradients go to q, k and v. Refuses
 * (mf_graph_error naming the shapes) mismatched shapes or dtypes, empty tensors, a scale below 0. */
mf_tensor mf_attention(mf_graph *g, mf_tensor q, mf_tensor k, mf_tensor v, double scale, int keep_scores);
/* x's values (same shape and dtype) as a constant: no gradient flows back through it, so what is built
 * from it alone needs none (e.g. a discriminator's fake input, D(detach(G(x)))). It costs no memory and
 * no copy: the planner reads x itself wherever the detach is read, and x lives until then. */
mf_tensor mf_detach(mf_graph *g, mf_tensor x);
/* Data parallel (docs/distributed.md): the rows of x from every rank of the job, forward only. x [B,...] (any
 * dtype) -> [ranks * B, ...], rank r's rows at [r*B, (r+1)*B), the same on every rank;
 * with ranks 1 a copy of x. ranks is the job's process count: the plan refuses a graph whose all-gathers are built
 * for another count than mf_plan_opts.ranks (1 when it is 0), and the session runs the collective through its
 * communicator (mf_session_set_comm) at this point of the step, so every rank must run the same program. The
 * output is an activation like any other (its bytes are in the plan). No gradient flows through it: an x that
 * needs one (it depends on a parameter) is refused here (mf_graph_error names x; gather a detached or
 * parameter-free tensor, e.g. MoCo's momentum-encoder keys), as are ranks < 1 and an empty x. */
mf_tensor mf_allgather(mf_graph *g, mf_tensor x, int ranks);

/* ---- Image-GS: an image as 2D Gaussians, drawn by a tile rasteriser (docs/imagegs.md) ----
 * Gaussian n has a position pos[n] (x, y in [0,1] of the image's width and height), inverse scales
 * inv_scale[n] (1/pixels along its two axes), an angle rot[n] (radians) and features feat[n] (C channels).
 * Pixel (row i, column j) sits at (j, i); the centre at (pos_x W, pos_y H); Sigma^-1 = R diag(a^2, b^2) R^T
 * with a, b the inverse scales and R the rotation by rot, sigma = 0.5 d^T Sigma^-1 d, weight w = exp(-sigma).
 * The image is cut in 16x16 tiles; a Gaussian is binned to the tiles its 3-sigma square (radius
 * 3 / min(|a|, |b|) pixels) touches. Each pixel takes the top_k Gaussians of its tile by weight (ties: the
 * lower index first) and its colour is sum_k w_k f_k / (sum_k w_k + 1e-4).
 * Clamps: |a| and |b| are clamped to [3/max_radius, 3/min_radius] (a scale that grows without bound or
 * collapses to 0 is drawn at the clamp; a clamped inverse scale gets no gradient). A Gaussian with a
 * position, inverse scale or angle that is not finite is skipped (drawn nowhere, zero gradient).
 * mf_gauss_raster_stats counts both. A Gaussian with mask 0 is not drawn and gets zero gradient. */
typedef struct mf_raster_opts {
  int width, height;  /* output size in pixels, 1 .. 2^20 each, at most 2^34 pixels */
  int top_k;          /* Gaussians blended per pixel, 1 .. 32 (0: 10, as Image-GS) */
  int keep_topk;      /* 1: the forward keeps the top-K index map (top_k i32 per pixel, an activation the plan
                         counts) for backward; 0: backward selects again (one more pass over the tiles, 0 bytes
                         per pixel kept). Both give the same gradients. */
  double max_radius;  /* pixels (0: 64): the largest 3-sigma radius; bounds the Gaussian-tile pairs */
  double min_radius;  /* pixels (0: 0.001): the smallest */
  int64_t max_pairs;  /* capacity of the Gaussian-tile pair list (0: mf_raster_pair_bound, never exceeded).
                         A smaller capacity plans less memory; a step that would bin more pairs fails with
                         a message naming the op and both counts (never writes past the list). */
  int full_width, full_height; /* mf_gauss_raster_window only: the image pos is normalised to, of which the output
                         (width x height) is a window (0: width and height) */
} mf_raster_opts;
/* pos [N,2], inv_scale [N,2], rot [N,1], feat [N,C] (one float dtype, C 1..64), mask [N] (mf_active_mask)
 * or -1 -> image [C,H,W] in feat's dtype. Gradients go to pos, inv_scale, rot and feat, none to the mask.
 * Planned memory: the op's workspace (the per-Gaussian table, the tile lists of max_pairs i32 and, in
 * backward, 16 fixed chunks of per-Gaussian sums on the CPU) and, with keep_topk, the [H,W,top_k] i32 map.
 * Bad shapes, dtypes or options (and a pair bound over 2^31-1 without max_pairs) are recorded in
 * mf_graph_error naming the op and the setting, and the builder returns -1. */
mf_tensor mf_gauss_raster(mf_graph *g, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor feat, mf_tensor mask,
                          const mf_raster_opts *opts);
/* A window of the image: the output [C,H,W] (opts width x height) holds the pixels (x0 + j, y0 + i) of the image
 * of opts full_width x full_height that pos is normalised to, with (x0, y0) read at run time from origin, an i32 [2]
 * tensor (an input written before each step: one plan serves every window). x0 and y0 must be multiples of 16
 * (the tile size) and >= 0: then every pixel of the window gets exactly the value (and its Gaussians exactly the
 * gradient contributions) it gets in the whole image, which is how an image too large for a budget is trained in
 * tiles whose gradients add up. Pixels outside the full image are 0 and give no gradient. The pair capacity is
 * the window's (mf_raster_pair_bound of the window's size). A bad origin at run time fails the step like a pair
 * overflow (NaN output, a message naming the op and the origin). Errors otherwise as mf_gauss_raster, plus an
 * origin that is not an i32 [2] tensor or a full size outside 1 .. 2^20 (refused, naming the setting). */
mf_tensor mf_gauss_raster_window(mf_graph *g, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor feat, mf_tensor mask,
                                 mf_tensor origin, const mf_raster_opts *opts);
/* Counts of one step for the same Gaussians and options -> i32 [5]: active Gaussians, Gaussians with an
 * inverse scale clamped to 3/max_radius (scale too large, or 0), clamped to 3/min_radius (scale collapsing
 * to 0, or an infinite inverse scale), skipped (not finite), and the Gaussian-tile pairs binned (saturating
 * at 2^31-1). No gradient. Errors as mf_gauss_raster. */
mf_tensor mf_gauss_raster_stats(mf_graph *g, mf_tensor pos, mf_tensor inv_scale, mf_tensor rot, mf_tensor mask,
                                const mf_raster_opts *opts);
/* The most Gaussian-tile pairs n Gaussians can produce with these options: n x the tiles of the largest
 * radius, per axis min(image tiles, floor(2 max_radius / 16) + 2). -1 on bad options (see mf_raster_opts). */
int64_t mf_raster_pair_bound(int64_t n, const mf_raster_opts *opts);

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
/* STATE: persistent tensors gradients do not train (batch-norm statistics, EMA copies, ring buffers,
 * masks, mf_state), with the low-precision copies of EMA averages. */
typedef enum mf_arena_kind { MF_ARENA_PARAM = 0, MF_ARENA_PARAM_LP, MF_ARENA_GRAD, MF_ARENA_OPT,
                             MF_ARENA_ACT, MF_ARENA_DATA, MF_ARENA_STATE, MF_ARENA_COUNT } mf_arena_kind;
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
  int threads;               /* CPU threads the kernels use (workspace depends on it); 0: all cores */
  const char *backend;       /* "cpu" (default) or "cuda" */
  int n_keep;                /* tensors kept alive to the end of the step, readable afterwards */
  const mf_tensor *keep;
  int input_slots;           /* copies of the inputs: 2 lets the next batch arrive during the step
                                (mf_session_stage_inputs); 0: 2 on device backends, 1 on the CPU */
  int ranks;                 /* data-parallel processes training together (0 or 1: one; docs/distributed.md). With
                                more, the plan splits the gradient arena into all-reduce buckets (contiguous views
                                of it: no extra bytes) and notes in which backward step each bucket is final */
  size_t bucket_bytes;       /* gradient bytes per all-reduce bucket (0: 25 MiB, PyTorch DDP's default) */
  int shard_optimizer;       /* with ranks > 1, ZeRO-1: each rank keeps the optimizer state of its slice of the
                                gradient arena only (the arena padded to a multiple of ranks x 64 bytes, cut in
                                equal slices); the OPT arena is the largest slice's, the same on every rank. The
                                step reduce-scatters the gradients after backward, updates the slice, all-gathers
                                the parameters. Not with phases or models that grow */
  int rank;                  /* this process's rank (0 .. ranks-1): which slice its offsets are for */
} mf_plan_opts;
mf_plan_opts mf_plan_opts_default(void);

typedef struct mf_plan mf_plan;
mf_plan *mf_plan_init(mf_graph *g, mf_tensor loss, const mf_plan_opts *o, char *err, size_t errlen);
void mf_plan_free(mf_plan *p);
size_t mf_plan_arena_bytes(const mf_plan *p, mf_arena_kind a);
size_t mf_plan_total_bytes(const mf_plan *p);
/* The op at which the activation arena peaks, and whether it is in backward. */
const char *mf_plan_peak_op(const mf_plan *p, int *is_backward);
double mf_plan_flops(const mf_plan *p); /* per micro-step (of every phase), recompute included */
/* Prints the bytes of each arena, the activation peak and where it is, one line per phase (its
 * activation peak and peak op, and which phase sets the activation arena) when there are several, and
 * how many activation bytes need no gradient (freed at their last forward use, except the ones that
 * weight gradients read). */
void mf_plan_print(const mf_plan *p, FILE *f);

/* ---- budget search: what fits, and what is fastest among what fits ----
 * For a model you build yourself, mf_search plans every setting exactly (micro-batch x accumulation
 * keeping the effective batch, storage precision, graph variant, which segments to recompute or
 * invert, optimizer offload) and ranks those that fit the budget by a cost model measured on the
 * machine (mf_calibrate). It allocates no tensor memory: each candidate is only planned. Example (a
 * small conv net; what fits in 64 MiB):
 *
 *   static int build(mf_graph *g, int variant, int mb, void *ctx, mf_tensor *loss, char *err, size_t n) {
 *     (void)variant; (void)ctx;
 *     int64_t xs[4] = {mb, 3, 64, 64}, ws[4] = {16, 3, 3, 3}, w2s[4] = {3, 16, 3, 3};
 *     mf_tensor x = mf_input(g, "x", 4, xs);
 *     mf_segment_begin(g, "body");                              // a unit the search may recompute
 *     mf_tensor h = mf_relu(g, mf_conv2d(g, x, mf_param(g, "w", 4, ws, MF_INIT_KAIMING, 0), -1, 1, 1, 1));
 *     mf_tensor y = mf_conv2d(g, h, mf_param(g, "w2", 4, w2s, MF_INIT_KAIMING, 0), -1, 1, 1, 1);
 *     mf_segment_end(g, 1, &x, 1, &y, NULL, NULL);
 *     *loss = mf_mse_loss(g, y, x);
 *     if (mf_graph_error(g)) { snprintf(err, n, "%s", mf_graph_error(g)); return -1; }
 *     return 0;
 *   }
 *   int main(void) {
 *     mf_model_builder m = {.name = "mynet", .effective_batch = 32, .build = build};
 *     mf_search_opts o = mf_search_opts_default();
 *     o.budget = mf_parse_bytes("64MiB");
 *     mf_search_result r;
 *     char err[512], d[256];
 *     if (mf_search(&m, &o, &r, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
 *     if (!r.found) printf("%s\n", r.message);                // nothing fits: what the smallest needs
 *     else { mf_candidate_describe(&r.best, d, sizeof d); printf("best: %s, %zu bytes\n", d, r.best.device_bytes); }
 *     // to train it: build the graph for r.best (variant, micro_batch, dtype), then
 *     // mf_train_opts t = mf_train_opts_default(); mf_candidate_apply(&r.best, &t.plan); t.accum_steps = r.best.accum;
 *     mf_search_result_free(&r);
 *     return 0;
 *   } // end of the search example
 */

/* Figures of the cost model: read from the cache file $XDG_CACHE_HOME/memfit/calibration-BACKEND-tTHREADS.txt
 * (~/.cache/memfit without XDG_CACHE_HOME), or measured (a second or so) and written there when it is
 * missing, corrupt, from another memfit cache version, older than 30 days, or measured on a busy machine
 * more than an hour ago. MEMFIT_CALIBRATION="f32,bf16,f16,bytes[,op_seconds]" overrides (bytes/s for
 * every dtype). Only the ranking of plans depends on these figures, never the memory. */
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
/* Fills c for a backend ("cpu", "cuda") and thread count (0: all cores). Returns 0, or -1 with err
 * (an unknown backend, a failed measurement); mf_search then ranks with nominal figures and says so. */
int mf_calibrate(const char *backend, int threads, mf_calibration *c, char *err, size_t errlen);

/* A model the search can build at any micro-batch. build() builds, on the empty graph g (its
 * activation dtype is the candidate's storage precision), the training graph of one micro-batch of
 * `micro_batch` samples for graph variant `variant` (0 .. n_variants - 1), and sets *loss; it returns
 * 0, or -1 with err filled (the search stops and reports it). Segments (mf_segment_begin/end) are
 * what the search may recompute or invert. build may be called many times; release(ctx), when given,
 * is called after each built graph is freed (to free what an inverse function used). */
typedef struct mf_model_builder {
  const char *name;                   /* for messages */
  int effective_batch;                /* samples per optimizer update: micro_batch x accumulation */
  int n_variants;                     /* graph structures to choose between (0 means 1) */
  const char *const *variant_names;   /* n_variants names (NULL: "variant K") */
  int (*build)(mf_graph *g, int variant, int micro_batch, void *ctx, mf_tensor *loss, char *err, size_t errlen);
  void *ctx;
  void (*release)(void *ctx);         /* optional */
  /* optional: 0 when the model accepts this micro-batch, -1 with why (e.g. batch norm needs 2) */
  int (*batch_ok)(int micro_batch, void *ctx, char *why, size_t n);
  /* optional: host bytes of the data loader's staging buffers at this micro-batch (reported only) */
  size_t (*staging_bytes)(int micro_batch, void *ctx);
  /* optional: micro-steps one optimizer update of this variant and micro-batch takes (e.g. the image tiles a
   * variant cuts one image into, each a micro-step whose gradients add up); the candidate's accumulation, which
   * multiplies its predicted step time. NULL: effective_batch / micro_batch. A value < 1 is refused by mf_search. */
  int (*micro_steps)(int variant, int micro_batch, void *ctx);
  /* optional: a variant known to run faster than `variant` at the same micro-batch and precision, or -1 (e.g.
   * Image-GS's top-K map kept instead of recomputed: one selection pass less, which the cost model does not see).
   * The search takes it over `variant` whenever it fits, whatever the cost model predicts, and says so in the
   * chosen candidate's note (or, when it does not fit, what it would need). NULL: the cost model decides alone. */
  int (*preferred_variant)(int variant, void *ctx);
  /* optional: device bytes the run holds at the same time as the training step but outside its plan (MoCo: the
   * eval-mode feature pass of its kNN monitor and model file), for these threads and backend; counted in every
   * candidate's device_bytes, so the budget leaves room for them. *what (may be NULL) names them. */
  size_t (*side_bytes)(void *ctx, int threads, const char *backend, const char **what);
} mf_model_builder;

typedef struct mf_search_opts {
  int64_t budget;            /* device bytes the plan must fit (0: no limit) */
  int64_t host_budget;       /* host bytes for offloaded optimizer state (0: no limit) */
  const char *backend;       /* "cpu" (default) or "cuda" (planning needs no device) */
  int threads;               /* 0: all cores */
  unsigned dtypes;           /* bit per mf_dtype allowed (f32/bf16/f16); default f32 and bf16; 0: f32 only */
  int allow_offload;         /* try optimizer state in host memory (device backends) */
  int fixed_micro_batch;     /* > 0: only this micro-batch */
  int fixed_variant;         /* >= 0: only this variant (default -1) */
  int fixed_mode;            /* -1 (default): search; 0: store all; 1: recompute all (invert where possible) */
  mf_optim_kind optim;       /* the optimizer (decides the optimizer-state memory); default AdamW */
  int ranks;                 /* data parallel: processes training together (0 or 1: one); plans are per rank */
  int shard;                 /* with ranks > 1: 0 unsharded only, 1 also try ZeRO-1 (mf_plan_opts.shard_optimizer)
                                where the model allows it, 2 ZeRO-1 only */
} mf_search_opts;
mf_search_opts mf_search_opts_default(void);

#define MF_SEARCH_MAX_SEG 512
typedef struct mf_candidate {
  int variant, micro_batch, accum;
  char variant_name[48];
  mf_dtype dtype;
  int invertible, offload;
  int shard_ranks;           /* > 1: ZeRO-1, the optimizer state sharded over this many ranks; 0: not sharded */
  int n_seg, n_recomputed;
  uint8_t mask[MF_SEARCH_MAX_SEG];  /* per segment: 1 recompute (invert when invertible) */
  size_t arena[MF_ARENA_COUNT];
  size_t device_bytes;       /* what must fit the budget: the plan's total (mf_plan_total_bytes) plus the
                                backend's fixed overhead (0 on the CPU) plus side_bytes */
  size_t side_bytes;         /* of those, the model's side_bytes (held besides the training step's plan) */
  const char *side_what;     /* what they are (the model's side_bytes *what), or NULL */
  size_t staging_bytes;      /* loader's host staging buffers (mf_model_builder.staging_bytes) */
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
  char message[400];         /* found = 0: that nothing fits the budget and what the smallest setting needs */
} mf_search_result;
/* Searches the settings of model m (see above). Returns 0 with r filled (found = 0 when nothing fits
 * the budget: r->smallest and r->message say what the least memory is), or -1 with err (a bad option,
 * a build error, nothing could be planned); free r with mf_search_result_free after a 0. */
int mf_search(const mf_model_builder *m, const mf_search_opts *o, mf_search_result *r, char *err, size_t errlen);
void mf_search_result_free(mf_search_result *r);
/* "micro-batch 2 x 16 accumulation, bf16, <variant name>, 10/20 segments recomputed" */
void mf_candidate_describe(const mf_candidate *c, char *buf, size_t n);
/* Sets a plan's recompute, segment mask, invertible, offload and ZeRO-1 (ranks, shard_optimizer) choices from a candidate (the mask
 * points into c: c must outlive the options). The graph must be the candidate's (variant, micro-batch,
 * dtype); the optimizer and the threads are the caller's; a session also needs accum_steps = c->accum. */
void mf_candidate_apply(const mf_candidate *c, mf_plan_opts *po);

/* ---- phases: several losses of one graph per optimizer step ----
 * A training step may have phases (e.g. a GAN's generator and discriminator steps): each is one scalar
 * loss of the same graph (the parameters are shared) with its own backward, and trains the parameter
 * groups in its mask. Parameters outside them get no gradient in that phase (no weight-gradient op is
 * built for them), but the gradient flows through their activations to the trained ones; through a
 * mf_detach nothing flows. One plan covers the whole step: the persistent arenas once (a parameter has
 * a gradient and optimizer state only when some phase trains it) and one activation arena sized for the
 * largest phase, in which each phase's program has its own offsets. Activations that need no gradient
 * in a phase (after a detach, or computed only from inputs and parameters it does not train) are freed
 * at their last forward use unless a weight gradient reads them. */
#define MF_MAX_PHASES 8
typedef struct mf_phase_opts {
  const char *name;          /* for the plan and messages (NULL: "phase K") */
  mf_tensor loss;            /* a scalar tensor of the graph */
  unsigned groups;           /* bit k: this phase trains parameter group k (mf_param_group_set); 0: every group */
} mf_phase_opts;
/* Plans n_phases (1 .. MF_MAX_PHASES) phases. NULL with err naming the phase when: a loss is not a
 * scalar tensor of the graph; its mask names a group above MF_MAX_PARAM_GROUPS - 1 or a group with no
 * parameter; (training plans) its loss depends on no parameter of its groups other than through a
 * detach. The graph must not have been differentiated (mf_autodiff). With one phase of mask 0 it plans
 * what mf_plan_init plans. */
mf_plan *mf_plan_init_phases(mf_graph *g, int n_phases, const mf_phase_opts *ph, const mf_plan_opts *o, char *err,
                             size_t errlen);
int mf_plan_phase_count(const mf_plan *p);  /* 1 for mf_plan_init */
const char *mf_plan_phase_name(const mf_plan *p, int k); /* NULL when k is out of range */
/* Activation bytes phase k's program touches (the ACT arena is the largest of these and of the forward
 * program); *peak_op (may be NULL) gets the op where it peaks. 0 (and NULL) when k is out of range or
 * the plan is not for training. */
size_t mf_plan_phase_peak(const mf_plan *p, int k, const char **peak_op);

/* ---- training session ---- */
/* PLATEAU: reduce-on-plateau (PyTorch's ReduceLROnPlateau, mode "min", relative threshold), driven by
 * mf_session_report_metric; warm-up applies before it as with the others. */
typedef enum mf_schedule { MF_SCHED_CONSTANT = 0, MF_SCHED_STEP, MF_SCHED_COSINE, MF_SCHED_PLATEAU } mf_schedule;

/* One optimizer parameter group (mf_param_group_set). Its learning rate follows the run's schedule
 * (warm-up, step, cosine, plateau) scaled to its own base lr; min_lr is its floor under PLATEAU only.
 * The optimizer kind (mf_plan_opts.optim) is the run's: it decides the optimizer-state memory. */
typedef struct mf_param_group_opts {
  const char *name;          /* for messages (NULL: "group N") */
  double lr, beta1, beta2, eps, weight_decay, momentum, min_lr;
} mf_param_group_opts;

typedef struct mf_train_opts {
  mf_plan_opts plan;
  double lr, beta1, beta2, eps, weight_decay, momentum;
  double clip_norm;          /* 0: no clipping */
  mf_schedule schedule;
  int warmup_steps, total_steps, step_every; double step_gamma;
  /* PLATEAU: after more than plateau_patience reports in a row without a value below
   * best * (1 - plateau_threshold), every group's lr is multiplied by plateau_factor (0 < factor < 1),
   * never below its min_lr (group 0: plateau_min_lr); the count then starts again. */
  double plateau_factor, plateau_threshold, plateau_min_lr; int plateau_patience;
  /* Parameter groups: group 0 always takes lr, beta1, ... and plateau_min_lr above (groups[0] is
   * ignored); groups 1 .. n_groups - 1 take groups[k], which mf_train_opts_default fills with the same
   * defaults as the fields above. A parameter in a group >= n_groups is refused by mf_session_init. */
  int n_groups;              /* 1 (default; 0 means 1) .. MF_MAX_PARAM_GROUPS */
  mf_param_group_opts groups[MF_MAX_PARAM_GROUPS];
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
/* Points an input at caller-owned memory (e.g. a data loader's staging buffer, which must hold the
 * input's dtype and stay valid through the next micro-step) so the step reads it without a copy;
 * NULL goes back to the session's own staging buffer. CPU backend only; returns 0 on success. */
int mf_session_bind_input(mf_session *s, mf_tensor input, void *data);
/* Converts n floats into an input's staging buffer (any input dtype). Returns 0 on success. */
int mf_session_write_input(mf_session *s, mf_tensor input, const float *src, size_t n);
/* Queues the next micro-batch: n inputs, each with numel f32 values at data[i], for the next
 * micro-step (or forward) that has not yet taken a batch. On a device backend the copy starts now on a
 * stream of its own into the plan's second input slot (mf_plan_opts.input_slots) and runs while the
 * current step computes, so stage batch i+1 before running step i; from page-locked memory (the
 * backend's host_alloc, as the data loader uses) it is truly asynchronous. On the CPU the step reads
 * f32 data in place. At most two batches wait at a time; data must stay unchanged until the step that
 * takes it returns. A staged input serves one step: the next step needs it staged (or written) again,
 * and refuses to run otherwise; inputs never staged keep what mf_session_write_input put there
 * (which refuses an input while a staged batch for it waits).
 * Typical loop:   stage(b0);  for i: { stage(b[i+1]) if any;  micro_step();  release(b[i]); }
 * Returns 0, or -1 with a message naming the input. */
int mf_session_stage_inputs(mf_session *s, int n, const mf_tensor *inputs, const float *const *data);
/* Runs forward + backward, accumulating gradients. Returns the (unscaled) loss, or NaN with a message
 * on stderr when the step could not run (a spent staged input, a device error, a session of several
 * phases: use mf_session_phase_step). */
double mf_session_micro_step(mf_session *s);
/* Applies the optimizer; returns 1 if applied, 0 if skipped (f16 overflow), -1 on a device error (or a
 * session of several phases: use mf_session_phase_update). */
int mf_session_update(mf_session *s);

/* A session whose step has phases (mf_plan_init_phases for the plan and its errors; a phase's mask may
 * not name a group at or above o->n_groups). Each phase's groups take their settings from o->groups as
 * usual. Typical step (GAN):
 *   mf_session_phase_step(s, GEN);  mf_session_phase_update(s, GEN);
 *   mf_session_phase_step(s, DISC); mf_session_phase_update(s, DISC);
 * mf_session_init is the one-phase case; mf_session_micro_step/update serve one-phase sessions only. */
mf_session *mf_session_init_phases(mf_graph *g, int n_phases, const mf_phase_opts *ph, const mf_train_opts *o, char *err,
                                   size_t errlen);
/* Forward + backward of phase `phase` (the inputs as for mf_session_micro_step; a staged batch serves one
 * phase step): adds its gradients to those of its groups' parameters (call it accum_steps times per
 * update to accumulate; the loss is scaled by 1/accum_steps); with no phase step pending since the last
 * updates, all gradients start from zero. Returns the phase's (unscaled) loss, or NaN
 * with a message on stderr (a bad phase index, a spent staged input, a device error). */
double mf_session_phase_step(mf_session *s, int phase);
/* The optimizer on the parameters phase `phase` trains (its groups, frozen groups excepted:
 * mf_session_group_freeze), then zeroes their gradients; every other parameter, its state and gradient,
 * and the other groups' step counts are left as they are. Clipping (clip_norm) uses the norm of this phase's gradients; each group's schedule
 * runs on its own update count (mf_session_group_step), so a group that starts training later starts
 * its warm-up then; mf_session_step becomes the highest count of any group. Returns 1 if applied, 0 if
 * skipped (f16 overflow: the scale is halved and these gradients dropped), -1 on a bad phase index or
 * a device error. The EMA averages (mf_ema) of the parameters it updated follow them; rings
 * (mf_ring_push) take their tensors in phase 0's step only, once per step. */
int mf_session_phase_update(mf_session *s, int phase);
/* Forward only with the evaluation program (batch norm in eval mode unless built otherwise); with phases,
 * of phase 0's loss (and the kept tensors), whose value it returns. */
double mf_session_forward(mf_session *s);
/* Copies a tensor's current value as f32 (params, states, activations still live, grads). Returns 0 on success. */
int mf_session_read(mf_session *s, mf_tensor t, float *dst, size_t n);
int mf_session_write_param(mf_session *s, mf_tensor param, const float *src, size_t n);
/* Gradient of a parameter (f32, accumulated). */
int mf_session_read_grad(mf_session *s, mf_tensor param, float *dst, size_t n);
/* Writes n floats into a state tensor (mf_state, mf_ema, mf_ring, mf_active_mask, mf_buffer), converted
 * to its dtype (i32: rounded toward zero); an EMA's low-precision copy follows. A mask must stay 1 on a
 * prefix and 0 after it (else refused). Read states back with mf_session_read. Returns 0, or -1 with a
 * message on stderr naming the tensor. */
int mf_session_write_state(mf_session *s, mf_tensor state, const float *src, size_t n);
/* Sets the momentum of the EMA average `ema` (as mf_ema returned it), or of every EMA average of the session
 * when ema is -1, for the updates from now on (e.g. MoCo v3's cosine ramp from 0.99 to 1: call it before each
 * update). It is not saved in checkpoints: the caller sets it from the step count (mf_session_step). Returns
 * the number of averages changed, or -1 with a message on stderr (momentum outside [0, 1], not an EMA). */
int mf_session_set_ema_momentum(mf_session *s, mf_tensor ema, double momentum);
/* The write position of a ring (0 .. rows-1), or -1 when `ring` is not one. */
int64_t mf_session_ring_pos(mf_session *s, mf_tensor ring);
/* Active entries of a mask (n_active), or -1 when `mask` is not one. */
int64_t mf_session_active(mf_session *s, mf_tensor mask);
/* Grows a model: entries [old n_active, n_active) of `mask` become active. For each params[i] (tied to
 * this mask with mf_mask_rows; shaped [n_max, r...]) rows [old, n_active) take init_rows[i]
 * ((n_active - old) * r floats, row-major; NULL keeps the rows' current values). Every parameter tied
 * to the mask, listed or not, gets those rows' optimizer state (Adam m and v, SGD momentum) and
 * gradient set to zero, as the reference does; the groups' step counts are untouched. The plan and
 * every arena's size stay the same. Returns 0, or -1 with a message on stderr (n_active below the
 * current count or above n_max, a parameter not tied to the mask) and nothing changed. */
int mf_session_grow(mf_session *s, mf_tensor mask, int64_t n_active, int n_params, const mf_tensor *params,
                    const float *const *init_rows);
double mf_session_loss_scale(const mf_session *s);
int64_t mf_session_step(const mf_session *s);
/* The last update's learning rate (of group 0) and global gradient norm (unscaled, before clipping); 0 before any. */
double mf_session_last_lr(const mf_session *s);
/* The learning rate group `group` had in the last update it took part in (0 before any, -1: no such group). */
double mf_session_group_lr(const mf_session *s, int group);
/* Optimizer updates group `group` has taken: its Adam bias correction counts these (-1: no such group). */
int64_t mf_session_group_step(const mf_session *s, int group);
/* Frozen (1) or not (0): a frozen group's parameters, optimizer state and step count stay as they are in
 * mf_session_update, and its gradients are left out of the global norm (e.g. a discriminator during
 * the generator's step). Not saved in checkpoints: the caller decides it each step. Returns 0 or -1. */
int mf_session_group_freeze(mf_session *s, int group, int frozen);
/* Reports a metric to minimise (e.g. the validation loss) to the PLATEAU schedule. Returns 1 when this
 * report cut the learning rate, 0 when not (also under any other schedule; NaN counts as no improvement).
 * The best value, the count of reports without improvement and the cut so far are saved in checkpoints. */
int mf_session_report_metric(mf_session *s, double value);
/* The PLATEAU state: the multiplier applied so far (1, factor, factor^2, ...), best value and count. */
double mf_session_plateau_scale(const mf_session *s, double *best, int *bad_reports);
double mf_session_last_grad_norm(const mf_session *s);
/* Real high-water mark of each arena, as written by the runtime (debug counter). */
size_t mf_session_measured_bytes(const mf_session *s, mf_arena_kind a);
/* Checkpoints (safetensors, written atomically). Return 0 on success, else fill err. */
int mf_session_save(mf_session *s, const char *path, char *err, size_t errlen);
int mf_session_load(mf_session *s, const char *path, char *err, size_t errlen);
/* Starts a session from the weights of a model file or checkpoint that memfit wrote (fine-tuning, or a
 * longer run from a finished one): every parameter by name ("param.<name>"), dtype and shape, and the
 * batch-norm buffers the file holds. The file must hold exactly this model's parameters; EMA averages
 * restart at the loaded parameters; optimizer state, rings, masks and step counts are left as they are.
 * Returns 0, or -1 with err naming the file and the tensor (the session is unchanged then). */
int mf_session_load_weights(mf_session *s, const char *path, char *err, size_t errlen);
/* mf_session_save plus n_meta metadata strings of the caller's (keys[i] -> values[i]), e.g. the data
 * loader's position (mf_loader_position) so that a resumed run continues the same batches. The keys
 * may not be the session's own ("format", "step", "rng", ...) nor start with "memfit."; err names the
 * key. mf_session_load ignores them. */
int mf_checkpoint_save(mf_session *s, const char *path, int n_meta, const char *const *keys, const char *const *values,
                       char *err, size_t errlen);
/* Reads one metadata string of a checkpoint (validated like mf_session_load) into buf, NUL-terminated.
 * Returns 0, 1 when the checkpoint has no such key, -1 with err naming the file (unreadable, damaged,
 * or the value longer than buflen - 1). */
int mf_checkpoint_meta(const char *path, const char *key, char *buf, size_t buflen, char *err, size_t errlen);

/* ---- ONNX import: a model the user brings (src/onnx/; docs/onnx.md) ----
 * Reads a model exported by torch.onnx.export (opsets 11-17 of the default domain) into a memfit graph:
 * float initializers become trainable parameters (named as in the file), BatchNormalization's running
 * mean and variance become buffers, the graph inputs become inputs of the shapes the caller gives, and
 * Constant nodes and shape arithmetic (Shape, Gather, Concat, Unsqueeze, ... on values known at import)
 * are folded. Each node's output tensor takes the node's name (memfit plan --by-layer shows them).
 * Typical use (error checks shortened):
 *
 *   mf_onnx *m = mf_onnx_open("resnet18.onnx", err, sizeof err);
 *   mf_onnx_shape in = {.name = "input", .ndim = 4, .dims = {8, 3, 224, 224}};
 *   mf_onnx_build_opts bo = {.n_inputs = 1, .inputs = &in, .loss = MF_ONNX_LOSS_CE};
 *   mf_graph *graph = mf_graph_init(MF_F32);
 *   mf_onnx_built b;
 *   mf_onnx_build(m, graph, &bo, &b, err, sizeof err);      // b.loss, b.inputs[], b.labels
 *   mf_session *sess = mf_session_init(graph, b.loss, &to, err, sizeof err);
 *   mf_onnx_load_weights(m, &b, sess, err, sizeof err);     // the file's initializers into the session
 *   ... train ...; mf_onnx_save(m, &b, sess, "trained.onnx", err, sizeof err);
 *   mf_onnx_built_free(&b); mf_session_free(sess); mf_graph_free(graph); mf_onnx_close(m);
 */
typedef struct mf_onnx mf_onnx;
/* The loss appended to the model's first output:
 * CE: softmax cross-entropy of logits [N,K] against an i32 input "labels" [N] (mean over N);
 * MSE: mean squared error against an input "target" of the output's shape;
 * OWN: the output itself, which must hold one element (a model that computes its own loss);
 * NONE: no loss; mf_onnx_built.loss is the first output (for forward-only plans: mf_plan_opts.training 0). */
typedef enum mf_onnx_loss { MF_ONNX_LOSS_CE = 0, MF_ONNX_LOSS_MSE, MF_ONNX_LOSS_OWN, MF_ONNX_LOSS_NONE } mf_onnx_loss;
/* Parses "cross-entropy" (or "ce"), "mse", "own", "none"; -1 when unknown. */
int mf_onnx_loss_parse(const char *s);
/* Opens an ONNX model file and checks it: a protobuf ModelProto with a graph, an opset of the default
 * domain in 11..17, initializers whose data is all there (inline, or in external-data files beside the
 * model). NULL with err naming the file and what is wrong (not ONNX or truncated, the opset, the
 * initializer and its missing or short file); NULL and "built without ONNX support" when memfit was
 * built without protobuf-c. Nothing of the model's data is converted yet. */
mf_onnx *mf_onnx_open(const char *path, char *err, size_t errlen);
/* The same from n bytes in memory (external data is looked for in base_dir; NULL: none allowed). */
mf_onnx *mf_onnx_open_memory(const void *data, size_t n, const char *base_dir, char *err, size_t errlen);
void mf_onnx_close(mf_onnx *m);
/* The default domain's opset version (11..17). */
int64_t mf_onnx_opset(const mf_onnx *m);
/* Graph inputs that are not initializers (the data the model takes), in the file's order: their count,
 * names, and the shape the file declares (*ndim and dims[0..*ndim-1]; a dimension the file leaves
 * symbolic is -1). mf_onnx_input_name gives NULL and mf_onnx_input_shape -1 when i is out of range. */
int mf_onnx_input_count(const mf_onnx *m);
const char *mf_onnx_input_name(const mf_onnx *m, int i);
int mf_onnx_input_shape(const mf_onnx *m, int i, int *ndim, int64_t dims[MF_MAX_DIMS]);
/* Writes one line per node the importer cannot map ("node 12 'name' (OpType): why") to f (NULL: none)
 * and returns their count: ops memfit has no mapping for, and ops of other domains. Attributes that a
 * mapped op does not support (dilations, ceil_mode, ...) show only when building. */
int mf_onnx_unsupported(const mf_onnx *m, FILE *f);

/* An input's shape for mf_onnx_build (a name the model's inputs hold; 1..MF_MAX_DIMS dims). */
typedef struct mf_onnx_shape { const char *name; int ndim; int64_t dims[MF_MAX_DIMS]; } mf_onnx_shape;
typedef struct mf_onnx_build_opts {
  int n_inputs;                 /* shapes given; an input not given takes the file's shape (all dims fixed) */
  const mf_onnx_shape *inputs;
  mf_onnx_loss loss;
  int bn_eval;                  /* 0 (default): BatchNormalization uses batch statistics in training steps and
                                   updates the running ones (evaluation, mf_session_forward, uses the running
                                   ones); 1: running statistics everywhere, no update (a frozen network) */
  int frozen;                   /* 1: a fixed network (e.g. a perceptual loss's features): the file's float
                                   initializers become buffers (no gradient, no optimizer state; mf_onnx_load_weights
                                   writes them) and BatchNormalization runs as with bn_eval 1 */
  const char *name_prefix;      /* NULL, or prepended to the names of the tensors the build makes from the file (a
                                   network beside another model in one graph) */
  const mf_tensor *input_tensors; /* NULL, or one per inputs[] entry: a float tensor of g already built, of the shape
                                   given there, that feeds that input instead of a new graph input; -1: a new input.
                                   A tensor of another shape is an error naming the input */
} mf_onnx_build_opts;
#define MF_ONNX_MAX_IO 16
typedef struct mf_onnx_built {
  mf_tensor loss;               /* see mf_onnx_loss */
  int n_inputs;                 /* the model's data inputs, in its order */
  mf_tensor inputs[MF_ONNX_MAX_IO];
  char input_names[MF_ONNX_MAX_IO][64];
  mf_tensor labels;             /* CE: "labels" i32 [N]; MSE: "target"; else -1 */
  int n_outputs;                /* the model's graph outputs (a value the loss does not need is not computed) */
  mf_tensor outputs[MF_ONNX_MAX_IO];
  int64_t n_params, n_param_elems; /* trainable tensors and their elements */
  void *priv;                   /* what mf_onnx_load_weights needs; freed by mf_onnx_built_free */
} mf_onnx_built;
/* Builds the model's forward graph and its loss on g (whose activation dtype decides the storage
 * precision). Returns 0, or -1 with err naming what is wrong: an input name the model does not have, a
 * shape that conflicts with a dimension the model fixes (axis and both sizes) or has a different rank,
 * an unsupported op or attribute (op type, node name and node index), shapes that do not fit (the node
 * and memfit's own message), a loss the outputs do not allow. On -1 nothing needs freeing but g. */
int mf_onnx_build(const mf_onnx *m, mf_graph *g, const mf_onnx_build_opts *o, mf_onnx_built *out, char *err, size_t errlen);
/* Writes the file's initializer values into a session of the built graph (parameters, buffers, folded
 * constants). Returns 0, or -1 with err naming the tensor (unreadable external data, a size mismatch). */
int mf_onnx_load_weights(const mf_onnx *m, const mf_onnx_built *b, mf_session *s, char *err, size_t errlen);
void mf_onnx_built_free(mf_onnx_built *b);
/* Writes the model to path (atomically: a temporary file renamed) with the session's current values as its
 * initializers: every parameter and batch-norm buffer the build made from the file, in the initializer's own
 * element type (float or double), inline; the graph is unchanged, so PyTorch or ONNX Runtime load the trained
 * weights. A parameter torch's exporter had shared by value through an Identity gets an initializer of its own
 * ("NAME:memfit") feeding that Identity. Returns 0, or -1 with err naming the tensor or the file. */
int mf_onnx_save(const mf_onnx *m, const mf_onnx_built *b, mf_session *s, const char *path, char *err, size_t errlen);
/* What mf_onnx_plan_json plans: input shapes as for mf_onnx_build (the first axis of the first input is the
 * effective batch the budget search splits into micro-batch x accumulation), the loss, and optionally a budget. */
typedef struct mf_onnx_plan_opts {
  int n_inputs;                 /* shapes given (0..MF_ONNX_MAX_IO); an input not given takes the file's shape */
  const mf_onnx_shape *inputs;
  mf_onnx_loss loss;
  int bn_eval;                  /* as mf_onnx_build_opts.bn_eval */
  int64_t budget;               /* device bytes; > 0: also search the fastest settings that fit */
  const char *backend;          /* "cpu" (NULL) or "cuda" (planning needs no device) */
  int threads;                  /* CPU threads the workspaces are sized for (0: all cores) */
  unsigned dtypes;              /* the search's precisions, a bit per mf_dtype (0: f32 and bf16) */
} mf_onnx_plan_opts;
/* The exact plan of one f32 training step of the model at path, as one JSON object written into buf (at most
 * n - 1 bytes and a NUL; buf may be NULL with n 0 to learn the length): "model", "opset", "parameters",
 * "parameter_tensors", "inputs" (name: shape), "loss", "arenas" (name: bytes, as mf_arena_name names them),
 * "total_bytes", "peak_op", "peak_layer" (the ONNX node at the peak), "peak_in_backward"; with a budget also
 * "budget_bytes", "fits" (0/1), "plans_searched", "chosen" (null when nothing fits) and "smallest", each with
 * "settings" (mf_candidate_describe's words), "micro_batch", "accum", "dtype", "recompute_segments", "segments",
 * "invertible", "optimizer_offload", "device_bytes", "arenas", "step_seconds", "peak". The same numbers as
 * `memfit plan MODEL.onnx --input ... [--budget] --json`. Returns the JSON's length (which may be n or more:
 * call again with a larger buf), or -1 with err as mf_onnx_open and mf_onnx_build give it. For bindings
 * (python/memfit) that cannot walk memfit's structs. */
int64_t mf_onnx_plan_json(const char *path, const mf_onnx_plan_opts *o, char *buf, size_t n, char *err, size_t errlen);

/* ---- misc ---- */
/* Parses "4GiB", "6000MiB", "512KiB", "123" (bytes), "1.5GB": units B, KiB/K/k, MiB/M, GiB/G, TiB/T,
 * PiB/P, EiB/E (powers of 1024) and kB/KB, MB, GB, TB, PB, EB (powers of 1000). Returns -1 when the text
 * is not such a size (also NaN, infinity, a negative number), -2 when it is too large (2^63 bytes or more,
 * or more than size_t holds). */
int64_t mf_parse_bytes(const char *s);
void mf_format_bytes(size_t bytes, char *buf, size_t n);
size_t mf_peak_rss_bytes(void);

/* ---- data pipeline ----
 * Datasets (image folder, procedural images, video clips), random transforms and a threaded
 * loader that fills a fixed set of staging buffers (see docs/data.md). Typical use:
 *
 *   char err[512];
 *   mf_dataset *ds = mf_dataset_open_folder("photos", NULL, err, sizeof err);  // or mf_dataset_generated
 *   mf_loader_opts lo = mf_loader_opts_default();
 *   lo.dataset = ds; lo.batch_size = 8; lo.tf.out_w = lo.tf.out_h = 224;
 *   size_t staging = mf_loader_staging_bytes(&lo);         // for the memory plan, allocates nothing
 *   mf_loader *L = mf_loader_init(&lo, err, sizeof err);
 *   for (const mf_batch *b; (b = mf_loader_next(L)); mf_loader_release(L, b))
 *     train_on(b->images, b->n);                           // [B,3,224,224] float32
 *   mf_loader_free(L); mf_dataset_free(ds);
 */
typedef struct mf_dataset mf_dataset;
typedef struct mf_loader mf_loader;

/* Float image, interleaved: data[(y*w + x)*c + ch], values in [0,1]. */
typedef struct mf_image { int w, h, c; float *data; } mf_image;
/* Loads a PNG (1/2/4/8/16-bit, gray/RGB/palette, alpha dropped) or JPEG as c channels (1 or 3).
 * Returns 0, or -1 with err naming the file and the reason. Free with mf_image_free. */
int mf_image_load(const char *path, int c, mf_image *out, char *err, size_t errlen);
/* Decodes PNG/JPEG bytes held in memory (same rules as mf_image_load). */
int mf_image_decode(const void *buf, size_t n, int c, mf_image *out, char *err, size_t errlen);
/* Writes an 8-bit PNG (c = 1 gray, 3 RGB, 4 RGBA) from [0,1] floats (clamped, rounded). */
int mf_image_save_png(const char *path, const float *data, int w, int h, int c, char *err, size_t errlen);
void mf_image_free(mf_image *im);
/* Renders image `index` of the procedural set of `seed` (RGB, w x h): colour fields, edges,
 * shapes, textures and text-like strokes. Deterministic. Returns 0 or -1 (bad size / no memory). */
int mf_image_generate(uint64_t seed, uint64_t index, int w, int h, mf_image *out);

typedef enum mf_split { MF_SPLIT_ALL = 0, MF_SPLIT_TRAIN, MF_SPLIT_VAL } mf_split;
typedef struct mf_folder_opts {
  mf_split split;          /* which part of a hash-of-relative-path split to keep */
  double val_fraction;     /* share of files in the validation split (default 0.1) */
  uint64_t split_seed;     /* mixed into the hash (default 0) */
  int labels;              /* 1: class = first sub-folder under the root (sorted names -> 0..K-1) */
  int quiet;               /* 1: no warnings on stderr (still counted) */
  size_t max_image_bytes;  /* 0: no limit; else images whose whole decoded pixels (width x height x channels x
                              bytes per sample, from the header) exceed it are skipped at open (a memory budget) */
} mf_folder_opts;
mf_folder_opts mf_folder_opts_default(void);

typedef struct mf_video_opts {
  int clip_len;            /* T frames per clip (default 16) */
  int frame_stride;        /* take every k-th frame (default 1) */
  int clip_step;           /* first frames of consecutive clips are this far apart (0: T*stride) */
  mf_split split; double val_fraction; uint64_t split_seed; int labels; int quiet;
} mf_video_opts;
mf_video_opts mf_video_opts_default(void);

/* Recursive folder of PNG/JPEG files. Files that cannot be used are skipped with one warning each
 * and counted; no usable file is an error (NULL, err filled). */
mf_dataset *mf_dataset_open_folder(const char *dir, const mf_folder_opts *o, char *err, size_t errlen);
/* n procedural images of w x h (RGB) from seed. */
mf_dataset *mf_dataset_generated(size_t n, int w, int h, uint64_t seed, char *err, size_t errlen);
/* n procedural clips of `frames` frames of w x h (RGB) from seed: a procedural picture panned at a steady
 * sub-pixel speed with 2-6 textured shapes moving, turning and bouncing over it; the same (seed, index) gives the
 * same clip. Samples are [C,T,H,W] as video folders'. NULL with err on n = 0, a size outside 8..4096 or frames
 * outside 1..4096. */
mf_dataset *mf_dataset_generated_video(size_t n, int w, int h, int frames, uint64_t seed, char *err, size_t errlen);
/* Folder of videos (anything FFmpeg reads) cut into clips; NULL with err when built without FFmpeg. */
mf_dataset *mf_dataset_open_video(const char *dir, const mf_video_opts *o, char *err, size_t errlen);

/* IDX files (MNIST, Fashion-MNIST; Debian's dataset-fashion-mnist installs them under
 * /usr/share/datasets/fashion-mnist). */
typedef struct mf_idx_opts {
  mf_split split;          /* keep a part of a hash-of-image-index split (like mf_folder_opts) */
  double val_fraction;     /* share of images in the validation split (default 0.1) */
  uint64_t split_seed;     /* mixed into the hash (default 0) */
  size_t limit;            /* 0: every image of the split; else the first `limit` of them in file order */
  int num_classes;         /* 0: the largest label + 1; else every label must be below it */
  int quiet;
} mf_idx_opts;
mf_idx_opts mf_idx_opts_default(void);
/* Images from an idx3-ubyte file (magic 0x00000803: N x rows x cols unsigned bytes, big-endian dims)
 * and their labels from an idx1-ubyte file (magic 0x00000801, u8; 0x00000C01, int32, also read) or
 * NULL (unlabelled: labels -1, no classes). Plain or gzip-compressed files alike; everything kept is
 * held in memory (47 MB for Fashion-MNIST's 60,000 training images). Samples are 1-channel 8-bit
 * images of cols x rows that flow through the transforms and the loader like any other (gray is
 * replicated to 3 channels when tf.channels = 3). Classes: 0..K-1 named "0".."K-1", or Fashion-MNIST's
 * ten names ("T-shirt/top" ...) when the images path contains "fashion". mf_dataset_file gives NULL.
 * Returns NULL with err naming the file on: a missing or unreadable file, a wrong magic number
 * (a labels file given as images too), a header whose images or labels the file does not hold
 * (truncated), corrupt gzip data, a labels count unlike the images count, a label outside [0, 256)
 * or not below num_classes, and an empty split. */
mf_dataset *mf_dataset_open_idx(const char *images, const char *labels, const mf_idx_opts *o, char *err, size_t errlen);
/* Opens what a --data option names: a folder (mf_dataset_open_folder with o), or an IDX images file
 * (recognised by its magic number, plain or gzip) with the labels file beside it by the standard naming
 * (PREFIX-images-idx3-ubyte[.gz] -> PREFIX-labels-idx1-ubyte, with or without .gz; unlabelled when
 * absent, an error when o->labels asks for labels). o's split, val_fraction, split_seed and quiet apply
 * to either. NULL with err naming the path on failure; a folder holding train-images-idx3-ubyte[.gz] is
 * refused with a message naming the images file to give instead. */
mf_dataset *mf_dataset_open_path(const char *path, const mf_folder_opts *o, char *err, size_t errlen);
void mf_dataset_free(mf_dataset *d);
size_t mf_dataset_size(const mf_dataset *d);          /* samples (clips for video) */
int mf_dataset_frames(const mf_dataset *d);           /* frames per sample: 1, or T for video */
int mf_dataset_num_classes(const mf_dataset *d);      /* 0 when unlabelled */
const char *mf_dataset_class_name(const mf_dataset *d, int k);
int mf_dataset_label(const mf_dataset *d, size_t i);  /* -1 when unlabelled */
/* Relative path of sample i's file (NULL for generated and IDX). */
const char *mf_dataset_file(const mf_dataset *d, size_t i);
size_t mf_dataset_skipped(const mf_dataset *d);       /* files skipped when opened */

typedef enum mf_crop { MF_CROP_NONE = 0,       /* resize the whole image to out_w x out_h */
                       MF_CROP_CENTER,         /* centre crop (after resize_short if set) */
                       MF_CROP_RANDOM,         /* random crop (after resize_short if set) */
                       MF_CROP_RANDOM_RESIZED  /* random area/aspect crop, resized */ } mf_crop;
typedef enum mf_filter { MF_FILTER_BILINEAR = 0, MF_FILTER_AREA } mf_filter;

typedef struct mf_transform_opts {
  int out_w, out_h;        /* output size (default 224 x 224) */
  int channels;            /* 3 (gray images replicated) or 1 (luma) */
  mf_crop crop;            /* default MF_CROP_RANDOM_RESIZED */
  int resize_short;        /* CENTER/RANDOM: first scale so the shorter side is this (0: no) */
  float scale[2], ratio[2];/* random resized crop: area share (0.08,1), aspect (3/4,4/3) */
  mf_filter filter;        /* resampling filter (antialiased bilinear, or area) */
  float hflip, vflip;      /* probabilities */
  int rot90;               /* 1: rotate by a random multiple of 90 degrees (square output only) */
  float jitter_p;          /* probability of applying colour jitter (default 1) */
  float brightness, contrast, saturation, hue; /* torchvision ColorJitter ranges (0: off) */
  float gray_p;            /* probability of converting to grayscale */
  float blur_p, blur_sigma[2]; /* Gaussian blur probability and sigma range (pixels) */
  float noise_std;         /* additive Gaussian noise (clamped to [0,1]); 0: off */
  int normalize; float mean[3], std[3]; /* (x - mean) / std after everything else */
  int jpeg_draft;          /* 1 (default): let JPEG decode at 1/2, 1/4, 1/8 when the crop is large */
} mf_transform_opts;
mf_transform_opts mf_transform_opts_default(void);   /* no augmentation: resize to 224 x 224 */

/* One sample (views = 1) without threads: writes frames*C*out_h*out_w floats ([C,(T,)H,W]). Returns 0;
 * -2 when the image is readable but smaller than the crop; -1 on any other failure (err says why). */
int mf_dataset_get(mf_dataset *d, size_t i, const mf_transform_opts *t, uint64_t seed, float *out, char *err,
                   size_t errlen);

/* Where a loader stands: the next batch mf_loader_next will return (batches already returned count
 * as taken, released or not). The order of an epoch and every random choice of a sample are functions
 * of (seed, epoch, sample) only, so this is the loader's whole state: a loader started at a position
 * (mf_loader_opts.start) delivers byte-identical batches to one that got there by running. */
typedef struct mf_loader_pos {
  int64_t epoch;           /* epoch of the next batch */
  int64_t batch;           /* its index in that epoch's order (0 .. batches per epoch - 1) */
  uint64_t seed;           /* the loader's seed: the shuffle and augmentation streams */
  uint64_t data_id;        /* hash of the usable samples (paths and sizes, or the generator's seed and
                              size), batch size, drop_last, shuffle, views, transforms and seed; never 0.
                              Worker count and prefetch are not in it: they never change a byte */
} mf_loader_pos;

typedef struct mf_loader_opts {
  mf_dataset *dataset;
  int batch_size;          /* default 8 */
  int workers;             /* threads; 0 = the cores there are */
  int prefetch;            /* ready batches queued ahead (default 2); staging = prefetch+1 buffers */
  int shuffle;             /* new order every epoch (default 1) */
  int drop_last;           /* 1 (default): every batch is full; 0: the last one may be short */
  int views;               /* 1, or 2 independent views of each sample (contrastive learning) */
  uint64_t seed;
  mf_transform_opts tf;
  void *(*alloc)(size_t bytes, void *ctx);   /* staging allocator (default malloc; CUDA: pinned) */
  void (*free)(void *p, size_t bytes, void *ctx);
  void *alloc_ctx;
  int quiet;               /* no warnings on stderr */
  mf_loader_pos start;     /* first batch (default zeros: epoch 0, batch 0). From mf_loader_position:
                              init fails, naming the difference, when the seed or data_id differ. Set
                              by hand (data_id 0): nothing is checked and batch may exceed an epoch
                              (epoch * batches per epoch + batch batches from the beginning). Starting
                              at batch 0 skips the NULL that would have ended the previous epoch */
  int ranks, rank;         /* data parallel (0 or 1: one process): batch_size is the global batch of all ranks and
                              this loader delivers rank's share, the samples at positions rank, rank + ranks, ...
                              of each global batch (batch_size / ranks of them; ranks must divide batch_size and
                              drop_last be 1). Order, augmentation, epochs and mf_loader_pos are those of the
                              global batches, so they do not depend on ranks; data_id does not either */
} mf_loader_opts;
mf_loader_opts mf_loader_opts_default(void);

typedef struct mf_batch {
  float *images;           /* [B,C,H,W]; video [B,C,T,H,W]; with views=2 this is view 0 */
  float *views[2];         /* views[0] == images; views[1]: second view (NULL when views=1) */
  int32_t *labels;         /* [B], -1 when unlabelled */
  const int64_t *indices;  /* [B] dataset sample indices */
  int n;                   /* samples filled (batch_size unless drop_last = 0 and last batch) */
  int64_t epoch, step;     /* step counts batches from epoch 0, batch 0 (including those before opts.start) */
} mf_batch;

/* Exact bytes of staging memory mf_loader_init will allocate through opts->alloc (0 if invalid); with ranks, the
 * share of one rank. */
size_t mf_loader_staging_bytes(const mf_loader_opts *o);
mf_loader *mf_loader_init(const mf_loader_opts *o, char *err, size_t errlen);
/* Next batch in order (blocks while it is being made), or NULL at the end of an epoch (the next
 * call starts the next epoch; its batches are already being prefetched). */
const mf_batch *mf_loader_next(mf_loader *l);
void mf_loader_release(mf_loader *l, const mf_batch *b);
void mf_loader_free(mf_loader *l);
/* Why mf_loader_next returned NULL other than at an epoch end (no sample loadable), else NULL. */
const char *mf_loader_error(const mf_loader *l);
size_t mf_loader_batches_per_epoch(const mf_loader *l);
/* The position of the next batch; save it with a checkpoint and pass it back as opts.start. */
mf_loader_pos mf_loader_position(const mf_loader *l);
typedef struct mf_loader_stats {
  double wait_s;           /* time the consumer spent blocked in mf_loader_next */
  int64_t batches, samples;
  int64_t bad_samples;     /* samples that failed to load and were replaced by the next good one */
  int64_t bad_files;       /* distinct files that failed at load time */
  int64_t skipped_files;   /* files left out when the dataset was opened or the loader started */
  int64_t too_small_files; /* of bad_files + skipped_files, the images smaller than the crop (readable) */
} mf_loader_stats;
mf_loader_stats mf_loader_get_stats(const mf_loader *l);
/* Prints skipped-file counts by reason (also printed at the end of an epoch with new failures). */
void mf_loader_summary(const mf_loader *l, FILE *f);

/* ---- trainer: the one training loop (src/train/trainer.c; docs/trainer.md) ----
 * Drives a session over a data loader: micro-steps and updates, progress lines, --loss-log / --log (JSON lines)
 * records, validation and checkpoints at epoch ends (and every N updates), exact resume (weights, optimizer,
 * schedule and the data position), SIGINT / SIGTERM that finish the update and save first, OUT/report.html.
 * The workload supplies what is its own through hooks. Typical use (error checks shortened):
 *
 *   mf_session *s = mf_session_init(g, loss, &to, err, sizeof err);
 *   mf_loader_opts lo = mf_loader_opts_default();
 *   lo.dataset = ds; lo.batch_size = 32;
 *   mf_trainer_hooks h = {0};
 *   h.feed = my_feed;                 // stages b->images into the graph's inputs (mf_session_stage_inputs)
 *   mf_trainer_opts o = mf_trainer_opts_default();
 *   o.out = "run"; o.epochs = 10; o.samples_per_step = 32;
 *   mf_trainer *t = mf_trainer_init(s, &lo, &o, &h, err, sizeof err);
 *   int status = mf_trainer_run(t);   // 0 done, 1 failed, 128+N stopped by signal N (a checkpoint saved)
 *   mf_trainer_free(t); mf_session_free(s);
 */
typedef struct mf_trainer mf_trainer;
#define MF_MAX_TERMS 8          /* loss terms a workload reports besides the loss */
#define MF_MAX_METRICS 16       /* validation metrics */
#define MF_MAX_DATA_SETTINGS 8

/* A setting that decides which samples the batches hold, saved in each checkpoint under key; on resume a
 * decisive one that differs is refused, naming option (it would change the data order); others are noted.
 * scales_with_ranks: the value is one rank's share of a global quantity (the micro-batch): a data-parallel run of
 * R ranks records value x R, so a run with other ranks and the same global batch resumes it (memfit train). */
typedef struct mf_data_setting { const char *key, *option; char value[64]; int decisive, scales_with_ranks; } mf_data_setting;

typedef struct mf_trainer_hooks {
  void *ctx;                 /* passed to every hook */
  /* Stages one micro-step's inputs from a loader batch (mf_session_stage_inputs); 0, or -1 with err. Required. */
  int (*feed)(void *ctx, mf_session *s, const mf_batch *b, char *err, size_t errlen);
  /* Reads the workload's loss terms (mf_trainer_opts.term_names) after a micro-step into vals. */
  void (*read_terms)(void *ctx, mf_session *s, double *vals);
  /* Progress-line text for the mean terms since the last line (e.g. "hide 31.20 dB  rec 29.80 dB"). */
  void (*describe_terms)(void *ctx, const double *mean_terms, char *buf, size_t n);
  /* Validation: names[i] / vals[i] metrics (at most MF_MAX_METRICS), a one-line summary in line, sample pictures
   * written to sample_path (*samples_failed = 1 when that failed, said on stderr); bad_val[0] / [1] count the
   * validation samples found unreadable / smaller than the crop. Returns the number of metrics (0: none). The first
   * metric is the one to minimise: it goes to mf_session_report_metric (the PLATEAU schedule). */
  int (*validate)(void *ctx, mf_session *s, const char *sample_path, int64_t *bad_val, const char **names, double *vals,
                  char *line, size_t n, int *samples_failed);
  /* After every optimizer update (update = the updates done, 1 after the first): what the workload does between
   * steps, e.g. growing a model at fixed updates (mf_session_grow) or writing state it computes on the host. Must
   * depend on the session's state and `update` only, so a resumed run does the same. 0, or -1 with err. NULL: none. */
  int (*after_update)(void *ctx, mf_session *s, int64_t update, char *err, size_t errlen);
  /* Writes the trained model for inference to path (OUT/model.safetensors); 0, or -1 with err. NULL: none. */
  int (*save_model)(void *ctx, mf_session *s, const char *path, char *err, size_t errlen);
  /* The loss to log for a micro-step (phase `phase`, 0 without phases) whose loss tensor's forward value is `loss`,
   * when the step minimises something its forward cannot compute: VQGAN's generator, whose GAN term is weighted
   * in backward by the adaptive lambda. Called right after that step (its kept tensors and states readable), before
   * the ranks' values are reduced. NaN stops the run as a failed step. NULL: the forward value. */
  double (*step_loss)(void *ctx, mf_session *s, int phase, double loss);
} mf_trainer_hooks;

typedef struct mf_trainer_opts {
  const char *name;          /* messages start "memfit NAME:" ("train steg"; default "train") */
  const char *out;           /* folder: checkpoint.safetensors, model.safetensors, log.jsonl, report.html, samples */
  int epochs;                /* run length in epochs (default 1) unless total_steps > 0 */
  int64_t total_steps;       /* > 0: optimizer updates in all */
  int64_t steps_per_epoch;   /* > 0: updates per epoch (default: one pass over the data, batches / accum) */
  int accum;                 /* micro-steps per update: the session's accum_steps (default 1) */
  int samples_per_step;      /* samples one update trains on, for rates (default 1) */
  const char *sample_unit;   /* "pairs", "images" (default "samples"): "N pairs/s", the --log key "pairs_per_s" */
  double loss_divisor;       /* the progress line shows loss / loss_divisor (e.g. the micro-batch for summed losses) */
  int n_terms;               /* loss terms read by hooks.read_terms, logged after the loss */
  const char *const *term_names;
  unsigned psnr_terms;       /* bit i: term i is a sum of squared errors over values_per_sample values; the report
                                draws it as PSNR */
  const char *resume;        /* checkpoint to continue from (NULL: a new run) */
  const char *init;          /* a new run starting from this model file's weights (mf_session_load_weights; not with resume) */
  int restart_data;          /* with resume: keep weights and optimizer state, start the data order again */
  int64_t stop_after;        /* > 0: stop after this update as if interrupted, with a checkpoint */
  int64_t every;             /* > 0: also save a checkpoint every N updates (default: at epoch ends) */
  int64_t val_every;         /* > 0: also validate every N updates (default: at epoch ends) */
  const char *loss_log;      /* text file: "update loss term..." per update, exact decimals (NULL: none) */
  const char *log;           /* JSON lines (NULL: OUT/log.jsonl): one record per update and validation, a last one */
  double log_every;          /* seconds between progress lines (default 10; < 0: none) */
  int handle_signals;        /* 1: SIGINT / SIGTERM stop after the update with a checkpoint (128 + N returned) */
  int json;                  /* 1: the final summary (how the run ended, updates, seconds, planned vs measured bytes per
                                arena, as the log's end record) is also the last line of standard output, as JSON */
  const char *data_source;   /* --data as given, saved in checkpoints and named in messages */
  int n_data_settings;
  const mf_data_setting *data_settings;
  const char *command;       /* the command line, for the log's start record */
  const char *settings;      /* one line on the run's settings (report) */
  const char *timeline_title;/* title of OUT/timeline.svg */
  double values_per_sample;  /* values per sample image (the report's PSNR of summed squared errors) */
  const char *crop_option;   /* "--size 64": named in the summary of samples smaller than the crop */
  const char *batch_note;    /* after "fewer than the N one micro-batch takes" (e.g. " (N pairs ...)") */
  const char *more_data_hint;/* after "add images, lower --batch" (e.g. " or raise --gen-count") */
  const char *model_use;     /* after the model file's name in "saved ..." lines (e.g. " (for hide/reveal/eval)") */
  const char *model_file;    /* the model file's name in out that hooks.save_model writes (NULL: "model.safetensors") */
} mf_trainer_opts;
mf_trainer_opts mf_trainer_opts_default(void);

/* Opens the loader (with resume, at the checkpoint's data position, refusing changed decisive settings),
 * loads the checkpoint into s, checks the out folder and opens the logs. NULL with err ("said above" when
 * the reason was printed on stderr). The session stays the caller's. */
mf_trainer *mf_trainer_init(mf_session *s, const mf_loader_opts *lo, const mf_trainer_opts *o, const mf_trainer_hooks *h,
                            char *err, size_t errlen);
/* Trains to the end of the run, --stop-after, mf_trainer_stop or a signal. Returns 0 (done, or stopped with a
 * checkpoint), 1 (failed: said on stderr), 2 (stop_after is at or before the checkpoint's update), 128 + N
 * (stopped by signal N after saving a checkpoint). */
int mf_trainer_run(mf_trainer *t);
/* Asks a running trainer to stop after the current update and save a checkpoint (async-signal-safe). */
void mf_trainer_stop(mf_trainer *t);
int64_t mf_trainer_first_step(const mf_trainer *t);     /* the update the run starts at (the checkpoint's) */
int64_t mf_trainer_total_steps(const mf_trainer *t);
int64_t mf_trainer_steps_per_epoch(const mf_trainer *t);
int mf_trainer_epochs(const mf_trainer *t);
mf_loader *mf_trainer_loader(mf_trainer *t);
void mf_trainer_free(mf_trainer *t);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif

/* ops.h — the op registry. One line in MF_OP_LIST (graph/oplist.h) per op; its shape rules, gradient
 * rule and FLOP count live in src/ops/<family>.c, its kernels in src/backend/<backend>/<family>.c. */
#ifndef MF_OPS_H
#define MF_OPS_H

#include "graph/graph.h"
#include "graph/oplist.h"
#include <math.h>


/* POW a^b (C's pow: NaN for a negative a and a non-integer b, as ONNX and NumPy); its gradient's two factors:
 * POW_DA b a^(b-1) (0 where b is 0), POW_DB a^b ln a (0 where a is 0 and b >= 0, as PyTorch) */
enum { MF_BIN_ADD = 0, MF_BIN_SUB, MF_BIN_MUL, MF_BIN_DIV, MF_BIN_POW, MF_BIN_POW_DA, MF_BIN_POW_DB };
enum { MF_SCALAR_ADD = 0, MF_SCALAR_MUL };
enum { MF_UN_EXP = 0, MF_UN_LOG, MF_UN_SIGMOID, MF_UN_TANH, MF_UN_RELU, MF_UN_LEAKY, MF_UN_SILU, MF_UN_CLAMP,
       MF_UN_SQRT, MF_UN_ERF, MF_UN_GELU, MF_UN_POW /* x^fp0, fp0 any constant */ };
enum { MF_LOSS_MSE = 0, MF_LOSS_L1 };
enum { MF_NORM_BATCH = 0, MF_NORM_GROUP };
enum { MF_POOL_AVG = 0, MF_POOL_MAX };
/* The coordinate in the input (of `in` pixels) of output pixel o (of `out`) for mode `mode` (mf_resize_coord in
 * memfit.h), not clamped. CPU and CUDA both use it (host and device). */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline double mf_resize_coord_of(int mode, int64_t o, int64_t in, int64_t out, double scale) {
  if (mode == MF_RESIZE_ALIGN_CORNERS) return in * scale > 1 ? (double)o * (double)(in - 1) / ((double)in * scale - 1) : 0;
  if (mode == MF_RESIZE_ASYMMETRIC) return (double)o / scale;
  if (mode == MF_RESIZE_PYTORCH_HALF_PIXEL && out == 1) return 0;
  if (mode == MF_RESIZE_TF_HALF_PIXEL_FOR_NEAREST) return ((double)o + 0.5) / scale;
  return ((double)o + 0.5) / scale - 0.5;
}
/* The two source indices and the weight of the second one along an axis of `in` pixels for output pixel o of
 * `out`: value = (1-l) v[i0] + l v[i1]; coordinates below 0 or above in-1 take the edge pixel. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline void mf_resize_src(int mode, int64_t o, int64_t in, int64_t out, double scale, int64_t *i0, int64_t *i1, double *l) {
  double x = mf_resize_coord_of(mode, o, in, out, scale);
  if (!(x > 0)) x = 0;
  if (x >= (double)(in - 1)) { *i0 = *i1 = in - 1; *l = 0; return; } /* before the conversion: x may be huge */
  int64_t f = (int64_t)x;
  *i0 = f;
  *i1 = f + 1;
  *l = x - (double)f;
}
/* The input index a nearest resize reads for output o: the coordinate rounded by `round` (mf_resize_round), clamped
 * into [0, in-1]. Nondecreasing in o for every mode, so the outputs that read input i are one run (mf_resize_nearest_first). */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int64_t mf_resize_nearest_src(int mode, int round, int64_t o, int64_t in, int64_t out, double scale) {
  double x = mf_resize_coord_of(mode, o, in, out, scale);
  if (!(x > 0)) return 0; /* NaN too; a negative coordinate rounds to at most 0 */
  if (x >= (double)(in - 1)) return in - 1;
  double f = floor(x), r = x - f;
  int up = round == MF_NEAREST_ROUND_PREFER_FLOOR ? r > 0.5 : round == MF_NEAREST_ROUND_PREFER_CEIL ? r >= 0.5
           : round == MF_NEAREST_CEIL ? r > 0 : 0;
  int64_t i = (int64_t)f + up;
  return i > in - 1 ? in - 1 : i;
}
/* The first output o in [0, out] whose source index is >= i (out when none): outputs [first(i), first(i+1)) read
 * input i. Binary search over the monotone map. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int64_t mf_resize_nearest_first(int mode, int round, int64_t i, int64_t in, int64_t out, double scale) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (mf_resize_nearest_src(mode, round, mid, in, out, scale) >= i) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
/* Cubic resize along an axis (ONNX Resize cubic): output o reads the 4 input pixels f-1 .. f+2 around its coordinate
 * x (f = floor(x), t = x - f; unclamped, so edge pixels repeat past the border) with Keys' weights for cubic_coeff_a
 * `a` (-0.75 as PyTorch's bicubic, -0.5 as TensorFlow's); `excl` (exclude_outside): taps outside [0, in-1] get weight 0
 * and the others are divided by their sum. Writes the 4 clamped indices and weights; returns f. CPU and CUDA. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int64_t mf_resize_cubic_taps(int mode, int64_t o, int64_t in, int64_t out, double scale, double a, int excl, int64_t idx[4],
                                           double wgt[4]) {
  double x = mf_resize_coord_of(mode, o, in, out, scale);
  if (!(x == x)) x = 0;
  if (x < -(double)((int64_t)1 << 40)) x = -(double)((int64_t)1 << 40); /* before the conversion: x may be huge */
  if (x > (double)((int64_t)1 << 40)) x = (double)((int64_t)1 << 40);
  double fl = floor(x), t = x - fl, u = 1 - t;
  int64_t f = (int64_t)fl;
  wgt[0] = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a;
  wgt[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
  wgt[2] = ((a + 2) * u - (a + 3)) * u * u + 1;
  wgt[3] = ((a * (u + 1) - 5 * a) * (u + 1) + 8 * a) * (u + 1) - 4 * a;
  double sum = 0;
  for (int k = 0; k < 4; k++) {
    int64_t i = f - 1 + k;
    if (excl && (i < 0 || i >= in)) wgt[k] = 0;
    sum += wgt[k];
    idx[k] = i < 0 ? 0 : i >= in ? in - 1 : i;
  }
  if (excl && sum != 0)
    for (int k = 0; k < 4; k++) wgt[k] /= sum;
  return f;
}
/* The first output o in [0, out] whose f (mf_resize_cubic_taps) is >= v (out when none): f is nondecreasing in o, so
 * the outputs that read input i (f in [i-2, i+1], or below for i = 0, above for i = in-1) are one run. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int64_t mf_resize_cubic_first(int mode, int64_t v, int64_t in, int64_t out, double scale) {
  int64_t lo = 0, hi = out, idx[4];
  double w[4];
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (mf_resize_cubic_taps(mode, mid, in, out, scale, -0.75, 0, idx, w) >= v) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
/* The run [*o0, *o1) of outputs that read input i, and the weight output o gives input i */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline void mf_resize_cubic_run(int mode, int64_t i, int64_t in, int64_t out, double scale, int64_t *o0, int64_t *o1) {
  *o0 = i == 0 ? 0 : mf_resize_cubic_first(mode, i - 2, in, out, scale);
  *o1 = i == in - 1 ? out : mf_resize_cubic_first(mode, i + 2, in, out, scale);
}
#ifdef __CUDACC__
__host__ __device__
#endif
static inline double mf_resize_cubic_weight(int mode, int64_t o, int64_t i, int64_t in, int64_t out, double scale, double a, int excl) {
  int64_t idx[4];
  double w[4], s = 0;
  mf_resize_cubic_taps(mode, o, in, out, scale, a, excl, idx, w);
  for (int k = 0; k < 4; k++) s += idx[k] == i ? w[k] : 0;
  return s;
}
/* The binary kinds' values (CPU and CUDA; T float or double): a op b */
#ifdef __CUDACC__
#define MF_HD __host__ __device__
#else
#define MF_HD
#endif
static inline MF_HD double mf_pow_da(double a, double b) { return b == 0 ? 0 : b * pow(a, b - 1); }
static inline MF_HD double mf_pow_db(double a, double b) { return a == 0 && b >= 0 ? 0 : pow(a, b) * log(a); }
static inline MF_HD float mf_pow_daf(float a, float b) { return b == 0 ? 0.0f : b * powf(a, b - 1); }
static inline MF_HD float mf_pow_dbf(float a, float b) { return a == 0 && b >= 0 ? 0.0f : powf(a, b) * logf(a); }
#undef MF_HD

/* Dropout's draws: element i of the dropout node whose mask key is `key` is kept in the micro-step of seed `step_seed`
 * when the high 32 bits of a splitmix64 word are >= thr, thr = ratio * 2^32 (mf_dropout_threshold), so it is kept with
 * probability 1 - thr / 2^32 (ratio to within 2^-32). A pure function of (step_seed, key, i): any thread count and
 * both backends draw the same mask, and backward (the same key on dy) or a recompute draws it again instead of
 * storing it. base = mf_dropout_base(step_seed, key) once per kernel; word i = splitmix64's output i of that
 * stream. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline uint64_t mf_dropout_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
#ifdef __CUDACC__
__host__ __device__
#endif
static inline uint64_t mf_dropout_base(uint64_t step_seed, int64_t key) {
  return mf_dropout_mix(step_seed ^ mf_dropout_mix((uint64_t)key * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
}
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int mf_dropout_keep(uint64_t base, int64_t i, uint64_t thr) {
  return (mf_dropout_mix(base + ((uint64_t)i + 1) * 0x9E3779B97F4A7C15ull) >> 32) >= thr;
}
/* thr for a ratio in [0, 1] (1: nothing kept, thr = 2^32) */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline uint64_t mf_dropout_threshold(double ratio) {
  return ratio <= 0 ? 0 : ratio >= 1 ? (uint64_t)1 << 32 : (uint64_t)(ratio * 4294967296.0);
}
/* the kept elements' scale 1 / (1 - ratio) (0 when ratio is 1: every element dropped) */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline double mf_dropout_scale(double ratio) { return ratio < 1 ? 1.0 / (1.0 - ratio) : 0.0; }

/* A 2-D pooling window's geometry (ONNX MaxPool / AveragePool, PyTorch's max_pool2d / avg_pool2d): kernel kh x kw,
 * strides sh, sw, dilations dh, dw, pads top/left/bottom/right, ceil (ceil_mode: the output rounds up, a last window
 * that would start inside the bottom/right padding is dropped, as PyTorch), exclude_pad (average: divide by the
 * window's pixels inside the image, count_include_pad 0; else by those inside the padded image, count_include_pad
 * 1, PyTorch's default). In the POOL / POOL_BWD nodes' ip: 1 kh | kw << 16, 2 sh | sw << 16, 3 pt | pl << 16,
 * 5 dh | dw << 16, 6 pb | pr << 16, 7 exclude_pad | ceil << 1 (ip0 the kind, ip4 global). */
typedef struct mf_pool_cfg { int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, exclude_pad, ceil; } mf_pool_cfg;
mf_pool_cfg mf_pool_cfg_of(const mf_node *n);
/* x [N,C,H,W] -> [N,C,OH,OW] with any geometry (1 <= k, s, d < 65536, 0 <= pads < 65536, each pad below the dilated
 * kernel's extent); kind MF_POOL_AVG or MF_POOL_MAX */
int mf_pool2d_cfg(mf_graph *g, int kind, int x, const mf_pool_cfg *cfg);
/* Along one axis of n pixels: output o's window starts at o*s - p0 and takes every d-th pixel, k of them. t0, t1:
 * the taps [t0, t1) inside the image; *cnt: the divisor of an average (taps inside the image, or with !exclude those
 * inside [-p0, n + p1)). CPU and CUDA both use it. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline void mf_pool_taps(int64_t o, int s, int d, int k, int p0, int p1, int64_t n, int exclude, int64_t *start, int *t0,
                                int *t1, int *cnt) {
  int64_t st = o * s - p0;
  int64_t a = st >= 0 ? 0 : (-st + d - 1) / d;
  int64_t b = n - 1 - st < 0 ? 0 : (n - 1 - st) / d + 1;
  if (b > k) b = k;
  if (a > b) a = b;
  int64_t e = n + p1 - 1 - st < 0 ? 0 : (n + p1 - 1 - st) / d + 1;
  if (e > k) e = k;
  *start = st;
  *t0 = (int)a;
  *t1 = (int)b;
  *cnt = exclude ? (int)(b - a) : (int)e;
}

/* Padding of H and W (ONNX Pad, PyTorch's F.pad / ReflectionPad2d / ReplicationPad2d): constant (a value), reflect
 * (mirrored without repeating the edge: pads < size), edge (the edge pixel repeated). */
enum { MF_PAD_CONSTANT = 0, MF_PAD_REFLECT, MF_PAD_EDGE };
/* The input index output index o reads along an axis of n pixels padded by p0 before it; -1: the constant. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int64_t mf_pad_src(int mode, int64_t o, int64_t p0, int64_t n) {
  int64_t i = o - p0;
  if (i >= 0 && i < n) return i;
  if (mode == MF_PAD_CONSTANT) return -1;
  if (mode == MF_PAD_EDGE) return i < 0 ? 0 : n - 1;
  return i < 0 ? -i : 2 * (n - 1) - i;
}
/* The output indices (three runs [r0,r1), [r2,r3), [r4,r5), clipped to [0,on), disjoint) that read input index i:
 * the pixel itself, and its mirror or edge copies. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline void mf_pad_readers(int mode, int64_t i, int64_t p0, int64_t n, int64_t on, int64_t r[6]) {
  r[0] = i + p0, r[1] = i + p0 + 1, r[2] = r[3] = r[4] = r[5] = 0;
  if (mode == MF_PAD_REFLECT) {
    if (i >= 1) r[2] = p0 - i, r[3] = p0 - i + 1;
    if (i <= n - 2) r[4] = p0 + 2 * (n - 1) - i, r[5] = r[4] + 1;
  } else if (mode == MF_PAD_EDGE) {
    if (i == 0) r[2] = 0, r[3] = p0;
    if (i == n - 1) r[4] = p0 + n, r[5] = on;
  }
  for (int k = 0; k < 6; k++) r[k] = r[k] < 0 ? 0 : r[k] > on ? on : r[k];
}
/* x [N,C,H,W] -> [N,C,H+pt+pb,W+pl+pr]; reflect needs every pad below its axis' size */
int mf_pad2d(mf_graph *g, int x, int mode, int pt, int pl, int pb, int pr, double value);
/* x [N,C,H,W] -> [N,C,oh,ow] by bilinear interpolation; scale_h/w (out/in as ONNX gives them; <= 0: oh/H, ow/W) */
int mf_resize_linear(mf_graph *g, int x, int64_t oh, int64_t ow, int mode, double scale_h, double scale_w);

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
/* A conv2d node's fused activation (set by the planner's fusion pass, plan/fuse.c, never by a builder):
 * bits 24-31 of ip[MF_IP_CONV_ACT] hold 1 + MF_UN_RELU or 1 + MF_UN_LEAKY (slope in fp[0]), 0: none (bits 0-23
 * of that word are the W stride and dilation, src/ops/conv.c). The kernel writes act(conv(x, w) + b) to the
 * node's output. */
#define MF_IP_CONV_ACT 7
static inline int mf_conv_act(const mf_node *n) {
  return n->op == MF_OP_CONV2D ? (int)(((uint32_t)n->ip[MF_IP_CONV_ACT] >> 24) & 0xff) - 1 : -1;
}
static inline void mf_conv_act_set(mf_node *n, int kind) {
  n->ip[MF_IP_CONV_ACT] = (int32_t)(((uint32_t)n->ip[MF_IP_CONV_ACT] & 0xffffffu) | (uint32_t)(kind + 1) << 24);
}
/* A norm node's fused activation (plan/fuse.c, on a backend with mf_backend.fuses_norm_act; never set by a
 * builder): ip[MF_IP_NORM_ACT] = 1 + MF_UN_RELU or 1 + MF_UN_LEAKY (slope in fp[2]), 0: none. The kernel writes
 * act(norm(x)) to the node's output; the gradients, which read x and the activation's output, do not change. */
#define MF_IP_NORM_ACT 5
static inline int mf_norm_act(const mf_node *n) { return n->op == MF_OP_NORM ? n->ip[MF_IP_NORM_ACT] - 1 : -1; }
static inline void mf_norm_act_set(mf_node *n, int kind) { n->ip[MF_IP_NORM_ACT] = kind + 1; }
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
/* A conv2d's geometry: stride and dilation of H (and of W: sw, dw, where 0 means the same as H's), pads
 * top/left/bottom/right (they may differ: ONNX's asymmetric pads), groups. Stored in the conv nodes' ip: 0 stride,
 * 1 top, 2 groups, 3 dilation, 4 left, 5 bottom, 6 right, 7 sw | dw << 16 (0 where W's equals H's).
 * mf_conv_cfg_of gives sw and dw resolved. "Plain" = dilation 1, one stride and one pad on every side (what the
 * fast CPU algorithms and oneDNN take; the others run im2col with the general geometry). */
typedef struct mf_conv_cfg { int stride, dil, groups, pt, pl, pb, pr, sw, dw; } mf_conv_cfg;
mf_conv_cfg mf_conv_cfg_of(const mf_node *n);
static inline int mf_conv_sw(const mf_conv_cfg *c) { return c->sw > 0 ? c->sw : c->stride; }
static inline int mf_conv_dw(const mf_conv_cfg *c) { return c->dw > 0 ? c->dw : c->dil; }
static inline bool mf_conv_cfg_plain(const mf_conv_cfg *c) {
  return c->dil == 1 && mf_conv_dw(c) == 1 && mf_conv_sw(c) == c->stride && c->pl == c->pt && c->pb == c->pt && c->pr == c->pt;
}
/* x [N,C,H,W], w [OC,C/groups,KH,KW] -> [N,OC,(H+pt+pb-dil*(KH-1)-1)/stride+1, ..]: mf_conv2d with any cfg */
int mf_conv2d_cfg(mf_graph *g, int x, int w, int b, const mf_conv_cfg *cfg);
int mf_conv2d_bwd_data_cfg(mf_graph *g, int dy, int w, int x_like, const mf_conv_cfg *cfg);
int mf_conv2d_bwd_weight_cfg(mf_graph *g, int x, int dy, int w_like, const mf_conv_cfg *cfg);
/* The transposed convolution (the gradient of conv2d wrt its input as a forward op): x [N,IC,H,W],
 * w [IC,OC/groups,KH,KW] -> [N,OC,(H-1)*stride-pt-pb+dil*(KH-1)+1+out_pad_h, ..]; a CONV2D_BWD_DATA node, which
 * has a gradient rule (conv2d of the gradient; conv2d_bwd_weight for w). out_pad_* < max(stride, dil). */
int mf_conv_transpose2d_cfg(mf_graph *g, int x, int w, const mf_conv_cfg *cfg, int out_pad_h, int out_pad_w);
int mf_loss_bwd(mf_graph *g, int pred, int target, int dl, int kind, int sum);
int mf_softmax_ce_bwd(mf_graph *g, int logits, int labels, int dl);
int mf_pool_bwd(mf_graph *g, int x, int dy, const mf_node *pool);
int mf_upsample_bwd(mf_graph *g, int dy, int x_like, int factor);
/* VQGAN's adaptive GAN weight (ops/adaptive.c), two identity taps on the decoder's output x (the last conv: input h,
 * weight w, stride, pad). mf_adaptive_rec_tap: what the reconstruction terms read; its gradient passes unchanged and
 * its rule leaves in ip[2] the node |conv2d_bwd_weight(h, dy)| (x the seed). mf_adaptive_tap: what the discriminator
 * reads; its gradient is dy * lambda, lambda = factor * weight * clamp(rec / (|conv2d_bwd_weight(h, dy)| + 1e-4), 0,
 * max) with both norms divided by the seed, the lambda node id left in ip[2]; lam_state (a state [1], or -1) receives
 * lambda at each backward. Build the REC tap after the GAN tap (autodiff runs its rule first); a GAN tap whose
 * backward finds no REC tap differentiated before it is an error naming x. */
int mf_adaptive_tap(mf_graph *g, int x, int h, int w, int factor, int lam_state, int stride, int pad, double weight, double max);
int mf_adaptive_rec_tap(mf_graph *g, int x, int h, int w, int stride, int pad);

#endif

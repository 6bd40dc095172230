/* elementwise.cu — CUDA kernels of the leaf ops (param_lp cast, seed, acc_grad) and of binary
 * (broadcasting), scalar, unary and unary-backward ops. Storage in any float dtype, math in f32
 * (f64 when an operand is f64), one thread per element in grid-stride loops. */
#include "backend/cuda/common.cuh"

/* ------------------------------------------------------------------ leaves */

extern "C" void mf_cuda_input(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
extern "C" void mf_cuda_param(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }
extern "C" void mf_cuda_buffer(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { (void)k; (void)n; (void)out; (void)src; (void)ws; }

/* y = x converted (dtypes of y and x); T the math type */
template <typename T> __global__ void k_convert(void *y, int yt, const void *x, int xt, int64_t n) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, i));
}
/* y = y + x (y usually the f32 gradient) */
template <typename T> __global__ void k_accumulate(void *y, int yt, const void *x, int xt, int64_t n) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, mf_gld<T>(y, yt, i) + mf_gld<T>(x, xt, i));
}
template <typename T> __global__ void k_fill(void *y, int yt, int64_t n, T v) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, v);
}

/* low-precision copy of the f32 master: out [..] (act dtype) = src0 [..] (f32) */
extern "C" void mf_cuda_param_lp(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, x->dtype, MF_F32)) k_convert<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, total);
  else k_convert<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, total);
  MF_CUDA_LAUNCHED("param_lp");
}

/* d loss / d loss: every element = grad_seed (loss scale / accumulation steps) */
extern "C" void mf_cuda_seed(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)src; (void)ws;
  int64_t total = mf_node_numel(n);
  k_fill<double><<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, total, k->grad_seed);
  MF_CUDA_LAUNCHED("seed");
}

/* persistent gradient (out) += src0 */
extern "C" void mf_cuda_acc_grad(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, x->dtype, MF_F32)) k_accumulate<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, total);
  else k_accumulate<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, total);
  MF_CUDA_LAUNCHED("acc_grad");
}

/* ------------------------------------------------------------------ binary with broadcasting */

template <typename T> __device__ __forceinline__ T bin_apply(int kind, T a, T b) {
  switch (kind) {
  case MF_BIN_ADD: return a + b;
  case MF_BIN_SUB: return a - b;
  case MF_BIN_MUL: return a * b;
  case MF_BIN_POW: return pow(a, b);
  case MF_BIN_POW_DA: return b == (T)0 ? (T)0 : b * pow(a, b - (T)1);
  case MF_BIN_POW_DB: return a == (T)0 && b >= (T)0 ? (T)0 : pow(a, b) * log(a);
  default: return a / b;
  }
}

template <typename T>
__global__ void k_binary(void *y, int yt, const void *a, int at, const void *b, int bt, bshape s, int64_t n, int kind, int same) {
  MF_GRID_LOOP(i, n) {
    int64_t bi = same ? i : b_offset(s, i);
    mf_gst<T>(y, yt, i, bin_apply<T>(kind, mf_gld<T>(a, at, i), mf_gld<T>(b, bt, bi)));
  }
}

/* y [shape of a] = a (op) b, b broadcasting to a */
extern "C" void mf_cuda_binary(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *na = mf_csrc(k, n, 0), *nb = mf_csrc(k, n, 1);
  int64_t total = mf_node_numel(n);
  bshape s = broadcast_shape(n, nb);
  int same = mf_node_numel(nb) == total;
  cudaStream_t st = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, na->dtype, nb->dtype))
    k_binary<double><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], na->dtype, src[1], nb->dtype, s, total, n->ip[0], same);
  else
    k_binary<float><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], na->dtype, src[1], nb->dtype, s, total, n->ip[0], same);
  MF_CUDA_LAUNCHED("binary");
}

/* ------------------------------------------------------------------ scalar */

template <typename T> __global__ void k_scalar(void *y, int yt, const void *a, int at, int64_t n, T c, int add) {
  MF_GRID_LOOP(i, n) {
    T v = mf_gld<T>(a, at, i);
    mf_gst<T>(y, yt, i, add ? v + c : v * c);
  }
}

/* y = a + c or a * c (ip0 MF_SCALAR_ADD/MUL, fp0 = c) */
extern "C" void mf_cuda_scalar(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *na = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  int add = n->ip[0] == MF_SCALAR_ADD;
  cudaStream_t st = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, na->dtype, MF_F32))
    k_scalar<double><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], na->dtype, total, n->fp[0], add);
  else
    k_scalar<float><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], na->dtype, total, (float)n->fp[0], add);
  MF_CUDA_LAUNCHED("scalar");
}

/* ------------------------------------------------------------------ unary and its backward */

template <typename T> __device__ __forceinline__ T un_apply(int kind, T x, T p0, T p1) {
  switch (kind) {
  case MF_UN_EXP: return exp(x);
  case MF_UN_LOG: return log(x);
  case MF_UN_SIGMOID: return (T)1 / ((T)1 + exp(-x));
  case MF_UN_TANH: return tanh(x);
  case MF_UN_RELU: return x > (T)0 ? x : (T)0;
  case MF_UN_LEAKY: return x > (T)0 ? x : p0 * x;
  case MF_UN_SILU: return x / ((T)1 + exp(-x));
  case MF_UN_SQRT: return sqrt(x);
  case MF_UN_ERF: return erf(x);
  case MF_UN_GELU: return (T)0.5 * x * ((T)1 + erf(x * (T)0.70710678118654752440));
  case MF_UN_POW: return pow(x, p0);
  default: return x < p0 ? p0 : x > p1 ? p1 : x;
  }
}
/* v is x, or y for exp/sigmoid/tanh/sqrt/relu/leaky relu (ops/elementwise.c); d out / d x */
template <typename T> __device__ __forceinline__ T un_deriv(int kind, T v, T p0, T p1) {
  switch (kind) {
  case MF_UN_EXP: return v;
  case MF_UN_LOG: return (T)1 / v;
  case MF_UN_SIGMOID: return v * ((T)1 - v);
  case MF_UN_TANH: return (T)1 - v * v;
  case MF_UN_RELU: return v > (T)0 ? (T)1 : (T)0;
  case MF_UN_LEAKY: return v > (T)0 ? (T)1 : p0;
  case MF_UN_SILU: {
    T s = (T)1 / ((T)1 + exp(-v));
    return s * ((T)1 + v * ((T)1 - s));
  }
  case MF_UN_SQRT: return (T)0.5 / v;
  case MF_UN_ERF: return (T)1.12837916709551257390 * exp(-v * v);
  case MF_UN_GELU:
    return (T)0.5 * ((T)1 + erf(v * (T)0.70710678118654752440)) + v * (T)0.39894228040143267794 * exp((T)-0.5 * v * v);
  case MF_UN_POW: return p0 == (T)0 ? (T)0 : p0 * pow(v, p0 - (T)1);
  default: return v >= p0 && v <= p1 ? (T)1 : (T)0;
  }
}

template <typename T> __global__ void k_unary(void *y, int yt, const void *a, int at, int64_t n, int kind, T p0, T p1) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, un_apply<T>(kind, mf_gld<T>(a, at, i), p0, p1));
}
template <typename T>
__global__ void k_unary_bwd(void *dx, int xt, const void *v, int vt, const void *dy, int dt, int64_t n, int kind, T p0, T p1) {
  MF_GRID_LOOP(i, n) mf_gst<T>(dx, xt, i, mf_gld<T>(dy, dt, i) * un_deriv<T>(kind, mf_gld<T>(v, vt, i), p0, p1));
}

/* y = f(a): ip0 = MF_UN_*, fp0/fp1 = slope or clamp bounds */
extern "C" void mf_cuda_unary(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *na = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  cudaStream_t st = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, na->dtype, MF_F32))
    k_unary<double><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], na->dtype, total, n->ip[0], n->fp[0], n->fp[1]);
  else
    k_unary<float><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], na->dtype, total, n->ip[0], (float)n->fp[0],
                                                            (float)n->fp[1]);
  MF_CUDA_LAUNCHED("unary");
}

/* dx = dy * f'(v): src0 = x (or y for exp/sigmoid/tanh), src1 = dy */
extern "C" void mf_cuda_unary_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nv = mf_csrc(k, n, 0), *nd = mf_csrc(k, n, 1);
  int64_t total = mf_node_numel(n);
  cudaStream_t st = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, nv->dtype, nd->dtype))
    k_unary_bwd<double><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], nv->dtype, src[1], nd->dtype, total, n->ip[0],
                                                                 n->fp[0], n->fp[1]);
  else
    k_unary_bwd<float><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], nv->dtype, src[1], nd->dtype, total, n->ip[0],
                                                                (float)n->fp[0], (float)n->fp[1]);
  MF_CUDA_LAUNCHED("unary_bwd");
}

/* ------------------------------------------------------------------ dropout */

/* y = x * (keep_i / (1 - ratio)), the mask hashed from (step seed, key, i) as on the CPU (ops.h: mf_dropout_keep) */
template <typename T> __global__ void k_dropout(void *y, int yt, const void *x, int xt, int64_t n, uint64_t base, uint64_t thr, T sc) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, i) * (mf_dropout_keep(base, i, thr) ? sc : (T)0));
}

/* dropout in a training program; the identity (a conversion) at evaluation or with ratio 0 */
extern "C" void mf_cuda_dropout(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  cudaStream_t st = mf_cuda_stream(k);
  bool on = k->training && n->fp[0] > 0;
  uint64_t base = mf_dropout_base(k->step_seed, n->ip[0]), thr = on ? mf_dropout_threshold(n->fp[0]) : 0;
  double sc = on ? mf_dropout_scale(n->fp[0]) : 1.0; /* thr 0 keeps every element: x * 1 */
  if (mf_any_f64(n->dtype, nx->dtype, MF_F32))
    k_dropout<double><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], nx->dtype, total, base, thr, sc);
  else
    k_dropout<float><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], nx->dtype, total, base, thr, (float)sc);
  MF_CUDA_LAUNCHED("dropout");
}

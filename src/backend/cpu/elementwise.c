/* elementwise.c (CPU) — kernels for binary (broadcasting), scalar, unary and unary-backward ops.
 * Fast f32 loops; any other float dtype goes through the generic double path. */
#include "backend/cpu/cpu.h"
#include "backend/cpu/vexp.h"
#include <math.h>
#include <string.h>

static inline double bin_apply(int kind, double a, double b) {
  switch (kind) {
  case MF_BIN_ADD: return a + b;
  case MF_BIN_SUB: return a - b;
  case MF_BIN_MUL: return a * b;
  case MF_BIN_POW: return pow(a, b);
  case MF_BIN_POW_DA: return mf_pow_da(a, b);
  case MF_BIN_POW_DB: return mf_pow_db(a, b);
  default: return a / b;
  }
}
static inline float bin_apply_f(int kind, float a, float b) {
  switch (kind) {
  case MF_BIN_ADD: return a + b;
  case MF_BIN_SUB: return a - b;
  case MF_BIN_MUL: return a * b;
  case MF_BIN_POW: return powf(a, b);
  case MF_BIN_POW_DA: return mf_pow_daf(a, b);
  case MF_BIN_POW_DB: return mf_pow_dbf(a, b);
  default: return a / b;
  }
}

#define BIN_FLAT 4096
void mf_cpu_binary(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *na = mf_src(k, n, 0), *nb = mf_src(k, n, 1);
  int kind = n->ip[0], D = n->ndim;
  int64_t total = mf_node_numel(n), W = D ? n->ne[D - 1] : 1, rows = total / (W ? W : 1);
  /* b's stride per output axis (0 where it broadcasts) */
  int64_t bst[MF_MAX_DIMS] = {0}, s = 1;
  int off = D - nb->ndim;
  for (int i = D - 1; i >= off; i--) {
    int64_t e = nb->ne[i - off];
    bst[i] = e == 1 ? 0 : s;
    s *= e;
  }
  bool f32 = n->dtype == MF_F32 && na->dtype == MF_F32 && nb->dtype == MF_F32;
  bool bf16 = n->dtype == MF_BF16 && na->dtype == MF_BF16 && nb->dtype == MF_BF16;
  int64_t binner = D ? bst[D - 1] : 0;
  /* b of a's shape (nothing broadcast): rows of BIN_FLAT elements of the flat arrays, not of the last axis (short
   * rows, as 4x4 feature maps, spent their time on the row offsets) */
  bool flat = mf_node_numel(nb) == total && total > 0;
  if (flat) { W = BIN_FLAT; rows = (total + W - 1) / W; binner = 1; }
  #pragma omp parallel for schedule(static) if (total > 32768)
  for (int64_t r = 0; r < rows; r++) {
    int64_t rem = r, boff = 0, o = r * W, w = o + W > total ? total - o : W; /* w < W: the last flat row */
    if (flat) boff = o;
    else for (int i = D - 2; i >= 0; i--) { boff += (rem % n->ne[i]) * bst[i]; rem /= n->ne[i]; }
    if (f32) {
      const float *a = (const float *)src[0] + o, *b = (const float *)src[1] + boff;
      float *y = (float *)out + o;
      /* one loop per kind (the compiler vectorises each; a switch inside the loop it does not) */
      if (binner) {
        switch (kind) {
        case MF_BIN_ADD: for (int64_t j = 0; j < w; j++) y[j] = a[j] + b[j]; break;
        case MF_BIN_SUB: for (int64_t j = 0; j < w; j++) y[j] = a[j] - b[j]; break;
        case MF_BIN_MUL: for (int64_t j = 0; j < w; j++) y[j] = a[j] * b[j]; break;
        case MF_BIN_DIV: for (int64_t j = 0; j < w; j++) y[j] = a[j] / b[j]; break;
        default: for (int64_t j = 0; j < w; j++) y[j] = bin_apply_f(kind, a[j], b[j]); break;
        }
      } else {
        float bv = b[0];
        switch (kind) {
        case MF_BIN_ADD: for (int64_t j = 0; j < w; j++) y[j] = a[j] + bv; break;
        case MF_BIN_SUB: for (int64_t j = 0; j < w; j++) y[j] = a[j] - bv; break;
        case MF_BIN_MUL: for (int64_t j = 0; j < w; j++) y[j] = a[j] * bv; break;
        case MF_BIN_DIV: for (int64_t j = 0; j < w; j++) y[j] = a[j] / bv; break;
        default: for (int64_t j = 0; j < w; j++) y[j] = bin_apply_f(kind, a[j], bv); break;
        }
      }
    } else if (bf16 && (kind == MF_BIN_ADD || kind == MF_BIN_SUB || kind == MF_BIN_MUL)) {
      /* the generic path's f64 arithmetic, one rounding to bf16, without its per-element type switch (the same bits;
       * 5x faster in a bf16 ResNet step) */
      const uint16_t *a = (const uint16_t *)src[0] + o, *b = (const uint16_t *)src[1] + boff;
      uint16_t *y = (uint16_t *)out + o;
#define BIN_BF16(OP, BJ) for (int64_t j = 0; j < w; j++) y[j] = mf_f32_to_bf16((float)((double)mf_bf16_to_f32(a[j]) OP (double)mf_bf16_to_f32(BJ)))
      /* one loop per kind and stride of b, as f32's (vectorised) */
      if (binner == 1) {
        if (kind == MF_BIN_ADD) BIN_BF16(+, b[j]);
        else if (kind == MF_BIN_SUB) BIN_BF16(-, b[j]);
        else BIN_BF16(*, b[j]);
      } else if (binner == 0) {
        if (kind == MF_BIN_ADD) BIN_BF16(+, b[0]);
        else if (kind == MF_BIN_SUB) BIN_BF16(-, b[0]);
        else BIN_BF16(*, b[0]);
      } else {
        if (kind == MF_BIN_ADD) BIN_BF16(+, b[j * binner]);
        else if (kind == MF_BIN_SUB) BIN_BF16(-, b[j * binner]);
        else BIN_BF16(*, b[j * binner]);
      }
#undef BIN_BF16
    } else {
      for (int64_t j = 0; j < w; j++)
        mf_st(out, n->dtype, o + j, bin_apply(kind, mf_ld(src[0], na->dtype, o + j), mf_ld(src[1], nb->dtype, boff + j * binner)));
    }
  }
}

void mf_cpu_scalar(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *na = mf_src(k, n, 0);
  int64_t total = mf_node_numel(n);
  double c = n->fp[0];
  bool add = n->ip[0] == MF_SCALAR_ADD;
  if (n->dtype == MF_F32 && na->dtype == MF_F32) {
    const float *a = src[0]; float *y = out; float cf = (float)c;
    #pragma omp parallel for schedule(static) if (total > 32768)
    for (int64_t i = 0; i < total; i++) y[i] = add ? a[i] + cf : a[i] * cf;
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 32768)
  for (int64_t i = 0; i < total; i++) {
    double v = mf_ld(src[0], na->dtype, i);
    mf_st(out, n->dtype, i, add ? v + c : v * c);
  }
}

static inline double un_apply(int kind, double x, double p0, double p1) {
  switch (kind) {
  case MF_UN_EXP: return exp(x);
  case MF_UN_LOG: return log(x);
  case MF_UN_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case MF_UN_TANH: return tanh(x);
  case MF_UN_RELU: return x > 0 ? x : 0;
  case MF_UN_LEAKY: return x > 0 ? x : p0 * x;
  case MF_UN_SILU: return x / (1.0 + exp(-x));
  case MF_UN_SQRT: return sqrt(x);
  case MF_UN_ERF: return erf(x);
  case MF_UN_GELU: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
  case MF_UN_POW: return pow(x, p0);
  default: return x < p0 ? p0 : x > p1 ? p1 : x;
  }
}
static inline float un_apply_f(int kind, float x, float p0, float p1) {
  switch (kind) {
  case MF_UN_EXP: return mf_vexp(x);
  case MF_UN_LOG: return logf(x);
  case MF_UN_SIGMOID: return 1.0f / (1.0f + mf_vexp(-x));
  case MF_UN_TANH: return tanhf(x);
  case MF_UN_RELU: return x > 0 ? x : 0;
  case MF_UN_LEAKY: return x > 0 ? x : p0 * x;
  case MF_UN_SILU: return x / (1.0f + mf_vexp(-x));
  case MF_UN_SQRT: return sqrtf(x);
  case MF_UN_ERF: return erff(x);
  case MF_UN_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678f));
  case MF_UN_POW: return powf(x, p0);
  default: return x < p0 ? p0 : x > p1 ? p1 : x;
  }
}

/* exp, sigmoid and SiLU on a span, and SiLU's backward, in loops gcc vectorises (mf_vexp, vexp.h; a switch inside
 * the loop it does not): the same arithmetic as un_apply_f / un_deriv_f, compiled twice (cpu.h: the AVX2 copy gives
 * the same bits). The kernels hand each thread chunks of EXP_CHUNK elements. */
enum { EXP_CHUNK = 4096 };
MF_CPU_INLINE void exp_kinds_body(int kind, const float *a, float *y, int64_t n) {
  if (kind == MF_UN_SILU)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] / (1.0f + mf_vexp(-a[i]));
  else if (kind == MF_UN_SIGMOID)
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + mf_vexp(-a[i]));
  else
    for (int64_t i = 0; i < n; i++) y[i] = mf_vexp(a[i]);
}
MF_CPU_TWO_COPIES_VOID(exp_kinds, (int kind, const float *a, float *y, int64_t n), (kind, a, y, n))
MF_CPU_INLINE void silu_bwd_body(const float *v, const float *dy, float *dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + mf_vexp(-v[i]));
    dx[i] = dy[i] * (s * (1.0f + v[i] * (1.0f - s)));
  }
}
MF_CPU_TWO_COPIES_VOID(silu_bwd, (const float *v, const float *dy, float *dx, int64_t n), (v, dy, dx, n))

void mf_cpu_unary(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *na = mf_src(k, n, 0);
  int64_t total = mf_node_numel(n);
  int kind = n->ip[0];
  if (n->dtype == MF_F32 && na->dtype == MF_F32) {
    const float *a = src[0]; float *y = out;
    float p0 = (float)n->fp[0], p1 = (float)n->fp[1];
    if (kind == MF_UN_RELU) { /* its own loop, which the compiler vectorises */
      #pragma omp parallel for schedule(static) if (total > 16384)
      for (int64_t i = 0; i < total; i++) y[i] = a[i] > 0 ? a[i] : 0.0f;
      return;
    }
    /* the kinds built on exp: exp_kinds */
    if (kind == MF_UN_SILU || kind == MF_UN_SIGMOID || kind == MF_UN_EXP) {
      int64_t chunks = (total + EXP_CHUNK - 1) / EXP_CHUNK;
      #pragma omp parallel for schedule(static) if (total > 16384)
      for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * EXP_CHUNK, len = total - lo < EXP_CHUNK ? total - lo : EXP_CHUNK;
        exp_kinds(kind, a + lo, y + lo, len);
      }
      return;
    }
    #pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) y[i] = un_apply_f(kind, a[i], p0, p1);
    return;
  }
  if (kind == MF_UN_RELU && n->dtype == MF_BF16 && na->dtype == MF_BF16) {
    /* bf16 ReLU without the generic path's f64 round trip (12x slower in a bf16 ResNet step): x or +0, the bits
     * the generic path stores (it is exact) */
    const uint16_t *a = src[0];
    uint16_t *y = out;
    #pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) y[i] = mf_bf16_to_f32(a[i]) > 0 ? a[i] : 0;
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 16384)
  for (int64_t i = 0; i < total; i++) mf_st(out, n->dtype, i, un_apply(kind, mf_ld(src[0], na->dtype, i), n->fp[0], n->fp[1]));
}

/* v is x, or y for exp/sigmoid/tanh/sqrt/relu/leaky relu (ops/elementwise.c); returns d out / d x */
static inline double un_deriv(int kind, double v, double p0, double p1) {
  switch (kind) {
  case MF_UN_EXP: return v;
  case MF_UN_LOG: return 1.0 / v;
  case MF_UN_SIGMOID: return v * (1.0 - v);
  case MF_UN_TANH: return 1.0 - v * v;
  case MF_UN_RELU: return v > 0 ? 1 : 0;
  case MF_UN_LEAKY: return v > 0 ? 1 : p0;
  case MF_UN_SILU: { double s = 1.0 / (1.0 + exp(-v)); return s * (1.0 + v * (1.0 - s)); }
  case MF_UN_SQRT: return 0.5 / v;
  case MF_UN_ERF: return 1.12837916709551257390 * exp(-v * v);
  case MF_UN_GELU: return 0.5 * (1.0 + erf(v * 0.70710678118654752440)) + v * 0.39894228040143267794 * exp(-0.5 * v * v);
  case MF_UN_POW: return mf_pow_da(v, p0);
  default: return v >= p0 && v <= p1 ? 1 : 0;
  }
}
static inline float un_deriv_f(int kind, float v, float p0, float p1) {
  switch (kind) {
  case MF_UN_EXP: return v;
  case MF_UN_LOG: return 1.0f / v;
  case MF_UN_SIGMOID: return v * (1.0f - v);
  case MF_UN_TANH: return 1.0f - v * v;
  case MF_UN_RELU: return v > 0 ? 1.0f : 0.0f;
  case MF_UN_LEAKY: return v > 0 ? 1.0f : p0;
  case MF_UN_SILU: { float s = 1.0f / (1.0f + mf_vexp(-v)); return s * (1.0f + v * (1.0f - s)); }
  case MF_UN_SQRT: return 0.5f / v;
  case MF_UN_ERF: return 1.12837917f * mf_vexp(-v * v);
  case MF_UN_GELU: return 0.5f * (1.0f + erff(v * 0.70710678f)) + v * 0.39894228f * mf_vexp(-0.5f * v * v);
  case MF_UN_POW: return mf_pow_daf(v, p0);
  default: return v >= p0 && v <= p1 ? 1.0f : 0.0f;
  }
}

void mf_cpu_unary_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nv = mf_src(k, n, 0), *nd = mf_src(k, n, 1);
  int64_t total = mf_node_numel(n);
  int kind = n->ip[0];
  if (n->dtype == MF_F32 && nv->dtype == MF_F32 && nd->dtype == MF_F32) {
    const float *v = src[0], *dy = src[1]; float *dx = out;
    float p0 = (float)n->fp[0], p1 = (float)n->fp[1];
    if (kind == MF_UN_RELU || kind == MF_UN_LEAKY) {
      /* their own loop, the same arithmetic as un_deriv_f (dy * 0 keeps NaN); gcc vectorises it only with
       * -fno-trapping-math (CMakeLists.txt): before, a scalar loop with a branch per element (unpredictable on ReLU
       * masks: 3x slower in a ResNet step). No `omp simd`: clang's sanitizer build could not vectorise it and
       * -Werror stops there. dx may be dy itself (the planner reuses dy's bytes): an elementwise loop allows it. */
      float neg = kind == MF_UN_RELU ? 0.0f : p0;
      #pragma omp parallel for schedule(static) if (total > 16384)
      for (int64_t i = 0; i < total; i++) dx[i] = dy[i] * (v[i] > 0 ? 1.0f : neg);
      return;
    }
    if (kind == MF_UN_SILU) { /* un_deriv_f's arithmetic in a loop gcc vectorises (mf_vexp, vexp.h) */
      int64_t chunks = (total + EXP_CHUNK - 1) / EXP_CHUNK;
      #pragma omp parallel for schedule(static) if (total > 16384)
      for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * EXP_CHUNK, len = total - lo < EXP_CHUNK ? total - lo : EXP_CHUNK;
        silu_bwd(v + lo, dy + lo, dx + lo, len);
      }
      return;
    }
    #pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) dx[i] = dy[i] * un_deriv_f(kind, v[i], p0, p1);
    return;
  }
  if (kind == MF_UN_RELU && n->dtype == MF_BF16 && nv->dtype == MF_BF16 && nd->dtype == MF_BF16) {
    /* bf16 ReLU's backward in f32: dy * 1 and dy * 0 are exact, so these are the generic path's bits */
    const uint16_t *v = src[0], *dy = src[1];
    uint16_t *dx = out;
    #pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) dx[i] = mf_f32_to_bf16(mf_bf16_to_f32(dy[i]) * (mf_bf16_to_f32(v[i]) > 0 ? 1.0f : 0.0f));
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 16384)
  for (int64_t i = 0; i < total; i++)
    mf_st(out, n->dtype, i, mf_ld(src[1], nd->dtype, i) * un_deriv(kind, mf_ld(src[0], nv->dtype, i), n->fp[0], n->fp[1]));
}

/* dropout (ops/ops.h: mf_dropout_keep): y = x * (keep_i / (1 - ratio)) in a training program (a multiplication, as
 * PyTorch's: a dropped NaN or inf stays NaN), y = x at evaluation; the mask is a hash of (step seed, key, i), the
 * same on any thread count */
void mf_cpu_dropout(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_src(k, n, 0);
  int64_t total = mf_node_numel(n);
  bool on = k->training && n->fp[0] > 0;
  uint64_t base = mf_dropout_base(k->step_seed, n->ip[0]), thr = mf_dropout_threshold(n->fp[0]);
  double sc = mf_dropout_scale(n->fp[0]);
  if (n->dtype == MF_F32 && nx->dtype == MF_F32) {
    const float *x = src[0]; float *y = out;
    float scf = (float)sc;
    if (!on) {
      if (y != x) memcpy(y, x, (size_t)total * sizeof *y);
      return;
    }
    #pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) y[i] = x[i] * (mf_dropout_keep(base, i, thr) ? scf : 0.0f);
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 16384)
  for (int64_t i = 0; i < total; i++) {
    double v = mf_ld(src[0], nx->dtype, i);
    mf_st(out, n->dtype, i, !on ? v : v * (mf_dropout_keep(base, i, thr) ? sc : 0.0));
  }
}

/* norm.c (CPU) — batch norm and group norm over x [N,C,S] (S = product of the spatial dims),
 * forward (with the in-place running-statistics update) and backward. Backward recomputes the
 * mean and variance from x. All sums are in double, in a fixed order, one statistic group per
 * loop iteration: batch norm parallelises over channels, group norm over (sample, group). */
#include "backend/cpu/cpu.h"
#include <math.h>
#include <omp.h>
#include <string.h>

/* ---- contiguous span helpers: f32 fast path, generic mf_ld/mf_st otherwise ----
 * The f32 sums keep NL independent double accumulators (element i goes to lane i % NL, the lanes are
 * added in order at the end): the compiler vectorises them, and the result depends only on the
 * length, never on the machine or the thread count. */
#define NL 8
/* bf16 spans: the sums keep the f32 path's lanes (a bf16 value is exact in float and double, so the order alone
 * decides the bits, and it is the f32 path's); the elementwise loops are the generic path's operations without its
 * per-element type switch (mf_ld / mf_st), which the compiler vectorises */
#define LDF(p, i) ((double)((const float *)(p))[i])
#define LDB(p, i) ((double)mf_bf16_to_f32(((const uint16_t *)(p))[i]))
MF_CPU_INLINE double lanes_total(const double *acc) {
  double s = 0;
  for (int j = 0; j < NL; j++) s += acc[j];
  return s;
}

/* sum over a span of f32 (LD LDF) or bf16 (LDB) in NL lanes */
#define LANES_SUM(LD, p, off, len)                                                                                  \
  do {                                                                                                             \
    double acc[NL] = {0};                                                                                          \
    int64_t i = 0;                                                                                                 \
    for (; i + NL <= len; i += NL)                                                                                 \
      for (int j = 0; j < NL; j++) acc[j] += LD(p, off + i + j);                                                   \
    for (; i < len; i++) acc[i % NL] += LD(p, off + i);                                                            \
    return lanes_total(acc);                                                                                       \
  } while (0)
MF_CPU_INLINE double span_sum_body(const void *p, mf_dtype t, int64_t off, int64_t len) {
  double s = 0;
  if (t == MF_F32) LANES_SUM(LDF, p, off, len);
  if (t == MF_BF16) LANES_SUM(LDB, p, off, len);
  for (int64_t i = 0; i < len; i++) s += mf_ld(p, t, off + i);
  return s;
}
/* sum (x - mean)^2 */
#define LANES_SQDEV(LD, p, off, len, mean)                                                                          \
  do {                                                                                                             \
    double acc[NL] = {0};                                                                                          \
    int64_t i = 0;                                                                                                 \
    for (; i + NL <= len; i += NL)                                                                                 \
      for (int j = 0; j < NL; j++) { double d = LD(p, off + i + j) - mean; acc[j] += d * d; }                      \
    for (; i < len; i++) { double d = LD(p, off + i) - mean; acc[i % NL] += d * d; }                               \
    return lanes_total(acc);                                                                                       \
  } while (0)
MF_CPU_INLINE double span_sqdev_body(const void *p, mf_dtype t, int64_t off, int64_t len, double mean) {
  double s = 0;
  if (t == MF_F32) LANES_SQDEV(LDF, p, off, len, mean);
  if (t == MF_BF16) LANES_SQDEV(LDB, p, off, len, mean);
  for (int64_t i = 0; i < len; i++) { double d = mf_ld(p, t, off + i) - mean; s += d * d; }
  return s;
}
/* adds sum dy and sum dy*(x - mean) */
#define LANES_DY(LD)                                                                                                \
  do {                                                                                                             \
    double la[NL] = {0}, lb[NL] = {0};                                                                             \
    int64_t i = 0;                                                                                                 \
    for (; i + NL <= len; i += NL)                                                                                 \
      for (int j = 0; j < NL; j++) { double d = LD(dy, off + i + j); la[j] += d; lb[j] += d * (LD(x, off + i + j) - mean); } \
    for (; i < len; i++) { double d = LD(dy, off + i); la[i % NL] += d; lb[i % NL] += d * (LD(x, off + i) - mean); } \
    *sdy += lanes_total(la);                                                                                       \
    *sdyx += lanes_total(lb);                                                                                      \
    return;                                                                                                        \
  } while (0)
MF_CPU_INLINE void span_dy_body(const void *x, mf_dtype xt, const void *dy, mf_dtype dt, int64_t off, int64_t len, double mean, double *sdy,
                    double *sdyx) {
  double a = 0, b = 0;
  if (xt == MF_F32 && dt == MF_F32) LANES_DY(LDF);
  if (xt == MF_BF16 && dt == MF_BF16) LANES_DY(LDB);
  for (int64_t i = 0; i < len; i++) { double d = mf_ld(dy, dt, off + i); a += d; b += d * (mf_ld(x, xt, off + i) - mean); }
  *sdy += a;
  *sdyx += b;
}
/* y = act(a*x + b): act < 0 none, MF_UN_RELU, MF_UN_LEAKY with slope (a fused activation, mf_norm_act); in f32
 * the same float operations as the norm kernel followed by the activation's own kernel */
MF_CPU_INLINE void span_affine_body(const void *x, mf_dtype xt, void *y, mf_dtype yt, int64_t off, int64_t len, double a, double b, int act,
                        double slope) {
  if (xt == MF_F32 && yt == MF_F32) {
    const float *xf = (const float *)x + off;
    float *yf = (float *)y + off, af = (float)a, bf = (float)b, sf = (float)slope;
    if (act == MF_UN_RELU)
      for (int64_t i = 0; i < len; i++) { float v = xf[i] * af + bf; yf[i] = v > 0 ? v : 0; }
    else if (act == MF_UN_LEAKY)
      for (int64_t i = 0; i < len; i++) { float v = xf[i] * af + bf; yf[i] = v > 0 ? v : sf * v; }
    else
      for (int64_t i = 0; i < len; i++) yf[i] = xf[i] * af + bf;
  } else if (xt == MF_BF16 && yt == MF_BF16) {
    const uint16_t *xh = (const uint16_t *)x + off;
    uint16_t *yh = (uint16_t *)y + off;
    /* with an activation, through bf16 first, as the unfused pair rounds between the two kernels */
    if (act == MF_UN_RELU)
      for (int64_t i = 0; i < len; i++) {
        double v = mf_bf16_to_f32(mf_f32_to_bf16((float)(LDB(xh, i) * a + b)));
        yh[i] = mf_f32_to_bf16((float)(v > 0 ? v : 0));
      }
    else if (act == MF_UN_LEAKY)
      for (int64_t i = 0; i < len; i++) {
        double v = mf_bf16_to_f32(mf_f32_to_bf16((float)(LDB(xh, i) * a + b)));
        yh[i] = mf_f32_to_bf16((float)(v > 0 ? v : slope * v));
      }
    else
      for (int64_t i = 0; i < len; i++) yh[i] = mf_f32_to_bf16((float)(LDB(xh, i) * a + b));
  } else if (act >= 0) /* through the output dtype, as the unfused pair rounds between the two kernels */
    for (int64_t i = 0; i < len; i++) {
      mf_st(y, yt, off + i, mf_ld(x, xt, off + i) * a + b);
      double v = mf_ld(y, yt, off + i);
      mf_st(y, yt, off + i, v > 0 ? v : act == MF_UN_LEAKY ? slope * v : 0);
    }
  else
    for (int64_t i = 0; i < len; i++) mf_st(y, yt, off + i, mf_ld(x, xt, off + i) * a + b);
}
/* out = A*dy + B*x + Cc */
MF_CPU_INLINE void span_dx_body(const void *x, mf_dtype xt, const void *dy, mf_dtype dt, void *out, mf_dtype ot, int64_t off, int64_t len,
                    double A, double B, double Cc) {
  if (xt == MF_F32 && dt == MF_F32 && ot == MF_F32) {
    const float *xf = (const float *)x + off, *df = (const float *)dy + off;
    float *of = (float *)out + off, a = (float)A, b = (float)B, c = (float)Cc;
    for (int64_t i = 0; i < len; i++) of[i] = a * df[i] + (b * xf[i] + c);
  } else if (xt == MF_BF16 && dt == MF_BF16 && ot == MF_BF16) {
    const uint16_t *xh = (const uint16_t *)x + off, *dh = (const uint16_t *)dy + off;
    uint16_t *oh = (uint16_t *)out + off;
    for (int64_t i = 0; i < len; i++) oh[i] = mf_f32_to_bf16((float)(A * LDB(dh, i) + B * LDB(xh, i) + Cc));
  }
  else
    for (int64_t i = 0; i < len; i++) mf_st(out, ot, off + i, A * mf_ld(dy, dt, off + i) + B * mf_ld(x, xt, off + i) + Cc);
}

/* One pass over a span, shifted by K: acc[0] += sum (x-K), acc[1] += sum (x-K)^2 and, when dy is
 * given, acc[2] += sum dy, acc[3] += sum dy*(x-K). With K one of the channel's own values, the
 * variance from these (acc1/M - (acc0/M)^2) loses nothing to cancellation unless K lies many standard
 * deviations from the mean; f32 values minus K and their squares are exact in double. */
#define LANES_MOMENTS(LD)                                                                                           \
  do {                                                                                                             \
    double l0[NL] = {0}, l1[NL] = {0}, l2[NL] = {0}, l3[NL] = {0};                                                 \
    int64_t i = 0;                                                                                                 \
    if (dy) {                                                                                                      \
      for (; i + NL <= len; i += NL)                                                                               \
        for (int j = 0; j < NL; j++) {                                                                             \
          double v = LD(x, off + i + j) - K, d = LD(dy, off + i + j);                                              \
          l0[j] += v; l1[j] += v * v; l2[j] += d; l3[j] += d * v;                                                  \
        }                                                                                                          \
      for (; i < len; i++) {                                                                                       \
        double v = LD(x, off + i) - K, d = LD(dy, off + i);                                                        \
        l0[i % NL] += v; l1[i % NL] += v * v; l2[i % NL] += d; l3[i % NL] += d * v;                                \
      }                                                                                                            \
    } else {                                                                                                       \
      for (; i + NL <= len; i += NL)                                                                               \
        for (int j = 0; j < NL; j++) { double v = LD(x, off + i + j) - K; l0[j] += v; l1[j] += v * v; }            \
      for (; i < len; i++) { double v = LD(x, off + i) - K; l0[i % NL] += v; l1[i % NL] += v * v; }                \
    }                                                                                                              \
    acc[0] += lanes_total(l0); acc[1] += lanes_total(l1); acc[2] += lanes_total(l2); acc[3] += lanes_total(l3);    \
    return;                                                                                                        \
  } while (0)
MF_CPU_INLINE void span_moments_body(const void *x, mf_dtype xt, const void *dy, mf_dtype dt, int64_t off, int64_t len, double K, double *acc) {
  if (xt == MF_F32 && (!dy || dt == MF_F32)) LANES_MOMENTS(LDF);
  if (xt == MF_BF16 && (!dy || dt == MF_BF16)) LANES_MOMENTS(LDB);
  for (int64_t i = 0; i < len; i++) {
    double v = mf_ld(x, xt, off + i) - K;
    acc[0] += v;
    acc[1] += v * v;
    if (dy) { double d = mf_ld(dy, dt, off + i); acc[2] += d; acc[3] += d * v; }
  }
}

/* each span helper three times, with AVX-512, AVX2 and without (cpu.h: the same bits; each lane's sums stay in order) */
#define SPAN_COPIES(ret, name, params, args)                                                                        \
  MF_CPU_AVX512_TARGET static ret name##_avx512 params { return name##_body args; }                                 \
  MF_CPU_AVX2_TARGET static ret name##_avx2 params { return name##_body args; }                                     \
  static ret name##_base params { return name##_body args; }                                                        \
  static ret name params {                                                                                          \
    int level_ = mf_cpu_avx2();                                                                                     \
    return level_ >= 2 ? name##_avx512 args : level_ ? name##_avx2 args : name##_base args;                         \
  }
SPAN_COPIES(double, span_sum, (const void *p, mf_dtype t, int64_t off, int64_t len), (p, t, off, len))
SPAN_COPIES(double, span_sqdev, (const void *p, mf_dtype t, int64_t off, int64_t len, double mean), (p, t, off, len, mean))
MF_CPU_TWO_COPIES_VOID(span_dy, (const void *x, mf_dtype xt, const void *dy, mf_dtype dt, int64_t off, int64_t len, double mean,
                           double *sdy, double *sdyx),
                 (x, xt, dy, dt, off, len, mean, sdy, sdyx))
MF_CPU_TWO_COPIES_VOID(span_affine, (const void *x, mf_dtype xt, void *y, mf_dtype yt, int64_t off, int64_t len, double a, double b,
                               int act, double slope),
                 (x, xt, y, yt, off, len, a, b, act, slope))
MF_CPU_TWO_COPIES_VOID(span_dx, (const void *x, mf_dtype xt, const void *dy, mf_dtype dt, void *out, mf_dtype ot, int64_t off,
                           int64_t len, double A, double B, double Cc),
                 (x, xt, dy, dt, out, ot, off, len, A, B, Cc))
MF_CPU_TWO_COPIES_VOID(span_moments, (const void *x, mf_dtype xt, const void *dy, mf_dtype dt, int64_t off, int64_t len, double K,
                                double *acc),
                 (x, xt, dy, dt, off, len, K, acc))

typedef struct { int64_t N, C, S; } nshape;
static nshape shape_of(const mf_node *x) {
  nshape s = {x->ne[0], x->ne[1], 1};
  for (int i = 2; i < x->ndim; i++) s.S *= x->ne[i];
  return s;
}

/* Batch norm runs over blocks of channels [c0, c1), one block per loop iteration: a block reads sample by sample,
 * each sample's rows of the block one contiguous run (channel by channel, with short rows such as 4x4 maps, read
 * 32-byte pieces scattered over the whole tensor). Each channel's sums see the same spans in the same order as
 * channel by channel would: the bits do not depend on the blocking. */
enum { BN_CB_MAX = 64, BN_CB_BYTES = 1 << 15 };
typedef struct bn_ch { double K, acc[4], mean, var, rstd, sdy, sdyx; } bn_ch;

/* channels per block: one sample's rows of a block about BN_CB_BYTES, and at least 4 blocks per thread where C allows */
static int64_t bn_block(nshape s, mf_dtype xt, int threads) {
  int64_t row = s.S * (int64_t)mf_dtype_size(xt), cb = row > 0 ? BN_CB_BYTES / row : BN_CB_MAX, spread = s.C / (4 * threads);
  if (cb > spread) cb = spread;
  return cb < 1 ? 1 : cb > BN_CB_MAX ? BN_CB_MAX : cb;
}

/* batch norm statistics of channels [c0, c1) into ch[c - c0]: from the batch (biased variance), or the running
 * buffers; with dy also sdy = sum dy and sdyx = sum dy*(x - mean), all in one pass over the block */
static void bn_stats(const void *x, mf_dtype xt, const void *dy, mf_dtype dt, nshape s, int64_t c0, int64_t c1, bool training,
                     const void *rm, const void *rv, mf_dtype bt, double eps, bn_ch *ch) {
  double M = (double)(s.N * s.S);
  for (int64_t c = c0; c < c1; c++) {
    bn_ch *h = &ch[c - c0];
    memset(h->acc, 0, sizeof h->acc);
    /* shifted by one of the channel's own values (training), or by the running mean itself: sum dy*(x - mean) */
    h->K = training ? (M > 0 ? mf_ld(x, xt, c * s.S) : 0) : mf_ld(rm, bt, c);
  }
  if (training || dy)
    for (int64_t n = 0; n < s.N; n++)
      for (int64_t c = c0; c < c1; c++) span_moments(x, xt, dy, dt, (n * s.C + c) * s.S, s.S, ch[c - c0].K, ch[c - c0].acc);
  for (int64_t c = c0; c < c1; c++) {
    bn_ch *h = &ch[c - c0];
    if (training) {
      double m = M > 0 ? h->acc[0] / M : 0, v = M > 0 ? h->acc[1] / M - m * m : 0;
      h->mean = h->K + m;
      h->var = v > 0 ? v : 0;
      h->sdy = h->acc[2];
      h->sdyx = h->acc[3] - m * h->acc[2];
    } else {
      h->mean = h->K;
      h->var = mf_ld(rv, bt, c);
      h->sdy = h->acc[2];
      h->sdyx = h->acc[3];
    }
    h->rstd = 1.0 / sqrt(h->var + eps);
  }
}

/* group norm statistics of sample n, group gi: one contiguous span of (C/G)*S */
static void gn_stats(const void *x, mf_dtype xt, nshape s, int64_t G, int64_t n, int64_t gi, double eps, double *mean, double *rstd) {
  int64_t len = s.C / G * s.S, off = (n * s.C + gi * (s.C / G)) * s.S;
  *mean = span_sum(x, xt, off, len) / (double)len;
  *rstd = 1.0 / sqrt(span_sqdev(x, xt, off, len, *mean) / (double)len + eps);
}

/* src x, gamma, beta[, rmean, rvar] -> y = act((x - mean) * rstd * gamma + beta), act a fused ReLU / leaky ReLU
 * (mf_norm_act) or none. Training batch norm
 * with buffers also updates rmean/rvar in place, unless ip3 marks a recompute clone. */
void mf_cpu_norm(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0), *ga = mf_src(k, n, 1), *be = mf_src(k, n, 2);
  nshape s = shape_of(x);
  double eps = n->fp[0], mom = n->fp[1], slope = n->fp[2];
  int act = mf_norm_act(n);
  mf_dtype xt = x->dtype, yt = n->dtype, gt = ga->dtype, btp = be->dtype;
  int64_t total = mf_node_numel(x);
  if (n->ip[0] == MF_NORM_BATCH) {
    bool training = n->ip[2], has_run = n->nsrc >= 5, update = training && has_run && n->ip[3] == 0;
    mf_dtype rt = has_run ? mf_src(k, n, 3)->dtype : MF_F32;
    void *rm = has_run ? src[3] : NULL, *rv = has_run ? src[4] : NULL;
    int64_t cb = bn_block(s, xt, omp_get_max_threads()), blocks = (s.C + cb - 1) / cb;
    #pragma omp parallel for schedule(dynamic, 1) if (total > 16384 && blocks > 1)
    for (int64_t bi = 0; bi < blocks; bi++) {
      int64_t c0 = bi * cb, c1 = c0 + cb < s.C ? c0 + cb : s.C;
      bn_ch ch[BN_CB_MAX];
      double a[BN_CB_MAX], b[BN_CB_MAX];
      bn_stats(src[0], xt, NULL, MF_F32, s, c0, c1, training, rm, rv, rt, eps, ch);
      for (int64_t c = c0; c < c1; c++) {
        a[c - c0] = ch[c - c0].rstd * mf_ld(src[1], gt, c);
        b[c - c0] = mf_ld(src[2], btp, c) - ch[c - c0].mean * a[c - c0];
      }
      for (int64_t nn = 0; nn < s.N; nn++)
        for (int64_t c = c0; c < c1; c++)
          span_affine(src[0], xt, out, yt, (nn * s.C + c) * s.S, s.S, a[c - c0], b[c - c0], act, slope);
      if (update)
        for (int64_t c = c0; c < c1; c++) {
          double M = (double)(s.N * s.S), var = ch[c - c0].var, unbiased = M > 1 ? var * M / (M - 1) : var;
          mf_st(rm, rt, c, (1 - mom) * mf_ld(rm, rt, c) + mom * ch[c - c0].mean);
          mf_st(rv, rt, c, (1 - mom) * mf_ld(rv, rt, c) + mom * unbiased);
        }
    }
    return;
  }
  int64_t G = n->ip[1], Cg = s.C / G;
  #pragma omp parallel for schedule(static) if (total > 16384 && s.N * G > 1)
  for (int64_t job = 0; job < s.N * G; job++) {
    int64_t nn = job / G, gi = job % G;
    double mean, rstd;
    gn_stats(src[0], xt, s, G, nn, gi, eps, &mean, &rstd);
    for (int64_t c = gi * Cg; c < (gi + 1) * Cg; c++) {
      double a = rstd * mf_ld(src[1], gt, c), b = mf_ld(src[2], btp, c) - mean * a;
      span_affine(src[0], xt, out, yt, (nn * s.C + c) * s.S, s.S, a, b, act, slope);
    }
  }
}

/* src x, dy, gamma[, rmean, rvar] -> dx = rstd * (gamma*dy - mean(gamma*dy) - xhat * mean(gamma*dy*xhat))
 * with the means over the statistic group (train), or dx = gamma * rstd * dy (eval batch norm). */
void mf_cpu_norm_bwd_dx(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0), *d = mf_src(k, n, 1), *ga = mf_src(k, n, 2);
  nshape s = shape_of(x);
  double eps = n->fp[0];
  mf_dtype xt = x->dtype, dt = d->dtype, gt = ga->dtype, ot = n->dtype;
  int64_t total = mf_node_numel(x);
  if (n->ip[0] == MF_NORM_BATCH) {
    bool training = n->ip[2];
    mf_dtype rt = n->nsrc >= 5 ? mf_src(k, n, 3)->dtype : MF_F32;
    const void *rm = n->nsrc >= 5 ? src[3] : NULL, *rv = n->nsrc >= 5 ? src[4] : NULL;
    /* training with the parameter gradients p [2,C] as src 3 (ops/norm.c): sum dy*xhat = p[0,c] and sum dy =
     * p[1,c], so the statistics pass reads x alone; p in f16/bf16 would round those sums: recomputed then */
    mf_dtype pt = training && n->nsrc == 4 ? mf_src(k, n, 3)->dtype : MF_F16;
    const void *p = pt == MF_F32 || pt == MF_F64 ? src[3] : NULL;
    int64_t cb = bn_block(s, xt, omp_get_max_threads()), blocks = (s.C + cb - 1) / cb;
    #pragma omp parallel for schedule(dynamic, 1) if (total > 16384 && blocks > 1)
    for (int64_t bi = 0; bi < blocks; bi++) {
      int64_t c0 = bi * cb, c1 = c0 + cb < s.C ? c0 + cb : s.C;
      bn_ch ch[BN_CB_MAX];
      double A[BN_CB_MAX], B[BN_CB_MAX] = {0}, Cc[BN_CB_MAX] = {0};
      bn_stats(src[0], xt, training && !p ? src[1] : NULL, dt, s, c0, c1, training, rm, rv, rt, eps, ch);
      for (int64_t c = c0; c < c1; c++) {
        const bn_ch *h = &ch[c - c0];
        int64_t i = c - c0;
        A[i] = h->rstd * mf_ld(src[2], gt, c);
        if (training) {
          double M = (double)(s.N * s.S);
          double mdy = (p ? mf_ld(p, pt, s.C + c) : h->sdy) / M, mdyxh = (p ? mf_ld(p, pt, c) : h->sdyx * h->rstd) / M;
          B[i] = -A[i] * h->rstd * mdyxh;
          Cc[i] = -A[i] * mdy - B[i] * h->mean;
        }
      }
      for (int64_t nn = 0; nn < s.N; nn++)
        for (int64_t c = c0; c < c1; c++)
          span_dx(src[0], xt, src[1], dt, out, ot, (nn * s.C + c) * s.S, s.S, A[c - c0], B[c - c0], Cc[c - c0]);
    }
    return;
  }
  int64_t G = n->ip[1], Cg = s.C / G;
  double M = (double)(Cg * s.S);
  #pragma omp parallel for schedule(static) if (total > 16384 && s.N * G > 1)
  for (int64_t job = 0; job < s.N * G; job++) {
    int64_t nn = job / G, gi = job % G;
    double mean, rstd, wdy = 0, wdyx = 0;
    gn_stats(src[0], xt, s, G, nn, gi, eps, &mean, &rstd);
    for (int64_t c = gi * Cg; c < (gi + 1) * Cg; c++) {
      double sdy = 0, sdyx = 0, gc = mf_ld(src[2], gt, c);
      span_dy(src[0], xt, src[1], dt, (nn * s.C + c) * s.S, s.S, mean, &sdy, &sdyx);
      wdy += gc * sdy;
      wdyx += gc * sdyx;
    }
    double mdxh = wdy / M, mdxhxh = wdyx * rstd / M, B = -rstd * rstd * mdxhxh, Cc = -rstd * mdxh - B * mean;
    for (int64_t c = gi * Cg; c < (gi + 1) * Cg; c++)
      span_dx(src[0], xt, src[1], dt, out, ot, (nn * s.C + c) * s.S, s.S, rstd * mf_ld(src[2], gt, c), B, Cc);
  }
}

#define GN_LANES 64 /* channels of one group whose parameter gradients one job accumulates */

/* src x, dy[, rmean, rvar] -> [2,C]: row 0 dgamma = sum dy * xhat, row 1 dbeta = sum dy */
void mf_cpu_norm_bwd_param(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0), *d = mf_src(k, n, 1);
  nshape s = shape_of(x);
  double eps = n->fp[0];
  mf_dtype xt = x->dtype, dt = d->dtype, ot = n->dtype;
  int64_t total = mf_node_numel(x);
  if (n->ip[0] == MF_NORM_BATCH) {
    bool training = n->ip[2];
    mf_dtype rt = n->nsrc >= 4 ? mf_src(k, n, 2)->dtype : MF_F32;
    const void *rm = n->nsrc >= 4 ? src[2] : NULL, *rv = n->nsrc >= 4 ? src[3] : NULL;
    int64_t cb = bn_block(s, xt, omp_get_max_threads()), blocks = (s.C + cb - 1) / cb;
    #pragma omp parallel for schedule(dynamic, 1) if (total > 16384 && blocks > 1)
    for (int64_t bi = 0; bi < blocks; bi++) {
      int64_t c0 = bi * cb, c1 = c0 + cb < s.C ? c0 + cb : s.C;
      bn_ch ch[BN_CB_MAX];
      bn_stats(src[0], xt, src[1], dt, s, c0, c1, training, rm, rv, rt, eps, ch);
      for (int64_t c = c0; c < c1; c++) {
        mf_st(out, ot, c, ch[c - c0].sdyx * ch[c - c0].rstd);
        mf_st(out, ot, s.C + c, ch[c - c0].sdy);
      }
    }
    return;
  }
  int64_t G = n->ip[1], Cg = s.C / G, chunks = (Cg + GN_LANES - 1) / GN_LANES;
  #pragma omp parallel for schedule(static) if (total > 16384 && G * chunks > 1)
  for (int64_t job = 0; job < G * chunks; job++) {
    int64_t gi = job / chunks, c0 = gi * Cg + (job % chunks) * GN_LANES;
    int64_t c1 = c0 + GN_LANES < (gi + 1) * Cg ? c0 + GN_LANES : (gi + 1) * Cg;
    double dg[GN_LANES] = {0}, db[GN_LANES] = {0};
    for (int64_t nn = 0; nn < s.N; nn++) {
      double mean, rstd;
      gn_stats(src[0], xt, s, G, nn, gi, eps, &mean, &rstd);
      for (int64_t c = c0; c < c1; c++) {
        double sdy = 0, sdyx = 0;
        span_dy(src[0], xt, src[1], dt, (nn * s.C + c) * s.S, s.S, mean, &sdy, &sdyx);
        dg[c - c0] += sdyx * rstd;
        db[c - c0] += sdy;
      }
    }
    for (int64_t c = c0; c < c1; c++) {
      mf_st(out, ot, c, dg[c - c0]);
      mf_st(out, ot, s.C + c, db[c - c0]);
    }
  }
}

/* ---- L2 normalisation along the last axis: rows of D, each in double, independent of threads ---- */
/* x [R,D] -> y = x / max(||x||, eps) */
void mf_cpu_l2norm(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int64_t D = n->ne[n->ndim - 1], R = D ? mf_node_numel(n) / D : 0;
  double eps = n->fp[0];
  #pragma omp parallel for schedule(static) if (R * D > 32768)
  for (int64_t r = 0; r < R; r++) {
    double ss = 0;
    for (int64_t j = 0; j < D; j++) { double v = mf_ld(src[0], x->dtype, r * D + j); ss += v * v; }
    double nr = sqrt(ss), inv = 1 / (nr > eps ? nr : eps);
    for (int64_t j = 0; j < D; j++) mf_st(out, n->dtype, r * D + j, mf_ld(src[0], x->dtype, r * D + j) * inv);
  }
}

/* x, dy [R,D] -> dx = (dy - y <y,dy>) / ||x|| (||x|| > eps), else dy / eps */
void mf_cpu_l2norm_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0), *dy = mf_src(k, n, 1);
  int64_t D = n->ne[n->ndim - 1], R = D ? mf_node_numel(n) / D : 0;
  double eps = n->fp[0];
  #pragma omp parallel for schedule(static) if (R * D > 32768)
  for (int64_t r = 0; r < R; r++) {
    double ss = 0, yd = 0;
    for (int64_t j = 0; j < D; j++) {
      double v = mf_ld(src[0], x->dtype, r * D + j);
      ss += v * v;
      yd += v * mf_ld(src[1], dy->dtype, r * D + j);
    }
    double nr = sqrt(ss);
    if (nr > eps) {
      double inv = 1 / nr, c = yd * inv * inv; /* <y,dy> / ||x|| = <x,dy> / ||x||^2 */
      for (int64_t j = 0; j < D; j++)
        mf_st(out, n->dtype, r * D + j, (mf_ld(src[1], dy->dtype, r * D + j) - mf_ld(src[0], x->dtype, r * D + j) * c) * inv);
    } else
      for (int64_t j = 0; j < D; j++) mf_st(out, n->dtype, r * D + j, mf_ld(src[1], dy->dtype, r * D + j) / eps);
  }
}

/* softmax / log-softmax (ip0) over the last axis, per row in double: x [R,D] -> y */
void mf_cpu_softmax(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int64_t D = n->ne[n->ndim - 1], R = D ? mf_node_numel(n) / D : 0;
  int lg = n->ip[0];
  #pragma omp parallel for schedule(static) if (R * D > 32768)
  for (int64_t r = 0; r < R; r++) {
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < D; j++) { double v = mf_ld(src[0], x->dtype, r * D + j); mx = v > mx ? v : mx; }
    for (int64_t j = 0; j < D; j++) s += exp(mf_ld(src[0], x->dtype, r * D + j) - mx);
    double ls = log(s);
    for (int64_t j = 0; j < D; j++) {
      double v = mf_ld(src[0], x->dtype, r * D + j) - mx;
      mf_st(out, n->dtype, r * D + j, lg ? v - ls : exp(v) / s);
    }
  }
}

/* y, dy [R,D] -> dx = y (dy - <y,dy>), or for log-softmax dy - exp(y) sum(dy) */
void mf_cpu_softmax_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *y = mf_src(k, n, 0), *dy = mf_src(k, n, 1);
  int64_t D = n->ne[n->ndim - 1], R = D ? mf_node_numel(n) / D : 0;
  int lg = n->ip[0];
  #pragma omp parallel for schedule(static) if (R * D > 32768)
  for (int64_t r = 0; r < R; r++) {
    double s = 0;
    for (int64_t j = 0; j < D; j++) {
      double d = mf_ld(src[1], dy->dtype, r * D + j);
      s += lg ? d : d * mf_ld(src[0], y->dtype, r * D + j);
    }
    for (int64_t j = 0; j < D; j++) {
      double v = mf_ld(src[0], y->dtype, r * D + j), d = mf_ld(src[1], dy->dtype, r * D + j);
      mf_st(out, n->dtype, r * D + j, lg ? d - exp(v) * s : v * (d - s));
    }
  }
}

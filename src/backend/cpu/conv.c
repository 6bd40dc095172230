/* conv.c (CPU) — GEMM-based kernels for matmul and conv2d (forward, backward-data, backward-weight)
 * on OpenBLAS, plus the exact workspace each node needs (the planner reserves exactly that).
 *
 * Compute type: f64 (dgemm) when the node's output is f64, else f32 (sgemm). Operands stored in
 * another dtype (f16/bf16 activations and weight copies) are converted into f32 workspace while
 * they are gathered / padded / repacked, and outputs are rounded once at the end. Nothing here
 * allocates: every scratch byte is in `ws`, sized by mf_cpu_ws_conv / mf_cpu_ws_matmul.
 *
 * conv2d (x [N,C,H,W], w [OC,Cg,KH,KW], Cg = C/groups, y [N,OC,OH,OW]); per image and group, one
 * of these algorithms, chosen from the shapes alone (conv_geometry):
 *   IM2COL    forward  y_g [OCg,OHW] = w_g [OCg,K] . col_g [K,OHW],  K = Cg*KH*KW
 *             bwd w    dw_g [OCg,K] += dy_g [OCg,OHW] . col_g^T (summed over images)
 *   IMPLICIT  (stride 1, >= 32 channels each side) KH*KW GEMMs on shifted views of a zero-padded
 *             copy of the input: no im2col buffer, GEMM inner size Cg / OCg / OH*(W+2p)
 *   STACKED   (stride 1, >= 32 input but few output channels) one GEMM for all taps at once:
 *             forward Z [KH*KW*OCg, Hp*Wp] = w . xpad then a shift-add; bwd weight against
 *             KH*KW shifted copies of dy
 *   ROUTE_A   bwd data: col_g [K,OHW] = w_g^T . dy_g, then col2im into dx
 *   ROUTE_B   bwd data, stride 1, OC <= C: the transposed conv, im2col of dy (OC*KH*KW rows
 *             instead of C*KH*KW) with the flipped, transposed weight and pad KH-1-p
 * 1x1 convolutions with stride 1 and no padding use x / dx directly as the column matrix.
 *
 * Threads: padding / im2col / col2im / conversions run with OpenMP over rows; GEMMs use
 * OpenBLAS's own (OpenMP) threads. The workspace does not depend on the thread count. */
#include "backend/cpu/cpu.h"
#include <cblas.h>
#include <string.h>

/* ------------------------------------------------------------------ shared helpers */

#define WS_ALIGN 64
static size_t align_up(size_t b) { return (b + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

static mf_dtype compute_type(mf_dtype out) { return out == MF_F64 ? MF_F64 : MF_F32; }

/* Row-major C[M,N] = alpha op(A) op(B) + beta C in the compute type. */
static void gemm(mf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda, const void *B,
                 int64_t ldb, double beta, void *C, int64_t ldc) {
  if (ct == MF_F64)
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K,
                1.0, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
  else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K,
                1.0f, A, (blasint)lda, B, (blasint)ldb, (float)beta, C, (blasint)ldc);
}

/* dst[doff + i] (compute type ct) = src[soff + i*sst] (dtype st), i < n */
static inline void seg_load(void *dst, mf_dtype ct, int64_t doff, const void *src, mf_dtype st, int64_t soff, int64_t sst,
                            int64_t n) {
  if (ct == MF_F32) {
    float *d = (float *)dst + doff;
    if (st == MF_F32) {
      const float *s = (const float *)src + soff;
      if (sst == 1) memcpy(d, s, (size_t)n * sizeof *d);
      else for (int64_t i = 0; i < n; i++) d[i] = s[i * sst];
    } else if (st == MF_BF16) {
      const uint16_t *s = (const uint16_t *)src + soff;
      for (int64_t i = 0; i < n; i++) d[i] = mf_bf16_to_f32(s[i * sst]);
    } else if (st == MF_F16) {
      const uint16_t *s = (const uint16_t *)src + soff;
      for (int64_t i = 0; i < n; i++) d[i] = mf_f16_to_f32(s[i * sst]);
    } else {
      for (int64_t i = 0; i < n; i++) d[i] = (float)mf_ld(src, st, soff + i * sst);
    }
  } else {
    double *d = (double *)dst + doff;
    if (st == MF_F64) {
      const double *s = (const double *)src + soff;
      if (sst == 1) memcpy(d, s, (size_t)n * sizeof *d);
      else for (int64_t i = 0; i < n; i++) d[i] = s[i * sst];
    } else {
      for (int64_t i = 0; i < n; i++) d[i] = mf_ld(src, st, soff + i * sst);
    }
  }
}

/* n elements from src (dtype st, starting at element soff) to dst (dtype dt, at doff), in parallel */
static void convert_par(void *dst, mf_dtype dt, int64_t doff, const void *src, mf_dtype st, int64_t soff, int64_t n) {
  const int64_t chunk = 16384;
  int64_t nch = (n + chunk - 1) / chunk;
  #pragma omp parallel for schedule(static) if (nch > 1)
  for (int64_t c = 0; c < nch; c++) {
    int64_t i0 = c * chunk, len = n - i0 < chunk ? n - i0 : chunk;
    if (dt == MF_F32 || dt == MF_F64) seg_load(dst, dt, doff + i0, src, st, soff + i0, 1, len);
    else if (dt == MF_BF16 && st == MF_F32) {
      uint16_t *d = (uint16_t *)dst + doff + i0;
      const float *s = (const float *)src + soff + i0;
      for (int64_t i = 0; i < len; i++) d[i] = mf_f32_to_bf16(s[i]);
    } else
      for (int64_t i = 0; i < len; i++) mf_st(dst, dt, doff + i0 + i, mf_ld(src, st, soff + i0 + i));
  }
}

static void zero_ct(void *p, mf_dtype ct, int64_t off, int64_t n) {
  size_t es = mf_dtype_size(ct);
  memset((char *)p + (size_t)off * es, 0, (size_t)n * es);
}

/* ------------------------------------------------------------------ conv geometry and workspace */

typedef struct conv_geo {
  int64_t N, C, H, W, OC, KH, KW, OH, OW, G, Cg, OCg, HW, OHW, K; /* K = Cg*KH*KW */
  int s, p;    /* stride (of H); the pad of every side when plain */
  int d, pt, pl; /* dilation (of H), top and left pads (the bottom and right ones only set OH, OW) */
  int sw, dw;  /* stride and dilation of W (equal to s, d when plain) */
  bool plain;  /* dilation 1, one pad on every side: the only geometry IMPLICIT, STACKED, ROUTE_B and oneDNN take */
  bool direct; /* 1x1, stride 1, pad 0: x itself is the column matrix */
  int algo;    /* CONV_* below, chosen from the shapes alone (so the workspace is known when planning) */
} conv_geo;

enum {
  CONV_IM2COL = 0, /* forward / bwd weight: im2col (or x itself when direct) + one GEMM per group */
  CONV_IMPLICIT,   /* stride 1: KH*KW shifted GEMMs over a zero-padded copy (no im2col) */
  CONV_STACKED,    /* stride 1, few output channels: one GEMM for all KH*KW taps stacked, then
                    * a shift-add (forward) / GEMM against KH*KW shifted copies of dy (bwd weight) */
  CONV_ROUTE_A,    /* bwd data: w^T dy then col2im (direct: straight into dx) */
  CONV_ROUTE_B,    /* bwd data: im2col of dy and the flipped, transposed weight */
};

/* The three conv ops see (x, w, y) in different places: src / output. */
static void conv_nodes(const mf_graph *g, const mf_node *n, const mf_node **x, const mf_node **w, const mf_node **y) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  switch (n->op) {
  case MF_OP_CONV2D: *x = s0; *w = s1; *y = n; break;
  case MF_OP_CONV2D_BWD_DATA: *y = s0; *w = s1; *x = n; break;
  default: *x = s0; *y = s1; *w = n; break;
  }
}

static void conv_geometry(const mf_graph *g, const mf_node *n, conv_geo *c) {
  const mf_node *x, *w, *y;
  conv_nodes(g, n, &x, &w, &y);
  c->N = x->ne[0]; c->C = x->ne[1]; c->H = x->ne[2]; c->W = x->ne[3];
  c->OC = w->ne[0]; c->KH = w->ne[2]; c->KW = w->ne[3];
  c->OH = y->ne[2]; c->OW = y->ne[3];
  mf_conv_cfg cf = mf_conv_cfg_of(n);
  c->s = cf.stride; c->p = cf.pt; c->G = cf.groups;
  c->d = cf.dil; c->pt = cf.pt; c->pl = cf.pl;
  c->sw = mf_conv_sw(&cf); c->dw = mf_conv_dw(&cf);
  c->plain = mf_conv_cfg_plain(&cf);
  c->Cg = c->C / c->G; c->OCg = c->OC / c->G;
  c->HW = c->H * c->W; c->OHW = c->OH * c->OW;
  c->K = c->Cg * c->KH * c->KW;
  c->direct = c->KH == 1 && c->KW == 1 && c->s == 1 && c->plain && c->p == 0;
  /* Implicit GEMM needs stride 1 (and, as a transposed conv for bwd data, pad < kernel size). Its
   * per-tap GEMMs have sizes OCg x OH*(W+2p) x Cg (forward), Cg x H*(OW+..) x OCg (bwd data),
   * OCg x Cg x OH*(W+2p) (bwd weight): OpenBLAS (measured on Zen 4) runs them near its peak when
   * both channel counts are >= 32. Below that: few input channels -> im2col (its single GEMM
   * has inner size Cg*KH*KW), few output channels -> the stacked-taps GEMM. */
  bool s1 = c->s == 1 && !c->direct && c->plain, tpad = c->p <= c->KH - 1 && c->p <= c->KW - 1;
  const int64_t thr = 32;
  bool bigc = c->Cg >= thr, bigoc = c->OCg >= thr;
  switch (n->op) {
  case MF_OP_CONV2D:
  case MF_OP_CONV2D_BWD_WEIGHT:
    c->algo = s1 && bigc ? (bigoc ? CONV_IMPLICIT : CONV_STACKED) : CONV_IM2COL;
    break;
  default: /* bwd data */
    c->algo = s1 && tpad && bigc && bigoc ? CONV_IMPLICIT : s1 && tpad && c->OC <= c->C ? CONV_ROUTE_B : CONV_ROUTE_A;
    break;
  }
}

/* Workspace layout: element counts (compute type) of each region, byte offsets, total bytes. */
typedef struct conv_ws {
  mf_dtype ct;
  int64_t n_col, n_w, n_in, n_out;
  size_t o_col, o_w, o_in, o_out, total;
} conv_ws;

static void conv_ws_layout(const mf_graph *g, const mf_node *n, const conv_geo *c, conv_ws *l) {
  const mf_node *x, *w, *y;
  conv_nodes(g, n, &x, &w, &y);
  mf_dtype ct = compute_type(n->dtype);
  l->ct = ct;
  l->n_col = l->n_w = l->n_in = l->n_out = 0;
  int64_t KK = c->KH * c->KW, Hp = c->H + 2 * c->p, Wp = c->W + 2 * c->p;
  if (c->algo == CONV_STACKED) {
    /* col: zero-padded input image, w: weight as [G][KH*KW][OCg][Cg] (forward),
     * out: all taps' products [KH*KW*OCg, Hp*Wp] of one group (forward) / dw as [G][KH*KW][OCg][Cg]
     * (bwd weight), in: KH*KW shifted, zero-padded copies of one group of dy (bwd weight) */
    l->n_col = c->C * Hp * Wp;
    if (n->op == MF_OP_CONV2D) {
      l->n_w = c->OC * c->Cg * KK;
      l->n_out = KK * c->OCg * Hp * Wp;
    } else {
      l->n_in = KK * c->OCg * Hp * Wp;
      l->n_out = c->OC * c->Cg * KK;
    }
  } else if (c->algo == CONV_IMPLICIT) {
    /* col: zero-padded input image (+ KW-1 slack the last shifted view reads past the end),
     * w: weight as [G][KH*KW][OCg][Cg], in: dy on the padded-width grid (bwd weight),
     * out: output on the padded-width grid (fwd, bwd data) / dw as [G][KH*KW][OCg][Cg] (bwd weight) */
    l->n_w = c->OC * c->Cg * KK;
    switch (n->op) {
    case MF_OP_CONV2D:
      l->n_col = c->C * Hp * Wp + c->KW - 1;
      l->n_out = c->OC * c->OH * Wp;
      break;
    case MF_OP_CONV2D_BWD_DATA: {
      int64_t Hq = c->OH + 2 * (c->KH - 1 - c->p), Wq = c->OW + 2 * (c->KW - 1 - c->p);
      l->n_col = c->OC * Hq * Wq + c->KW - 1;
      l->n_out = c->C * c->H * Wq;
      break;
    }
    default:
      l->n_w = 0;
      l->n_col = c->C * Hp * Wp + c->KW - 1;
      l->n_in = c->OC * c->OH * Wp;
      l->n_out = c->OC * c->Cg * KK;
      break;
    }
  } else {
    switch (n->op) {
    case MF_OP_CONV2D:
      if (!c->direct || x->dtype != ct) l->n_col = c->C * KK * c->OHW; /* im2col of one image */
      if (w->dtype != ct) l->n_w = c->OC * c->K;                       /* compute-type copy of w */
      if (y->dtype != ct) l->n_out = c->OC * c->OHW;                   /* one image of y */
      break;
    case MF_OP_CONV2D_BWD_DATA:
      if (c->algo == CONV_ROUTE_B) {
        l->n_w = c->OC * c->K;                 /* flipped, transposed weight */
        l->n_col = c->OC * KK * c->HW;         /* im2col of one image of dy */
      } else {
        if (!c->direct) l->n_col = c->C * KK * c->OHW; /* w^T dy before col2im */
        if (w->dtype != ct) l->n_w = c->OC * c->K;
        if (y->dtype != ct) l->n_in = c->OC * c->OHW;  /* one image of dy */
      }
      if (x->dtype != ct) l->n_out = c->C * c->HW;     /* one image of dx */
      break;
    default: /* CONV2D_BWD_WEIGHT */
      if (!c->direct || x->dtype != ct) l->n_col = c->C * KK * c->OHW;
      if (y->dtype != ct) l->n_in = c->OC * c->OHW;
      if (w->dtype != ct) l->n_out = c->OC * c->K;     /* dw accumulated over images */
      break;
    }
  }
  size_t es = mf_dtype_size(ct), o = 0;
  l->o_col = o; o += align_up((size_t)l->n_col * es);
  l->o_w = o; o += align_up((size_t)l->n_w * es);
  l->o_in = o; o += align_up((size_t)l->n_in * es);
  l->o_out = o; o += align_up((size_t)l->n_out * es);
  l->total = o;
}

/* Exact scratch bytes of a conv node; independent of the number of threads. */
size_t mf_cpu_ws_conv(const mf_graph *g, const mf_node *n) {
  conv_geo c;
  conv_ws l;
  conv_geometry(g, n, &c);
  conv_ws_layout(g, n, &c, &l);
  return l.total;
}

/* ------------------------------------------------------------------ im2col / col2im */

/* col [Cn*KH*KW, OH*OW] (type ct) from one image img [Cn,H,W] (dtype st) with strides s (H), sw (W), dilations dl (H),
 * dw (W) and pads ph, pw; rows ordered (c, kh, kw) as the weight [.., Cn, KH, KW] is. */
static void im2col(void *col, mf_dtype ct, const void *img, mf_dtype st, int64_t img_off, int64_t Cn, int64_t H, int64_t W,
                   int64_t KH, int64_t KW, int s, int dl, int sw, int dw, int64_t ph, int64_t pw, int64_t OH, int64_t OW) {
  int64_t rows = Cn * KH * KW;
  #pragma omp parallel for schedule(static) if (rows * OH * OW > 16384)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r / (KH * KW), kh = (r / KW) % KH * dl, kw = r % KW * dw; /* tap offsets, dilated */
    /* ow range whose iw = ow*sw - pw + kw lies in [0, W) */
    int64_t lo = pw - kw, ow0 = lo <= 0 ? 0 : (lo + sw - 1) / sw;
    int64_t hi = W - 1 + pw - kw, ow1 = hi < 0 ? 0 : hi / sw + 1;
    if (ow1 > OW) ow1 = OW;
    if (ow0 > ow1) ow0 = ow1;
    for (int64_t oh = 0; oh < OH; oh++) {
      int64_t ih = oh * s - ph + kh, d = (r * OH + oh) * OW;
      if (ih < 0 || ih >= H) { zero_ct(col, ct, d, OW); continue; }
      if (ow0 > 0) zero_ct(col, ct, d, ow0);
      if (ow1 > ow0) seg_load(col, ct, d + ow0, img, st, img_off + (c * H + ih) * W + ow0 * sw - pw + kw, sw, ow1 - ow0);
      if (ow1 < OW) zero_ct(col, ct, d + ow1, OW - ow1);
    }
  }
}

/* dx [Cn,H,W] (type T) = sum of col [Cn*KH*KW, OH*OW] rows scattered back (zeroes dx first) */
#define DEFINE_COL2IM(T, NAME)                                                                              \
  static void NAME(T *dx, const T *col, int64_t Cn, int64_t H, int64_t W, int64_t KH, int64_t KW, int s, int dl,    \
                   int sw, int dw, int64_t ph, int64_t pw, int64_t OH, int64_t OW) {                         \
    _Pragma("omp parallel for schedule(static) if (Cn * H * W * KH * KW > 16384)")                          \
    for (int64_t c = 0; c < Cn; c++) {                                                                       \
      T *plane = dx + c * H * W;                                                                             \
      memset(plane, 0, (size_t)(H * W) * sizeof(T));                                                         \
      for (int64_t kh0 = 0; kh0 < KH; kh0++)                                                                 \
        for (int64_t kw0 = 0; kw0 < KW; kw0++) {                                                             \
          const T *row = col + ((c * KH + kh0) * KW + kw0) * OH * OW;                                        \
          int64_t kh = kh0 * dl, kw = kw0 * dw;                                                              \
          int64_t lo = pw - kw, ow0 = lo <= 0 ? 0 : (lo + sw - 1) / sw;                                      \
          int64_t hi = W - 1 + pw - kw, ow1 = hi < 0 ? 0 : hi / sw + 1;                                     \
          if (ow1 > OW) ow1 = OW;                                                                            \
          for (int64_t oh = 0; oh < OH; oh++) {                                                              \
            int64_t ih = oh * s - ph + kh;                                                                   \
            if (ih < 0 || ih >= H) continue;                                                                 \
            T *dst = plane + ih * W - pw + kw;                                                               \
            const T *sr = row + oh * OW;                                                                     \
            if (sw == 1)                                                                                     \
              for (int64_t ow = ow0; ow < ow1; ow++) dst[ow] += sr[ow];                                      \
            else                                                                                             \
              for (int64_t ow = ow0; ow < ow1; ow++) dst[ow * sw] += sr[ow];                                 \
          }                                                                                                  \
        }                                                                                                    \
    }                                                                                                        \
  }
DEFINE_COL2IM(float, col2im_f32)
DEFINE_COL2IM(double, col2im_f64)

static void col2im(void *dx, mf_dtype ct, const void *col, const conv_geo *c) {
  if (ct == MF_F64) col2im_f64(dx, col, c->C, c->H, c->W, c->KH, c->KW, c->s, c->d, c->sw, c->dw, c->pt, c->pl, c->OH, c->OW);
  else col2im_f32(dx, col, c->C, c->H, c->W, c->KH, c->KW, c->s, c->d, c->sw, c->dw, c->pt, c->pl, c->OH, c->OW);
}

static inline void *at(void *base, mf_dtype t, int64_t i) { return (char *)base + (size_t)i * mf_dtype_size(t); }
static inline const void *cat_(const void *base, mf_dtype t, int64_t i) { return (const char *)base + (size_t)i * mf_dtype_size(t); }

/* ------------------------------------------------------------------ implicit GEMM (stride 1)
 * With the input zero-padded to [Cn, Hp, Wp], the input pixels that kernel tap (kh, kw) meets are,
 * for outputs on a padded-width grid [OH, Wp], the contiguous run starting at kh*Wp + kw of every
 * channel plane: a plain strided matrix [Cn, OH*Wp] (row stride Hp*Wp) that GEMM reads in place.
 * The last KW-1 columns of each grid row are garbage (they wrap into the next row) and are
 * dropped when compacting; the last view reads KW-1 elements past the final plane (zeroed slack). */

/* dst [Cn][Hp][Wp] (type ct) = src image [Cn][H][W] (dtype st, at element soff) padded by ph, pw;
 * then `slack` zeros */
static void pad_copy(void *dst, mf_dtype ct, const void *src, mf_dtype st, int64_t soff, int64_t Cn, int64_t H, int64_t W,
                     int64_t ph, int64_t pw, int64_t slack) {
  int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  #pragma omp parallel for schedule(static) if (Cn * Hp * Wp > 16384)
  for (int64_t c = 0; c < Cn; c++) {
    int64_t base = c * Hp * Wp;
    zero_ct(dst, ct, base, ph * Wp + pw); /* top rows and the first left margin */
    for (int64_t h = 0; h < H; h++) {
      int64_t d = base + (h + ph) * Wp + pw;
      seg_load(dst, ct, d, src, st, soff + (c * H + h) * W, 1, W);
      /* right margin of this row + left margin of the next */
      zero_ct(dst, ct, d + W, h + 1 < H ? 2 * pw : pw + ph * Wp);
    }
  }
  if (slack) zero_ct(dst, ct, Cn * Hp * Wp, slack);
}

/* dst [Cn][OH][Wp] (type ct) = src [Cn][OH][OW] (dtype st) with zeros in columns OW..Wp-1 */
static void widen_copy(void *dst, mf_dtype ct, const void *src, mf_dtype st, int64_t soff, int64_t Cn, int64_t OH, int64_t OW,
                       int64_t Wp) {
  int64_t rows = Cn * OH;
  #pragma omp parallel for schedule(static) if (rows * Wp > 16384)
  for (int64_t r = 0; r < rows; r++) {
    seg_load(dst, ct, r * Wp, src, st, soff + r * OW, 1, OW);
    zero_ct(dst, ct, r * Wp + OW, Wp - OW);
  }
}

/* dst (dtype dt, at element doff) [Cn][OH][OW] = src [Cn][OH][Wp] (type ct) minus the garbage
 * columns, plus bias[c] when given */
static void compact(void *dst, mf_dtype dt, int64_t doff, const void *src, mf_dtype ct, int64_t Cn, int64_t OH, int64_t OW,
                    int64_t Wp, const void *bias, mf_dtype bt) {
  int64_t rows = Cn * OH;
  #pragma omp parallel for schedule(static) if (rows * OW > 16384)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r / OH;
    if (dt == MF_F32 && ct == MF_F32) {
      float *d = (float *)dst + doff + r * OW;
      const float *sr = (const float *)src + r * Wp;
      if (bias) {
        float b = bt == MF_F32 ? ((const float *)bias)[c] : (float)mf_ld(bias, bt, c);
        for (int64_t j = 0; j < OW; j++) d[j] = sr[j] + b;
      } else memcpy(d, sr, (size_t)OW * sizeof(float));
    } else if (dt == MF_BF16 && ct == MF_F32) {
      uint16_t *d = (uint16_t *)dst + doff + r * OW;
      const float *sr = (const float *)src + r * Wp;
      float b = bias ? (float)mf_ld(bias, bt, c) : 0.0f;
      for (int64_t j = 0; j < OW; j++) d[j] = mf_f32_to_bf16(sr[j] + b);
    } else {
      double b = bias ? mf_ld(bias, bt, c) : 0.0;
      for (int64_t j = 0; j < OW; j++) mf_st(dst, dt, doff + r * OW + j, mf_ld(src, ct, r * Wp + j) + b);
    }
  }
}

/* index of (group gi, tap q, channel oc of the group, c) in the [G][KH*KW][OCg][Cg] weight layout */
static inline int64_t wk_index(const conv_geo *c, int64_t gi, int64_t q, int64_t oc, int64_t ci) {
  return ((gi * c->KH * c->KW + q) * c->OCg + oc) * c->Cg + ci;
}

/* wk [G][KH*KW][OCg][Cg] (type ct) from w [OC][Cg][KH][KW] */
static void repack_w(void *wk, mf_dtype ct, const void *w, mf_dtype wt, const conv_geo *c) {
  int64_t KK = c->KH * c->KW, GK = c->G * KK;
  #pragma omp parallel for schedule(static) if (c->OC * c->Cg * KK > 16384)
  for (int64_t j = 0; j < GK; j++) {
    int64_t gi = j / KK, q = j % KK;
    for (int64_t oc = 0; oc < c->OCg; oc++)
      for (int64_t ci = 0; ci < c->Cg; ci++) {
        int64_t d = wk_index(c, gi, q, oc, ci), s = ((gi * c->OCg + oc) * c->Cg + ci) * KK + q;
        if (ct == MF_F32 && wt == MF_F32) ((float *)wk)[d] = ((const float *)w)[s];
        else if (ct == MF_F32) ((float *)wk)[d] = (float)mf_ld(w, wt, s);
        else ((double *)wk)[d] = mf_ld(w, wt, s);
      }
  }
}

/* dw [OC][Cg][KH][KW] (dtype dt) from dwk [G][KH*KW][OCg][Cg] (type ct) */
static void unpack_dw(void *dw, mf_dtype dt, const void *dwk, mf_dtype ct, const conv_geo *c) {
  int64_t KK = c->KH * c->KW;
  #pragma omp parallel for schedule(static) if (c->OC * c->Cg * KK > 16384)
  for (int64_t o = 0; o < c->OC; o++) {
    int64_t gi = o / c->OCg, oc = o % c->OCg;
    for (int64_t ci = 0; ci < c->Cg; ci++)
      for (int64_t q = 0; q < KK; q++) {
        int64_t d = (o * c->Cg + ci) * KK + q, s = wk_index(c, gi, q, oc, ci);
        if (dt == MF_F32 && ct == MF_F32) ((float *)dw)[d] = ((const float *)dwk)[s]; /* the common case, no conversion */
        else mf_st(dw, dt, d, mf_ld(dwk, ct, s));
      }
  }
}

/* y_n = sum over taps k of w_k [OCg, Cg] . xview_k [Cg, OH*Wp] per group */
static void fwd_implicit(const mf_kctx *k, const mf_node *n, const conv_geo *c, const conv_ws *l, void *out, void *const *src,
                         char *wsb) {
  const mf_node *nx = mf_src(k, n, 0), *nw = mf_src(k, n, 1), *nb = n->nsrc > 2 ? mf_src(k, n, 2) : NULL;
  mf_dtype ct = l->ct;
  int64_t KK = c->KH * c->KW, Hp = c->H + 2 * c->p, Wp = c->W + 2 * c->p, NW = c->OH * Wp;
  void *xp = wsb + l->o_col, *wk = wsb + l->o_w, *yp = wsb + l->o_out;
  repack_w(wk, ct, src[1], nw->dtype, c);
  for (int64_t i = 0; i < c->N; i++) {
    pad_copy(xp, ct, src[0], nx->dtype, i * c->C * c->HW, c->C, c->H, c->W, c->p, c->p, c->KW - 1);
    for (int64_t q = 0; q < KK; q++)
      for (int64_t gi = 0; gi < c->G; gi++)
        gemm(ct, 0, 0, c->OCg, NW, c->Cg, at(wk, ct, wk_index(c, gi, q, 0, 0)), c->Cg,
             at(xp, ct, gi * c->Cg * Hp * Wp + (q / c->KW) * Wp + q % c->KW), Hp * Wp, q ? 1.0 : 0.0,
             at(yp, ct, gi * c->OCg * NW), NW);
    compact(out, n->dtype, i * c->OC * c->OHW, yp, ct, c->OC, c->OH, c->OW, Wp, nb ? src[2] : NULL, nb ? nb->dtype : MF_F32);
  }
}

/* dx_n = transposed conv of dy_n: taps of the flipped kernel, w_k^T [Cg, OCg] . dyview_k */
static void bwd_data_implicit(const mf_kctx *k, const mf_node *n, const conv_geo *c, const conv_ws *l, void *out,
                              void *const *src, char *wsb) {
  const mf_node *nd = mf_src(k, n, 0), *nw = mf_src(k, n, 1);
  mf_dtype ct = l->ct;
  int64_t KK = c->KH * c->KW, ph = c->KH - 1 - c->p, pw = c->KW - 1 - c->p;
  int64_t Hq = c->OH + 2 * ph, Wq = c->OW + 2 * pw, NW = c->H * Wq;
  void *dyp = wsb + l->o_col, *wk = wsb + l->o_w, *dxp = wsb + l->o_out;
  repack_w(wk, ct, src[1], nw->dtype, c);
  for (int64_t i = 0; i < c->N; i++) {
    pad_copy(dyp, ct, src[0], nd->dtype, i * c->OC * c->OHW, c->OC, c->OH, c->OW, ph, pw, c->KW - 1);
    for (int64_t q = 0; q < KK; q++) {
      int64_t kh = q / c->KW, kw = q % c->KW, qf = (c->KH - 1 - kh) * c->KW + (c->KW - 1 - kw);
      for (int64_t gi = 0; gi < c->G; gi++)
        gemm(ct, 1, 0, c->Cg, NW, c->OCg, at(wk, ct, wk_index(c, gi, qf, 0, 0)), c->Cg,
             at(dyp, ct, gi * c->OCg * Hq * Wq + kh * Wq + kw), Hq * Wq, q ? 1.0 : 0.0, at(dxp, ct, gi * c->Cg * NW), NW);
    }
    compact(out, n->dtype, i * c->C * c->HW, dxp, ct, c->C, c->H, c->W, Wq, NULL, MF_F32);
  }
}

/* dw_k [OCg, Cg] = sum over images of dy_n [OCg, OH*Wp] . xview_k^T */
static void bwd_weight_implicit(const mf_kctx *k, const mf_node *n, const conv_geo *c, const conv_ws *l, void *out,
                                void *const *src, char *wsb) {
  const mf_node *nx = mf_src(k, n, 0), *nd = mf_src(k, n, 1);
  mf_dtype ct = l->ct;
  int64_t KK = c->KH * c->KW, Hp = c->H + 2 * c->p, Wp = c->W + 2 * c->p, NW = c->OH * Wp;
  void *xp = wsb + l->o_col, *dyp = wsb + l->o_in, *dwk = wsb + l->o_out;
  for (int64_t i = 0; i < c->N; i++) {
    pad_copy(xp, ct, src[0], nx->dtype, i * c->C * c->HW, c->C, c->H, c->W, c->p, c->p, c->KW - 1);
    widen_copy(dyp, ct, src[1], nd->dtype, i * c->OC * c->OHW, c->OC, c->OH, c->OW, Wp);
    for (int64_t q = 0; q < KK; q++)
      for (int64_t gi = 0; gi < c->G; gi++)
        gemm(ct, 0, 1, c->OCg, c->Cg, NW, at(dyp, ct, gi * c->OCg * NW), NW,
             at(xp, ct, gi * c->Cg * Hp * Wp + (q / c->KW) * Wp + q % c->KW), Hp * Wp, i ? 1.0 : 0.0,
             at(dwk, ct, wk_index(c, gi, q, 0, 0)), c->Cg);
  }
  unpack_dw(out, n->dtype, dwk, ct, c);
}

/* Stacked taps, forward: Z [KH*KW*OCg, Hp*Wp] = wk_g [KH*KW*OCg, Cg] . xpad_g [Cg, Hp*Wp] (one GEMM
 * per group), then y[oc][oh][ow] = sum over taps (kh,kw) of Z[tap][oc][(oh+kh)*Wp + ow+kw]. The
 * sum is gathered in place into tap 0's block (its element (oh,ow) is read by output (oh,ow) only). */
#define DEFINE_SHIFT_ADD(T, NAME)                                                                            \
  static void NAME(T *Z, int64_t OCg, int64_t KH, int64_t KW, int64_t OH, int64_t OW, int64_t Hp, int64_t Wp) {    \
    int64_t P = Hp * Wp, rows = OCg * OH;                                                                      \
    _Pragma("omp parallel for schedule(static) if (rows * OW * KH * KW > 32768)")                            \
    for (int64_t r = 0; r < rows; r++) {                                                                       \
      int64_t oc = r / OH, oh = r % OH;                                                                        \
      T *acc = Z + oc * P + oh * Wp;                                                                           \
      for (int64_t q = 1; q < KH * KW; q++) {                                                                  \
        const T *sr = Z + (q * OCg + oc) * P + (oh + q / KW) * Wp + q % KW;                                    \
        for (int64_t j = 0; j < OW; j++) acc[j] += sr[j];                                                      \
      }                                                                                                        \
    }                                                                                                          \
  }
DEFINE_SHIFT_ADD(float, shift_add_f32)
DEFINE_SHIFT_ADD(double, shift_add_f64)

static void fwd_stacked(const mf_kctx *k, const mf_node *n, const conv_geo *c, const conv_ws *l, void *out, void *const *src,
                        char *wsb) {
  const mf_node *nx = mf_src(k, n, 0), *nw = mf_src(k, n, 1), *nb = n->nsrc > 2 ? mf_src(k, n, 2) : NULL;
  mf_dtype ct = l->ct;
  int64_t KK = c->KH * c->KW, Hp = c->H + 2 * c->p, Wp = c->W + 2 * c->p, P = Hp * Wp;
  void *xp = wsb + l->o_col, *wk = wsb + l->o_w, *Z = wsb + l->o_out;
  repack_w(wk, ct, src[1], nw->dtype, c);
  for (int64_t i = 0; i < c->N; i++) {
    pad_copy(xp, ct, src[0], nx->dtype, i * c->C * c->HW, c->C, c->H, c->W, c->p, c->p, 0);
    for (int64_t gi = 0; gi < c->G; gi++) {
      gemm(ct, 0, 0, KK * c->OCg, P, c->Cg, at(wk, ct, wk_index(c, gi, 0, 0, 0)), c->Cg, at(xp, ct, gi * c->Cg * P), P, 0.0, Z, P);
      if (ct == MF_F64) shift_add_f64(Z, c->OCg, c->KH, c->KW, c->OH, c->OW, Hp, Wp);
      else shift_add_f32(Z, c->OCg, c->KH, c->KW, c->OH, c->OW, Hp, Wp);
      /* tap 0's block holds the group's output on an [OCg][Hp][Wp] grid */
      for (int64_t oc = 0; oc < c->OCg; oc++) {
        int64_t o = gi * c->OCg + oc;
        compact(out, n->dtype, (i * c->OC + o) * c->OHW, at(Z, ct, oc * P), ct, 1, c->OH, c->OW, Wp,
                nb ? cat_(src[2], nb->dtype, o) : NULL, nb ? nb->dtype : MF_F32);
      }
    }
  }
}

/* Stacked taps, bwd weight: with D [tap][oc][hp][wp] = dy[oc][hp-kh][wp-kw] (zero outside),
 * dwk_g [KH*KW*OCg, Cg] += D_g [KH*KW*OCg, Hp*Wp] . xpad_g^T: one GEMM per group and image. */
static void bwd_weight_stacked(const mf_kctx *k, const mf_node *n, const conv_geo *c, const conv_ws *l, void *out,
                               void *const *src, char *wsb) {
  const mf_node *nx = mf_src(k, n, 0), *nd = mf_src(k, n, 1);
  mf_dtype ct = l->ct;
  int64_t KK = c->KH * c->KW, Hp = c->H + 2 * c->p, Wp = c->W + 2 * c->p, P = Hp * Wp;
  void *xp = wsb + l->o_col, *D = wsb + l->o_in, *dwk = wsb + l->o_out;
  for (int64_t i = 0; i < c->N; i++) {
    pad_copy(xp, ct, src[0], nx->dtype, i * c->C * c->HW, c->C, c->H, c->W, c->p, c->p, 0);
    for (int64_t gi = 0; gi < c->G; gi++) {
      int64_t planes = KK * c->OCg;
      #pragma omp parallel for schedule(static) if (planes * P > 32768)
      for (int64_t j = 0; j < planes; j++) {
        int64_t q = j / c->OCg, oc = j % c->OCg, kh = q / c->KW, kw = q % c->KW;
        zero_ct(D, ct, j * P, P);
        for (int64_t oh = 0; oh < c->OH; oh++)
          seg_load(D, ct, j * P + (oh + kh) * Wp + kw, src[1], nd->dtype, ((i * c->OC + gi * c->OCg + oc) * c->OH + oh) * c->OW, 1,
                   c->OW);
      }
      gemm(ct, 0, 1, planes, c->Cg, P, D, P, at(xp, ct, gi * c->Cg * P), P, i ? 1.0 : 0.0, at(dwk, ct, wk_index(c, gi, 0, 0, 0)),
           c->Cg);
    }
  }
  unpack_dw(out, n->dtype, dwk, ct, c);
}

/* ------------------------------------------------------------------ conv kernels */

const char *mf_cpu_conv_algo_name(const mf_graph *g, const mf_node *n) {
  conv_geo c;
  conv_geometry(g, n, &c);
  switch (c.algo) {
  case CONV_IMPLICIT: return "implicit";
  case CONV_STACKED: return "stacked";
  case CONV_ROUTE_A: return c.direct ? "1x1" : "route-a";
  case CONV_ROUTE_B: return "route-b";
  default: return c.direct ? "1x1" : "im2col";
  }
}

/* A node the planner put on oneDNN runs there: its workspace was planned for oneDNN's primitive, so there is
 * no falling back to memfit's algorithms here. The primitive is missing only in a process other than the one
 * that planned (a fork()ed child): the step fails, saying so. */
static void conv_dnnl(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cpu_dnnl_conv_run(k, n, out, src, ws)) return;
  if (k->fault && !k->fault[0])
    snprintf(k->fault, k->fault_len, "%s '%s': the oneDNN primitive it was planned for (%d threads) does not exist in this "
             "process: plan the session in the process that runs it", mf_op_name(n->op), n->name, n->impl_threads);
}

/* A fused activation (plan/fuse.c) over the finished output, in place: the same arithmetic as the unary
 * kernel (elementwise.c) on the same stored values, so fused and unfused agree bit for bit. */
static void conv_act(const mf_node *n, void *out) {
  int kind = mf_conv_act(n);
  int64_t total = mf_node_numel(n);
  double slope = kind == MF_UN_LEAKY ? n->fp[0] : 0;
  if (n->dtype == MF_F32) {
    float *y = out, p0 = (float)slope;
    if (kind == MF_UN_RELU) {
      #pragma omp parallel for schedule(static) if (total > 16384)
      for (int64_t i = 0; i < total; i++) y[i] = y[i] > 0 ? y[i] : 0.0f;
    } else {
      #pragma omp parallel for schedule(static) if (total > 16384)
      for (int64_t i = 0; i < total; i++) y[i] = y[i] > 0 ? y[i] : p0 * y[i];
    }
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 16384)
  for (int64_t i = 0; i < total; i++) {
    double v = mf_ld(out, n->dtype, i);
    mf_st(out, n->dtype, i, v > 0 ? v : kind == MF_UN_RELU ? 0 : slope * v);
  }
}

static void conv2d_gemm(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);

/* y [N,OC,OH,OW] = act(conv(x [N,C,H,W], w [OC,Cg,KH,KW]) + b [OC]), act only when fused (mf_conv_act) */
void mf_cpu_conv2d(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cpu_conv_on_dnnl(n)) { conv_dnnl(k, n, out, src, ws); return; } /* the planner chose oneDNN (conv_choice.c); act as a post-op */
  if (mf_cpu_conv_on_wino(n)) mf_cpu_wino_conv2d(k, n, out, src, ws);
  else conv2d_gemm(k, n, out, src, ws);
  if (mf_conv_act(n) >= 0) conv_act(n, out);
}

static void conv2d_gemm(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  conv_geo c;
  conv_ws l;
  conv_geometry(k->g, n, &c);
  conv_ws_layout(k->g, n, &c, &l);
  if (c.algo == CONV_IMPLICIT) { fwd_implicit(k, n, &c, &l, out, src, ws); return; }
  if (c.algo == CONV_STACKED) { fwd_stacked(k, n, &c, &l, out, src, ws); return; }
  const mf_node *nx = mf_src(k, n, 0), *nw = mf_src(k, n, 1), *nb = n->nsrc > 2 ? mf_src(k, n, 2) : NULL;
  mf_dtype ct = l.ct;
  char *wsb = ws;
  const void *wm = src[1];
  if (l.n_w) { convert_par(wsb + l.o_w, ct, 0, src[1], nw->dtype, 0, l.n_w); wm = wsb + l.o_w; }
  for (int64_t i = 0; i < c.N; i++) {
    const void *colm;
    if (l.n_col) {
      im2col(wsb + l.o_col, ct, src[0], nx->dtype, i * c.C * c.HW, c.C, c.H, c.W, c.KH, c.KW, c.s, c.d, c.sw, c.dw, c.pt, c.pl, c.OH, c.OW);
      colm = wsb + l.o_col;
    } else colm = cat_(src[0], ct, i * c.C * c.HW);
    void *ym = l.n_out ? (void *)(wsb + l.o_out) : at(out, ct, i * c.OC * c.OHW);
    if (nb) { /* pre-fill each output row with its bias, then accumulate the GEMM on top */
      #pragma omp parallel for schedule(static) if (c.OC * c.OHW > 16384)
      for (int64_t o = 0; o < c.OC; o++) {
        double bv = mf_ld(src[2], nb->dtype, o);
        if (ct == MF_F64) { double *r = (double *)ym + o * c.OHW; for (int64_t j = 0; j < c.OHW; j++) r[j] = bv; }
        else { float *r = (float *)ym + o * c.OHW; float f = (float)bv; for (int64_t j = 0; j < c.OHW; j++) r[j] = f; }
      }
    }
    for (int64_t gi = 0; gi < c.G; gi++)
      gemm(ct, 0, 0, c.OCg, c.OHW, c.K, cat_(wm, ct, gi * c.OCg * c.K), c.K, cat_(colm, ct, gi * c.K * c.OHW), c.OHW,
           nb ? 1.0 : 0.0, at(ym, ct, gi * c.OCg * c.OHW), c.OHW);
    if (l.n_out) convert_par(out, n->dtype, i * c.OC * c.OHW, ym, ct, 0, c.OC * c.OHW);
  }
}

/* dx [N,C,H,W] from dy [N,OC,OH,OW] and w [OC,Cg,KH,KW] */
void mf_cpu_conv2d_bwd_data(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cpu_conv_on_dnnl(n)) { conv_dnnl(k, n, out, src, ws); return; } /* the planner chose oneDNN (conv_choice.c) */
  if (mf_cpu_conv_on_wino(n)) { mf_cpu_wino_conv2d_bwd_data(k, n, out, src, ws); return; }
  conv_geo c;
  conv_ws l;
  conv_geometry(k->g, n, &c);
  conv_ws_layout(k->g, n, &c, &l);
  const mf_node *nd = mf_src(k, n, 0), *nw = mf_src(k, n, 1);
  mf_dtype ct = l.ct;
  char *wsb = ws;
  if (c.algo == CONV_IMPLICIT) { bwd_data_implicit(k, n, &c, &l, out, src, wsb); return; }
  if (c.algo == CONV_ROUTE_B) {
    /* w'[g][c][oc][kh][kw] = w[g*OCg+oc][c][KH-1-kh][KW-1-kw]: a [Cg, OCg*KH*KW] matrix per group */
    void *wt = wsb + l.o_w;
    int64_t KK = c.KH * c.KW, rows = c.G * c.Cg;
    #pragma omp parallel for schedule(static) if (c.OC * c.K > 16384)
    for (int64_t r = 0; r < rows; r++) {
      int64_t gi = r / c.Cg, ci = r % c.Cg;
      for (int64_t oc = 0; oc < c.OCg; oc++)
        for (int64_t q = 0; q < KK; q++) {
          int64_t srci = (((gi * c.OCg + oc) * c.Cg + ci) * KK) + (KK - 1 - q);
          int64_t dsti = r * c.OCg * KK + oc * KK + q;
          if (ct == MF_F64) ((double *)wt)[dsti] = mf_ld(src[1], nw->dtype, srci);
          else ((float *)wt)[dsti] = nw->dtype == MF_F32 ? ((const float *)src[1])[srci] : (float)mf_ld(src[1], nw->dtype, srci);
        }
    }
    int64_t KB = c.OCg * KK; /* inner size of the GEMM */
    for (int64_t i = 0; i < c.N; i++) {
      im2col(wsb + l.o_col, ct, src[0], nd->dtype, i * c.OC * c.OHW, c.OC, c.OH, c.OW, c.KH, c.KW, 1, 1, 1, 1, c.KH - 1 - c.p,
             c.KW - 1 - c.p, c.H, c.W);
      void *dxm = l.n_out ? (void *)(wsb + l.o_out) : at(out, ct, i * c.C * c.HW);
      for (int64_t gi = 0; gi < c.G; gi++)
        gemm(ct, 0, 0, c.Cg, c.HW, KB, at(wt, ct, gi * c.Cg * KB), KB, at(wsb + l.o_col, ct, gi * KB * c.HW), c.HW, 0.0,
             at(dxm, ct, gi * c.Cg * c.HW), c.HW);
      if (l.n_out) convert_par(out, n->dtype, i * c.C * c.HW, dxm, ct, 0, c.C * c.HW);
    }
    return;
  }
  /* route A: col = w^T dy per group, then col2im (1x1: the GEMM writes dx directly) */
  const void *wm = src[1];
  if (l.n_w) { convert_par(wsb + l.o_w, ct, 0, src[1], nw->dtype, 0, l.n_w); wm = wsb + l.o_w; }
  for (int64_t i = 0; i < c.N; i++) {
    const void *dym = cat_(src[0], ct, i * c.OC * c.OHW);
    if (l.n_in) { convert_par(wsb + l.o_in, ct, 0, src[0], nd->dtype, i * c.OC * c.OHW, c.OC * c.OHW); dym = wsb + l.o_in; }
    void *dxm = l.n_out ? (void *)(wsb + l.o_out) : at(out, ct, i * c.C * c.HW);
    void *colm = c.direct ? dxm : (void *)(wsb + l.o_col);
    for (int64_t gi = 0; gi < c.G; gi++)
      gemm(ct, 1, 0, c.K, c.OHW, c.OCg, cat_(wm, ct, gi * c.OCg * c.K), c.K, cat_(dym, ct, gi * c.OCg * c.OHW), c.OHW, 0.0,
           at(colm, ct, gi * c.K * c.OHW), c.OHW);
    if (!c.direct) col2im(dxm, ct, colm, &c);
    if (l.n_out) convert_par(out, n->dtype, i * c.C * c.HW, dxm, ct, 0, c.C * c.HW);
  }
}

/* dw [OC,Cg,KH,KW] = sum over images of dy . im2col(x)^T (written, not accumulated) */
void mf_cpu_conv2d_bwd_weight(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cpu_conv_on_dnnl(n)) { conv_dnnl(k, n, out, src, ws); return; } /* the planner chose oneDNN (conv_choice.c) */
  if (mf_cpu_conv_on_wino(n)) { mf_cpu_wino_conv2d_bwd_weight(k, n, out, src, ws); return; }
  conv_geo c;
  conv_ws l;
  conv_geometry(k->g, n, &c);
  conv_ws_layout(k->g, n, &c, &l);
  if (c.algo == CONV_IMPLICIT) { bwd_weight_implicit(k, n, &c, &l, out, src, ws); return; }
  if (c.algo == CONV_STACKED) { bwd_weight_stacked(k, n, &c, &l, out, src, ws); return; }
  const mf_node *nx = mf_src(k, n, 0), *nd = mf_src(k, n, 1);
  mf_dtype ct = l.ct;
  char *wsb = ws;
  void *dwm = l.n_out ? (void *)(wsb + l.o_out) : out;
  for (int64_t i = 0; i < c.N; i++) {
    const void *colm;
    if (l.n_col) {
      im2col(wsb + l.o_col, ct, src[0], nx->dtype, i * c.C * c.HW, c.C, c.H, c.W, c.KH, c.KW, c.s, c.d, c.sw, c.dw, c.pt, c.pl, c.OH, c.OW);
      colm = wsb + l.o_col;
    } else colm = cat_(src[0], ct, i * c.C * c.HW);
    const void *dym = cat_(src[1], ct, i * c.OC * c.OHW);
    if (l.n_in) { convert_par(wsb + l.o_in, ct, 0, src[1], nd->dtype, i * c.OC * c.OHW, c.OC * c.OHW); dym = wsb + l.o_in; }
    for (int64_t gi = 0; gi < c.G; gi++)
      gemm(ct, 0, 1, c.OCg, c.K, c.OHW, cat_(dym, ct, gi * c.OCg * c.OHW), c.OHW, cat_(colm, ct, gi * c.K * c.OHW), c.OHW,
           i ? 1.0 : 0.0, at(dwm, ct, gi * c.OCg * c.K), c.K);
  }
  if (l.n_out) convert_par(out, n->dtype, 0, dwm, ct, 0, c.OC * c.K);
}

/* ------------------------------------------------------------------ matmul */

typedef struct mm_geo {
  int64_t M, N, K, Ba, Bb, B; /* batch entries of a, b (1 when 2-D) and of the output */
  int ta, tb;
} mm_geo;

static void mm_geometry(const mf_graph *g, const mf_node *n, mm_geo *m) {
  const mf_node *a = &g->nodes[n->src[0]], *b = &g->nodes[n->src[1]];
  m->ta = n->ip[0];
  m->tb = n->ip[1];
  m->M = n->ne[n->ndim - 2];
  m->N = n->ne[n->ndim - 1];
  m->K = a->ne[a->ndim - (m->ta ? 2 : 1)];
  m->Ba = mf_node_numel(a) / (m->M * m->K);
  m->Bb = mf_node_numel(b) / (m->K * m->N);
  m->B = m->Ba > m->Bb ? m->Ba : m->Bb;
}

/* regions: a, b converted to the compute type, y computed in it (each only when dtypes differ) */
static void mm_ws_layout(const mf_graph *g, const mf_node *n, size_t *o_a, size_t *o_b, size_t *o_y, size_t *total) {
  const mf_node *a = &g->nodes[n->src[0]], *b = &g->nodes[n->src[1]];
  mf_dtype ct = compute_type(n->dtype);
  size_t es = mf_dtype_size(ct), o = 0;
  *o_a = o; if (a->dtype != ct) o += align_up((size_t)mf_node_numel(a) * es);
  *o_b = o; if (b->dtype != ct) o += align_up((size_t)mf_node_numel(b) * es);
  *o_y = o; if (n->dtype != ct) o += align_up((size_t)mf_node_numel(n) * es);
  *total = o;
}

size_t mf_cpu_ws_matmul(const mf_graph *g, const mf_node *n) {
  size_t oa, ob, oy, t;
  mm_ws_layout(g, n, &oa, &ob, &oy, &t);
  return t;
}

/* y [..,M,N] = op(a) [..,M,K] . op(b) [..,K,N] */
void mf_cpu_matmul(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *na = mf_src(k, n, 0), *nb = mf_src(k, n, 1);
  mm_geo m;
  mm_geometry(k->g, n, &m);
  mf_dtype ct = compute_type(n->dtype);
  size_t oa, ob, oy, t;
  mm_ws_layout(k->g, n, &oa, &ob, &oy, &t);
  char *wsb = ws;
  const void *A = src[0], *Bm = src[1];
  void *Y = out;
  if (na->dtype != ct) { convert_par(wsb + oa, ct, 0, src[0], na->dtype, 0, mf_node_numel(na)); A = wsb + oa; }
  if (nb->dtype != ct) { convert_par(wsb + ob, ct, 0, src[1], nb->dtype, 0, mf_node_numel(nb)); Bm = wsb + ob; }
  if (n->dtype != ct) Y = wsb + oy;
  int64_t lda = m.ta ? m.M : m.K, ldb = m.tb ? m.K : m.N;
  if (m.Bb == 1 && !m.ta) {
    /* a's batch folds into its rows: one GEMM [Ba*M, K] x [K, N] */
    gemm(ct, 0, m.tb, m.Ba * m.M, m.N, m.K, A, lda, Bm, ldb, 0.0, Y, m.N);
  } else {
    int64_t sa = m.Ba > 1 ? m.M * m.K : 0, sb = m.Bb > 1 ? m.K * m.N : 0;
    /* many small products: one per thread (OpenBLAS runs single-threaded inside a parallel region) */
    bool small = 2.0 * (double)m.M * (double)m.N * (double)m.K < 4e6;
    #pragma omp parallel for schedule(static) if (small && m.B > 1)
    for (int64_t i = 0; i < m.B; i++)
      gemm(ct, m.ta, m.tb, m.M, m.N, m.K, cat_(A, ct, i * sa), lda, cat_(Bm, ct, i * sb), ldb, 0.0, at(Y, ct, i * m.M * m.N), m.N);
  }
  if (n->dtype != ct) convert_par(out, n->dtype, 0, Y, ct, 0, mf_node_numel(n));
}

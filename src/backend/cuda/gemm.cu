/* gemm.cu — matmul and conv2d (forward, backward-data, backward-weight) on cuBLAS, with the exact
 * workspace each node needs (the planner reserves exactly that in the activation arena).
 *
 * Types: when every operand has the same float dtype the GEMM runs on it directly (bf16/f16 on tensor
 * cores with f32 accumulation, f32 without TF32, f64 in f64); otherwise operands are converted into
 * f32 (f64 for f64 outputs) workspace first, as the CPU backend does. Sums that the CPU backend does
 * in f32 (backward data before col2im, backward weight over images) are f32 here too.
 *
 * conv2d (x [N,C,H,W], w [OC,Cg,KH,KW], Cg = C/G, y [N,OC,OH,OW], K = Cg*KH*KW), per image and group:
 *   forward     y_g [OCg,OHW] = w_g [OCg,K] . col_g [K,OHW]       (col = im2col of x; nb images per GEMM)
 *   bwd data    col_g [K,OHW] = w_g^T . dy_g, then a gathering col2im into dx (no atomics: deterministic)
 *   bwd weight  dw_g [OCg,K] += dy_g [OCg,OHW] . col_g^T          (summed over images in f32)
 * 1x1 convolutions with stride 1 and no padding use x / dx directly as the column matrix.
 * A conv node the planner put on cuDNN (conv_choice.c) runs in conv_cudnn.cu instead, with its workspace. */
#include "backend/cuda/common.cuh"
#include <cublas_v2.h>

cublasHandle_t mf_cuda_blas(cudaStream_t s); /* the handle, bound to stream s (runtime.cu) */
void mf_cuda_note_blas(cublasStatus_t s, const char *what);

#define COL_BUDGET ((size_t)32 << 20) /* column bytes above which images go one at a time */

static cudaDataType cuda_type(mf_dtype t) {
  switch (t) {
  case MF_F64: return CUDA_R_64F;
  case MF_BF16: return CUDA_R_16BF;
  case MF_F16: return CUDA_R_16F;
  default: return CUDA_R_32F;
  }
}
static bool gemm_type(mf_dtype t) { return t == MF_F32 || t == MF_F64 || t == MF_BF16 || t == MF_F16; }
static mf_dtype acc_type(mf_dtype out) { return out == MF_F64 ? MF_F64 : MF_F32; }

/* Row-major, batched: C_b [M,N] = op(A_b) [M,K] . op(B_b) [K,N] + beta C_b, b < batch, with element
 * strides sa/sb/sc between batch entries. A and B share a dtype; C is that dtype or the accumulation
 * type. Row-major C = A B is column-major C^T = B^T A^T, so cuBLAS gets the operands swapped. */
static void gemm(cudaStream_t s, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda, int64_t sa, const void *B,
                 int64_t ldb, int64_t sb, mf_dtype abt, double beta, void *C, int64_t ldc, int64_t sc, mf_dtype ct, int64_t batch,
                 const char *what) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  cublasHandle_t h = mf_cuda_blas(s);
  cublasStatus_t st;
  if (abt == MF_F64) {
    double one = 1.0, b = beta;
    st = cublasGemmStridedBatchedEx_64(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B, CUDA_R_64F, ldb,
                                       sb, A, CUDA_R_64F, lda, sa, &b, C, CUDA_R_64F, ldc, sc, batch, CUBLAS_COMPUTE_64F,
                                       CUBLAS_GEMM_DEFAULT);
  } else {
    float one = 1.0f, b = (float)beta;
    st = cublasGemmStridedBatchedEx_64(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B,
                                       cuda_type(abt), ldb, sb, A, cuda_type(abt), lda, sa, &b, C, cuda_type(ct), ldc, sc, batch,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  mf_cuda_note_blas(st, what);
}

/* ------------------------------------------------------------------ small kernels */

template <typename T> __global__ void k_cvt(void *y, int yt, const void *x, int xt, int64_t n) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, i));
}
static void convert(void *y, mf_dtype yt, const void *x, mf_dtype xt, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  if (yt == MF_F64 || xt == MF_F64) k_cvt<double><<<mf_blocks(n), MF_THREADS, 0, s>>>(y, yt, x, xt, n);
  else k_cvt<float><<<mf_blocks(n), MF_THREADS, 0, s>>>(y, yt, x, xt, n);
  MF_CUDA_LAUNCHED("convert");
}

/* y (yt) [nb, OC, P] = x (xt) [nb, OC, P] + bias[oc] (bias may be NULL; x may be y) */
template <typename T> __global__ void k_bias(void *y, int yt, const void *x, int xt, const void *b, int bt, int64_t OC, int64_t P, int64_t n) {
  MF_GRID_LOOP(i, n) {
    T v = mf_gld<T>(x, xt, i);
    if (b) v += mf_gld<T>(b, bt, (i / P) % OC);
    mf_gst<T>(y, yt, i, v);
  }
}
static void finish(void *y, mf_dtype yt, const void *x, mf_dtype xt, const void *b, mf_dtype bt, int64_t OC, int64_t P, int64_t n,
                   cudaStream_t s) {
  if (n <= 0 || (x == y && !b)) return;
  if (yt == MF_F64 || xt == MF_F64) k_bias<double><<<mf_blocks(n), MF_THREADS, 0, s>>>(y, yt, x, xt, b, bt, OC, P, n);
  else k_bias<float><<<mf_blocks(n), MF_THREADS, 0, s>>>(y, yt, x, xt, b, bt, OC, P, n);
  MF_CUDA_LAUNCHED("conv bias");
}
/* y (yt) [nb, OC, P] = bias[oc]: the GEMM then adds w.col on top (beta 1) and rounds once */
template <typename T> __global__ void k_bias_fill(void *y, int yt, const void *b, int bt, int64_t OC, int64_t P, int64_t n) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, mf_gld<T>(b, bt, (i / P) % OC));
}
void mf_cuda_conv_bias_fill(void *y, mf_dtype yt, const void *b, mf_dtype bt, int64_t OC, int64_t P, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  if (yt == MF_F64 || bt == MF_F64) k_bias_fill<double><<<mf_blocks(n), MF_THREADS, 0, s>>>(y, yt, b, bt, OC, P, n);
  else k_bias_fill<float><<<mf_blocks(n), MF_THREADS, 0, s>>>(y, yt, b, bt, OC, P, n);
  MF_CUDA_LAUNCHED("conv bias");
}

/* A fused ReLU / leaky ReLU (plan/fuse.c, mf_conv_act) over a conv's finished output y, in place: the unary kernel's
 * arithmetic (elementwise.cu) on the stored values, so fused and unfused agree bit for bit. One pass over y after
 * the convolution (not inside cuBLAS's or cuDNN's epilogue): what it saves is the pre-activation tensor. */
template <typename T> __global__ void k_conv_act(void *y, int yt, int64_t n, int relu, T p0) {
  MF_GRID_LOOP(i, n) {
    T v = mf_gld<T>(y, yt, i);
    mf_gst<T>(y, yt, i, v > (T)0 ? v : relu ? (T)0 : p0 * v);
  }
}
void mf_cuda_conv_act(const mf_node *n, void *y, cudaStream_t s) {
  int kind = mf_conv_act(n);
  int64_t cnt = mf_node_numel(n);
  if (kind < 0 || cnt <= 0) return;
  double slope = kind == MF_UN_LEAKY ? n->fp[0] : 0;
  if (n->dtype == MF_F64) k_conv_act<double><<<mf_blocks(cnt), MF_THREADS, 0, s>>>(y, n->dtype, cnt, kind == MF_UN_RELU, slope);
  else k_conv_act<float><<<mf_blocks(cnt), MF_THREADS, 0, s>>>(y, n->dtype, cnt, kind == MF_UN_RELU, (float)slope);
  MF_CUDA_LAUNCHED("conv activation");
}

/* Convolution geometry, passed by value to kernels. */
typedef struct cgeo {
  int64_t N, C, H, W, OC, KH, KW, OH, OW, G, Cg, OCg, HW, OHW, K, KK;
  int64_t s, ph, pw; /* stride of rows, padding of rows and columns (top, left; the bottom and right ones only set OH, OW) */
  int64_t d;         /* dilation of rows */
  int64_t sw, dw;    /* stride and dilation of columns */
} cgeo;

/* col (ct) [nb][C*KH*KW][OH*OW] from images x (xt) [nb][C][H][W]; rows (c, kh, kw) as w's layout */
template <typename T> __global__ void k_im2col(void *col, int ct, const void *x, int xt, cgeo g, int64_t nb) {
  int64_t rows = g.C * g.KK, n = nb * rows * g.OHW;
  MF_GRID_LOOP(i, n) {
    int64_t pix = i % g.OHW, r = (i / g.OHW) % rows, img = i / (g.OHW * rows);
    int64_t c = r / g.KK, kh = (r / g.KW) % g.KH, kw = r % g.KW;
    int64_t ih = (pix / g.OW) * g.s - g.ph + kh * g.d, iw = (pix % g.OW) * g.sw - g.pw + kw * g.dw;
    T v = (T)0;
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) v = mf_gld<T>(x, xt, ((img * g.C + c) * g.H + ih) * g.W + iw);
    mf_gst<T>(col, ct, i, v);
  }
}
/* dx (xt) [nb][C][H][W] = sum of col (ct) [nb][C*KH*KW][OH*OW] over the taps that read each pixel */
template <typename T> __global__ void k_col2im(void *dx, int xt, const void *col, int ct, cgeo g, int64_t nb) {
  int64_t n = nb * g.C * g.HW;
  MF_GRID_LOOP(i, n) {
    int64_t iw = i % g.W, ih = (i / g.W) % g.H, c = (i / g.HW) % g.C, img = i / (g.C * g.HW);
    T acc = (T)0;
    for (int64_t kh = 0; kh < g.KH; kh++) {
      int64_t th = ih + g.ph - kh * g.d;
      if (th < 0 || th % g.s) continue;
      int64_t oh = th / g.s;
      if (oh >= g.OH) continue;
      for (int64_t kw = 0; kw < g.KW; kw++) {
        int64_t tw = iw + g.pw - kw * g.dw;
        if (tw < 0 || tw % g.sw) continue;
        int64_t ow = tw / g.sw;
        if (ow >= g.OW) continue;
        acc += mf_gld<T>(col, ct, ((img * g.C + c) * g.KK + kh * g.KW + kw) * g.OHW + oh * g.OW + ow);
      }
    }
    mf_gst<T>(dx, xt, i, acc);
  }
}
static void im2col(void *col, mf_dtype ct, const void *x, mf_dtype xt, const cgeo *g, int64_t nb, cudaStream_t s) {
  int64_t n = nb * g->C * g->KK * g->OHW;
  if (ct == MF_F64 || xt == MF_F64) k_im2col<double><<<mf_blocks(n), MF_THREADS, 0, s>>>(col, ct, x, xt, *g, nb);
  else k_im2col<float><<<mf_blocks(n), MF_THREADS, 0, s>>>(col, ct, x, xt, *g, nb);
  MF_CUDA_LAUNCHED("im2col");
}
static void col2im(void *dx, mf_dtype xt, const void *col, mf_dtype ct, const cgeo *g, int64_t nb, cudaStream_t s) {
  int64_t n = nb * g->C * g->HW;
  if (ct == MF_F64 || xt == MF_F64) k_col2im<double><<<mf_blocks(n), MF_THREADS, 0, s>>>(dx, xt, col, ct, *g, nb);
  else k_col2im<float><<<mf_blocks(n), MF_THREADS, 0, s>>>(dx, xt, col, ct, *g, nb);
  MF_CUDA_LAUNCHED("col2im");
}

/* ------------------------------------------------------------------ conv plan (shapes only) */

/* Where each conv op finds x, w, y among its sources and output. */
static void conv_nodes(const mf_graph *g, const mf_node *n, const mf_node **x, const mf_node **w, const mf_node **y) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  switch (n->op) {
  case MF_OP_CONV2D: *x = s0; *w = s1; *y = n; break;
  case MF_OP_CONV2D_BWD_DATA: *y = s0; *w = s1; *x = n; break;
  default: *x = s0; *y = s1; *w = n; break;
  }
}

/* Workspace layout of one conv node: which operands are converted, the column buffer, the images
 * per GEMM batch, and the byte offset of each region. */
typedef struct cplan {
  cgeo g;
  mf_dtype abt;   /* dtype both GEMM operands are in */
  mf_dtype ct;    /* dtype of the GEMM result */
  bool direct;    /* 1x1, stride 1, no padding */
  bool route_b;   /* bwd data as a transposed convolution (see mf_cuda_conv2d_bwd_data) */
  int64_t nb;     /* images per batch */
  int64_t n_a, n_b, n_col, n_c; /* elements: converted w (fwd, bwd data) / converted x or dy, column buffer, result buffer */
  size_t o_a, o_b, o_col, o_c, total;
} cplan;

static void conv_plan(const mf_graph *gr, const mf_node *n, cplan *P) {
  const mf_node *x, *w, *y;
  conv_nodes(gr, n, &x, &w, &y);
  cgeo *g = &P->g;
  g->N = x->ne[0]; g->C = x->ne[1]; g->H = x->ne[2]; g->W = x->ne[3];
  g->OC = w->ne[0]; g->KH = w->ne[2]; g->KW = w->ne[3];
  g->OH = y->ne[2]; g->OW = y->ne[3];
  mf_conv_cfg cf = mf_conv_cfg_of(n);
  bool plain = mf_conv_cfg_plain(&cf);
  g->s = cf.stride; g->ph = cf.pt; g->pw = cf.pl; g->d = cf.dil; g->G = cf.groups > 0 ? cf.groups : 1;
  g->sw = mf_conv_sw(&cf); g->dw = mf_conv_dw(&cf);
  g->Cg = g->C / g->G; g->OCg = g->OC / g->G;
  g->HW = g->H * g->W; g->OHW = g->OH * g->OW; g->KK = g->KH * g->KW;
  g->K = g->Cg * g->KK;
  P->direct = g->KK == 1 && g->s == 1 && plain && g->ph == 0;
  P->n_a = P->n_b = P->n_col = P->n_c = 0;
  P->route_b = false;
  mf_dtype acc = acc_type(n->dtype);
  int64_t colimg = g->C * g->KK * g->OHW; /* column elements of one image */
  switch (n->op) {
  case MF_OP_CONV2D: {
    bool native = x->dtype == w->dtype && w->dtype == y->dtype && gemm_type(y->dtype);
    P->abt = P->ct = native ? y->dtype : acc;
    if (!native && w->dtype != P->abt) P->n_a = g->OC * g->K;
    bool colless = P->direct && x->dtype == P->abt;
    size_t es = mf_dtype_size(P->abt);
    P->nb = colless ? g->N : (int64_t)(COL_BUDGET / ((size_t)colimg * es + 1));
    if (P->nb < 1) P->nb = 1;
    if (P->nb > g->N) P->nb = g->N;
    if (!colless) P->n_col = P->nb * colimg;
    if (!native) P->n_c = P->nb * g->OC * g->OHW;
    break;
  }
  case MF_OP_CONV2D_BWD_DATA: { /* y = dy, x = dx */
    bool native = w->dtype == y->dtype && gemm_type(y->dtype) && (y->dtype != MF_F64 || x->dtype == MF_F64);
    P->abt = native ? y->dtype : acc;
    P->ct = P->abt == MF_F64 ? MF_F64 : MF_F32;
    if (w->dtype != P->abt) P->n_a = g->OC * g->K;
    if (y->dtype != P->abt) P->n_b = g->N * g->OC * g->OHW;
    /* stride 1, fewer output than input channels, dx in the operand dtype: im2col of dy is the
     * smaller column matrix and the GEMM writes dx directly (no col2im) */
    P->route_b = native && plain && !P->direct && g->s == 1 && g->OC <= g->C && x->dtype == P->abt && g->ph <= g->KH - 1 && g->ph <= g->KW - 1;
    if (P->route_b) {
      P->ct = P->abt;
      P->n_a = g->OC * g->K; /* flipped, transposed weight */
      P->nb = (int64_t)(COL_BUDGET / ((size_t)(g->OC * g->KK * g->HW) * mf_dtype_size(P->abt) + 1));
      if (P->nb < 1) P->nb = 1;
      if (P->nb > g->N) P->nb = g->N;
      P->n_col = P->nb * g->OC * g->KK * g->HW;
      break;
    }
    bool colless = P->direct && x->dtype == P->ct; /* the GEMM writes dx itself */
    size_t es = mf_dtype_size(P->ct);
    P->nb = colless ? g->N : (int64_t)(COL_BUDGET / ((size_t)colimg * es + 1));
    if (P->nb < 1) P->nb = 1;
    if (P->nb > g->N) P->nb = g->N;
    if (!colless) P->n_col = P->nb * colimg;
    break;
  }
  default: { /* CONV2D_BWD_WEIGHT: y = dy, w = dw */
    bool native = x->dtype == y->dtype && gemm_type(x->dtype) && (x->dtype != MF_F64 || w->dtype == MF_F64);
    P->abt = native ? x->dtype : acc;
    P->ct = P->abt == MF_F64 ? MF_F64 : MF_F32;
    if (y->dtype != P->abt) P->n_b = g->N * g->OC * g->OHW;
    P->nb = 1;
    if (!(P->direct && x->dtype == P->abt)) P->n_col = colimg;
    if (w->dtype != P->ct) P->n_c = g->OC * g->K; /* dw accumulated in f32 */
    break;
  }
  }
  size_t o = 0;
  P->o_a = o; o += mf_ws_align((size_t)P->n_a * mf_dtype_size(P->abt));
  P->o_b = o; o += mf_ws_align((size_t)P->n_b * mf_dtype_size(P->abt));
  P->o_col = o; o += mf_ws_align((size_t)P->n_col * mf_dtype_size(n->op == MF_OP_CONV2D_BWD_DATA && !P->route_b ? P->ct : P->abt));
  P->o_c = o; o += mf_ws_align((size_t)P->n_c * mf_dtype_size(P->ct));
  P->total = o;
}

/* ------------------------------------------------------------------ conv kernels */

static inline const char *at(const void *p, mf_dtype t, int64_t i) { return (const char *)p + (size_t)i * mf_dtype_size(t); }
static inline char *atw(void *p, mf_dtype t, int64_t i) { return (char *)p + (size_t)i * mf_dtype_size(t); }

/* y [N,OC,OH,OW] = act(conv(x [N,C,H,W], w [OC,Cg,KH,KW]) + b [OC]), act only when fused (mf_conv_act) */
extern "C" void mf_cuda_conv2d(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cuda_conv_on_cudnn(n)) {
    mf_cuda_conv_cudnn(k, n, out, src, ws);
    mf_cuda_conv_act(n, out, mf_cuda_stream(k));
    return;
  }
  cplan P;
  conv_plan(k->g, n, &P);
  const cgeo *g = &P.g;
  const mf_node *nx = mf_csrc(k, n, 0), *nw = mf_csrc(k, n, 1), *nb = n->nsrc > 2 ? mf_csrc(k, n, 2) : NULL;
  cudaStream_t s = mf_cuda_stream(k);
  char *wsb = (char *)ws;
  const void *wm = src[1];
  if (P.n_a) { convert(wsb + P.o_a, P.abt, src[1], nw->dtype, P.n_a, s); wm = wsb + P.o_a; }
  for (int64_t i0 = 0; i0 < g->N; i0 += P.nb) {
    int64_t nb_i = g->N - i0 < P.nb ? g->N - i0 : P.nb;
    const void *colm;
    int64_t colstride = g->C * g->KK * g->OHW;
    if (P.n_col) {
      im2col(wsb + P.o_col, P.abt, at(src[0], nx->dtype, i0 * g->C * g->HW), nx->dtype, g, nb_i, s);
      colm = wsb + P.o_col;
    } else {
      colm = at(src[0], nx->dtype, i0 * g->C * g->HW);
      colstride = g->C * g->HW;
    }
    void *ym = P.n_c ? (void *)(wsb + P.o_c) : (void *)atw(out, n->dtype, i0 * g->OC * g->OHW);
    /* GEMM straight into y (native dtype): the bias goes in first, so the sum is rounded once to
     * y's dtype as on the CPU backend (adding it afterwards would round a bf16/f16 y twice) */
    bool prefill = nb && !P.n_c;
    if (prefill) mf_cuda_conv_bias_fill(ym, n->dtype, src[2], nb->dtype, g->OC, g->OHW, nb_i * g->OC * g->OHW, s);
    for (int64_t gi = 0; gi < g->G; gi++)
      gemm(s, 0, 0, g->OCg, g->OHW, g->K, at(wm, P.abt, gi * g->OCg * g->K), g->K, 0, at(colm, P.abt, gi * g->K * g->OHW), g->OHW, colstride,
           P.abt, prefill ? 1.0 : 0.0, atw(ym, P.ct, gi * g->OCg * g->OHW), g->OHW, g->OC * g->OHW, P.ct, nb_i, "conv2d");
    if (!prefill)
      finish(atw(out, n->dtype, i0 * g->OC * g->OHW), n->dtype, ym, P.ct, nb ? src[2] : NULL, nb ? nb->dtype : MF_F32, g->OC, g->OHW,
             nb_i * g->OC * g->OHW, s);
  }
  mf_cuda_conv_act(n, out, s);
}

/* w' (dtype wt2) [G][Cg][OCg][KH][KW] = w [g*OCg+oc][c][KH-1-kh][KW-1-kw]: the weight of the
 * transposed convolution that maps dy back to dx */
template <typename T> __global__ void k_flip_w(void *w2, int wt2, const void *w, int wt, cgeo g) {
  int64_t n = g.OC * g.K;
  MF_GRID_LOOP(i, n) {
    int64_t q = i % g.KK, oc = (i / g.KK) % g.OCg, c = (i / (g.KK * g.OCg)) % g.Cg, gi = i / (g.KK * g.OCg * g.Cg);
    mf_gst<T>(w2, wt2, i, mf_gld<T>(w, wt, ((gi * g.OCg + oc) * g.Cg + c) * g.KK + (g.KK - 1 - q)));
  }
}

/* dx [N,C,H,W] from dy [N,OC,OH,OW] and w [OC,Cg,KH,KW] */
extern "C" void mf_cuda_conv2d_bwd_data(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cuda_conv_on_cudnn(n)) { mf_cuda_conv_cudnn(k, n, out, src, ws); return; }
  cplan P;
  conv_plan(k->g, n, &P);
  const cgeo *g = &P.g;
  const mf_node *nd = mf_csrc(k, n, 0), *nw = mf_csrc(k, n, 1);
  cudaStream_t s = mf_cuda_stream(k);
  char *wsb = (char *)ws;
  const void *wm = src[1], *dym = src[0];
  if (P.route_b) {
    /* route B: dx_g [Cg,HW] = w'_g [Cg, OCg*KH*KW] . im2col(dy)_g (stride 1, padding K-1-p) */
    if (P.abt == MF_F64) k_flip_w<double><<<mf_blocks(P.n_a), MF_THREADS, 0, s>>>(wsb + P.o_a, P.abt, src[1], nw->dtype, *g);
    else k_flip_w<float><<<mf_blocks(P.n_a), MF_THREADS, 0, s>>>(wsb + P.o_a, P.abt, src[1], nw->dtype, *g);
    MF_CUDA_LAUNCHED("conv2d_bwd_data flip");
    cgeo t = *g; /* dy as the image, dx as the output */
    t.C = g->OC; t.H = g->OH; t.W = g->OW; t.HW = g->OHW;
    t.OC = g->C; t.OH = g->H; t.OW = g->W; t.OHW = g->HW;
    t.ph = g->KH - 1 - g->ph; t.pw = g->KW - 1 - g->pw; t.s = 1;
    int64_t KB = g->OCg * g->KK;
    for (int64_t i0 = 0; i0 < g->N; i0 += P.nb) {
      int64_t nb_i = g->N - i0 < P.nb ? g->N - i0 : P.nb;
      im2col(wsb + P.o_col, P.abt, at(src[0], nd->dtype, i0 * g->OC * g->OHW), nd->dtype, &t, nb_i, s);
      for (int64_t gi = 0; gi < g->G; gi++)
        gemm(s, 0, 0, g->Cg, g->HW, KB, wsb + P.o_a + (size_t)(gi * g->Cg * KB) * mf_dtype_size(P.abt), KB, 0,
             at(wsb + P.o_col, P.abt, gi * KB * g->HW), g->HW, g->OC * g->KK * g->HW, P.abt, 0.0,
             atw(out, n->dtype, (i0 * g->C + gi * g->Cg) * g->HW), g->HW, g->C * g->HW, n->dtype, nb_i, "conv2d_bwd_data");
    }
    return;
  }
  if (P.n_a) { convert(wsb + P.o_a, P.abt, src[1], nw->dtype, P.n_a, s); wm = wsb + P.o_a; }
  if (P.n_b) { convert(wsb + P.o_b, P.abt, src[0], nd->dtype, P.n_b, s); dym = wsb + P.o_b; }
  for (int64_t i0 = 0; i0 < g->N; i0 += P.nb) {
    int64_t nb_i = g->N - i0 < P.nb ? g->N - i0 : P.nb;
    void *colm = P.n_col ? (void *)(wsb + P.o_col) : (void *)atw(out, n->dtype, i0 * g->C * g->HW);
    int64_t colstride = P.n_col ? g->C * g->KK * g->OHW : g->C * g->HW;
    for (int64_t gi = 0; gi < g->G; gi++)
      gemm(s, 1, 0, g->K, g->OHW, g->OCg, at(wm, P.abt, gi * g->OCg * g->K), g->K, 0,
           at(dym, P.abt, (i0 * g->OC + gi * g->OCg) * g->OHW), g->OHW, g->OC * g->OHW, P.abt, 0.0, atw(colm, P.ct, gi * g->K * g->OHW),
           g->OHW, colstride, P.ct, nb_i, "conv2d_bwd_data");
    if (P.n_col) col2im(atw(out, n->dtype, i0 * g->C * g->HW), n->dtype, colm, P.ct, g, nb_i, s);
  }
}

/* dw [OC,Cg,KH,KW] = sum over images of dy . im2col(x)^T (written, not accumulated) */
extern "C" void mf_cuda_conv2d_bwd_weight(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (mf_cuda_conv_on_cudnn(n)) { mf_cuda_conv_cudnn(k, n, out, src, ws); return; }
  cplan P;
  conv_plan(k->g, n, &P);
  const cgeo *g = &P.g;
  const mf_node *nx = mf_csrc(k, n, 0), *nd = mf_csrc(k, n, 1);
  cudaStream_t s = mf_cuda_stream(k);
  char *wsb = (char *)ws;
  const void *dym = src[1];
  if (P.n_b) { convert(wsb + P.o_b, P.abt, src[1], nd->dtype, P.n_b, s); dym = wsb + P.o_b; }
  void *dwm = P.n_c ? (void *)(wsb + P.o_c) : out;
  for (int64_t i = 0; i < g->N; i++) {
    const void *colm;
    if (P.n_col) {
      im2col(wsb + P.o_col, P.abt, at(src[0], nx->dtype, i * g->C * g->HW), nx->dtype, g, 1, s);
      colm = wsb + P.o_col;
    } else colm = at(src[0], nx->dtype, i * g->C * g->HW);
    for (int64_t gi = 0; gi < g->G; gi++)
      gemm(s, 0, 1, g->OCg, g->K, g->OHW, at(dym, P.abt, (i * g->OC + gi * g->OCg) * g->OHW), g->OHW, 0, at(colm, P.abt, gi * g->K * g->OHW),
           g->OHW, 0, P.abt, i ? 1.0 : 0.0, atw(dwm, P.ct, gi * g->OCg * g->K), g->K, 0, P.ct, 1, "conv2d_bwd_weight");
  }
  if (P.n_c) convert(out, n->dtype, dwm, P.ct, g->OC * g->K, s);
}

/* ------------------------------------------------------------------ matmul */

typedef struct mplan {
  int64_t M, N, K, Ba, Bb, B;
  int ta, tb;
  mf_dtype ct;             /* GEMM type */
  bool conv_a, conv_b, conv_y;
  size_t o_a, o_b, o_y, total;
} mplan;

static void mm_plan(const mf_graph *g, const mf_node *n, mplan *m) {
  const mf_node *a = &g->nodes[n->src[0]], *b = &g->nodes[n->src[1]];
  m->ta = n->ip[0];
  m->tb = n->ip[1];
  m->M = n->ne[n->ndim - 2];
  m->N = n->ne[n->ndim - 1];
  m->K = a->ne[a->ndim - (m->ta ? 2 : 1)];
  int64_t mk = m->M * m->K, kn = m->K * m->N;
  m->Ba = mf_node_numel(a) / (mk > 0 ? mk : 1);
  m->Bb = mf_node_numel(b) / (kn > 0 ? kn : 1);
  m->B = m->Ba > m->Bb ? m->Ba : m->Bb;
  bool native = a->dtype == b->dtype && b->dtype == n->dtype && gemm_type(n->dtype);
  m->ct = native ? n->dtype : acc_type(n->dtype);
  m->conv_a = a->dtype != m->ct;
  m->conv_b = b->dtype != m->ct;
  m->conv_y = n->dtype != m->ct;
  size_t es = mf_dtype_size(m->ct), o = 0;
  m->o_a = o; if (m->conv_a) o += mf_ws_align((size_t)mf_node_numel(a) * es);
  m->o_b = o; if (m->conv_b) o += mf_ws_align((size_t)mf_node_numel(b) * es);
  m->o_y = o; if (m->conv_y) o += mf_ws_align((size_t)mf_node_numel(n) * es);
  m->total = o;
}

/* y [..,M,N] = op(a) [..,M,K] . op(b) [..,K,N]; a 2-D operand is shared by every batch entry */
extern "C" void mf_cuda_matmul(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *na = mf_csrc(k, n, 0), *nb = mf_csrc(k, n, 1);
  mplan m;
  mm_plan(k->g, n, &m);
  cudaStream_t s = mf_cuda_stream(k);
  char *wsb = (char *)ws;
  const void *A = src[0], *Bm = src[1];
  void *Y = m.conv_y ? (void *)(wsb + m.o_y) : out;
  if (m.conv_a) { convert(wsb + m.o_a, m.ct, src[0], na->dtype, mf_node_numel(na), s); A = wsb + m.o_a; }
  if (m.conv_b) { convert(wsb + m.o_b, m.ct, src[1], nb->dtype, mf_node_numel(nb), s); Bm = wsb + m.o_b; }
  int64_t lda = m.ta ? m.M : m.K, ldb = m.tb ? m.K : m.N;
  if (m.Bb == 1 && !m.ta) /* a's batch folds into its rows: one GEMM [Ba*M, K] x [K, N] */
    gemm(s, 0, m.tb, m.Ba * m.M, m.N, m.K, A, lda, 0, Bm, ldb, 0, m.ct, 0.0, Y, m.N, 0, m.ct, 1, "matmul");
  else
    gemm(s, m.ta, m.tb, m.M, m.N, m.K, A, lda, m.Ba > 1 ? m.M * m.K : 0, Bm, ldb, m.Bb > 1 ? m.K * m.N : 0, m.ct, 0.0, Y, m.N, m.M * m.N,
         m.ct, m.B, "matmul");
  if (m.conv_y) convert(out, n->dtype, Y, m.ct, mf_node_numel(n), s);
}

extern "C" size_t mf_cuda_ws_gemm(const mf_graph *g, const mf_node *n) {
  if (n->op == MF_OP_MATMUL) {
    mplan m;
    mm_plan(g, n, &m);
    return m.total;
  }
  if (mf_cuda_conv_on_cudnn(n)) return mf_cuda_ws_cudnn(g, n);
  return mf_cuda_ws_conv_im2col(g, n);
}

extern "C" size_t mf_cuda_ws_conv_im2col(const mf_graph *g, const mf_node *n) {
  cplan P;
  conv_plan(g, n, &P);
  return P.total;
}

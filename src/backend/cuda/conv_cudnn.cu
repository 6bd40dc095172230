/* conv_cudnn.cu — conv2d forward (+bias), backward-data and backward-weights on cuDNN for the nodes the planner put
 * there (conv_choice.c): descriptors from the node's shape (mf_cuda_conv_dims), the algorithm recorded in n->impl and
 * exactly the workspace cuDNN asks for that algorithm (the plan reserves those bytes; measured == planned holds).
 *
 * Numerics (chosen to keep results close to the CPU backend and run-to-run identical, as the im2col path is):
 *  - f32 runs with CUDNN_FMA_MATH: no TF32 (cuDNN's default math would allow TF32 tensor cores on Ampere and later,
 *    about 10 mantissa bits, far outside the f32 tolerance the CUDA tests derive from the CPU backend);
 *  - bf16 / f16 storage runs with f32 accumulation (compute type float) on tensor cores (CUDNN_TENSOR_OP_MATH);
 *    the math type each heuristic entry reports is not copied onto the descriptor: the choice, its workspace query
 *    and the run all use the descriptor's (as PyTorch does with TF32 off), so the planned bytes are the run's;
 *  - only deterministic algorithms (cuDNN's own flag), and only the GEMM-like ones, which change the order of the
 *    sums but not the arithmetic: forward implicit-gemm / implicit-precomp-gemm / gemm / direct, backward-data and
 *    backward-weights algo-1. FFT and Winograd transform the operands and round differently; not used.
 *  - a forward with a bias writes the bias into y first and the convolution adds onto it (beta 1) in f32, so y is
 *    rounded once, as on the im2col path and the CPU backend; a fused activation then runs over y in place
 *    (mf_cuda_conv_act, called by gemm.cu's conv2d for both paths).
 * Built on cuDNN's legacy convolution API (cudnn_cnn.h; deprecated in cuDNN 9 in favour of the graph API, still
 * shipped and working). Not yet run on a GPU: the development machine has none. */
#include "backend/cuda/common.cuh"

static const char *const fwd_names[] = {"implicit-gemm", "implicit-precomp-gemm", "gemm", "direct",
                                        "fft", "fft-tiling", "winograd", "winograd-nonfused"};
static const char *const bwd_data_names[] = {"algo-0", "algo-1", "fft", "fft-tiling", "winograd", "winograd-nonfused"};
static const char *const bwd_filter_names[] = {"algo-0", "algo-1", "fft", "algo-3", "winograd", "winograd-nonfused", "fft-tiling"};

extern "C" const char *mf_cuda_cudnn_algo_name(int op, int algo) {
  const char *const *t = op == MF_OP_CONV2D ? fwd_names : op == MF_OP_CONV2D_BWD_DATA ? bwd_data_names : bwd_filter_names;
  int n = op == MF_OP_CONV2D ? 8 : op == MF_OP_CONV2D_BWD_DATA ? 6 : 7;
  return algo >= 0 && algo < n ? t[algo] : "?";
}

#ifdef MEMFIT_HAVE_CUDNN
#include <cudnn.h>
#include <pthread.h>

cudnnHandle_t mf_cuda_dnn(cudaStream_t s); /* runtime.cu: the handle bound to s, NULL when cuDNN did not start */

extern "C" int mf_cuda_cudnn_built(void) { return 1; }

/* the algorithms used per pass (see the top of this file) */
static bool allowed(int op, int algo) {
  if (op == MF_OP_CONV2D)
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
  if (op == MF_OP_CONV2D_BWD_DATA) return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
}

static cudnnDataType_t dnn_type(mf_dtype t) {
  return t == MF_BF16 ? CUDNN_DATA_BFLOAT16 : t == MF_F16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
}

/* x [n,c,h,w], w [k,c/groups,r,s], y [n,k,p,q] and the convolution, from d */
typedef struct dnn_desc {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t c;
} dnn_desc;

static void desc_free(dnn_desc *D) {
  if (D->x) cudnnDestroyTensorDescriptor(D->x);
  if (D->y) cudnnDestroyTensorDescriptor(D->y);
  if (D->w) cudnnDestroyFilterDescriptor(D->w);
  if (D->c) cudnnDestroyConvolutionDescriptor(D->c);
  memset(D, 0, sizeof *D);
}

static cudnnStatus_t desc_init(const mf_cudnn_dims *d, dnn_desc *D) {
  memset(D, 0, sizeof *D);
  cudnnDataType_t t = dnn_type(d->dtype);
  cudnnStatus_t st;
  if ((st = cudnnCreateTensorDescriptor(&D->x)) || (st = cudnnCreateTensorDescriptor(&D->y)) ||
      (st = cudnnCreateFilterDescriptor(&D->w)) || (st = cudnnCreateConvolutionDescriptor(&D->c)) ||
      (st = cudnnSetTensor4dDescriptor(D->x, CUDNN_TENSOR_NCHW, t, d->n, d->c, d->h, d->w)) ||
      (st = cudnnSetTensor4dDescriptor(D->y, CUDNN_TENSOR_NCHW, t, d->n, d->k, d->p, d->q)) ||
      (st = cudnnSetFilter4dDescriptor(D->w, t, CUDNN_TENSOR_NCHW, d->k, d->cg, d->r, d->s)) ||
      (st = cudnnSetConvolution2dDescriptor(D->c, d->pad_h, d->pad_w, d->u, d->v, d->dil_h, d->dil_w, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT)) ||
      (st = cudnnSetConvolutionGroupCount(D->c, d->groups)) ||
      (st = cudnnSetConvolutionMathType(D->c, d->dtype == MF_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH)))
    desc_free(D);
  return st;
}

/* workspace bytes of `algo` for pass op */
static cudnnStatus_t ws_of(cudnnHandle_t h, int op, const dnn_desc *D, int algo, size_t *b) {
  *b = 0;
  if (op == MF_OP_CONV2D) return cudnnGetConvolutionForwardWorkspaceSize(h, D->x, D->w, D->c, D->y, (cudnnConvolutionFwdAlgo_t)algo, b);
  if (op == MF_OP_CONV2D_BWD_DATA)
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, D->w, D->y, D->c, D->x, (cudnnConvolutionBwdDataAlgo_t)algo, b);
  return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, D->x, D->y, D->c, D->w, (cudnnConvolutionBwdFilterAlgo_t)algo, b);
}

/* What cuDNN answered, per pass and shape: the algorithm picked under a limit (plans are made many times while a
 * budget's settings are searched) and the workspace of an algorithm (asked again by every kernel run). A fixed
 * table, filled once per shape; when full, cuDNN is asked again. */
#define ANSWERS 1024
typedef struct answer {
  int kind;           /* 1: pick under `limit`, 2: workspace of `algo` */
  int op, algo;
  mf_cudnn_dims d;
  size_t limit, ws;
} answer;
static answer answers[ANSWERS];
static int n_answers;
static pthread_mutex_t answers_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1 and *a filled when the table has (kind, op, d, limit or algo) */
static int answer_find(int kind, int op, const mf_cudnn_dims *d, size_t limit, int algo, answer *a) {
  int hit = 0;
  pthread_mutex_lock(&answers_lock);
  for (int i = 0; i < n_answers && !hit; i++) {
    const answer *e = &answers[i];
    if (e->kind == kind && e->op == op && (kind == 1 ? e->limit == limit : e->algo == algo) && !memcmp(&e->d, d, sizeof *d)) {
      *a = *e;
      hit = 1;
    }
  }
  pthread_mutex_unlock(&answers_lock);
  return hit;
}
static void answer_add(const answer *a) {
  pthread_mutex_lock(&answers_lock);
  if (n_answers < ANSWERS) answers[n_answers++] = *a;
  pthread_mutex_unlock(&answers_lock);
}

/* workspace bytes of `algo` for n's pass, from the table or cuDNN */
static cudnnStatus_t ws_cached(cudnnHandle_t h, int op, const mf_cudnn_dims *d, int algo, size_t *b) {
  answer a;
  if (answer_find(2, op, d, 0, algo, &a)) { *b = a.ws; return CUDNN_STATUS_SUCCESS; }
  dnn_desc D;
  cudnnStatus_t st = desc_init(d, &D);
  if (st == CUDNN_STATUS_SUCCESS) st = ws_of(h, op, &D, algo, b);
  desc_free(&D);
  if (st == CUDNN_STATUS_SUCCESS) {
    memset(&a, 0, sizeof a);
    a.kind = 2; a.op = op; a.algo = algo; a.d = *d; a.ws = *b;
    answer_add(&a);
  }
  return st;
}

/* the first usable entry of cuDNN's heuristic list (fastest first): -1 if none */
template <typename Perf> static int first_fit(cudnnHandle_t h, int op, const dnn_desc *D, const Perf *pf, int got, size_t limit, size_t *ws) {
  for (int i = 0; i < got; i++) {
    size_t b = 0;
    if (pf[i].status != CUDNN_STATUS_SUCCESS || pf[i].determinism != CUDNN_DETERMINISTIC || !allowed(op, (int)pf[i].algo)) continue;
    if (ws_of(h, op, D, (int)pf[i].algo, &b) != CUDNN_STATUS_SUCCESS || b > limit) continue;
    *ws = b;
    return (int)pf[i].algo;
  }
  return -1;
}

extern "C" int mf_cuda_cudnn_pick(const mf_graph *g, const mf_node *n, size_t limit, size_t *ws, const char **why) {
  mf_cudnn_dims d;
  *ws = 0;
  if (mf_cuda_conv_dims(g, n, &d, why) < 0) return -MF_CUDA_CONV_IM2COL_SHAPE;
  cudnnHandle_t h = mf_cuda_dnn(mf_cuda_default_stream());
  if (!h) { *why = "cuDNN did not start"; return -MF_CUDA_CONV_IM2COL_NOLIB; }
  answer ans;
  if (answer_find(1, n->op, &d, limit, 0, &ans)) {
    *ws = ans.ws;
    if (ans.algo < 0) *why = "no deterministic GEMM-like algorithm within the workspace limit";
    return ans.algo >= 0 ? ans.algo : -MF_CUDA_CONV_IM2COL_NOALGO;
  }
  dnn_desc D;
  if (desc_init(&d, &D) != CUDNN_STATUS_SUCCESS) { *why = "cuDNN refused the descriptors"; return -MF_CUDA_CONV_IM2COL_SHAPE; }
  int got = 0, a = -1;
  cudnnStatus_t st;
  if (n->op == MF_OP_CONV2D) {
    cudnnConvolutionFwdAlgoPerf_t pf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    st = cudnnGetConvolutionForwardAlgorithm_v7(h, D.x, D.w, D.c, D.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, pf);
    if (st == CUDNN_STATUS_SUCCESS) a = first_fit(h, n->op, &D, pf, got, limit, ws);
  } else if (n->op == MF_OP_CONV2D_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t pf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    st = cudnnGetConvolutionBackwardDataAlgorithm_v7(h, D.w, D.y, D.c, D.x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, pf);
    if (st == CUDNN_STATUS_SUCCESS) a = first_fit(h, n->op, &D, pf, got, limit, ws);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t pf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, D.x, D.y, D.c, D.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, pf);
    if (st == CUDNN_STATUS_SUCCESS) a = first_fit(h, n->op, &D, pf, got, limit, ws);
  }
  desc_free(&D);
  if (st == CUDNN_STATUS_SUCCESS) { /* an answer (an algorithm or none); a failed query is asked again next time */
    memset(&ans, 0, sizeof ans);
    ans.kind = 1; ans.op = n->op; ans.algo = a; ans.d = d; ans.limit = limit; ans.ws = *ws;
    answer_add(&ans);
  }
  if (a < 0) { *why = "no deterministic GEMM-like algorithm within the workspace limit"; return -MF_CUDA_CONV_IM2COL_NOALGO; }
  return a;
}

static void note_dnn(cudnnStatus_t st, const char *what) {
  if (st == CUDNN_STATUS_SUCCESS) return;
  char msg[64];
  snprintf(msg, sizeof msg, "%s (cuDNN: %s)", what, cudnnGetErrorString(st));
  mf_cuda_note(cudaErrorUnknown, msg);
}

/* The exact workspace of n's recorded algorithm; 0 (and an error noted for the next sync) if cuDNN cannot say. */
extern "C" size_t mf_cuda_ws_cudnn(const mf_graph *g, const mf_node *n) {
  mf_cudnn_dims d;
  const char *why;
  cudnnHandle_t h = mf_cuda_dnn(mf_cuda_default_stream());
  if (mf_cuda_conv_dims(g, n, &d, &why) < 0 || !h) { mf_cuda_note(cudaErrorUnknown, "conv workspace on cuDNN"); return 0; }
  size_t b = 0;
  cudnnStatus_t st = ws_cached(h, n->op, &d, n->impl - MF_CUDA_CONV_CUDNN, &b);
  note_dnn(st, "conv workspace");
  return st == CUDNN_STATUS_SUCCESS ? b : 0;
}

/* y = conv(x, w) (+ b), dx = conv^T(dy, w) or dw = corr(x, dy), written (not accumulated) */
extern "C" void mf_cuda_conv_cudnn(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  mf_cudnn_dims d;
  const char *why;
  cudaStream_t s = mf_cuda_stream(k);
  cudnnHandle_t h = mf_cuda_dnn(s);
  if (mf_cuda_conv_dims(k->g, n, &d, &why) < 0 || !h) { mf_cuda_note(cudaErrorUnknown, "conv on cuDNN: no handle or shape"); return; }
  dnn_desc D;
  memset(&D, 0, sizeof D);
  size_t wsb = 0;
  int algo = n->impl - MF_CUDA_CONV_CUDNN;
  cudnnStatus_t st = ws_cached(h, n->op, &d, algo, &wsb);
  if (st == CUDNN_STATUS_SUCCESS) st = desc_init(&d, &D);
  if (st != CUDNN_STATUS_SUCCESS) { note_dnn(st, mf_op_name(n->op)); desc_free(&D); return; }
  float one = 1.0f, zero = 0.0f;
  switch (n->op) {
  case MF_OP_CONV2D: {
    float beta = 0.0f;
    if (d.bias) { /* y = b, then y = conv + 1 * y */
      const mf_node *nb = mf_csrc(k, n, 2);
      mf_cuda_conv_bias_fill(out, n->dtype, src[2], nb->dtype, d.k, (int64_t)d.p * d.q, mf_node_numel(n), s);
      beta = 1.0f;
    }
    st = cudnnConvolutionForward(h, &one, D.x, src[0], D.w, src[1], D.c, (cudnnConvolutionFwdAlgo_t)algo, ws, wsb, &beta, D.y, out);
    break;
  }
  case MF_OP_CONV2D_BWD_DATA: /* src: dy, w */
    st = cudnnConvolutionBackwardData(h, &one, D.w, src[1], D.y, src[0], D.c, (cudnnConvolutionBwdDataAlgo_t)algo, ws, wsb, &zero, D.x,
                                      out);
    break;
  default: /* CONV2D_BWD_WEIGHT; src: x, dy */
    st = cudnnConvolutionBackwardFilter(h, &one, D.x, src[0], D.y, src[1], D.c, (cudnnConvolutionBwdFilterAlgo_t)algo, ws, wsb, &zero,
                                        D.w, out);
    break;
  }
  note_dnn(st, mf_op_name(n->op));
  desc_free(&D);
}

#else /* no cuDNN in this build: every conv stays on im2col (conv_choice.c never records a cuDNN algorithm) */

extern "C" int mf_cuda_cudnn_built(void) { return 0; }
extern "C" int mf_cuda_cudnn_pick(const mf_graph *g, const mf_node *n, size_t limit, size_t *ws, const char **why) {
  (void)g; (void)n; (void)limit;
  *ws = 0;
  *why = "no cuDNN in this build";
  return -MF_CUDA_CONV_IM2COL_NOLIB;
}
extern "C" size_t mf_cuda_ws_cudnn(const mf_graph *g, const mf_node *n) {
  (void)g; (void)n;
  return 0;
}
extern "C" void mf_cuda_conv_cudnn(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)k; (void)n; (void)out; (void)src; (void)ws;
  mf_cuda_note(cudaErrorUnknown, "conv on cuDNN in a build without cuDNN");
}

#endif

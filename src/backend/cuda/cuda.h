/* cuda.h — the CUDA backend's C-callable pieces: one kernel launcher per op (defined in the .cu
 * files of this folder), workspace sizes, device memory, and the start-up measurements. */
#ifndef MF_CUDA_H
#define MF_CUDA_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MF_CUDA_DECL(E, n) void mf_cuda_##n(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
MF_OP_LIST(MF_CUDA_DECL)
#undef MF_CUDA_DECL

/* Exact workspace bytes of the families that need scratch (pure shape arithmetic: planning needs
 * no device). */
size_t mf_cuda_ws_gemm(const mf_graph *g, const mf_node *n);   /* matmul and the three conv ops */
size_t mf_cuda_ws_reduce(const mf_graph *g, const mf_node *n); /* reduce, loss, softmax_ce */
size_t mf_cuda_ws_norm(const mf_graph *g, const mf_node *n);   /* norm and its backward ops */
size_t mf_cuda_ws_index(const mf_graph *g, const mf_node *n);  /* gather_bwd in f16/bf16 */
size_t mf_cuda_ws_raster(const mf_graph *g, const mf_node *n); /* gauss_topk, gauss_raster and its backward */
size_t mf_cuda_ws_attention(const mf_graph *g, const mf_node *n); /* attention, attn_probs, attention_bwd (vq_nearest: 0) */
size_t mf_cuda_ws_ssim(const mf_graph *g, const mf_node *n);     /* ssim_bwd: its coefficient maps (ssim: 0) */

/* ---- convolutions: im2col + cuBLAS (gemm.cu) or cuDNN (conv_cudnn.cu), chosen per node when planning ----
 * n->impl of a conv node: 0 not chosen (im2col), MF_CUDA_CONV_IM2COL_* im2col and why, MF_CUDA_CONV_CUDNN + algo
 * cuDNN with that algorithm (its cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t). */
enum {
  MF_CUDA_CONV_IM2COL_NODEV = 1, /* planned with no usable CUDA device: cuDNN's algorithms need one to be chosen */
  MF_CUDA_CONV_IM2COL_NOLIB,     /* this build has no cuDNN, or its handle could not be created */
  MF_CUDA_CONV_IM2COL_OFF,       /* MEMFIT_CUDNN=0 */
  MF_CUDA_CONV_IM2COL_SHAPE,     /* cuDNN does not take this node (dtypes, padding, sizes: mf_cuda_conv_dims) */
  MF_CUDA_CONV_IM2COL_NOALGO,    /* no deterministic cuDNN algorithm of the allowed kinds within the workspace limit */
  MF_CUDA_CONV_CUDNN = 16,
};
static inline int mf_cuda_conv_on_cudnn(const mf_node *n) { return n->impl >= MF_CUDA_CONV_CUDNN; }

/* A conv node as cuDNN describes it (NCHW, cross-correlation): x [n,c,h,w], w [k,c/groups,r,s], y [n,k,p,q];
 * padding pad_h/pad_w on both sides, strides u/v, dilations dil_h/dil_w. dtype: x's, w's and y's (one dtype). */
typedef struct mf_cudnn_dims {
  int n, c, h, w, k, cg, r, s, p, q;
  int pad_h, pad_w, u, v, dil_h, dil_w, groups;
  mf_dtype dtype;
  int bias;  /* forward with a bias: y is filled with it first, the convolution adds onto it (beta 1) */
} mf_cudnn_dims;
/* Fills d from conv node n (pure shape arithmetic): 0 when cuDNN takes it, else -1 with why ("dtypes differ", ...):
 * x, w and y in one dtype of f32 / bf16 / f16; int-sized tensors; and padding that cuDNN's symmetric padding
 * reproduces (top / left padding pt / pl giving the node's own output size: bottom / right padding only ever
 * changes that size). */
int mf_cuda_conv_dims(const mf_graph *g, const mf_node *n, mf_cudnn_dims *d, const char **why);
/* The im2col path's exact workspace bytes for conv node n (what it uses with no cuDNN) */
size_t mf_cuda_ws_conv_im2col(const mf_graph *g, const mf_node *n);
/* The workspace limit of n's cuDNN algorithm: the im2col path's bytes (so choosing cuDNN never grows a plan),
 * at most MF_CUDA_CUDNN_WS_MAX */
#define MF_CUDA_CUDNN_WS_MAX ((size_t)32 << 20)
size_t mf_cuda_conv_ws_limit(const mf_graph *g, const mf_node *n);
/* Chooses the implementation of conv node n (the backend's choose); the reasons above, in this order: MEMFIT_CUDNN=0,
 * no cuDNN, shape, no device, no algorithm. */
void mf_cuda_conv_choose(const mf_graph *g, mf_node *n);
/* The name of what runs n ("cudnn implicit-precomp-gemm", "im2col + cublas") and why (backend.h impl_describe) */
int mf_cuda_conv_describe(const mf_graph *g, const mf_node *n, char *name, size_t len, const char **why);
/* cuDNN (conv_cudnn.cu; stubs without cuDNN): 1 when the library is built in. Picks the first algorithm in cuDNN's
 * heuristic order that is deterministic, of the kinds allowed for n's pass (see conv_cudnn.cu) and needs at most
 * `limit` workspace bytes; returns its number, or -1 (*why says why). */
int mf_cuda_cudnn_built(void);
int mf_cuda_cudnn_pick(const mf_graph *g, const mf_node *n, size_t limit, size_t *ws, const char **why);
size_t mf_cuda_ws_cudnn(const mf_graph *g, const mf_node *n); /* exact bytes of n's recorded algorithm */
const char *mf_cuda_cudnn_algo_name(int op, int algo);       /* "implicit-precomp-gemm", ... */
void mf_cuda_conv_cudnn(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws); /* runs n on cuDNN */

void *mf_cuda_alloc(size_t bytes, char *err, size_t errlen);
void mf_cuda_free(void *p);
void *mf_cuda_host_alloc(size_t bytes, void *ctx);
void mf_cuda_host_free(void *p, size_t bytes, void *ctx);
int mf_cuda_copy_in(void *dev_dst, const void *host_src, size_t n);
int mf_cuda_copy_out(void *host_dst, const void *dev_src, size_t n);
int mf_cuda_stage_copy(void *dev_dst, const void *host_src, size_t n, int slot);
int mf_cuda_stage_wait(int slot, void *stream);
int mf_cuda_fill(void *dev_dst, int byte, size_t n);
int mf_cuda_sync(void *stream);
double mf_cuda_sum_squares(const float *g, int64_t n, void *stream);
void mf_cuda_optim_update(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream);
void mf_cuda_ema_update(float *k, const float *q, int64_t n, float m, float one_minus_m, void *stream);
int mf_cuda_copy_dd(void *dst, const void *src, size_t n, void *stream);
size_t mf_cuda_fixed_overhead(void);
int mf_cuda_device_key(unsigned char key[16]); /* the device's UUID */
void *mf_cuda_compute_stream(void);            /* the stream the kernels run on (a cudaStream_t) */

/* Devices the runtime sees; 0 when there is none or no driver (never fails). */
int mf_cuda_device_count(void);

/* What start-up measured (cudaMemGetInfo before and after creating the stream, the cuBLAS handle
 * and its workspace). context_bytes is what was in use once the context existed (on a GPU of its
 * own: the context); library_bytes what the handles and buffers took; overhead = both. */
typedef struct mf_cuda_info {
  int device, cc_major, cc_minor, sm_count;
  char name[256];
  size_t total_bytes, free_bytes;        /* device memory, free measured now */
  size_t context_bytes, library_bytes, overhead_bytes;
} mf_cuda_info;
/* Starts the runtime if needed; returns 0, or -1 with err (no device, driver missing...). */
int mf_cuda_init(char *err, size_t errlen);
int mf_cuda_get_info(mf_cuda_info *info, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif

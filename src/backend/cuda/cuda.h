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

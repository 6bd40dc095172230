/* common.cuh — what every CUDA kernel file shares: the C headers under C linkage, element loads and
 * stores for every dtype (f16/bf16 stored, f32 or f64 math), launch sizes, the compute stream and
 * launch-error bookkeeping. */
#ifndef MF_CUDA_COMMON_CUH
#define MF_CUDA_COMMON_CUH

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

extern "C" {
#include "backend/cuda/cuda.h"
}

/* ---- runtime state (runtime.cu) ---- */
cudaStream_t mf_cuda_stream(const mf_kctx *k); /* the kctx stream, else the backend's own */
cudaStream_t mf_cuda_default_stream(void);
/* Records the first launch / library error (reported by sync); `what` names the op. */
void mf_cuda_note(cudaError_t e, const char *what);
#define MF_CUDA_LAUNCHED(what) mf_cuda_note(cudaGetLastError(), what)
/* After a synchronisation: 1 with a message when a gather met indices outside its table since the
 * last call (index.cu), else 0. */
int mf_cuda_index_fault(char *msg, size_t len);
/* The same for a Gaussian rasteriser whose pairs exceeded its capacity (raster.cu). */
int mf_cuda_raster_fault(char *msg, size_t len);

/* y (yt) [n / (OC P), OC, P] = bias[oc] (gemm.cu): a conv's output before the convolution adds onto it (beta 1), so
 * the sum is rounded once to y's dtype */
void mf_cuda_conv_bias_fill(void *y, mf_dtype yt, const void *b, mf_dtype bt, int64_t OC, int64_t P, int64_t n, cudaStream_t s);
/* a conv's fused ReLU / leaky ReLU (mf_conv_act) over its finished output y, in place; nothing when none (gemm.cu) */
void mf_cuda_conv_act(const mf_node *n, void *y, cudaStream_t s);

/* ---- launch geometry: grid-stride loops over int64 element counts ---- */
#define MF_THREADS 256
#define MF_RED_BLOCKS 256 /* partial sums of a full reduction: a fixed count of fixed chunks */
static inline unsigned mf_blocks(int64_t n) {
  int64_t b = (n + MF_THREADS - 1) / MF_THREADS;
  if (b < 1) b = 1;
  if (b > 65536) b = 65536;
  return (unsigned)b;
}
#define MF_GRID_LOOP(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

static inline const mf_node *mf_csrc(const mf_kctx *k, const mf_node *n, int i) { return &k->g->nodes[n->src[i]]; }
static inline bool mf_any_f64(mf_dtype a, mf_dtype b, mf_dtype c) { return a == MF_F64 || b == MF_F64 || c == MF_F64; }

/* ---- element access by runtime dtype (the switch is uniform across a warp) ---- */
template <typename T> __device__ __forceinline__ T mf_gld(const void *p, int dt, int64_t i) {
  switch (dt) {
  case MF_F32: return (T)((const float *)p)[i];
  case MF_BF16: return (T)__bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case MF_F16: return (T)__half2float(((const __half *)p)[i]);
  case MF_F64: return (T)((const double *)p)[i];
  case MF_I32: return (T)((const int32_t *)p)[i];
  case MF_U8: return (T)((const uint8_t *)p)[i];
  default: return (T)0;
  }
}
template <typename T> __device__ __forceinline__ void mf_gst(void *p, int dt, int64_t i, T v) {
  switch (dt) {
  case MF_F32: ((float *)p)[i] = (float)v; break;
  case MF_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16((float)v); break;
  case MF_F16: ((__half *)p)[i] = __float2half((float)v); break;
  case MF_F64: ((double *)p)[i] = (double)v; break;
  case MF_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case MF_U8: ((uint8_t *)p)[i] = (uint8_t)(v < (T)0 ? 0 : v > (T)255 ? 255 : (int)(v + (T)0.5)); break;
  default: break;
  }
}

/* Block-wide sum of one double per thread in a fixed tree (deterministic); every thread gets it.
 * blockDim.x must be MF_THREADS; sh: MF_THREADS doubles of shared memory. */
__device__ __forceinline__ double mf_block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = MF_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

/* Output shape and b's stride per output axis (0 where b broadcasts), passed by value. */
typedef struct bshape {
  int D;
  int64_t ne[MF_MAX_DIMS], bst[MF_MAX_DIMS];
} bshape;

/* b's strides over the output shape: b right-aligned, size-1 axes get stride 0 */
static inline bshape broadcast_shape(const mf_node *out, const mf_node *b) {
  bshape s;
  memset(&s, 0, sizeof s);
  s.D = out->ndim;
  for (int i = 0; i < s.D; i++) s.ne[i] = out->ne[i];
  int64_t st = 1;
  int off = s.D - b->ndim;
  for (int i = s.D - 1; i >= off && i >= 0; i--) {
    int64_t e = b->ne[i - off];
    s.bst[i] = e == 1 ? 0 : st;
    st *= e;
  }
  return s;
}
__device__ __forceinline__ int64_t b_offset(const bshape &s, int64_t i) {
  int64_t off = 0;
  for (int d = s.D - 1; d >= 0; d--) {
    off += (i % s.ne[d]) * s.bst[d];
    i /= s.ne[d];
  }
  return off;
}

/* Workspace regions are 256-byte aligned (cuBLAS and vector loads like it). */
static inline size_t mf_ws_align(size_t b) { return (b + 255) / 256 * 256; }

#endif

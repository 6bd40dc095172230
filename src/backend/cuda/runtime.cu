/* runtime.cu — the CUDA backend's runtime: start-up (context, one compute stream, the cuBLAS handle
 * and its workspace, the cuDNN handle when built with cuDNN, with the fixed overhead measured by
 * cudaMemGetInfo), arena memory (one
 * cudaMalloc each, never managed memory), copies, the deterministic sum of squares and the optimizer. */
#include "backend/cuda/common.cuh"
#include <cublas_v2.h>

cublasHandle_t mf_cuda_blas(cudaStream_t s); /* the handle, bound to stream s (runtime.cu) */
void mf_cuda_note_blas(cublasStatus_t s, const char *what);
#include <pthread.h>
#include <stdlib.h>
#ifdef MEMFIT_HAVE_CUDNN
#include <cudnn.h>
#endif

#define SS_BLOCKS 256                       /* partial sums of sum_squares: fixed, so the bits are too */
#define BLAS_WS_BYTES ((size_t)32 << 20)    /* cuBLAS workspace (NVIDIA's advice for Hopper) */

static struct {
  int state; /* 0 not started, 1 running, -1 failed (err says why) */
  char err[256];
  int device;
  cudaStream_t stream;
  cudaStream_t copy_stream;  /* the next batch's inputs, overlapping the step on `stream` */
  cudaEvent_t slot_ready[2]; /* recorded on copy_stream after each input slot's copies */
  cublasHandle_t blas;
  cudaStream_t blas_stream;
  void *blas_ws;
#ifdef MEMFIT_HAVE_CUDNN
  cudnnHandle_t dnn;    /* NULL: cuDNN is off (MEMFIT_CUDNN=0 at start-up) or did not start */
  cudaStream_t dnn_stream;
#endif
  double *partials;     /* device: SS_BLOCKS partials + 1 result */
  double *host_result;  /* page-locked host double */
  size_t total, context_bytes, library_bytes;
  cudaError_t first_error;
  char first_error_op[64];
} G;
static pthread_mutex_t G_lock = PTHREAD_MUTEX_INITIALIZER;

extern "C" int mf_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky "no device" status */
    return 0;
  }
  return n;
}

static int fail(const char *what, cudaError_t e) {
  snprintf(G.err, sizeof G.err, "CUDA backend: %s: %s", what, cudaGetErrorString(e));
  G.state = -1;
  return -1;
}

static int start(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    snprintf(G.err, sizeof G.err, "CUDA backend: no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    G.state = -1;
    return -1;
  }
  /* the device: MEMFIT_CUDA_DEVICE, else under an MPI launcher the local rank's (rank i of a node on device i mod n,
   * one GPU per rank as NCCL wants; more ranks than devices share them and reduce through the host), else 0 */
  const char *dv = getenv("MEMFIT_CUDA_DEVICE"), *lr = NULL;
  const char *local[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"};
  for (int i = 0; i < 4 && !dv && !lr; i++) lr = getenv(local[i]);
  G.device = dv ? atoi(dv) : lr ? atoi(lr) % n : 0;
  if (G.device < 0 || G.device >= n) {
    snprintf(G.err, sizeof G.err, "CUDA backend: MEMFIT_CUDA_DEVICE=%d but there are %d device(s)", G.device, n);
    G.state = -1;
    return -1;
  }
  if ((e = cudaSetDevice(G.device)) != cudaSuccess) return fail("cudaSetDevice", e);
  if ((e = cudaFree(0)) != cudaSuccess) return fail("creating the context", e);
  size_t free0 = 0, free1 = 0;
  if ((e = cudaMemGetInfo(&free0, &G.total)) != cudaSuccess) return fail("cudaMemGetInfo", e);
  if ((e = cudaStreamCreateWithFlags(&G.stream, cudaStreamNonBlocking)) != cudaSuccess) return fail("cudaStreamCreate", e);
  if ((e = cudaStreamCreateWithFlags(&G.copy_stream, cudaStreamNonBlocking)) != cudaSuccess) return fail("copy stream", e);
  for (int i = 0; i < 2; i++)
    if ((e = cudaEventCreateWithFlags(&G.slot_ready[i], cudaEventDisableTiming)) != cudaSuccess) return fail("cudaEventCreate", e);
  if (cublasCreate(&G.blas) != CUBLAS_STATUS_SUCCESS) {
    snprintf(G.err, sizeof G.err, "CUDA backend: cublasCreate failed");
    G.state = -1;
    return -1;
  }
  if ((e = cudaMalloc(&G.blas_ws, BLAS_WS_BYTES)) != cudaSuccess) return fail("cuBLAS workspace", e);
  if ((e = cudaMalloc((void **)&G.partials, (SS_BLOCKS + 1) * sizeof(double))) != cudaSuccess) return fail("reduction buffer", e);
  if ((e = cudaMallocHost((void **)&G.host_result, sizeof(double))) != cudaSuccess) return fail("page-locked result", e);
  G.blas_stream = G.stream;
  if (cublasSetStream(G.blas, G.stream) != CUBLAS_STATUS_SUCCESS || cublasSetWorkspace(G.blas, G.blas_ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS ||
      cublasSetMathMode(G.blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) { /* no TF32: f32 stays f32 */
    snprintf(G.err, sizeof G.err, "CUDA backend: setting up the cuBLAS handle (stream, workspace, math mode) failed");
    G.state = -1;
    return -1;
  }
  /* one tiny GEMM so that what cuBLAS loads on first use is counted here, not during a step */
  float one = 1.0f, zero = 0.0f;
  cudaMemsetAsync(G.partials, 0, (SS_BLOCKS + 1) * sizeof(double), G.stream);
  cublasSgemm(G.blas, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, (const float *)G.partials, 1, (const float *)G.partials, 1, &zero,
              (float *)G.partials, 1);
  if ((e = cudaStreamSynchronize(G.stream)) != cudaSuccess) return fail("start-up GEMM", e);
#ifdef MEMFIT_HAVE_CUDNN
  /* the cuDNN handle, counted in the overhead like cuBLAS's; a failure leaves the convolutions on im2col */
  const char *dv_env = getenv("MEMFIT_CUDNN");
  if (!(dv_env && !strcmp(dv_env, "0"))) {
    if (cudnnCreate(&G.dnn) != CUDNN_STATUS_SUCCESS) G.dnn = NULL;
    else if (cudnnSetStream(G.dnn, G.stream) != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(G.dnn);
      G.dnn = NULL;
    }
    G.dnn_stream = G.stream;
    cudaGetLastError();
  }
#endif
  if ((e = cudaMemGetInfo(&free1, &G.total)) != cudaSuccess) return fail("cudaMemGetInfo", e);
  G.context_bytes = G.total - free0;
  G.library_bytes = free0 > free1 ? free0 - free1 : 0;
  G.state = 1;
  return 0;
}

extern "C" int mf_cuda_init(char *err, size_t errlen) {
  pthread_mutex_lock(&G_lock);
  int rc = G.state == 1 ? 0 : G.state == -1 ? -1 : start();
  pthread_mutex_unlock(&G_lock);
  if (rc < 0 && err && errlen) snprintf(err, errlen, "%s", G.err);
  return rc;
}

extern "C" int mf_cuda_get_info(mf_cuda_info *info, char *err, size_t errlen) {
  if (mf_cuda_init(err, errlen) < 0) return -1;
  memset(info, 0, sizeof *info);
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, G.device) == cudaSuccess) {
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
  }
  size_t fr = 0, tot = 0;
  cudaMemGetInfo(&fr, &tot);
  info->device = G.device;
  info->total_bytes = G.total;
  info->free_bytes = fr;
  info->context_bytes = G.context_bytes;
  info->library_bytes = G.library_bytes;
  info->overhead_bytes = G.context_bytes + G.library_bytes;
  return 0;
}

static void ensure_started(void) {
  if (G.state != 1) mf_cuda_init(NULL, 0);
}

cudaStream_t mf_cuda_default_stream(void) {
  ensure_started();
  return G.stream;
}
cudaStream_t mf_cuda_stream(const mf_kctx *k) { return k && k->stream ? (cudaStream_t)k->stream : mf_cuda_default_stream(); }
cublasHandle_t mf_cuda_blas(cudaStream_t s) {
  ensure_started();
  if (s != G.blas_stream) {
    /* cublasSetStream drops a user workspace for cuBLAS's own pool: set the planned one again */
    mf_cuda_note_blas(cublasSetStream(G.blas, s), "cublasSetStream");
    mf_cuda_note_blas(cublasSetWorkspace(G.blas, G.blas_ws, BLAS_WS_BYTES), "cublasSetWorkspace");
    G.blas_stream = s;
  }
  return G.blas;
}

#ifdef MEMFIT_HAVE_CUDNN
/* the cuDNN handle bound to stream s, or NULL when cuDNN did not start */
cudnnHandle_t mf_cuda_dnn(cudaStream_t s) {
  ensure_started();
  if (G.state != 1 || !G.dnn) return NULL;
  if (s != G.dnn_stream) {
    if (cudnnSetStream(G.dnn, s) != CUDNN_STATUS_SUCCESS) return NULL;
    G.dnn_stream = s;
  }
  return G.dnn;
}
#endif

void mf_cuda_note(cudaError_t e, const char *what) {
  if (e == cudaSuccess || G.first_error != cudaSuccess) return;
  G.first_error = e;
  snprintf(G.first_error_op, sizeof G.first_error_op, "%s", what);
}
void mf_cuda_note_blas(cublasStatus_t s, const char *what) {
  if (s == CUBLAS_STATUS_SUCCESS || G.first_error != cudaSuccess) return;
  G.first_error = cudaErrorUnknown;
  snprintf(G.first_error_op, sizeof G.first_error_op, "%s (cuBLAS status %d)", what, (int)s);
}

/* ---- memory ---- */
extern "C" void *mf_cuda_alloc(size_t bytes, char *err, size_t errlen) {
  if (mf_cuda_init(err, errlen) < 0) return NULL;
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    size_t fr = 0, tot = 0;
    cudaGetLastError();
    cudaMemGetInfo(&fr, &tot);
    snprintf(err, errlen, "cudaMalloc of %zu bytes: %s (%zu of %zu bytes free)", bytes, cudaGetErrorString(e), fr, tot);
    return NULL;
  }
  return p;
}
extern "C" void mf_cuda_free(void *p) {
  if (!p || G.state != 1) return;
  cudaStreamSynchronize(G.stream);
  cudaFree(p);
}
/* page-locked host memory for the loader's staging buffers (asynchronous host-to-device copies) */
extern "C" void *mf_cuda_host_alloc(size_t bytes, void *ctx) {
  (void)ctx;
  char err[256];
  if (mf_cuda_init(err, sizeof err) < 0) return NULL;
  void *p = NULL;
  if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocMapped) != cudaSuccess) {
    cudaGetLastError();
    return NULL;
  }
  return p;
}
extern "C" void mf_cuda_host_free(void *p, size_t bytes, void *ctx) {
  (void)bytes; (void)ctx;
  if (p && G.state == 1) cudaFreeHost(p);
}
extern "C" int mf_cuda_copy_in(void *dev_dst, const void *host_src, size_t n) {
  ensure_started();
  if (G.state != 1) return -1;
  cudaError_t e = cudaMemcpyAsync(dev_dst, host_src, n, cudaMemcpyHostToDevice, G.stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(G.stream);
  mf_cuda_note(e, "copy_in");
  return e == cudaSuccess ? 0 : -1;
}
extern "C" int mf_cuda_copy_out(void *host_dst, const void *dev_src, size_t n) {
  ensure_started();
  if (G.state != 1) return -1;
  cudaError_t e = cudaMemcpyAsync(host_dst, dev_src, n, cudaMemcpyDeviceToHost, G.stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(G.stream);
  mf_cuda_note(e, "copy_out");
  return e == cudaSuccess ? 0 : -1;
}
/* The next batch: queued on the copy stream, so it runs while the compute stream works on the
 * current step (the session only stages into a slot no running step reads: steps end with a host
 * synchronisation). The event marks the slot complete for stage_wait. */
extern "C" int mf_cuda_stage_copy(void *dev_dst, const void *host_src, size_t n, int slot) {
  ensure_started();
  if (G.state != 1 || slot < 0 || slot > 1) return -1;
  cudaError_t e = cudaMemcpyAsync(dev_dst, host_src, n, cudaMemcpyHostToDevice, G.copy_stream);
  if (e == cudaSuccess) e = cudaEventRecord(G.slot_ready[slot], G.copy_stream);
  mf_cuda_note(e, "stage_copy");
  return e == cudaSuccess ? 0 : -1;
}
extern "C" int mf_cuda_stage_wait(int slot, void *stream) {
  ensure_started();
  if (G.state != 1 || slot < 0 || slot > 1) return -1;
  cudaError_t e = cudaStreamWaitEvent(stream ? (cudaStream_t)stream : G.stream, G.slot_ready[slot], 0);
  mf_cuda_note(e, "stage_wait");
  return e == cudaSuccess ? 0 : -1;
}
extern "C" int mf_cuda_fill(void *dev_dst, int byte, size_t n) {
  ensure_started();
  if (G.state != 1) return -1;
  cudaError_t e = cudaMemsetAsync(dev_dst, byte, n, G.stream);
  mf_cuda_note(e, "fill");
  return e == cudaSuccess ? 0 : -1;
}
extern "C" int mf_cuda_sync(void *stream) {
  ensure_started();
  if (G.state != 1) return -1;
  cudaError_t e = cudaStreamSynchronize(stream ? (cudaStream_t)stream : G.stream);
  mf_cuda_note(e, "sync");
  if (G.first_error != cudaSuccess) {
    fprintf(stderr, "memfit: CUDA error in %s: %s\n", G.first_error_op, cudaGetErrorString(G.first_error));
    G.first_error = cudaSuccess;
    return -1;
  }
  char fault[256];
  if (mf_cuda_index_fault(fault, sizeof fault) || mf_cuda_raster_fault(fault, sizeof fault)) { /* a kernel's input was out of range: the step failed */
    fprintf(stderr, "memfit: the step failed: %s\n", fault);
    return -1;
  }
  return 0;
}
extern "C" void *mf_cuda_compute_stream(void) {
  ensure_started();
  return G.state == 1 ? (void *)G.stream : NULL;
}
extern "C" int mf_cuda_device_key(unsigned char key[16]) {
  ensure_started();
  cudaDeviceProp p;
  if (G.state != 1 || cudaGetDeviceProperties(&p, G.device) != cudaSuccess) return -1;
  memcpy(key, p.uuid.bytes, 16);
  return 0;
}
extern "C" size_t mf_cuda_fixed_overhead(void) {
  ensure_started();
  return G.state == 1 ? G.context_bytes + G.library_bytes : 0;
}

/* ---- sum of squares: SS_BLOCKS fixed contiguous chunks, each summed by a fixed tree ---- */
__global__ void k_sumsq_partial(const float *g, int64_t n, double *part) {
  __shared__ double sh[MF_THREADS];
  int64_t lo = n * blockIdx.x / SS_BLOCKS, hi = n * (blockIdx.x + 1) / SS_BLOCKS;
  double acc = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += MF_THREADS) acc += (double)g[i] * (double)g[i];
  double s = mf_block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void k_sumsq_final(double *part) {
  __shared__ double sh[MF_THREADS];
  double acc = 0;
  for (int i = threadIdx.x; i < SS_BLOCKS; i += MF_THREADS) acc += part[i];
  double s = mf_block_sum(acc, sh);
  if (threadIdx.x == 0) part[SS_BLOCKS] = s;
}

/* NaN and inf propagate into the sum, so the f16 overflow check is this one number. */
extern "C" double mf_cuda_sum_squares(const float *g, int64_t n, void *stream) {
  ensure_started();
  if (G.state != 1) return NAN;
  cudaStream_t s = stream ? (cudaStream_t)stream : G.stream;
  k_sumsq_partial<<<SS_BLOCKS, MF_THREADS, 0, s>>>(g, n, G.partials);
  k_sumsq_final<<<1, MF_THREADS, 0, s>>>(G.partials);
  MF_CUDA_LAUNCHED("sum_squares");
  cudaMemcpyAsync(G.host_result, G.partials + SS_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost, s);
  if (cudaStreamSynchronize(s) != cudaSuccess) return NAN;
  return *G.host_result;
}

/* ---- optimizer: the CPU backend's formulas, one thread per element ---- */
__global__ void k_sgd(float *w, const float *g, float *m, int64_t n, float lr, float gs, float wd, float mu) {
  MF_GRID_LOOP(i, n) {
    float gi = g[i] * gs + wd * w[i];
    float mi = mu * m[i] + gi;
    m[i] = mi;
    w[i] -= lr * mi;
  }
}
__global__ void k_adam(float *w, const float *g, float *m, float *v, int64_t n, float lr, float gs, float wd, float b1, float b2,
                       float eps, float c1, float c2, int adamw) {
  MF_GRID_LOOP(i, n) {
    float gi = g[i] * gs, wi = w[i];
    if (!adamw) gi += wd * wi;
    float mi = b1 * m[i] + (1 - b1) * gi;
    float vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float upd = (mi * c1) / (sqrtf(vi * c2) + eps);
    if (adamw) wi -= lr * wd * wi;
    w[i] = wi - lr * upd;
  }
}

extern "C" void mf_cuda_optim_update(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream) {
  ensure_started();
  if (G.state != 1 || n <= 0) return;
  cudaStream_t s = stream ? (cudaStream_t)stream : G.stream;
  if (a->kind == MF_SGD)
    k_sgd<<<mf_blocks(n), MF_THREADS, 0, s>>>(w, g, m, n, a->lr, a->gscale, a->weight_decay, a->momentum);
  else
    k_adam<<<mf_blocks(n), MF_THREADS, 0, s>>>(w, g, m, v, n, a->lr, a->gscale, a->weight_decay, a->beta1, a->beta2, a->eps, a->bc1,
                                               a->bc2, a->kind == MF_ADAMW);
  MF_CUDA_LAUNCHED("optim_update");
}

/* ---- persistent state (src/train/state.c): EMA averages and ring-buffer copies ---- */
__global__ void k_ema(float *k, const float *q, int64_t n, float m, float om) {
  MF_GRID_LOOP(i, n) k[i] = m * k[i] + om * q[i];
}
extern "C" void mf_cuda_ema_update(float *k, const float *q, int64_t n, float m, float one_minus_m, void *stream) {
  ensure_started();
  if (G.state != 1 || n <= 0) return;
  cudaStream_t s = stream ? (cudaStream_t)stream : G.stream;
  k_ema<<<mf_blocks(n), MF_THREADS, 0, s>>>(k, q, n, m, one_minus_m);
  MF_CUDA_LAUNCHED("ema_update");
}
extern "C" int mf_cuda_copy_dd(void *dst, const void *src, size_t n, void *stream) {
  ensure_started();
  if (G.state != 1) return -1;
  cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream ? (cudaStream_t)stream : G.stream);
  mf_cuda_note(e, "copy_dd");
  return e == cudaSuccess ? 0 : -1;
}

/* backend.h — a backend is a table of kernels (one per op), how much workspace each node needs,
 * where its memory lives (host or device) and the optimizer update; the planner asks it for
 * workspace sizes, the session allocates arenas and runs kernels through it. */
#ifndef MF_BACKEND_H
#define MF_BACKEND_H

#include "ops/ops.h"

typedef struct mf_kctx {
  const mf_graph *g;
  double grad_seed;   /* value SEED writes: loss scale / accumulation steps */
  int nthreads;
  void *stream;       /* backend stream (CUDA: cudaStream_t), NULL on the CPU */
  /* Random ops (dropout): training 1 in a training step's program (forward, recompute and backward), 0 in the
   * evaluation program, where dropout is the identity; step_seed, the same for every kernel of one micro-step,
   * is what their draws hash with (mf_dropout_keep in ops/ops.h), so backward and a recompute see the forward's
   * draws without storing them. The session makes it from its seed (saved in checkpoints), the update count,
   * the micro-step and the rank (mf_session_run); the reference evaluator uses the graph's seed. */
  int training;
  uint64_t step_seed;
  /* A run-time fault of a kernel's input (an index outside its table): the kernel writes a message
   * here when it is empty and still never reads or writes out of bounds; the runner then fails the
   * step. NULL: not reported. (CUDA kernels report theirs through the backend's sync instead.) */
  char *fault;
  size_t fault_len;
  /* Data parallel: this process's rank (0 without one). ALLGATHER's kernel puts its rows in block `rank` and zeroes
   * the others; the session then all-gathers the blocks through its communicator. */
  int rank;
} mf_kctx;

/* out: the node's storage; src[i]: storage of node->src[i]; ws: this node's workspace (or NULL).
 * All pointers are in the backend's memory (device memory for CUDA). */
typedef void (*mf_kernel_fn)(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);

/* One optimizer step of one f32 parameter tensor, in place: g is the accumulated gradient times
 * gscale (loss-scale and clipping folded in); m/v the optimizer state (v unused by SGD). */
typedef struct mf_optim_args {
  int kind;           /* MF_SGD, MF_ADAM, MF_ADAMW */
  float lr, beta1, beta2, eps, weight_decay, momentum, gscale;
  float bc1, bc2;     /* 1/(1-beta1^t), 1/(1-beta2^t) */
} mf_optim_args;

typedef struct mf_backend {
  const char *name;
  mf_kernel_fn kernels[MF_OP_COUNT];
  /* Exact bytes of scratch the node's kernel uses (planned in the activation arena); after choose, for the
   * implementation it chose. */
  size_t (*workspace)(const mf_graph *g, const mf_node *n);
  /* Chooses, once and when planning, which implementation runs node n with `threads` CPU threads (<= 0: OpenMP's
   * current count) and records it in n->impl / n->impl_threads; workspace and the kernel follow that record, never
   * deciding again at run time. On the CPU: a f32 conv on oneDNN or on memfit's GEMM algorithms, by measurement
   * when the conv cache has the shape, else by the shape rule (conv_choice.c). NULL: one implementation per op. */
  void (*choose)(const mf_graph *g, mf_node *n, int threads);
  /* 1: its conv2d kernel applies a fused ReLU / leaky ReLU (mf_conv_act), so the planner may fuse (plan/fuse.c) */
  int fuses_conv_act;
  /* 1: its norm kernel applies a fused ReLU / leaky ReLU (mf_norm_act); the planner fuses those pairs in the same
   * pass, so only where fuses_conv_act is 1 too */
  int fuses_norm_act;
  /* 1: its concat kernel copies only the sources not already in place (a source whose storage is its slice of the
   * output), so the planner may store concat chains in one buffer (plan/concat.c) */
  int aliases_concat;
  /* After choose: the name of what runs n ("onednn jit:avx2", "memfit implicit") into name and how it was chosen
   * ("measured", "shape rule", ...) in *why; returns 0 (nothing written) for an op with a single implementation. */
  int (*impl_describe)(const mf_graph *g, const mf_node *n, char *name, size_t len, const char **why);
  /* Memory: one call per arena at session start; NULL alloc means host memory (aligned_alloc). */
  void *(*alloc)(size_t bytes, char *err, size_t errlen);
  void (*free)(void *p);
  int (*copy_in)(void *dev_dst, const void *host_src, size_t n);   /* host -> backend */
  int (*copy_out)(void *host_dst, const void *dev_src, size_t n);  /* backend -> host */
  int (*fill)(void *dev_dst, int byte, size_t n);
  int (*sync)(void *stream);
  /* Sum of squares of n f32 values, the same bits for any thread count (global norm, inf/NaN). */
  double (*sum_squares)(const float *g, int64_t n, void *stream);
  void (*optim_update)(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream);
  /* Persistent state (src/train/state.c); NULL on backends whose memory is host memory, where the
   * session does it itself. ema_update: k[i] = m*k[i] + one_minus_m*q[i] in f32 (each product and the
   * sum rounded to f32, or fused). copy_dd: n bytes from src to dst, both in the backend's memory, in
   * stream order. */
  void (*ema_update)(float *k, const float *q, int64_t n, float m, float one_minus_m, void *stream);
  int (*copy_dd)(void *dst, const void *src, size_t n, void *stream);
  /* Page-locked host memory for the data loader's staging buffers, so host-to-device copies can be
   * asynchronous (same signature as mf_loader_opts.alloc/free); NULL: plain host memory. */
  void *(*host_alloc)(size_t bytes, void *ctx);
  void (*host_free)(void *p, size_t bytes, void *ctx);
  /* Overlap of the next batch's host-to-device copy with the current step (device backends; NULL on
   * the CPU). stage_copy queues n bytes from host memory (page-locked for a truly asynchronous copy)
   * on a copy stream of the backend's own and marks input slot `slot` (0 or 1) as arriving;
   * stage_wait makes `stream` wait on the device, not the host, until slot's copies have landed. */
  int (*stage_copy)(void *dev_dst, const void *host_src, size_t n, int slot);
  int (*stage_wait)(int slot, void *stream);
  /* Bytes the backend holds outside the plan (CUDA context, library handles), measured at init. */
  size_t (*fixed_overhead)(void);
  /* The stream the kernels run on when a kctx names none (a cudaStream_t); NULL on host backends. */
  void *(*compute_stream)(void);
  /* 16 bytes that name the device this process computes on (its UUID), so ranks can tell whether they share one
   * (NCCL refuses two ranks on one device). 0, or -1. NULL on host backends. */
  int (*device_key)(unsigned char key[16]);
} mf_backend;

extern const mf_backend mf_backend_cpu;
#ifdef MEMFIT_HAVE_CUDA
extern const mf_backend mf_backend_cuda;
#endif
/* "cpu" or "cuda"; NULL (err filled) when unknown or not built in. */
const mf_backend *mf_backend_get(const char *name, char *err, size_t errlen);
/* An exported symbol of the library a loaded backend came from (the CUDA backend's libmemfit_cuda.so, which also
 * holds NCCL's communicator, src/dist/nccl.c), or NULL: not there, or a backend built into libmemfit. */
void *mf_backend_symbol(const mf_backend *be, const char *name);

#endif

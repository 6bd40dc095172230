/* cpu.h — declarations of the CPU kernels (one per op, defined in this folder by family)
 * and the helpers they share. Kernels parallelise with OpenMP and use OpenBLAS for GEMM. */
#ifndef MF_CPU_H
#define MF_CPU_H

#include "backend/backend.h"
#include "graph/dtype.h"
#include <stdio.h>

#define MF_CPU_DECL(E, n) void mf_cpu_##n(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
MF_OP_LIST(MF_CPU_DECL)
#undef MF_CPU_DECL

/* Workspace sizes of the families that need scratch (0 for all other ops). */
size_t mf_cpu_ws_conv(const mf_graph *g, const mf_node *n);
size_t mf_cpu_ws_matmul(const mf_graph *g, const mf_node *n);
size_t mf_cpu_ws_index(const mf_graph *g, const mf_node *n);   /* gather_bwd in f16/bf16 */
size_t mf_cpu_ws_raster(const mf_graph *g, const mf_node *n);  /* gauss_topk, gauss_raster and its backward */
size_t mf_cpu_ws_attention(const mf_graph *g, const mf_node *n); /* attention, attn_probs, attention_bwd, vq_nearest */
size_t mf_cpu_ws_resize(const mf_graph *g, const mf_node *n);    /* resize_cubic_bwd: both axes' taps and runs */
/* AVX2 and AVX-512 by runtime dispatch (the build is x86-64-v2, SSE4.2): a hot loop written once as an always-inline
 * body and compiled three times, with MF_CPU_AVX512_TARGET, with MF_CPU_AVX2_TARGET and without, runs the widest copy
 * the CPU has unless mf_cpu_avx2_use says otherwise (MEMFIT_CPU_AVX2=0 keeps the SSE copies, MEMFIT_CPU_AVX512=0 the
 * AVX2 ones). Only loops whose every element and lane sees the same operations in the same order at any vector width
 * get them (no FMA: -ffp-contract=off under -std=c11, and no fma() call in a body), so all copies give the same bits
 * (tests/test_cpu_avx2.c). GCC's AVX-512 copy asks for 512-bit vectors (its tuning for AVX-512 CPUs prefers 256);
 * clang's, built for the sanitizer runs, keeps its own choice. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MF_CPU_AVX2_TARGET __attribute__((target("avx2")))
#if defined(__clang__)
#define MF_CPU_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#else
#define MF_CPU_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")))
#endif
#else
#define MF_CPU_AVX2_TARGET
#define MF_CPU_AVX512_TARGET
#endif
#define MF_CPU_INLINE static inline __attribute__((always_inline))
/* name(params): name##_body(args) compiled three times, the copy mf_cpu_avx2 says runs */
#define MF_CPU_TWO_COPIES_VOID(name, params, args)                                                                  \
  MF_CPU_AVX512_TARGET static void name##_avx512 params { name##_body args; }                                       \
  MF_CPU_AVX2_TARGET static void name##_avx2 params { name##_body args; }                                           \
  static void name##_base params { name##_body args; }                                                              \
  static void name params {                                                                                         \
    int level_ = mf_cpu_avx2();                                                                                     \
    if (level_ >= 2) name##_avx512 args;                                                                            \
    else if (level_) name##_avx2 args;                                                                              \
    else name##_base args;                                                                                          \
  }
int mf_cpu_avx2(void);        /* 0: the SSE copies run, 1: the AVX2 ones, 2: the AVX-512 ones */
void mf_cpu_avx2_use(int level); /* at most `level` (0, 1, 2) as far as the CPU has it; -1 back to the default (CPU and environment) */
/* Which implementation runs a conv node (mf_node.impl), chosen once when planning (conv_choice.c). */
enum {
  MF_CPU_CONV_GEMM = 1,      /* memfit's GEMM algorithms (conv.c): oneDNN does not take this node or is off */
  MF_CPU_CONV_GEMM_MEASURED, /* memfit's GEMM algorithms: measured faster than oneDNN for this shape and pass */
  MF_CPU_CONV_DNNL,          /* oneDNN (conv_dnnl.c): the shape rule (oneDNN wherever it takes the node) */
  MF_CPU_CONV_DNNL_MEASURED, /* oneDNN: measured faster than memfit's algorithms for this shape and pass */
  MF_CPU_CONV_WINO,          /* memfit's Winograd F(m x m, 3 x 3) (winograd.c): the shape rule, wherever it takes the node */
  MF_CPU_CONV_WINO_MEASURED, /* memfit's Winograd: measured faster than oneDNN for this shape and pass */
  MF_CPU_CONV_GEMM_RULE,     /* memfit's GEMM algorithms: oneDNN takes the node, but the shape rule says it is slower there */
};
static inline bool mf_cpu_conv_on_wino(const mf_node *n) {
  return n->impl == MF_CPU_CONV_WINO || n->impl == MF_CPU_CONV_WINO_MEASURED;
}
/* winograd.c: 3x3 stride-1 f32 convolutions by Winograd's algorithm. _takes: the output tile side m (4, or 2 with
 * MEMFIT_WINOGRAD=2) when it takes node n, 0 when not (MEMFIT_WINOGRAD=0, other shapes or dtypes, fewer than 16
 * channels on a side); _ws: its exact workspace; the kernels: for a node whose impl is MF_CPU_CONV_WINO. */
int mf_cpu_wino_takes(const mf_graph *g, const mf_node *n);
size_t mf_cpu_wino_ws(const mf_graph *g, const mf_node *n);
/* records in n->impl_threads the tile side node n will run with (set with impl = MF_CPU_CONV_WINO*) */
void mf_cpu_wino_tile(const mf_graph *g, mf_node *n);
void mf_cpu_wino_conv2d(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
void mf_cpu_wino_conv2d_bwd_data(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
void mf_cpu_wino_conv2d_bwd_weight(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
static inline bool mf_cpu_conv_on_dnnl(const mf_node *n) {
  return n->impl == MF_CPU_CONV_DNNL || n->impl == MF_CPU_CONV_DNNL_MEASURED;
}
/* conv_choice.c: the backend's choose / impl_describe for conv nodes (see backend.h), and the measurement
 * behind the choice: every distinct f32 conv of g that oneDNN takes, timed with both implementations with
 * `threads` threads (the better of `reps` interleaved runs each), the faster one saved in the conv cache
 * (mf_cpu_conv_cache_path) beside the shapes measured before. One line per shape to `log` (NULL: quiet).
 * Returns the shapes measured, or -1 with err (a cache that could not be written). */
void mf_cpu_conv_choose(const mf_graph *g, mf_node *n, int threads);
int mf_cpu_conv_describe(const mf_graph *g, const mf_node *n, char *name, size_t len, const char **why);
int mf_cpu_conv_measure(const mf_graph *g, int threads, int reps, FILE *log, char *err, size_t errlen);
/* $XDG_CACHE_HOME/memfit/conv-cpu-tT.txt (~/.cache/memfit without XDG_CACHE_HOME); threads <= 0: all cores */
void mf_cpu_conv_cache_path(int threads, char *buf, size_t n);
/* What the cache of `threads` holds: the shapes in it (0: none, missing or unusable) and why it is not used */
int mf_cpu_conv_cache_status(int threads, char *why, size_t n);
/* memfit's own algorithm for a conv node (conv.c): "im2col", "1x1", "implicit", "stacked", "route-a", "route-b" */
const char *mf_cpu_conv_algo_name(const mf_graph *g, const mf_node *n);
/* oneDNN convolutions (conv_dnnl.c). _prepare: creates (once per shape, op and thread count) the primitive
 * for node n with `threads` threads (<= 0: OpenMP's count; small convs get 1) and returns the threads it was
 * made for, with its exact workspace in *bytes; 0 when oneDNN does not take the node (f64/f16/bf16 operands,
 * dilation or uneven pads, only oneDNN's reference kernel, a workspace over 64 MiB above memfit's own,
 * MEMFIT_CONV=gemm, oneDNN off or not built in). _ws / _impl / _run: for a node whose impl is oneDNN, with
 * its impl_threads: its workspace (returns 1), oneDNN's implementation name, or runs it (returns 1); 0 /
 * NULL when that primitive does not exist in this process. */
int mf_cpu_dnnl_conv_prepare(const mf_graph *g, const mf_node *n, int threads, size_t *bytes);
int mf_cpu_dnnl_conv_ws(const mf_graph *g, const mf_node *n, size_t *bytes);
/* Tests: on 0 plans every conv on memfit's own algorithms from now on, 1 back to oneDNN; returns
 * whether oneDNN is now in use (0 when not built in or MEMFIT_CONV=gemm). Not while a step runs. */
int mf_cpu_dnnl_conv_enable(int on);
/* "major.minor.patch" of the oneDNN library in use, or NULL when built without it */
const char *mf_cpu_dnnl_version(void);
/* the instruction set oneDNN's kernels use on this CPU (dnnl_get_effective_cpu_isa, e.g. "avx2"), or NULL when
 * built without oneDNN */
const char *mf_cpu_dnnl_isa(void);
const char *mf_cpu_dnnl_conv_impl(const mf_graph *g, const mf_node *n);
/* Tests: how many conv kernels have run on oneDNN in this process */
long mf_cpu_dnnl_conv_runs(void);
int mf_cpu_dnnl_conv_run(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws);
double mf_cpu_sum_squares(const float *g, int64_t n, void *stream);
void mf_cpu_optim_update(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream);

static inline const mf_node *mf_src(const mf_kctx *k, const mf_node *n, int i) { return &k->g->nodes[n->src[i]]; }

/* Row-major strides of a node. */
static inline void mf_strides(const mf_node *n, int64_t *st) {
  int64_t s = 1;
  for (int i = n->ndim - 1; i >= 0; i--) { st[i] = s; s *= n->ne[i]; }
}

#endif

/* index.cu — CUDA kernels of argmin, gather and its scatter-add backward, straight-through and round.
 * Gather never reads outside its table: a bad index gives a NaN row and is recorded on the device;
 * the backend's sync reports it as a failed step (mf_cuda_index_fault). The scatter-add uses no
 * atomics: one thread per column walks the rows in order, so the sums are the same bits every run
 * (and the same as the CPU's: f32 adds in row order, no fused multiply-adds). */
#include "backend/cuda/common.cuh"

/* ------------------------------------------------------------------ argmin */

/* x [outer, K, inner] -> out i32 [outer, inner]: first index of the smallest; a NaN wins (first NaN) */
__global__ void k_argmin(const void *x, int xt, int64_t K, int64_t inner, int64_t total, int32_t *out) {
  MF_GRID_LOOP(j, total) {
    int64_t base = (j / inner) * K * inner + j % inner;
    double best = mf_gld<double>(x, xt, base);
    int64_t bi = 0;
    for (int64_t c = 1; c < K && !isnan(best); c++) {
      double v = mf_gld<double>(x, xt, base + c * inner);
      if (v < best || isnan(v)) { best = v; bi = c; }
    }
    out[j] = (int32_t)bi;
  }
}

extern "C" void mf_cuda_argmin(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  int ax = n->ip[0];
  int64_t inner = 1, total = mf_node_numel(n);
  for (int i = ax + 1; i < x->ndim; i++) inner *= x->ne[i];
  k_argmin<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(src[0], x->dtype, x->ne[ax], inner, total, (int32_t *)out);
  MF_CUDA_LAUNCHED("argmin");
}

/* ------------------------------------------------------------------ gather and its fault record */

/* Bad indices since the last check: how many, and the smallest (node id << 32 | row). */
struct index_fault {
  unsigned long long first;
  unsigned long long count;
};
__device__ index_fault d_index_fault = {~0ull, 0ull};
static bool fault_pending;            /* a gather ran since the last check */
static const mf_graph *fault_graph;   /* its graph, for the node's name */

__global__ void k_gather(const void *table, const int32_t *idx, int64_t K, int64_t D, int64_t total, void *out, int dt, int node) {
  MF_GRID_LOOP(e, total) {
    int64_t r = e / D, d = e % D, i = idx[r];
    if (i >= 0 && i < K) {
      mf_gst<double>(out, dt, e, mf_gld<double>(table, dt, i * D + d));
    } else {
      mf_gst<double>(out, dt, e, (double)NAN);
      if (d == 0) {
        atomicAdd(&d_index_fault.count, 1ull);
        atomicMin(&d_index_fault.first, ((unsigned long long)(unsigned)node << 32) | (unsigned long long)r);
      }
    }
  }
}

/* table [K,D], idx i32 [N] -> [N,D] */
extern "C" void mf_cuda_gather(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *t = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  fault_pending = true;
  fault_graph = k->g;
  k_gather<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(src[0], (const int32_t *)src[1], t->ne[0], n->ne[1], total, out,
                                                                   n->dtype, (int)(n - k->g->nodes));
  MF_CUDA_LAUNCHED("gather");
}

int mf_cuda_index_fault(char *msg, size_t len) {
  if (!fault_pending) return 0;
  fault_pending = false;
  index_fault f, clear = {~0ull, 0ull};
  if (cudaMemcpyFromSymbol(&f, d_index_fault, sizeof f) != cudaSuccess) return 0; /* the error itself is reported by sync */
  if (!f.count) return 0;
  cudaMemcpyToSymbol(d_index_fault, &clear, sizeof clear);
  int node = (int)(f.first >> 32);
  long long row = (long long)(f.first & 0xffffffffull);
  const char *name = fault_graph && node < fault_graph->n ? fault_graph->nodes[node].name : "?";
  long long K = fault_graph && node < fault_graph->n ? (long long)fault_graph->nodes[fault_graph->nodes[node].src[0]].ne[0] : -1;
  snprintf(msg, len, "gather '%s': %llu indices are outside the table's %lld rows (first at row %lld); their output rows are NaN", name,
           f.count, K, row);
  return 1;
}

/* ------------------------------------------------------------------ gather backward: scatter-add */

/* one thread per column d: acc[idx[r], d] += dy[r, d] for r in order (T: f32 or f64 accumulator) */
template <typename T>
__global__ void k_scatter_add(const void *dy, int dyt, const int32_t *idx, int64_t N, int64_t K, int64_t D, T *acc) {
  MF_GRID_LOOP(d, D) {
    for (int64_t r = 0; r < N; r++) {
      int64_t i = idx[r];
      if (i >= 0 && i < K) acc[i * D + d] += mf_gld<T>(dy, dyt, r * D + d);
    }
  }
}
__global__ void k_f32_to(const float *a, void *out, int dt, int64_t total) {
  MF_GRID_LOOP(i, total) mf_gst<float>(out, dt, i, a[i]);
}

/* dy [N,D], idx [N] -> [K,D]; f16/bf16 outputs accumulate in an f32 workspace [K,D] */
extern "C" void mf_cuda_gather_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *dy = mf_csrc(k, n, 0);
  int64_t N = dy->ne[0], K = n->ne[0], D = n->ne[1], total = K * D;
  cudaStream_t s = mf_cuda_stream(k);
  if (n->dtype == MF_F64) {
    mf_cuda_note(cudaMemsetAsync(out, 0, mf_node_bytes(n), s), "gather_bwd");
    k_scatter_add<double><<<mf_blocks(D), MF_THREADS, 0, s>>>(src[0], dy->dtype, (const int32_t *)src[1], N, K, D, (double *)out);
  } else {
    float *acc = n->dtype == MF_F32 ? (float *)out : (float *)ws;
    mf_cuda_note(cudaMemsetAsync(acc, 0, (size_t)total * sizeof(float), s), "gather_bwd");
    k_scatter_add<float><<<mf_blocks(D), MF_THREADS, 0, s>>>(src[0], dy->dtype, (const int32_t *)src[1], N, K, D, acc);
    if (acc != out) k_f32_to<<<mf_blocks(total), MF_THREADS, 0, s>>>(acc, out, n->dtype, total);
  }
  MF_CUDA_LAUNCHED("gather_bwd");
}

extern "C" size_t mf_cuda_ws_index(const mf_graph *g, const mf_node *n) {
  (void)g;
  if (n->op != MF_OP_GATHER_BWD || n->dtype == MF_F32 || n->dtype == MF_F64) return 0;
  return mf_ws_align((size_t)mf_node_numel(n) * sizeof(float));
}

/* ------------------------------------------------------------------ straight-through and round */

/* hard, soft -> hard's value */
extern "C" void mf_cuda_straight_through(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  mf_cuda_note(cudaMemcpyAsync(out, src[0], mf_node_bytes(n), cudaMemcpyDeviceToDevice, mf_cuda_stream(k)), "straight_through");
}

template <typename T> __global__ void k_round(const void *x, void *y, int dt, int64_t total) {
  MF_GRID_LOOP(i, total) mf_gst<T>(y, dt, i, rint(mf_gld<T>(x, dt, i))); /* rint: halves to even */
}

extern "C" void mf_cuda_round(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  int64_t total = mf_node_numel(n);
  cudaStream_t s = mf_cuda_stream(k);
  if (n->dtype == MF_F64) k_round<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(src[0], out, n->dtype, total);
  else k_round<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(src[0], out, n->dtype, total);
  MF_CUDA_LAUNCHED("round");
}

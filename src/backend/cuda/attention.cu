/* attention.cu — CUDA kernels of the fused attention (forward, kept probabilities, backward) and the
 * VQ nearest-code search. Attention runs one batch item and one tile of query rows at a time (the
 * same tiles as the CPU, mf_attn_tile_rows), the scores in workspace; sums walk their index in order
 * (no atomics), so results are the same every run. VQ: one block per row, no distance matrix at all. */
#include "backend/cuda/common.cuh"
extern "C" {
#include "ops/attention.h"
}

/* ------------------------------------------------------------------ attention */

/* S [t,Nk] = scale q_t k^T */
template <typename T>
__global__ void k_att_scores(const void *q, int qt, int64_t qoff, const void *k, int kt, int64_t koff, T *S, int64_t t, int64_t Nk,
                             int64_t D, T scale) {
  MF_GRID_LOOP(e, t * Nk) {
    int64_t i = e / Nk, j = e % Nk;
    T s = 0;
    for (int64_t d = 0; d < D; d++) s += mf_gld<T>(q, qt, qoff + i * D + d) * mf_gld<T>(k, kt, koff + j * D + d);
    S[e] = scale * s;
  }
}

template <typename T> __global__ void k_att_load(const void *src, int st, int64_t off, T *S, int64_t n) {
  MF_GRID_LOOP(e, n) S[e] = mf_gld<T>(src, st, off + e);
}
template <typename T> __global__ void k_att_store(const T *S, void *out, int ot, int64_t off, int64_t n) {
  MF_GRID_LOOP(e, n) mf_gst<T>(out, ot, off + e, S[e]);
}

/* rows of S [t,Nk] in place: softmax; one block per row */
template <typename T> __global__ void k_att_softmax(T *S, int64_t t, int64_t Nk) {
  __shared__ double sh[MF_THREADS];
  for (int64_t i = blockIdx.x; i < t; i += gridDim.x) {
    T *r = S + i * Nk;
    double m = -INFINITY;
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) m = fmax(m, (double)r[j]);
    sh[threadIdx.x] = m;
    __syncthreads();
    for (int s = MF_THREADS / 2; s > 0; s >>= 1) {
      if ((int)threadIdx.x < s) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
      __syncthreads();
    }
    T mx = (T)sh[0];
    __syncthreads();
    double sum = 0;
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
      T v = (T)exp((double)(r[j] - mx));
      r[j] = v;
      sum += v;
    }
    sum = mf_block_sum(sum, sh);
    T inv = (T)(1 / sum);
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) r[j] *= inv;
  }
}

/* out[i,d] (dtype ot, from ooff) = sum_j A[i,j] B[j,d]; A [t,Nk] in T, B [Nk,D] stored (dtype bt, from boff) */
template <typename T>
__global__ void k_att_ab(const T *A, const void *B, int bt, int64_t boff, void *out, int ot, int64_t ooff, int64_t t, int64_t Nk,
                         int64_t D) {
  MF_GRID_LOOP(e, t * D) {
    int64_t i = e / D, d = e % D;
    T s = 0;
    for (int64_t j = 0; j < Nk; j++) s += A[i * Nk + j] * mf_gld<T>(B, bt, boff + j * D + d);
    mf_gst<T>(out, ot, ooff + e, s);
  }
}

/* C[j,d] (T) = (first ? 0 : C[j,d]) + sum_i A[i,j] B[i,d]; A [t,Nk] in T, B [t,D] stored */
template <typename T>
__global__ void k_att_atb(const T *A, const void *B, int bt, int64_t boff, T *C, int first, int64_t t, int64_t Nk, int64_t D) {
  MF_GRID_LOOP(e, Nk * D) {
    int64_t j = e / D, d = e % D;
    T s = first ? (T)0 : C[e];
    for (int64_t i = 0; i < t; i++) s += A[i * Nk + j] * mf_gld<T>(B, bt, boff + i * D + d);
    C[e] = s;
  }
}

/* dP [t,Nk] = dy_t v^T */
template <typename T>
__global__ void k_att_dp(const void *dy, int dyt, int64_t doff, const void *v, int vt, int64_t voff, T *dP, int64_t t, int64_t Nk,
                         int64_t D) {
  MF_GRID_LOOP(e, t * Nk) {
    int64_t i = e / Nk, j = e % Nk;
    T s = 0;
    for (int64_t d = 0; d < D; d++) s += mf_gld<T>(dy, dyt, doff + i * D + d) * mf_gld<T>(v, vt, voff + j * D + d);
    dP[e] = s;
  }
}

/* dS = scale P (dP - <P_i, dP_i>), in place of dP; one block per row */
template <typename T> __global__ void k_att_ds(const T *P, T *dP, int64_t t, int64_t Nk, T scale) {
  __shared__ double sh[MF_THREADS];
  for (int64_t i = blockIdx.x; i < t; i += gridDim.x) {
    double s = 0;
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) s += (double)P[i * Nk + j] * (double)dP[i * Nk + j];
    T st = (T)mf_block_sum(s, sh);
    for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) dP[i * Nk + j] = scale * P[i * Nk + j] * (dP[i * Nk + j] - st);
  }
}

/* Workspace (compute type T: f64 for f64 nodes, else f32): the score tile [T,Nk]; backward also dP [T,Nk]
 * and the dk, dv accumulators [2, Nk, D] of one item. */
static size_t att_es(const mf_node *n) { return n->dtype == MF_F64 ? 8 : 4; }
extern "C" size_t mf_cuda_ws_attention(const mf_graph *g, const mf_node *n) {
  if (n->op == MF_OP_VQ_NEAREST) return 0;
  mf_attn_geo a;
  mf_attn_geometry(g, n, &a);
  size_t es = att_es(n), b = mf_ws_align((size_t)(a.T * a.Nk) * es);
  if (n->op == MF_OP_ATTENTION_BWD) b += mf_ws_align((size_t)(a.T * a.Nk) * es) + mf_ws_align((size_t)(2 * a.Nk * a.D) * es);
  return b;
}

/* The probabilities of rows [i0, i0+t) of item b into S: kept ones loaded, else recomputed. */
template <typename T>
static void att_probs(const mf_kctx *k, const mf_node *n, const mf_attn_geo &a, void *const *src, int64_t b, int64_t i0, int64_t t,
                      T *S, cudaStream_t st) {
  const mf_graph *g = k->g;
  int ps = n->op == MF_OP_ATTN_PROBS ? -1 : mf_attn_probs_src(n);
  if (ps >= 0) {
    int si = n->op == MF_OP_ATTENTION ? 3 : 4;
    k_att_load<T><<<mf_blocks(t * a.Nk), MF_THREADS, 0, st>>>(src[si], g->nodes[ps].dtype, (b * a.Nq + i0) * a.Nk, S, t * a.Nk);
    return;
  }
  k_att_scores<T><<<mf_blocks(t * a.Nk), MF_THREADS, 0, st>>>(src[0], g->nodes[n->src[0]].dtype, (b * a.Nq + i0) * a.D, src[1],
                                                              g->nodes[n->src[1]].dtype, b * a.Nk * a.D, S, t, a.Nk, a.D, (T)a.scale);
  int rows = t < 65535 ? (int)t : 65535;
  k_att_softmax<T><<<rows, MF_THREADS, 0, st>>>(S, t, a.Nk);
}

template <typename T> static void att_run(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  mf_attn_geo a;
  mf_attn_geometry(k->g, n, &a);
  cudaStream_t st = mf_cuda_stream(k);
  const mf_graph *g = k->g;
  char *wb = (char *)ws;
  T *S = (T *)wb;
  size_t es = sizeof(T), o = mf_ws_align((size_t)(a.T * a.Nk) * es);
  T *dP = (T *)(wb + o), *acc = (T *)(wb + o + mf_ws_align((size_t)(a.T * a.Nk) * es));
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t i0 = 0; i0 < a.Nq; i0 += a.T) {
      int64_t t = a.Nq - i0 < a.T ? a.Nq - i0 : a.T;
      int rows = t < 65535 ? (int)t : 65535;
      att_probs<T>(k, n, a, src, b, i0, t, S, st);
      if (n->op == MF_OP_ATTN_PROBS) {
        k_att_store<T><<<mf_blocks(t * a.Nk), MF_THREADS, 0, st>>>(S, out, n->dtype, (b * a.Nq + i0) * a.Nk, t * a.Nk);
      } else if (n->op == MF_OP_ATTENTION) {
        k_att_ab<T><<<mf_blocks(t * a.D), MF_THREADS, 0, st>>>(S, src[2], g->nodes[n->src[2]].dtype, b * a.Nk * a.D, out, n->dtype,
                                                               (b * a.Nq + i0) * a.D, t, a.Nk, a.D);
      } else { /* backward: rows of item b in out: dq [Nq], dk [Nk], dv [Nk] */
        int qt = g->nodes[n->src[0]].dtype, kt = g->nodes[n->src[1]].dtype, vt = g->nodes[n->src[2]].dtype;
        int dyt = g->nodes[n->src[3]].dtype;
        int64_t base = b * (a.Nq + 2 * a.Nk) * a.D, qoff = (b * a.Nq + i0) * a.D, koff = b * a.Nk * a.D;
        k_att_atb<T><<<mf_blocks(a.Nk * a.D), MF_THREADS, 0, st>>>(S, src[3], dyt, qoff, acc + a.Nk * a.D, i0 == 0, t, a.Nk, a.D);
        k_att_dp<T><<<mf_blocks(t * a.Nk), MF_THREADS, 0, st>>>(src[3], dyt, qoff, src[2], vt, koff, dP, t, a.Nk, a.D);
        k_att_ds<T><<<rows, MF_THREADS, 0, st>>>(S, dP, t, a.Nk, (T)a.scale);
        k_att_ab<T><<<mf_blocks(t * a.D), MF_THREADS, 0, st>>>(dP, src[1], kt, koff, out, n->dtype, base + i0 * a.D, t, a.Nk, a.D);
        k_att_atb<T><<<mf_blocks(a.Nk * a.D), MF_THREADS, 0, st>>>(dP, src[0], qt, qoff, acc, i0 == 0, t, a.Nk, a.D);
        if (i0 + t == a.Nq)
          k_att_store<T><<<mf_blocks(2 * a.Nk * a.D), MF_THREADS, 0, st>>>(acc, out, n->dtype, base + a.Nq * a.D, 2 * a.Nk * a.D);
      }
    }
  MF_CUDA_LAUNCHED(mf_op_name(n->op));
}

static void att_dispatch(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  if (n->dtype == MF_F64) att_run<double>(k, n, out, src, ws);
  else att_run<float>(k, n, out, src, ws);
}

extern "C" void mf_cuda_attn_probs(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { att_dispatch(k, n, out, src, ws); }
extern "C" void mf_cuda_attention(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) { att_dispatch(k, n, out, src, ws); }
extern "C" void mf_cuda_attention_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  att_dispatch(k, n, out, src, ws);
}

/* ------------------------------------------------------------------ VQ nearest code */

/* a before b: a NaN first (the lowest index among NaNs), then the smaller value, ties to the lower index */
__device__ __forceinline__ bool vq_before(double va, int ia, double vb, int ib) {
  bool na = isnan(va), nb = isnan(vb);
  if (na != nb) return na;
  if (na) return ia < ib;
  return va < vb || (va == vb && ia < ib);
}

/* z [N,D], e [K,D] -> idx [N]: one block per row, each thread a strided subset of the codes */
template <typename T> __global__ void k_vq(const void *z, int zt, const void *e, int et, int64_t N, int64_t K, int64_t D, int32_t *idx) {
  __shared__ double sv[MF_THREADS];
  __shared__ int si[MF_THREADS];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    double best = INFINITY;
    int bi = INT32_MAX;
    for (int64_t c = threadIdx.x; c < K; c += blockDim.x) {
      T ee = 0, ze = 0;
      for (int64_t d = 0; d < D; d++) {
        T ev = mf_gld<T>(e, et, c * D + d);
        ee += ev * ev;
        ze += mf_gld<T>(z, zt, r * D + d) * ev;
      }
      T v = ee - (T)2 * ze;
      if (vq_before((double)v, (int)c, best, bi)) best = v, bi = (int)c;
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = MF_THREADS / 2; s > 0; s >>= 1) {
      if ((int)threadIdx.x < s && vq_before(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x])) {
        sv[threadIdx.x] = sv[threadIdx.x + s];
        si[threadIdx.x] = si[threadIdx.x + s];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) idx[r] = si[0];
    __syncthreads();
  }
}

extern "C" void mf_cuda_vq_nearest(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *z = mf_csrc(k, n, 0), *e = mf_csrc(k, n, 1);
  int64_t N = z->ne[0];
  if (!N) return;
  int blocks = N < 65535 ? (int)N : 65535;
  if (z->dtype == MF_F64)
    k_vq<double><<<blocks, MF_THREADS, 0, mf_cuda_stream(k)>>>(src[0], z->dtype, src[1], e->dtype, N, e->ne[0], e->ne[1], (int32_t *)out);
  else
    k_vq<float><<<blocks, MF_THREADS, 0, mf_cuda_stream(k)>>>(src[0], z->dtype, src[1], e->dtype, N, e->ne[0], e->ne[1], (int32_t *)out);
  MF_CUDA_LAUNCHED("vq_nearest");
}

/* ------------------------------------------------------------------ VQGAN's adaptive-weight tap: a copy */
extern "C" void mf_cuda_adaptive_tap(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  mf_cuda_note(cudaMemcpyAsync(out, src[0], mf_node_bytes(n), cudaMemcpyDeviceToDevice, mf_cuda_stream(k)), "adaptive_tap");
}

/* value -> out, and into the state src[1] */
__global__ void k_state_write(const void *v, int vt, void *out, void *st, int stt, int64_t n) {
  MF_GRID_LOOP(i, n) {
    double x = mf_gld<double>(v, vt, i);
    mf_gst<double>(out, vt, i, x);
    mf_gst<double>(st, stt, i, x);
  }
}
extern "C" void mf_cuda_state_write(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  int64_t cnt = mf_node_numel(n);
  k_state_write<<<mf_blocks(cnt), MF_THREADS, 0, mf_cuda_stream(k)>>>(src[0], n->dtype, out, src[1], mf_csrc(k, n, 1)->dtype, cnt);
  MF_CUDA_LAUNCHED("state_write");
}

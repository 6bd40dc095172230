/* loss.cu — CUDA kernels of the MSE / L1 losses and softmax cross-entropy, forward and backward.
 * Forward sums run in double over fixed chunks and fixed trees (the same bits every run); backward
 * kernels read dL from device memory, so nothing waits for the host. */
#include "backend/cuda/common.cuh"

/* ------------------------------------------------------------------ mse / l1 */

/* pass 1: block b sums (p-t)^2 or |p-t| over its fixed chunk */
__global__ void k_loss_partial(const void *p, int pt, const void *t, int tt, int64_t total, int kind, double *part) {
  __shared__ double sh[MF_THREADS];
  int64_t lo = total * blockIdx.x / MF_RED_BLOCKS, hi = total * (blockIdx.x + 1) / MF_RED_BLOCKS;
  double acc = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += MF_THREADS) {
    double d = mf_gld<double>(p, pt, i) - mf_gld<double>(t, tt, i);
    acc += kind == MF_LOSS_MSE ? d * d : fabs(d);
  }
  double s = mf_block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
/* pass 2: sum (ip1 = 1) or mean into the scalar output */
__global__ void k_loss_final(const double *part, void *y, int yt, double div) {
  __shared__ double sh[MF_THREADS];
  double acc = 0;
  for (int i = threadIdx.x; i < MF_RED_BLOCKS; i += MF_THREADS) acc += part[i];
  double s = mf_block_sum(acc, sh);
  if (threadIdx.x == 0) mf_gst<double>(y, yt, 0, s / div);
}

/* pred, target [...] -> [1] (ip0 MF_LOSS_MSE/L1, ip1 = 1: sum, else mean) */
extern "C" void mf_cuda_loss(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *p = mf_csrc(k, n, 0), *t = mf_csrc(k, n, 1);
  int64_t total = mf_node_numel(p);
  cudaStream_t s = mf_cuda_stream(k);
  k_loss_partial<<<MF_RED_BLOCKS, MF_THREADS, 0, s>>>(src[0], p->dtype, src[1], t->dtype, total, n->ip[0], (double *)ws);
  k_loss_final<<<1, MF_THREADS, 0, s>>>((const double *)ws, out, n->dtype, n->ip[1] ? 1.0 : (double)total);
  MF_CUDA_LAUNCHED("loss");
}

template <typename T>
__global__ void k_loss_bwd(void *y, int yt, const void *p, int pt, const void *t, int tt, const void *dl, int dlt, int64_t total, int kind,
                           double mul) {
  T coef = (T)(mf_gld<double>(dl, dlt, 0) * mul);
  MF_GRID_LOOP(i, total) {
    T d = mf_gld<T>(p, pt, i) - mf_gld<T>(t, tt, i);
    mf_gst<T>(y, yt, i, kind == MF_LOSS_MSE ? coef * d : d > (T)0 ? coef : d < (T)0 ? -coef : (T)0);
  }
}

/* pred, target, dL -> dpred = dL * {2(p-t) | sign(p-t)} (/ numel for the mean) */
extern "C" void mf_cuda_loss_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *p = mf_csrc(k, n, 0), *t = mf_csrc(k, n, 1), *dl = mf_csrc(k, n, 2);
  int64_t total = mf_node_numel(n);
  int kind = n->ip[0];
  double mul = (kind == MF_LOSS_MSE ? 2.0 : 1.0) / (n->ip[1] ? 1.0 : (double)total);
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, p->dtype, t->dtype))
    k_loss_bwd<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], p->dtype, src[1], t->dtype, src[2], dl->dtype, total,
                                                               kind, mul);
  else
    k_loss_bwd<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], p->dtype, src[1], t->dtype, src[2], dl->dtype, total,
                                                              kind, mul);
  MF_CUDA_LAUNCHED("loss_bwd");
}

/* ------------------------------------------------------------------ softmax cross-entropy */

__device__ __forceinline__ double block_max(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = MF_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

/* max and sum(exp(x - max)) of row r of logits [N,K], by the whole block */
__device__ void row_stats(const void *x, int xt, int64_t off, int64_t K, double *sh, double *mx, double *se) {
  double m = -INFINITY;
  for (int64_t j = threadIdx.x; j < K; j += MF_THREADS) m = fmax(m, mf_gld<double>(x, xt, off + j));
  m = block_max(m, sh);
  double s = 0;
  for (int64_t j = threadIdx.x; j < K; j += MF_THREADS) s += exp(mf_gld<double>(x, xt, off + j) - m);
  *se = mf_block_sum(s, sh);
  *mx = m;
}

/* per row: logsumexp - logit[label] (0 and not counted for labels outside [0, K)) */
__global__ void k_ce_rows(const void *x, int xt, const int32_t *lab, int64_t N, int64_t K, double *row, int32_t *valid) {
  __shared__ double sh[MF_THREADS];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    int32_t l = lab[r];
    if (l < 0 || l >= K) {
      if (threadIdx.x == 0) { row[r] = 0; valid[r] = 0; }
      continue;
    }
    double m, se;
    row_stats(x, xt, r * K, K, sh, &m, &se);
    if (threadIdx.x == 0) { row[r] = m + log(se) - mf_gld<double>(x, xt, r * K + l); valid[r] = 1; }
  }
}
/* mean over valid rows, summed in a fixed tree */
__global__ void k_ce_final(const double *row, const int32_t *valid, int64_t N, void *y, int yt) {
  __shared__ double sh[MF_THREADS];
  double s = 0, v = 0;
  for (int64_t r = threadIdx.x; r < N; r += MF_THREADS) { s += row[r]; v += valid[r]; }
  s = mf_block_sum(s, sh);
  v = mf_block_sum(v, sh);
  if (threadIdx.x == 0) mf_gst<double>(y, yt, 0, v > 0 ? s / v : 0.0);
}

/* logits [N,K], labels i32 [N] -> [1] mean cross-entropy over rows with a valid label */
extern "C" void mf_cuda_softmax_ce(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *l = mf_csrc(k, n, 0);
  int64_t N = l->ne[0], K = l->ne[1];
  double *row = (double *)ws;
  int32_t *valid = (int32_t *)((char *)ws + mf_ws_align((size_t)N * sizeof(double)));
  cudaStream_t s = mf_cuda_stream(k);
  k_ce_rows<<<mf_blocks(N * MF_THREADS), MF_THREADS, 0, s>>>(src[0], l->dtype, (const int32_t *)src[1], N, K, row, valid);
  k_ce_final<<<1, MF_THREADS, 0, s>>>(row, valid, N, out, n->dtype);
  MF_CUDA_LAUNCHED("softmax_ce");
}

/* dlogits = dL / valid * (softmax - onehot(label)); rows with ignored labels get 0 */
__global__ void k_ce_bwd(void *y, int yt, const void *x, int xt, const int32_t *lab, const void *dl, int dlt, int64_t N, int64_t K) {
  __shared__ double sh[MF_THREADS];
  double v = 0;
  for (int64_t r = threadIdx.x; r < N; r += MF_THREADS) v += lab[r] >= 0 && lab[r] < K;
  v = mf_block_sum(v, sh);
  double coef = v > 0 ? mf_gld<double>(dl, dlt, 0) / v : 0.0;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    int32_t l = lab[r];
    int64_t o = r * K;
    if (l < 0 || l >= K) {
      for (int64_t j = threadIdx.x; j < K; j += MF_THREADS) mf_gst<double>(y, yt, o + j, 0.0);
      continue;
    }
    double m, se;
    row_stats(x, xt, o, K, sh, &m, &se);
    double inv = coef / se;
    for (int64_t j = threadIdx.x; j < K; j += MF_THREADS)
      mf_gst<double>(y, yt, o + j, exp(mf_gld<double>(x, xt, o + j) - m) * inv - (j == l ? coef : 0.0));
  }
}

extern "C" void mf_cuda_softmax_ce_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *l = mf_csrc(k, n, 0), *dl = mf_csrc(k, n, 2);
  int64_t N = l->ne[0], K = l->ne[1];
  k_ce_bwd<<<mf_blocks(N * MF_THREADS), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], l->dtype, (const int32_t *)src[1],
                                                                           src[2], dl->dtype, N, K);
  MF_CUDA_LAUNCHED("softmax_ce_bwd");
}

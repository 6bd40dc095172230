/* norm.cu — CUDA kernels of batch norm and group norm over x [N,C,S] (S = product of the spatial
 * dims), forward (with the in-place running-statistics update) and backward. Statistics are
 * recomputed from x, one block per statistic group (batch norm: a channel; group norm: a (sample,
 * group) span), in double with fixed trees, into the node's workspace; the rest is elementwise. */
#include "backend/cuda/common.cuh"

typedef struct ngeo {
  int64_t N, C, S, G, Cg; /* G = groups (group norm), Cg = C / G */
  int bn, training;
  double eps;
} ngeo;

static ngeo norm_geo(const mf_node *n, const mf_node *x) {
  ngeo g;
  g.N = x->ne[0];
  g.C = x->ne[1];
  g.S = 1;
  for (int i = 2; i < x->ndim; i++) g.S *= x->ne[i];
  g.bn = n->ip[0] == MF_NORM_BATCH;
  g.G = g.bn ? 1 : n->ip[1];
  g.Cg = g.C / (g.G > 0 ? g.G : 1);
  g.training = g.bn ? n->ip[2] != 0 : 1;
  g.eps = n->fp[0];
  return g;
}
static inline int64_t n_groups(const ngeo &g) { return g.bn ? g.C : g.N * g.G; }
__device__ __forceinline__ int64_t g_count(const ngeo &g) { return g.bn ? g.N * g.S : g.Cg * g.S; }
/* offset of element t of statistic group q */
__device__ __forceinline__ int64_t g_off(const ngeo &g, int64_t q, int64_t t) {
  if (g.bn) return ((t / g.S) * g.C + q) * g.S + t % g.S;
  return ((q / g.G) * g.C + (q % g.G) * g.Cg) * g.S + t;
}
/* channel of element t of group q */
__device__ __forceinline__ int64_t g_chan(const ngeo &g, int64_t q, int64_t t) { return g.bn ? q : (q % g.G) * g.Cg + t / g.S; }
/* statistic group of flat element i of x */
__device__ __forceinline__ int64_t g_of(const ngeo &g, int64_t i) {
  int64_t c = (i / g.S) % g.C;
  return g.bn ? c : (i / (g.C * g.S)) * g.G + c / g.Cg;
}

/* stats[3q..3q+2] = mean, biased variance, 1/sqrt(var + eps): from x (two passes), or from the
 * running buffers in eval-mode batch norm */
__global__ void k_stats(const void *x, int xt, ngeo g, const void *rm, const void *rv, int rt, double *stats) {
  __shared__ double sh[MF_THREADS];
  int64_t ng = g.bn ? g.C : g.N * g.G, M = g_count(g);
  for (int64_t q = blockIdx.x; q < ng; q += gridDim.x) {
    double mean, var;
    if (!g.training) {
      mean = mf_gld<double>(rm, rt, q);
      var = mf_gld<double>(rv, rt, q);
    } else {
      double s = 0;
      for (int64_t t = threadIdx.x; t < M; t += MF_THREADS) s += mf_gld<double>(x, xt, g_off(g, q, t));
      mean = mf_block_sum(s, sh) / (double)M;
      double sq = 0;
      for (int64_t t = threadIdx.x; t < M; t += MF_THREADS) {
        double d = mf_gld<double>(x, xt, g_off(g, q, t)) - mean;
        sq += d * d;
      }
      var = mf_block_sum(sq, sh) / (double)M;
    }
    if (threadIdx.x == 0) {
      stats[3 * q] = mean;
      stats[3 * q + 1] = var;
      stats[3 * q + 2] = 1.0 / sqrt(var + g.eps);
    }
  }
}
static void stats(const void *x, mf_dtype xt, const ngeo &g, const void *rm, const void *rv, mf_dtype rt, double *st, cudaStream_t s) {
  int64_t ng = n_groups(g);
  k_stats<<<mf_blocks(ng * MF_THREADS), MF_THREADS, 0, s>>>(x, xt, g, rm, rv, rt, st);
  MF_CUDA_LAUNCHED("norm statistics");
}

/* y = (x - mean) * rstd * gamma + beta, as y = a x + b with a, b per channel and group */
template <typename T>
__global__ void k_norm_apply(void *y, int yt, const void *x, int xt, const void *ga, int gt, const void *be, int bt, ngeo g,
                             const double *st, int64_t n) {
  MF_GRID_LOOP(i, n) {
    int64_t c = (i / g.S) % g.C, q = g_of(g, i);
    double a = st[3 * q + 2] * mf_gld<double>(ga, gt, c), b = mf_gld<double>(be, bt, c) - st[3 * q] * a;
    mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, i) * (T)a + (T)b);
  }
}
/* running mean/var (unbiased) of batch norm, momentum mom */
__global__ void k_running(void *rm, void *rv, int rt, const double *st, int64_t C, double M, double mom) {
  MF_GRID_LOOP(c, C) {
    double var = st[3 * c + 1], unbiased = M > 1 ? var * M / (M - 1) : var;
    mf_gst<double>(rm, rt, c, (1 - mom) * mf_gld<double>(rm, rt, c) + mom * st[3 * c]);
    mf_gst<double>(rv, rt, c, (1 - mom) * mf_gld<double>(rv, rt, c) + mom * unbiased);
  }
}

/* src x, gamma, beta[, rmean, rvar] -> y. Training batch norm with buffers also updates rmean/rvar
 * in place, unless ip3 marks a recompute clone. */
extern "C" void mf_cuda_norm(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *x = mf_csrc(k, n, 0), *ga = mf_csrc(k, n, 1), *be = mf_csrc(k, n, 2);
  ngeo g = norm_geo(n, x);
  bool has_run = g.bn && n->nsrc >= 5;
  mf_dtype rt = has_run ? mf_csrc(k, n, 3)->dtype : MF_F32;
  double *st = (double *)ws;
  cudaStream_t s = mf_cuda_stream(k);
  stats(src[0], x->dtype, g, has_run ? src[3] : NULL, has_run ? src[4] : NULL, rt, st, s);
  int64_t total = mf_node_numel(x);
  if (mf_any_f64(n->dtype, x->dtype, MF_F32))
    k_norm_apply<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, src[1], ga->dtype, src[2], be->dtype, g,
                                                                 st, total);
  else
    k_norm_apply<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, src[1], ga->dtype, src[2], be->dtype, g,
                                                                st, total);
  if (has_run && g.training && n->ip[3] == 0)
    k_running<<<mf_blocks(g.C), MF_THREADS, 0, s>>>(src[3], src[4], rt, st, g.C, (double)(g.N * g.S), n->fp[1]);
  MF_CUDA_LAUNCHED("norm");
}

/* sums[2q] = sum w*dy, sums[2q+1] = sum w*dy*(x - mean) over group q; w = gamma[c] for group norm
 * (the gradient of xhat), 1 for batch norm */
__global__ void k_dy_sums(const void *x, int xt, const void *dy, int dt, const void *ga, int gt, ngeo g, const double *st, double *sums) {
  __shared__ double sh[MF_THREADS];
  int64_t ng = g.bn ? g.C : g.N * g.G, M = g_count(g);
  for (int64_t q = blockIdx.x; q < ng; q += gridDim.x) {
    double mean = st[3 * q], a = 0, b = 0;
    for (int64_t t = threadIdx.x; t < M; t += MF_THREADS) {
      int64_t o = g_off(g, q, t);
      double d = mf_gld<double>(dy, dt, o);
      if (!g.bn) d *= mf_gld<double>(ga, gt, g_chan(g, q, t));
      a += d;
      b += d * (mf_gld<double>(x, xt, o) - mean);
    }
    a = mf_block_sum(a, sh);
    b = mf_block_sum(b, sh);
    if (threadIdx.x == 0) {
      sums[2 * q] = a;
      sums[2 * q + 1] = b;
    }
  }
}

/* dx = A dy + B x + Cc with A = rstd*gamma[c] and B, Cc from the group sums (training), else 0 */
template <typename T>
__global__ void k_norm_dx(void *dx, int ot, const void *x, int xt, const void *dy, int dt, const void *ga, int gt, ngeo g, const double *st,
                          const double *sums, int64_t n) {
  MF_GRID_LOOP(i, n) {
    int64_t c = (i / g.S) % g.C, q = g_of(g, i);
    double mean = st[3 * q], rstd = st[3 * q + 2], gc = mf_gld<double>(ga, gt, c), A = rstd * gc, B = 0, Cc = 0;
    if (g.training) {
      double M = (double)(g.bn ? g.N * g.S : g.Cg * g.S), m1 = sums[2 * q] / M, m2 = sums[2 * q + 1] * rstd / M;
      if (g.bn) {
        B = -A * rstd * m2;
        Cc = -A * m1 - B * mean;
      } else {
        B = -rstd * rstd * m2;
        Cc = -rstd * m1 - B * mean;
      }
    }
    mf_gst<T>(dx, ot, i, (T)A * mf_gld<T>(dy, dt, i) + ((T)B * mf_gld<T>(x, xt, i) + (T)Cc));
  }
}

/* src x, dy, gamma[, rmean, rvar] -> dx */
extern "C" void mf_cuda_norm_bwd_dx(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *x = mf_csrc(k, n, 0), *d = mf_csrc(k, n, 1), *ga = mf_csrc(k, n, 2);
  ngeo g = norm_geo(n, x);
  bool has_run = g.bn && n->nsrc >= 5;
  mf_dtype rt = has_run ? mf_csrc(k, n, 3)->dtype : MF_F32;
  int64_t ng = n_groups(g);
  double *st = (double *)ws, *sums = (double *)((char *)ws + mf_ws_align((size_t)(3 * ng) * sizeof(double)));
  cudaStream_t s = mf_cuda_stream(k);
  stats(src[0], x->dtype, g, has_run ? src[3] : NULL, has_run ? src[4] : NULL, rt, st, s);
  if (g.training)
    k_dy_sums<<<mf_blocks(ng * MF_THREADS), MF_THREADS, 0, s>>>(src[0], x->dtype, src[1], d->dtype, src[2], ga->dtype, g, st, sums);
  int64_t total = mf_node_numel(x);
  if (mf_any_f64(n->dtype, x->dtype, d->dtype))
    k_norm_dx<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, src[1], d->dtype, src[2], ga->dtype, g, st,
                                                              sums, total);
  else
    k_norm_dx<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, src[1], d->dtype, src[2], ga->dtype, g, st,
                                                             sums, total);
  MF_CUDA_LAUNCHED("norm_bwd_dx");
}

/* out [2,C]: row 0 dgamma[c] = sum dy * xhat, row 1 dbeta[c] = sum dy; one block per channel */
__global__ void k_norm_param(void *out, int ot, const void *x, int xt, const void *dy, int dt, ngeo g, const double *st) {
  __shared__ double sh[MF_THREADS];
  int64_t M = g.N * g.S;
  for (int64_t c = blockIdx.x; c < g.C; c += gridDim.x) {
    double a = 0, b = 0;
    for (int64_t t = threadIdx.x; t < M; t += MF_THREADS) {
      int64_t nn = t / g.S, o = (nn * g.C + c) * g.S + t % g.S;
      int64_t q = g.bn ? c : nn * g.G + c / g.Cg;
      double d = mf_gld<double>(dy, dt, o);
      a += d;
      b += d * (mf_gld<double>(x, xt, o) - st[3 * q]) * st[3 * q + 2];
    }
    a = mf_block_sum(a, sh);
    b = mf_block_sum(b, sh);
    if (threadIdx.x == 0) {
      mf_gst<double>(out, ot, c, b);
      mf_gst<double>(out, ot, g.C + c, a);
    }
  }
}

/* src x, dy[, rmean, rvar] -> [2,C] */
extern "C" void mf_cuda_norm_bwd_param(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *x = mf_csrc(k, n, 0), *d = mf_csrc(k, n, 1);
  ngeo g = norm_geo(n, x);
  bool has_run = g.bn && n->nsrc >= 4;
  mf_dtype rt = has_run ? mf_csrc(k, n, 2)->dtype : MF_F32;
  double *st = (double *)ws;
  cudaStream_t s = mf_cuda_stream(k);
  stats(src[0], x->dtype, g, has_run ? src[2] : NULL, has_run ? src[3] : NULL, rt, st, s);
  k_norm_param<<<mf_blocks(g.C * MF_THREADS), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, src[1], d->dtype, g, st);
  MF_CUDA_LAUNCHED("norm_bwd_param");
}

/* statistics (3 doubles per group) and, for dx, the two group sums */
extern "C" size_t mf_cuda_ws_norm(const mf_graph *gr, const mf_node *n) {
  ngeo g = norm_geo(n, &gr->nodes[n->src[0]]);
  int64_t ng = n_groups(g);
  size_t b = mf_ws_align((size_t)(3 * ng) * sizeof(double));
  if (n->op == MF_OP_NORM_BWD_DX) b += mf_ws_align((size_t)(2 * ng) * sizeof(double));
  return b;
}

/* ---- L2 normalisation along the last axis: one block per row, sums in double with a fixed tree ---- */
__global__ void k_l2norm(const void *x, int xt, const void *dy, int dyt, void *out, int ot, int64_t R, int64_t D, double eps) {
  __shared__ double sh[2][MF_THREADS];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    double ss = 0, yd = 0;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      double v = mf_gld<double>(x, xt, r * D + j);
      ss += v * v;
      if (dy) yd += v * mf_gld<double>(dy, dyt, r * D + j);
    }
    sh[0][threadIdx.x] = ss;
    sh[1][threadIdx.x] = yd;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if ((int)threadIdx.x < s) { sh[0][threadIdx.x] += sh[0][threadIdx.x + s]; sh[1][threadIdx.x] += sh[1][threadIdx.x + s]; }
      __syncthreads();
    }
    double nr = sqrt(sh[0][0]), xd = sh[1][0];
    __syncthreads();
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      double v = mf_gld<double>(x, xt, r * D + j), o;
      if (!dy) o = v / (nr > eps ? nr : eps);
      else if (nr > eps) o = (mf_gld<double>(dy, dyt, r * D + j) - v * xd / (nr * nr)) / nr;
      else o = mf_gld<double>(dy, dyt, r * D + j) / eps;
      mf_gst(out, ot, r * D + j, o);
    }
  }
}

static void l2norm_launch(const mf_kctx *k, const mf_node *n, void *out, const void *x, const void *dy, int dyt, const char *what) {
  int64_t D = n->ne[n->ndim - 1], R = D ? mf_node_numel(n) / D : 0;
  if (!R) return;
  int blocks = R < 65535 ? (int)R : 65535;
  k_l2norm<<<blocks, MF_THREADS, 0, mf_cuda_stream(k)>>>(x, k->g->nodes[n->src[0]].dtype, dy, dyt, out, n->dtype, R, D, n->fp[0]);
  MF_CUDA_LAUNCHED(what);
}

extern "C" void mf_cuda_l2norm(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  l2norm_launch(k, n, out, src[0], NULL, 0, "l2norm");
}

extern "C" void mf_cuda_l2norm_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  l2norm_launch(k, n, out, src[0], src[1], k->g->nodes[n->src[1]].dtype, "l2norm_bwd");
}

/* ---- softmax / log-softmax over the last axis: one block per row, max and sums in double with a fixed tree;
 * with dy, the backward from the output y: dx = y (dy - <y,dy>), or dy - exp(y) sum(dy) ---- */
__global__ void k_softmax(const void *x, int xt, const void *dy, int dyt, void *out, int ot, int64_t R, int64_t D, int lg) {
  __shared__ double sh[MF_THREADS];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    double a = dy ? 0 : -INFINITY;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      double v = mf_gld<double>(x, xt, r * D + j);
      if (!dy) a = v > a ? v : a;
      else { double d = mf_gld<double>(dy, dyt, r * D + j); a += lg ? d : d * v; }
    }
    sh[threadIdx.x] = a;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if ((int)threadIdx.x < s) sh[threadIdx.x] = dy ? sh[threadIdx.x] + sh[threadIdx.x + s] : fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
      __syncthreads();
    }
    double m = sh[0];
    __syncthreads();
    if (dy) {
      for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        double v = mf_gld<double>(x, xt, r * D + j), d = mf_gld<double>(dy, dyt, r * D + j);
        mf_gst(out, ot, r * D + j, lg ? d - exp(v) * m : v * (d - m));
      }
      __syncthreads();
      continue;
    }
    double s = 0;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) s += exp(mf_gld<double>(x, xt, r * D + j) - m);
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int t = blockDim.x / 2; t > 0; t >>= 1) {
      if ((int)threadIdx.x < t) sh[threadIdx.x] += sh[threadIdx.x + t];
      __syncthreads();
    }
    double tot = sh[0], ls = log(tot);
    __syncthreads();
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      double v = mf_gld<double>(x, xt, r * D + j) - m;
      mf_gst(out, ot, r * D + j, lg ? v - ls : exp(v) / tot);
    }
  }
}

static void softmax_launch(const mf_kctx *k, const mf_node *n, void *out, const void *x, const void *dy, int dyt, const char *what) {
  int64_t D = n->ne[n->ndim - 1], R = D ? mf_node_numel(n) / D : 0;
  if (!R) return;
  int blocks = R < 65535 ? (int)R : 65535;
  k_softmax<<<blocks, MF_THREADS, 0, mf_cuda_stream(k)>>>(x, k->g->nodes[n->src[0]].dtype, dy, dyt, out, n->dtype, R, D, n->ip[0]);
  MF_CUDA_LAUNCHED(what);
}

extern "C" void mf_cuda_softmax(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  softmax_launch(k, n, out, src[0], NULL, 0, "softmax");
}

extern "C" void mf_cuda_softmax_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  softmax_launch(k, n, out, src[0], src[1], k->g->nodes[n->src[1]].dtype, "softmax_bwd");
}

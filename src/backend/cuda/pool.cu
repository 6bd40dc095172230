/* pool.cu — CUDA kernels of average/max pooling (and global pooling), nearest upsampling, bilinear resize,
 * 2-D padding and their backward ops. Backward kernels gather (one thread per input element, adding the outputs that read
 * it in the CPU backend's order), so no atomics are needed and results are the same every run. */
#include "backend/cuda/common.cuh"
#include <float.h>

typedef struct pgeo {
  int64_t P, H, W, OH, OW; /* P = N*C planes */
  int64_t k, s, p;
  int is_max, global;
} pgeo;

static pgeo pool_geo(const mf_node *n, const mf_node *x, const mf_node *y) {
  pgeo q;
  q.P = x->ne[0] * x->ne[1];
  q.H = x->ne[2];
  q.W = x->ne[3];
  q.is_max = n->ip[0] == MF_POOL_MAX;
  q.global = n->ip[4] != 0;
  if (q.global) {
    q.OH = q.OW = 1;
    q.k = 0;
    q.s = 1;
    q.p = 0;
  } else {
    q.OH = y->ne[2];
    q.OW = y->ne[3];
    q.k = n->ip[1];
    q.s = n->ip[2];
    q.p = n->ip[3];
  }
  return q;
}

/* window of output (oh, ow), clipped to the image */
__device__ __forceinline__ void window(const pgeo &q, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1) {
  *h0 = oh * q.s - q.p; *h1 = *h0 + q.k;
  *w0 = ow * q.s - q.p; *w1 = *w0 + q.k;
  if (*h0 < 0) *h0 = 0;
  if (*w0 < 0) *w0 = 0;
  if (*h1 > q.H) *h1 = q.H;
  if (*w1 > q.W) *w1 = q.W;
}

/* y [P, OH, OW] from x [P, H, W]: max, or sum / (k*k) (padding counted) */
template <typename T> __global__ void k_pool(void *y, int yt, const void *x, int xt, pgeo q, T lowest, T inv) {
  int64_t n = q.P * q.OH * q.OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % q.OW, oh = (i / q.OW) % q.OH, pl = i / (q.OH * q.OW), xo = pl * q.H * q.W;
    int64_t h0, h1, w0, w1;
    window(q, oh, ow, &h0, &h1, &w0, &w1);
    T acc = q.is_max ? lowest : (T)0;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) {
        T v = mf_gld<T>(x, xt, xo + h * q.W + w);
        if (q.is_max) { if (v > acc) acc = v; }
        else acc += v;
      }
    mf_gst<T>(y, yt, i, q.is_max ? acc : acc * inv);
  }
}

/* global pooling: one block per plane, sum in double (or max) with a fixed tree */
__global__ void k_pool_global(void *y, int yt, const void *x, int xt, pgeo q) {
  __shared__ double sh[MF_THREADS];
  int64_t HW = q.H * q.W;
  for (int64_t pl = blockIdx.x; pl < q.P; pl += gridDim.x) {
    double acc = q.is_max ? -DBL_MAX : 0.0;
    for (int64_t t = threadIdx.x; t < HW; t += MF_THREADS) {
      double v = mf_gld<double>(x, xt, pl * HW + t);
      if (q.is_max) acc = v > acc ? v : acc;
      else acc += v;
    }
    double r;
    if (q.is_max) {
      sh[threadIdx.x] = acc;
      __syncthreads();
      for (int s = MF_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && sh[threadIdx.x + s] > sh[threadIdx.x]) sh[threadIdx.x] = sh[threadIdx.x + s];
        __syncthreads();
      }
      r = sh[0];
      __syncthreads();
    } else r = mf_block_sum(acc, sh) / (double)HW;
    if (threadIdx.x == 0) mf_gst<double>(y, yt, pl, r);
  }
}

/* y [N,C,OH,OW] (or [N,C] global) from x [N,C,H,W]; ip0 MF_POOL_AVG/MAX, ip1 k, ip2 stride, ip3 pad, ip4 global */
extern "C" void mf_cuda_pool(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  pgeo q = pool_geo(n, nx, n);
  cudaStream_t s = mf_cuda_stream(k);
  if (q.global) {
    k_pool_global<<<mf_blocks(q.P * MF_THREADS), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, q);
  } else {
    int64_t total = q.P * q.OH * q.OW;
    double inv = 1.0 / (double)(q.k * q.k);
    if (mf_any_f64(n->dtype, nx->dtype, MF_F32))
      k_pool<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, q, -DBL_MAX, inv);
    else
      k_pool<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, q, -FLT_MAX, (float)inv);
  }
  MF_CUDA_LAUNCHED("pool");
}

/* dx [P, H, W]: each pixel adds the outputs whose window holds it, in (oh, ow) order: average
 * adds dy/(k*k); max adds dy where the pixel is the window's first maximum (row-major, strict >) */
template <typename T> __global__ void k_pool_bwd(void *dx, int ot, const void *x, int xt, const void *dy, int dt, pgeo q, T inv) {
  int64_t n = q.P * q.H * q.W;
  MF_GRID_LOOP(i, n) {
    int64_t iw = i % q.W, ih = (i / q.W) % q.H, pl = i / (q.H * q.W), xo = pl * q.H * q.W, yo = pl * q.OH * q.OW;
    /* outputs oh with oh*s - p <= ih < oh*s - p + k */
    int64_t th = ih + q.p - q.k + 1, tw = iw + q.p - q.k + 1;
    int64_t oh0 = th <= 0 ? 0 : (th + q.s - 1) / q.s, oh1 = (ih + q.p) / q.s;
    int64_t ow0 = tw <= 0 ? 0 : (tw + q.s - 1) / q.s, ow1 = (iw + q.p) / q.s;
    if (oh1 > q.OH - 1) oh1 = q.OH - 1;
    if (ow1 > q.OW - 1) ow1 = q.OW - 1;
    T acc = (T)0;
    for (int64_t oh = oh0; oh <= oh1; oh++)
      for (int64_t ow = ow0; ow <= ow1; ow++) {
        T g = mf_gld<T>(dy, dt, yo + oh * q.OW + ow);
        if (!q.is_max) { acc += g * inv; continue; }
        int64_t h0, h1, w0, w1;
        window(q, oh, ow, &h0, &h1, &w0, &w1);
        int64_t best = h0 * q.W + w0;
        T bv = mf_gld<T>(x, xt, xo + best);
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) {
            T v = mf_gld<T>(x, xt, xo + h * q.W + w);
            if (v > bv) { bv = v; best = h * q.W + w; }
          }
        if (best == ih * q.W + iw) acc += g;
      }
    mf_gst<T>(dx, ot, i, acc);
  }
}

/* global average: dx = dy / (H*W) everywhere in the plane */
template <typename T> __global__ void k_pool_global_avg_bwd(void *dx, int ot, const void *dy, int dt, pgeo q, T inv) {
  int64_t n = q.P * q.H * q.W;
  MF_GRID_LOOP(i, n) mf_gst<T>(dx, ot, i, mf_gld<T>(dy, dt, i / (q.H * q.W)) * inv);
}
/* global max: dy goes to the plane's first maximum (dx zeroed before) */
__global__ void k_pool_global_max_bwd(void *dx, int ot, const void *x, int xt, const void *dy, int dt, pgeo q) {
  __shared__ double shv[MF_THREADS];
  __shared__ int64_t shi[MF_THREADS];
  int64_t HW = q.H * q.W;
  for (int64_t pl = blockIdx.x; pl < q.P; pl += gridDim.x) {
    double bv = -DBL_MAX;
    int64_t bi = -1;
    for (int64_t t = threadIdx.x; t < HW; t += MF_THREADS) {
      double v = mf_gld<double>(x, xt, pl * HW + t);
      if (bi < 0 || v > bv) { bv = v; bi = t; }
    }
    shv[threadIdx.x] = bv;
    shi[threadIdx.x] = bi;
    __syncthreads();
    for (int s = MF_THREADS / 2; s > 0; s >>= 1) {
      if ((int)threadIdx.x < s) {
        int64_t oi = shi[threadIdx.x + s];
        double ov = shv[threadIdx.x + s];
        if (oi >= 0 && (shi[threadIdx.x] < 0 || ov > shv[threadIdx.x] || (ov == shv[threadIdx.x] && oi < shi[threadIdx.x]))) {
          shv[threadIdx.x] = ov;
          shi[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0 && shi[0] >= 0) mf_gst<double>(dx, ot, pl * HW + shi[0], mf_gld<double>(dy, dt, pl));
    __syncthreads();
  }
}

/* dx [N,C,H,W] from (max: x, dy; average: dy) */
extern "C" void mf_cuda_pool_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  bool is_max = n->ip[0] == MF_POOL_MAX;
  const mf_node *nx = is_max ? mf_csrc(k, n, 0) : n, *nd = mf_csrc(k, n, is_max ? 1 : 0);
  const void *x = is_max ? src[0] : NULL, *dy = src[is_max ? 1 : 0];
  pgeo q = pool_geo(n, n, nd);
  int64_t total = q.P * q.H * q.W;
  cudaStream_t s = mf_cuda_stream(k);
  bool f64 = mf_any_f64(n->dtype, nx->dtype, nd->dtype);
  if (q.global && is_max) {
    mf_cuda_note(cudaMemsetAsync(out, 0, mf_node_bytes(n), s), "pool_bwd");
    k_pool_global_max_bwd<<<mf_blocks(q.P * MF_THREADS), MF_THREADS, 0, s>>>(out, n->dtype, x, nx->dtype, dy, nd->dtype, q);
  } else if (q.global) {
    double inv = 1.0 / (double)(q.H * q.W);
    if (f64) k_pool_global_avg_bwd<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, dy, nd->dtype, q, inv);
    else k_pool_global_avg_bwd<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, dy, nd->dtype, q, (float)inv);
  } else {
    double inv = 1.0 / (double)(q.k * q.k);
    if (f64) k_pool_bwd<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, x, nx->dtype, dy, nd->dtype, q, inv);
    else k_pool_bwd<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, x, nx->dtype, dy, nd->dtype, q, (float)inv);
  }
  MF_CUDA_LAUNCHED("pool_bwd");
}

/* ------------------------------------------------------------------ nearest upsampling */

/* y [P, H*f, W*f] = x [P, H, W] repeated in f x f blocks */
template <typename T> __global__ void k_upsample(void *y, int yt, const void *x, int xt, int64_t P, int64_t H, int64_t W, int64_t f) {
  int64_t OW = W * f, OH = H * f, n = P * OH * OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % OW, oh = (i / OW) % OH, pl = i / (OH * OW);
    mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, (pl * H + oh / f) * W + ow / f));
  }
}
/* dx [P, H, W] = sum of dy [P, H*f, W*f] over each f x f block (rows then columns) */
template <typename T> __global__ void k_upsample_bwd(void *dx, int ot, const void *dy, int dt, int64_t P, int64_t H, int64_t W, int64_t f) {
  int64_t OW = W * f, n = P * H * W;
  MF_GRID_LOOP(i, n) {
    int64_t w = i % W, r = i / W; /* r = pl*H + h: dy rows r*f .. r*f+f-1 */
    T acc = (T)0;
    for (int64_t a = 0; a < f; a++)
      for (int64_t b = 0; b < f; b++) acc += mf_gld<T>(dy, dt, (r * f + a) * OW + w * f + b);
    mf_gst<T>(dx, ot, i, acc);
  }
}

extern "C" void mf_cuda_upsample(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  int64_t f = n->ip[0], P = nx->ne[0] * nx->ne[1], total = mf_node_numel(n);
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, nx->dtype, MF_F32))
    k_upsample<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, P, nx->ne[2], nx->ne[3], f);
  else
    k_upsample<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, P, nx->ne[2], nx->ne[3], f);
  MF_CUDA_LAUNCHED("upsample");
}

extern "C" void mf_cuda_upsample_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_csrc(k, n, 0);
  int64_t f = n->ip[0], P = n->ne[0] * n->ne[1], total = mf_node_numel(n);
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, nd->dtype, MF_F32))
    k_upsample_bwd<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nd->dtype, P, n->ne[2], n->ne[3], f);
  else
    k_upsample_bwd<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nd->dtype, P, n->ne[2], n->ne[3], f);
  MF_CUDA_LAUNCHED("upsample_bwd");
}

/* ------------------------------------------------------------------ bilinear resize (mf_resize_src, ops.h) */

/* y [P,OH,OW] from x [P,H,W], in double like the CPU kernel */
__global__ void k_resize(void *y, int yt, const void *x, int xt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int mode,
                         double sh, double sw) {
  int64_t n = P * OH * OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % OW, oh = (i / OW) % OH, p = i / (OH * OW), h0, h1, w0, w1;
    double lh, lw;
    mf_resize_src(mode, oh, H, OH, sh, &h0, &h1, &lh);
    mf_resize_src(mode, ow, W, OW, sw, &w0, &w1, &lw);
    int64_t a = (p * H + h0) * W, b = (p * H + h1) * W;
    double top = (1 - lw) * mf_gld<double>(x, xt, a + w0) + lw * mf_gld<double>(x, xt, a + w1);
    double bot = (1 - lw) * mf_gld<double>(x, xt, b + w0) + lw * mf_gld<double>(x, xt, b + w1);
    mf_gst<double>(y, yt, i, (1 - lh) * top + lh * bot);
  }
}
/* dx [P,H,W] from dy [P,OH,OW]: one thread per dx pixel sums, in output order, the dy pixels that reach it (the
 * CPU kernel's sums, no atomics); the rows and columns that reach it are runs of the monotone maps */
__global__ void k_resize_bwd(void *dx, int ot, const void *dy, int dt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                             int mode, double sh, double sw) {
  int64_t n = P * H * W;
  MF_GRID_LOOP(i, n) {
    int64_t w = i % W, h = (i / W) % H, p = i / (H * W), a0, a1, oh_lo = 0, ow_lo = 0;
    double l, acc = 0;
    while (oh_lo < OH && (mf_resize_src(mode, oh_lo, H, OH, sh, &a0, &a1, &l), a1 < h)) oh_lo++;
    while (ow_lo < OW && (mf_resize_src(mode, ow_lo, W, OW, sw, &a0, &a1, &l), a1 < w)) ow_lo++;
    for (int64_t oh = oh_lo; oh < OH; oh++) {
      int64_t h0, h1;
      double lh;
      mf_resize_src(mode, oh, H, OH, sh, &h0, &h1, &lh);
      if (h0 > h) break;
      double wh = (h0 == h ? 1 - lh : 0) + (h1 == h ? lh : 0);
      if (wh == 0) continue;
      for (int64_t ow = ow_lo; ow < OW; ow++) {
        int64_t w0, w1;
        double lw;
        mf_resize_src(mode, ow, W, OW, sw, &w0, &w1, &lw);
        if (w0 > w) break;
        double ww = (w0 == w ? 1 - lw : 0) + (w1 == w ? lw : 0);
        if (ww != 0) acc += wh * ww * mf_gld<double>(dy, dt, (p * OH + oh) * OW + ow);
      }
    }
    mf_gst<double>(dx, ot, i, acc);
  }
}

extern "C" void mf_cuda_resize(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  k_resize<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], nx->dtype, nx->ne[0] * nx->ne[1], nx->ne[2],
                                                                    nx->ne[3], n->ne[2], n->ne[3], n->ip[0], n->fp[0], n->fp[1]);
  MF_CUDA_LAUNCHED("resize");
}

extern "C" void mf_cuda_resize_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  k_resize_bwd<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], nd->dtype, n->ne[0] * n->ne[1], n->ne[2],
                                                                        n->ne[3], nd->ne[2], nd->ne[3], n->ip[0], n->fp[0], n->fp[1]);
  MF_CUDA_LAUNCHED("resize_bwd");
}

/* ------------------------------------------------------------------ padding (mf_pad_src, ops.h) */

__global__ void k_pad(void *y, int yt, const void *x, int xt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int mode, int64_t pt,
                      int64_t pl, double value) {
  int64_t n = P * OH * OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % OW, oh = (i / OW) % OH, p = i / (OH * OW);
    int64_t h = mf_pad_src(mode, oh, pt, H), w = mf_pad_src(mode, ow, pl, W);
    mf_gst<double>(y, yt, i, h < 0 || w < 0 ? value : mf_gld<double>(x, xt, (p * H + h) * W + w));
  }
}
/* one thread per dx pixel: the CPU kernel's sums in its order */
__global__ void k_pad_bwd(void *dx, int ot, const void *dy, int dt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int mode,
                          int64_t pt, int64_t pl) {
  int64_t n = P * H * W;
  MF_GRID_LOOP(i, n) {
    int64_t w = i % W, h = (i / W) % H, p = i / (H * W), rh[6], rw[6];
    mf_pad_readers(mode, h, pt, H, OH, rh);
    mf_pad_readers(mode, w, pl, W, OW, rw);
    double acc = 0;
    for (int a = 0; a < 3; a++)
      for (int64_t oh = rh[2 * a]; oh < rh[2 * a + 1]; oh++)
        for (int b = 0; b < 3; b++)
          for (int64_t ow = rw[2 * b]; ow < rw[2 * b + 1]; ow++) acc += mf_gld<double>(dy, dt, (p * OH + oh) * OW + ow);
    mf_gst<double>(dx, ot, i, acc);
  }
}

extern "C" void mf_cuda_pad(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  k_pad<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], nx->dtype, nx->ne[0] * nx->ne[1], nx->ne[2], nx->ne[3],
                                                                 n->ne[2], n->ne[3], n->ip[0], n->ip[1], n->ip[2], n->fp[0]);
  MF_CUDA_LAUNCHED("pad");
}

extern "C" void mf_cuda_pad_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  k_pad_bwd<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], nd->dtype, n->ne[0] * n->ne[1], n->ne[2], n->ne[3],
                                                                     nd->ne[2], nd->ne[3], n->ip[0], n->ip[1], n->ip[2]);
  MF_CUDA_LAUNCHED("pad_bwd");
}

/* pool.cu — CUDA kernels of average/max pooling (and global pooling), nearest upsampling, nearest and bilinear
 * resize, 2-D padding and their backward ops. Backward kernels gather (one thread per input element, adding the outputs that read
 * it in the CPU backend's order), so no atomics are needed and results are the same every run. */
#include "backend/cuda/common.cuh"
#include <float.h>

typedef struct pgeo {
  int64_t P, H, W, OH, OW; /* P = N*C planes */
  mf_pool_cfg c;
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
    q.c = mf_pool_cfg{(int)q.H, (int)q.W, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  } else {
    q.OH = y->ne[2];
    q.OW = y->ne[3];
    q.c = mf_pool_cfg_of(n);
  }
  return q;
}

/* output (oh, ow)'s window (ops.h: mf_pool_taps): rows hs + t dh, t in [th0, th1), columns ws + t dw, t in [tw0, tw1),
 * and the average's divisor */
struct pwin { int64_t hs, ws; int th0, th1, tw0, tw1; double div; };
__device__ __forceinline__ pwin window(const pgeo &q, int64_t oh, int64_t ow) {
  pwin w;
  int ch, cw;
  mf_pool_taps(oh, q.c.sh, q.c.dh, q.c.kh, q.c.pt, q.c.pb, q.H, q.c.exclude_pad, &w.hs, &w.th0, &w.th1, &ch);
  mf_pool_taps(ow, q.c.sw, q.c.dw, q.c.kw, q.c.pl, q.c.pr, q.W, q.c.exclude_pad, &w.ws, &w.tw0, &w.tw1, &cw);
  w.div = (double)ch * (double)cw;
  return w;
}

/* y [P, OH, OW] from x [P, H, W]: max, or sum / divisor */
template <typename T> __global__ void k_pool(void *y, int yt, const void *x, int xt, pgeo q, T lowest) {
  int64_t n = q.P * q.OH * q.OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % q.OW, oh = (i / q.OW) % q.OH, pl = i / (q.OH * q.OW), xo = pl * q.H * q.W;
    pwin w = window(q, oh, ow);
    T acc = q.is_max ? lowest : (T)0;
    for (int th = w.th0; th < w.th1; th++)
      for (int tw = w.tw0; tw < w.tw1; tw++) {
        T v = mf_gld<T>(x, xt, xo + (w.hs + (int64_t)th * q.c.dh) * q.W + w.ws + (int64_t)tw * q.c.dw);
        if (q.is_max) { if (v > acc) acc = v; }
        else acc += v;
      }
    T inv = w.div > 0 ? (T)(1.0 / w.div) : (T)0;
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

/* y [N,C,OH,OW] (or [N,C] global) from x [N,C,H,W]; ip0 MF_POOL_AVG/MAX, the geometry mf_pool_cfg_of reads, ip4 global */
extern "C" void mf_cuda_pool(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  pgeo q = pool_geo(n, nx, n);
  cudaStream_t s = mf_cuda_stream(k);
  if (q.global) {
    k_pool_global<<<mf_blocks(q.P * MF_THREADS), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, q);
  } else {
    int64_t total = q.P * q.OH * q.OW;
    if (mf_any_f64(n->dtype, nx->dtype, MF_F32))
      k_pool<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, q, -DBL_MAX);
    else
      k_pool<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, q, -FLT_MAX);
  }
  MF_CUDA_LAUNCHED("pool");
}

/* dx [P, H, W]: each pixel adds the outputs whose window holds it, in (oh, ow) order as the CPU does: average adds
 * dy / divisor; max adds dy where the pixel is the window's first maximum (row-major over the taps, strict >). Along an
 * axis, tap t of output o reads pixel o*s - p0 + t*d: o = (i + p0 - t*d) / s when that divides; t descending gives o
 * ascending. */
template <typename T> __global__ void k_pool_bwd(void *dx, int ot, const void *x, int xt, const void *dy, int dt, pgeo q) {
  int64_t n = q.P * q.H * q.W;
  MF_GRID_LOOP(i, n) {
    int64_t iw = i % q.W, ih = (i / q.W) % q.H, pl = i / (q.H * q.W), xo = pl * q.H * q.W, yo = pl * q.OH * q.OW;
    T acc = (T)0;
    for (int th = q.c.kh - 1; th >= 0; th--) {
      int64_t nh = ih + q.c.pt - (int64_t)th * q.c.dh;
      if (nh < 0 || nh % q.c.sh) continue;
      int64_t oh = nh / q.c.sh;
      if (oh >= q.OH) continue;
      for (int tw = q.c.kw - 1; tw >= 0; tw--) {
        int64_t nw = iw + q.c.pl - (int64_t)tw * q.c.dw;
        if (nw < 0 || nw % q.c.sw) continue;
        int64_t ow = nw / q.c.sw;
        if (ow >= q.OW) continue;
        T g = mf_gld<T>(dy, dt, yo + oh * q.OW + ow);
        pwin w = window(q, oh, ow);
        if (!q.is_max) { acc += g * (w.div > 0 ? (T)(1.0 / w.div) : (T)0); continue; }
        int64_t best = -1;
        T bv = (T)0;
        for (int a = w.th0; a < w.th1; a++)
          for (int b = w.tw0; b < w.tw1; b++) {
            int64_t j = (w.hs + (int64_t)a * q.c.dh) * q.W + w.ws + (int64_t)b * q.c.dw;
            T v = mf_gld<T>(x, xt, xo + j);
            if (best < 0 || v > bv) { bv = v; best = j; }
          }
        if (best == ih * q.W + iw) acc += g;
      }
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
    if (f64) k_pool_bwd<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, x, nx->dtype, dy, nd->dtype, q);
    else k_pool_bwd<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, x, nx->dtype, dy, nd->dtype, q);
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

/* ------------------------------------------------------------------ nearest resize (mf_resize_nearest_src, ops.h) */

/* y [P,OH,OW] from x [P,H,W]: a copy of each output pixel's source pixel */
template <typename T>
__global__ void k_resize_nearest(void *y, int yt, const void *x, int xt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 int mode, int rnd, double sh, double sw) {
  int64_t n = P * OH * OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % OW, oh = (i / OW) % OH, p = i / (OH * OW);
    int64_t h = mf_resize_nearest_src(mode, rnd, oh, H, OH, sh), w = mf_resize_nearest_src(mode, rnd, ow, W, OW, sw);
    mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, (p * H + h) * W + w));
  }
}
/* dx [P,H,W] from dy [P,OH,OW]: one thread per dx pixel sums the runs of rows and columns that copied it, in the CPU
 * kernel's order and precision (f32 in float, others in double); no atomics */
template <typename T>
__global__ void k_resize_nearest_bwd(void *dx, int ot, const void *dy, int dt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                     int mode, int rnd, double sh, double sw) {
  int64_t n = P * H * W;
  MF_GRID_LOOP(i, n) {
    int64_t w = i % W, h = (i / W) % H, p = i / (H * W);
    int64_t oh0 = mf_resize_nearest_first(mode, rnd, h, H, OH, sh), oh1 = mf_resize_nearest_first(mode, rnd, h + 1, H, OH, sh);
    int64_t ow0 = mf_resize_nearest_first(mode, rnd, w, W, OW, sw), ow1 = mf_resize_nearest_first(mode, rnd, w + 1, W, OW, sw);
    T acc = (T)0;
    for (int64_t oh = oh0; oh < oh1; oh++)
      for (int64_t ow = ow0; ow < ow1; ow++) acc += mf_gld<T>(dy, dt, (p * OH + oh) * OW + ow);
    mf_gst<T>(dx, ot, i, acc);
  }
}

extern "C" void mf_cuda_resize_nearest(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n), P = nx->ne[0] * nx->ne[1];
  cudaStream_t s = mf_cuda_stream(k);
  if (n->dtype == MF_F32 && nx->dtype == MF_F32)
    k_resize_nearest<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, P, nx->ne[2], nx->ne[3], n->ne[2],
                                                                     n->ne[3], n->ip[0], n->ip[1], n->fp[0], n->fp[1]);
  else
    k_resize_nearest<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nx->dtype, P, nx->ne[2], nx->ne[3], n->ne[2],
                                                                      n->ne[3], n->ip[0], n->ip[1], n->fp[0], n->fp[1]);
  MF_CUDA_LAUNCHED("resize_nearest");
}

extern "C" void mf_cuda_resize_nearest_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n), P = n->ne[0] * n->ne[1];
  cudaStream_t s = mf_cuda_stream(k);
  if (n->dtype == MF_F32 && nd->dtype == MF_F32)
    k_resize_nearest_bwd<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nd->dtype, P, n->ne[2], n->ne[3], nd->ne[2],
                                                                         nd->ne[3], n->ip[0], n->ip[1], n->fp[0], n->fp[1]);
  else
    k_resize_nearest_bwd<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], nd->dtype, P, n->ne[2], n->ne[3],
                                                                          nd->ne[2], nd->ne[3], n->ip[0], n->ip[1], n->fp[0], n->fp[1]);
  MF_CUDA_LAUNCHED("resize_nearest_bwd");
}

/* ------------------------------------------------------------------ bicubic resize (mf_resize_cubic_taps, ops.h) */

/* y [P,OH,OW] from x [P,H,W]: 4 x 4 taps in double, the CPU kernel's order */
__global__ void k_resize_cubic(void *y, int yt, const void *x, int xt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int mode,
                               int excl, double sh, double sw, double a) {
  int64_t n = P * OH * OW;
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % OW, oh = (i / OW) % OH, p = i / (OH * OW), hi[4], wi[4];
    double hw[4], ww[4], acc = 0;
    mf_resize_cubic_taps(mode, oh, H, OH, sh, a, excl, hi, hw);
    mf_resize_cubic_taps(mode, ow, W, OW, sw, a, excl, wi, ww);
    for (int r = 0; r < 4; r++) {
      double row = 0;
      for (int c = 0; c < 4; c++) row += ww[c] * mf_gld<double>(x, xt, (p * H + hi[r]) * W + wi[c]);
      acc += hw[r] * row;
    }
    mf_gst<double>(y, yt, i, acc);
  }
}
/* dx [P,H,W] from dy [P,OH,OW]: one thread per dx pixel gathers the runs of outputs whose taps read it, in the CPU
 * kernel's order; no atomics */
__global__ void k_resize_cubic_bwd(void *dx, int ot, const void *dy, int dt, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                   int mode, int excl, double sh, double sw, double a) {
  int64_t n = P * H * W;
  MF_GRID_LOOP(i, n) {
    int64_t w = i % W, h = (i / W) % H, p = i / (H * W), oh0, oh1, ow0, ow1;
    mf_resize_cubic_run(mode, h, H, OH, sh, &oh0, &oh1);
    mf_resize_cubic_run(mode, w, W, OW, sw, &ow0, &ow1);
    double acc = 0;
    for (int64_t oh = oh0; oh < oh1; oh++) {
      double wh = mf_resize_cubic_weight(mode, oh, h, H, OH, sh, a, excl), row = 0;
      if (wh == 0) continue;
      for (int64_t ow = ow0; ow < ow1; ow++)
        row += mf_resize_cubic_weight(mode, ow, w, W, OW, sw, a, excl) * mf_gld<double>(dy, dt, (p * OH + oh) * OW + ow);
      acc += wh * row;
    }
    mf_gst<double>(dx, ot, i, acc);
  }
}

extern "C" void mf_cuda_resize_cubic(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nx = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  k_resize_cubic<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], nx->dtype, nx->ne[0] * nx->ne[1],
                                                                          nx->ne[2], nx->ne[3], n->ne[2], n->ne[3], n->ip[0], n->ip[1],
                                                                          n->fp[0], n->fp[1], n->fp[2]);
  MF_CUDA_LAUNCHED("resize_cubic");
}

extern "C" void mf_cuda_resize_cubic_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *nd = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  k_resize_cubic_bwd<<<mf_blocks(total), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], nd->dtype, n->ne[0] * n->ne[1],
                                                                              n->ne[2], n->ne[3], nd->ne[2], nd->ne[3], n->ip[0], n->ip[1],
                                                                              n->fp[0], n->fp[1], n->fp[2]);
  MF_CUDA_LAUNCHED("resize_cubic_bwd");
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

/* ssim.cu — CUDA kernels of the fused SSIM map and its backward (ops/ssim.c): one thread per output for the map;
 * the backward writes each window's three gradient coefficients (times dmap) into its workspace, then gathers them,
 * one thread per input pixel (no atomics: the same bits every run). Window sums in double, formula in ops/ssim.h. */
#include "backend/cuda/common.cuh"
#include "ops/ssim.h"

typedef struct sgeo { int64_t P, H, W, OH, OW; int k; } sgeo;

/* the five sums of window (pl, oh, ow) */
__device__ __forceinline__ void window_sums(const sgeo &q, const void *x, int xt, const void *y, int yt, int64_t pl, int64_t oh,
                                            int64_t ow, double s[5]) {
  s[0] = s[1] = s[2] = s[3] = s[4] = 0;
  for (int a = 0; a < q.k; a++) {
    int64_t o = (pl * q.H + oh + a) * q.W + ow;
    for (int b = 0; b < q.k; b++) {
      double u = mf_gld<double>(x, xt, o + b), v = mf_gld<double>(y, yt, o + b);
      s[0] += u, s[1] += v, s[2] += u * u, s[3] += v * v, s[4] += u * v;
    }
  }
}

/* map [P,OH,OW] */
__global__ void k_ssim(void *out, int ot, const void *x, int xt, const void *y, int yt, sgeo q) {
  int64_t n = q.P * q.OH * q.OW;
  double inv = 1.0 / ((double)q.k * q.k);
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % q.OW, oh = i / q.OW % q.OH, pl = i / (q.OH * q.OW);
    double s[5];
    window_sums(q, x, xt, y, yt, pl, oh, ow, s);
    mf_gst<double>(out, ot, i, mf_ssim_window(s[0], s[1], s[2], s[3], s[4], inv, 0, NULL));
  }
}

/* cf [3, P*OH*OW]: each window's coefficients times dmap */
__global__ void k_ssim_coef(double *cf, const void *x, int xt, const void *y, int yt, const void *dm, int dt, sgeo q) {
  int64_t n = q.P * q.OH * q.OW;
  double inv = 1.0 / ((double)q.k * q.k);
  MF_GRID_LOOP(i, n) {
    int64_t ow = i % q.OW, oh = i / q.OW % q.OH, pl = i / (q.OH * q.OW);
    double s[5], c[3];
    window_sums(q, x, xt, y, yt, pl, oh, ow, s);
    mf_ssim_window(s[0], s[1], s[2], s[3], s[4], inv, mf_gld<double>(dm, dt, i), c);
    cf[i] = c[0], cf[n + i] = c[1], cf[2 * n + i] = c[2];
  }
}

/* dx [P,H,W]: pixel (i, j) gathers the windows (oh, ow) in [i-k+1, i] x [j-k+1, j] inside the map */
__global__ void k_ssim_gather(void *out, int ot, const double *cf, const void *x, int xt, const void *y, int yt, sgeo q) {
  int64_t n = q.P * q.H * q.W, nm = q.P * q.OH * q.OW;
  double inv = 1.0 / ((double)q.k * q.k);
  MF_GRID_LOOP(e, n) {
    int64_t j = e % q.W, i = e / q.W % q.H, pl = e / (q.H * q.W);
    int64_t h0 = i - q.k + 1 < 0 ? 0 : i - q.k + 1, h1 = i < q.OH - 1 ? i : q.OH - 1;
    int64_t w0 = j - q.k + 1 < 0 ? 0 : j - q.k + 1, w1 = j < q.OW - 1 ? j : q.OW - 1;
    double a = 0, b = 0, c = 0;
    for (int64_t oh = h0; oh <= h1; oh++)
      for (int64_t ow = w0; ow <= w1; ow++) {
        int64_t m = (pl * q.OH + oh) * q.OW + ow;
        a += cf[m], b += cf[nm + m], c += cf[2 * nm + m];
      }
    double v = (a + b * mf_gld<double>(x, xt, e) + c * mf_gld<double>(y, yt, e)) * inv;
    mf_gst<double>(out, ot, e, v);
  }
}

static sgeo ssim_geo(const mf_node *x, const mf_node *map, int k) {
  sgeo q = {x->ne[0] * x->ne[1], x->ne[2], x->ne[3], map->ne[2], map->ne[3], k};
  return q;
}

extern "C" size_t mf_cuda_ws_ssim(const mf_graph *g, const mf_node *n) {
  if (n->op != MF_OP_SSIM_BWD) return 0;
  return mf_ws_align((size_t)(3 * mf_node_numel(&g->nodes[n->src[2]])) * sizeof(double));
}

extern "C" void mf_cuda_ssim(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0), *y = mf_csrc(k, n, 1);
  sgeo q = ssim_geo(x, n, n->ip[0]);
  int64_t cnt = q.P * q.OH * q.OW;
  if (!cnt) return;
  k_ssim<<<mf_blocks(cnt), MF_THREADS, 0, mf_cuda_stream(k)>>>(out, n->dtype, src[0], x->dtype, src[1], y->dtype, q);
  MF_CUDA_LAUNCHED("ssim");
}

extern "C" void mf_cuda_ssim_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *x = mf_csrc(k, n, 0), *y = mf_csrc(k, n, 1), *dm = mf_csrc(k, n, 2);
  sgeo q = ssim_geo(x, dm, n->ip[0]);
  int64_t nm = q.P * q.OH * q.OW, ni = q.P * q.H * q.W;
  if (!ni) return;
  cudaStream_t st = mf_cuda_stream(k);
  double *cf = (double *)ws;
  k_ssim_coef<<<mf_blocks(nm), MF_THREADS, 0, st>>>(cf, src[0], x->dtype, src[1], y->dtype, src[2], dm->dtype, q);
  MF_CUDA_LAUNCHED("ssim_bwd");
  k_ssim_gather<<<mf_blocks(ni), MF_THREADS, 0, st>>>(out, n->dtype, cf, src[0], x->dtype, src[1], y->dtype, q);
  MF_CUDA_LAUNCHED("ssim_bwd");
}

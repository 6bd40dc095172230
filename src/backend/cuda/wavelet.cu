/* wavelet.cu — CUDA kernels of the Haar DWT [N,C,H,W] -> [N,4C,H/2,W/2] and its inverse (docs/design.md
 * 3.1), one thread per 2x2 block. With a=x[2i,2j], b=x[2i+1,2j], c=x[2i,2j+1], d=x[2i+1,2j+1]:
 * LL=(a+b+c+d)/2, HL=(-a-b+c+d)/2, LH=(-a+b-c+d)/2, HH=(a-b-c+d)/2; the inverse is the transpose. */
#include "backend/cuda/common.cuh"

/* n = N*C*h*w blocks; band = C*h*w is the distance between LL, HL, LH, HH of one (c, i, j) */
template <typename T> __global__ void k_dwt(void *y, int yt, const void *x, int xt, int64_t C, int64_t h, int64_t w, int64_t n) {
  int64_t band = C * h * w, W = 2 * w;
  MF_GRID_LOOP(t, n) {
    int64_t j = t % w, i = (t / w) % h, nc = t / (h * w), nn = nc / C, c = nc % C;
    int64_t xo = (nc * 2 * h + 2 * i) * W + 2 * j, yo = ((nn * 4 * C + c) * h + i) * w + j;
    T a = mf_gld<T>(x, xt, xo), b = mf_gld<T>(x, xt, xo + W), cc = mf_gld<T>(x, xt, xo + 1), d = mf_gld<T>(x, xt, xo + W + 1);
    T half = (T)0.5;
    mf_gst<T>(y, yt, yo, half * (a + b + cc + d));
    mf_gst<T>(y, yt, yo + band, half * (-a - b + cc + d));
    mf_gst<T>(y, yt, yo + 2 * band, half * (-a + b - cc + d));
    mf_gst<T>(y, yt, yo + 3 * band, half * (a - b - cc + d));
  }
}
/* x [N,C,2h,2w] from y [N,4C,h,w] */
template <typename T> __global__ void k_idwt(void *x, int xt, const void *y, int yt, int64_t C, int64_t h, int64_t w, int64_t n) {
  int64_t band = C * h * w, W = 2 * w;
  MF_GRID_LOOP(t, n) {
    int64_t j = t % w, i = (t / w) % h, nc = t / (h * w), nn = nc / C, c = nc % C;
    int64_t xo = (nc * 2 * h + 2 * i) * W + 2 * j, yo = ((nn * 4 * C + c) * h + i) * w + j;
    T L = mf_gld<T>(y, yt, yo), H = mf_gld<T>(y, yt, yo + band), V = mf_gld<T>(y, yt, yo + 2 * band), D = mf_gld<T>(y, yt, yo + 3 * band);
    T half = (T)0.5;
    mf_gst<T>(x, xt, xo, half * (L - H - V + D));
    mf_gst<T>(x, xt, xo + W, half * (L - H + V - D));
    mf_gst<T>(x, xt, xo + 1, half * (L + H - V - D));
    mf_gst<T>(x, xt, xo + W + 1, half * (L + H + V + D));
  }
}

extern "C" void mf_cuda_dwt(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  int64_t C = x->ne[1], h = n->ne[2], w = n->ne[3], total = x->ne[0] * C * h * w;
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, x->dtype, MF_F32)) k_dwt<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, C, h, w, total);
  else k_dwt<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], x->dtype, C, h, w, total);
  MF_CUDA_LAUNCHED("dwt");
}

extern "C" void mf_cuda_idwt(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *y = mf_csrc(k, n, 0);
  int64_t C = n->ne[1], h = y->ne[2], w = y->ne[3], total = n->ne[0] * C * h * w;
  cudaStream_t s = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, y->dtype, MF_F32)) k_idwt<double><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], y->dtype, C, h, w, total);
  else k_idwt<float><<<mf_blocks(total), MF_THREADS, 0, s>>>(out, n->dtype, src[0], y->dtype, C, h, w, total);
  MF_CUDA_LAUNCHED("idwt");
}

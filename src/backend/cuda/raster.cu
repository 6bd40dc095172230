/* raster.cu — CUDA kernels of the Image-GS tile rasteriser, kept straightforward and deterministic: the table
 * and boxes one thread per Gaussian (ops/raster.h's set-up, as the CPU), tile counts by integer atomics and a
 * serial scan, one thread per pixel for the selection and the image. The selection is a total order (sigma,
 * then Gaussian id), so the order of a tile's list (filled with atomics) changes nothing. Backward: one thread
 * per pixel writes (sum w + eps, dy . colour), then one thread per Gaussian walks the pixels of its box in
 * order and adds what the pixels that selected it give: no float atomics, the same bits every run. A step
 * over the pair capacity writes nothing past the list; the sync reports it (mf_cuda_raster_fault). */
#include "backend/cuda/common.cuh"
#include "ops/raster.h"

/* ------------------------------------------------------------------ workspace layout */

typedef struct rs_layout {
  size_t table, boxes, tcount, tstart, cursor, list, meta, pix, sel, total;
  int bins, real64;
} rs_layout;

static rs_layout rs_plan(const mf_graph *g, const mf_node *n) {
  rs_layout L;
  memset(&L, 0, sizeof L);
  const mf_node *pos = &g->nodes[n->src[0]];
  int64_t N = pos->ne[0], C = n->op == MF_OP_GAUSS_TOPK ? 0 : g->nodes[n->src[3]].ne[1];
  int64_t T = (int64_t)((n->ip[MF_RIP_W] + 15) / 16) * ((n->ip[MF_RIP_H] + 15) / 16);
  int64_t HW = (int64_t)n->ip[MF_RIP_W] * n->ip[MF_RIP_H];
  size_t rs = pos->dtype == MF_F64 ? 8 : 4, off = 0;
  L.real64 = pos->dtype == MF_F64;
  L.bins = n->op == MF_OP_GAUSS_TOPK || n->ip[MF_RIP_TOPK] < 0;
  L.table = off; off += mf_ws_align((size_t)N * (size_t)(5 + C) * rs);
  L.boxes = off; off += mf_ws_align((size_t)N * 4 * sizeof(int32_t));
  L.meta = off; off += mf_ws_align(2 * sizeof(long long));
  if (L.bins) {
    L.tcount = off; off += mf_ws_align((size_t)T * sizeof(int32_t));
    L.tstart = off; off += mf_ws_align((size_t)(T + 1) * sizeof(int32_t));
    L.cursor = off; off += mf_ws_align((size_t)T * sizeof(int32_t));
    L.list = off; off += mf_ws_align((size_t)n->ip[MF_RIP_CAP] * sizeof(int32_t));
  }
  if (n->op == MF_OP_GAUSS_RASTER_BWD) {
    L.pix = off; off += mf_ws_align((size_t)HW * 2 * rs);
    if (n->ip[MF_RIP_TOPK] < 0) { L.sel = off; off += mf_ws_align((size_t)HW * n->ip[MF_RIP_K] * sizeof(int32_t)); }
  }
  L.total = off;
  return L;
}

extern "C" size_t mf_cuda_ws_raster(const mf_graph *g, const mf_node *n) {
  if (n->op == MF_OP_GAUSS_STATS) return 0;
  return rs_plan(g, n).total;
}

/* ------------------------------------------------------------------ fault record */

struct raster_fault {
  unsigned long long pairs; /* the largest count over capacity since the last check, 0: none */
  int node, cap;
};
__device__ raster_fault d_raster_fault = {0ull, -1, 0};
static bool raster_pending;
static const mf_graph *raster_graph;
static int raster_bad_node = -1, raster_bad_origin[2];

int mf_cuda_raster_fault(char *msg, size_t len) {
  if (!raster_pending) return 0;
  raster_pending = false;
  if (raster_bad_node >= 0) {
    const char *nm = raster_graph && raster_bad_node < raster_graph->n ? raster_graph->nodes[raster_bad_node].name : "?";
    snprintf(msg, len, "gauss raster '%s': window origin (%d, %d): x0 and y0 must be multiples of %d from 0 to 2^21 pixels",
             nm, raster_bad_origin[0], raster_bad_origin[1], MF_RASTER_TILE);
    raster_bad_node = -1;
    return 1;
  }
  raster_fault f, clear = {0ull, -1, 0};
  if (cudaMemcpyFromSymbol(&f, d_raster_fault, sizeof f) != cudaSuccess) return 0;
  if (!f.pairs) return 0;
  cudaMemcpyToSymbol(d_raster_fault, &clear, sizeof clear);
  const char *name = raster_graph && f.node >= 0 && f.node < raster_graph->n ? raster_graph->nodes[f.node].name : "?";
  snprintf(msg, len, "gauss raster '%s': the Gaussians touch %llu tiles in all, more than its capacity of %d Gaussian-tile pairs "
           "(mf_raster_opts.max_pairs); raise max_pairs or lower max_radius. Its output is NaN", name, f.pairs, f.cap);
  return 1;
}

/* ------------------------------------------------------------------ table, boxes and bins */

/* W, H: the output (a window when ox, oy are set); FW, FH: the full image pos is normalised to; pixels j < Wl and
 * i < Hl of the output lie inside it */
struct rs_dims { int W, H, K, C, TX, TY, T, N, stride, ox, oy, Wl, Hl, FW, FH; };

template <typename T>
__global__ void k_rs_table(rs_dims d, const void *pos, const void *isc, const void *rot, const void *feat, int dt, const void *mask, int mt,
                           double rmax, double rmin, T *table, int32_t *boxes, int32_t *tcount) {
  MF_GRID_LOOP(g, d.N) {
    mf_gs_setup s;
    bool active = !mask || mf_gld<double>(mask, mt, g) != 0;
    int ok = active && mf_gs_setup_one(mf_gld<double>(pos, dt, 2 * g), mf_gld<double>(pos, dt, 2 * g + 1), mf_gld<double>(isc, dt, 2 * g),
                                       mf_gld<double>(isc, dt, 2 * g + 1), mf_gld<double>(rot, dt, g), d.FW, d.FH, rmax, rmin, &s);
    if (ok) mf_gs_window_box(&s, d.ox / MF_RASTER_TILE, d.oy / MF_RASTER_TILE, d.TX, d.TY);
    T *row = table + g * d.stride;
    row[0] = ok ? (T)s.cx : (T)0; row[1] = ok ? (T)s.cy : (T)0;
    row[2] = ok ? (T)s.A : (T)0; row[3] = ok ? (T)s.B : (T)0; row[4] = ok ? (T)s.C : (T)0;
    for (int c = 0; c < d.C; c++) row[5 + c] = ok ? mf_gld<T>(feat, dt, g * d.C + c) : (T)0;
    int32_t *b = boxes + 4 * g;
    if (ok && mf_gs_tiles(&s)) { b[0] = s.tx0; b[1] = s.tx1; b[2] = s.ty0; b[3] = s.ty1; }
    else { b[0] = 0; b[1] = -1; b[2] = 0; b[3] = -1; }
    if (tcount)
      for (int ty = b[2]; ty <= b[3]; ty++)
        for (int tx = b[0]; tx <= b[1]; tx++) atomicAdd(&tcount[ty * d.TX + tx], 1);
  }
}

/* one thread: exclusive scan of the tile counts; meta[0] = 1 when the total exceeds cap, meta[1] = total */
__global__ void k_rs_scan(int T, const int32_t *tcount, int32_t *tstart, int32_t *cursor, long long cap, long long *meta, int node) {
  long long t64 = 0;
  for (int t = 0; t < T; t++) t64 += tcount[t];
  meta[1] = t64;
  meta[0] = t64 > cap;
  if (t64 > cap) {
    unsigned long long prev = atomicMax(&d_raster_fault.pairs, (unsigned long long)t64);
    if (prev < (unsigned long long)t64) { d_raster_fault.node = node; d_raster_fault.cap = (int)cap; }
    return;
  }
  int32_t acc = 0;
  for (int t = 0; t < T; t++) { tstart[t] = acc; cursor[t] = acc; acc += tcount[t]; }
  tstart[T] = acc;
}

__global__ void k_rs_fill(rs_dims d, const int32_t *boxes, int32_t *cursor, int32_t *list, const long long *meta) {
  if (meta[0]) return;
  MF_GRID_LOOP(g, d.N) {
    const int32_t *b = boxes + 4 * g;
    for (int ty = b[2]; ty <= b[3]; ty++)
      for (int tx = b[0]; tx <= b[1]; tx++) list[atomicAdd(&cursor[ty * d.TX + tx], 1)] = (int32_t)g;
  }
}

/* ------------------------------------------------------------------ per pixel */

template <typename T> __device__ __forceinline__ T rs_sigma(const T *t, T x, T y) {
  T dx = x - t[0], dy = y - t[1];
  return (T)0.5 * (t[2] * dx * dx + t[4] * dy * dy) + t[3] * dx * dy;
}

/* the pixel's selection, best first (smallest sigma, then id; ops/raster.h): from its tile's list, or the
 * kept ids; wv gets the weights exp(-sigma) */
template <typename T>
__device__ int rs_pixel_sel(const rs_dims &d, const T *table, const int32_t *tstart, const int32_t *list, const int32_t *ids, int i, int j,
                            T *wv, int32_t *wi) {
  int n = 0;
  if (i >= d.Hl || j >= d.Wl) return 0; /* outside the full image: nothing drawn */
  T px = (T)(j + d.ox), py = (T)(i + d.oy);
  if (ids) {
    for (int k = 0; k < d.K && ids[k] >= 0; k++) { wi[n] = ids[k]; wv[n++] = rs_sigma<T>(table + (int64_t)ids[k] * d.stride, px, py); }
  } else {
    int t = (i / MF_RASTER_TILE) * d.TX + j / MF_RASTER_TILE;
    for (int l = tstart[t]; l < tstart[t + 1]; l++) {
      int32_t g = list[l];
      T s = rs_sigma<T>(table + (int64_t)g * d.stride, px, py);
      if (n == d.K && !mf_gs_before(s, g, wv[d.K - 1], wi[d.K - 1])) continue;
      int p = n < d.K ? n++ : d.K - 1;
      while (p > 0 && mf_gs_before(s, g, wv[p - 1], wi[p - 1])) { wv[p] = wv[p - 1]; wi[p] = wi[p - 1]; p--; }
      wv[p] = s;
      wi[p] = g;
    }
  }
  for (int k = 0; k < n; k++) wv[k] = exp(-wv[k]);
  return n;
}

/* ids [H,W,K] (-1 padded) */
template <typename T>
__global__ void k_rs_topk(rs_dims d, const T *table, const int32_t *tstart, const int32_t *list, const long long *meta, int32_t *out) {
  MF_GRID_LOOP(p, (int64_t)d.H * d.W) {
    int i = (int)(p / d.W), j = (int)(p % d.W);
    T wv[MF_RASTER_MAX_K];
    int32_t wi[MF_RASTER_MAX_K];
    int n = meta[0] ? 0 : rs_pixel_sel<T>(d, table, tstart, list, NULL, i, j, wv, wi);
    for (int k = 0; k < d.K; k++) out[p * d.K + k] = k < n ? wi[k] : -1;
  }
}

/* image [C,H,W]; pix (optional): per pixel sum w + eps and dy . colour (dy given) */
template <typename T>
__global__ void k_rs_image(rs_dims d, const T *table, const int32_t *tstart, const int32_t *list, const int32_t *topk, const long long *meta,
                           void *out, int ot, const void *dy, int dyt, T *pix) {
  int64_t HW = (int64_t)d.H * d.W;
  MF_GRID_LOOP(p, HW) {
    int i = (int)(p / d.W), j = (int)(p % d.W);
    T wv[MF_RASTER_MAX_K];
    int32_t wi[MF_RASTER_MAX_K];
    if (meta && meta[0]) {
      if (out) for (int c = 0; c < d.C; c++) mf_gst<T>(out, ot, c * HW + p, (T)NAN);
      continue;
    }
    int n = rs_pixel_sel<T>(d, table, tstart, list, topk ? topk + p * d.K : NULL, i, j, wv, wi);
    T S = 0, q = 0;
    for (int k = 0; k < n; k++) S += wv[k];
    S += (T)MF_RASTER_EPS;
    for (int c = 0; c < d.C; c++) {
      T num = 0;
      for (int k = 0; k < n; k++) num += wv[k] * table[(int64_t)wi[k] * d.stride + 5 + c];
      T col = num / S;
      if (out) mf_gst<T>(out, ot, c * HW + p, col);
      if (dy) q += mf_gld<T>(dy, dyt, c * HW + p) * col;
    }
    if (pix) { pix[2 * p] = S; pix[2 * p + 1] = q; }
  }
}

/* one thread per Gaussian: the pixels of its box that selected it, in row order -> out row [5+C] */
template <typename T>
__global__ void k_rs_grad(rs_dims d, const T *table, const int32_t *boxes, const int32_t *ids, const T *pix, const void *dy, int dyt,
                          const void *pos, const void *isc, const void *rot, int dt, double rmax, double rmin, const long long *meta,
                          void *out, int ot) {
  int64_t HW = (int64_t)d.H * d.W;
  MF_GRID_LOOP(g, d.N) {
    double s[5 + MF_RASTER_MAX_C];
    for (int c = 0; c < d.stride; c++) s[c] = 0;
    const int32_t *b = boxes + 4 * g;
    const T *tg = table + g * d.stride;
    bool bad = meta && meta[0];
    int i0 = b[2] * MF_RASTER_TILE, i1 = min((b[3] + 1) * MF_RASTER_TILE, d.H);
    int j0 = b[0] * MF_RASTER_TILE, j1 = min((b[1] + 1) * MF_RASTER_TILE, d.W);
    for (int i = i0; i < i1 && !bad; i++)
      for (int j = j0; j < j1; j++) {
        int64_t p = (int64_t)i * d.W + j;
        bool hit = false;
        for (int k = 0; k < d.K && ids[p * d.K + k] >= 0 && !hit; k++) hit = ids[p * d.K + k] == (int32_t)g;
        if (!hit) continue;
        T S = pix[2 * p], q = pix[2 * p + 1];
        T ddx = (T)(j + d.ox) - tg[0], ddy = (T)(i + d.oy) - tg[1];
        T w = exp(-rs_sigma<T>(tg, (T)(j + d.ox), (T)(i + d.oy))), df = 0;
        for (int c = 0; c < d.C; c++) {
          T dyc = mf_gld<T>(dy, dyt, c * HW + p);
          df += dyc * tg[5 + c];
          s[5 + c] += dyc * w / S;
        }
        T dsig = -w * (df - q) / S;
        s[0] += dsig * (T)0.5 * ddx * ddx;
        s[1] += dsig * ddx * ddy;
        s[2] += dsig * (T)0.5 * ddy * ddy;
        s[3] -= dsig * (tg[2] * ddx + tg[3] * ddy);
        s[4] -= dsig * (tg[3] * ddx + tg[4] * ddy);
      }
    double o[5 + MF_RASTER_MAX_C];
    for (int c = 0; c < d.stride; c++) o[c] = bad ? (double)NAN : 0.0;
    mf_gs_setup u;
    if (!bad && b[0] <= b[1] &&
        mf_gs_setup_one(mf_gld<double>(pos, dt, 2 * g), mf_gld<double>(pos, dt, 2 * g + 1), mf_gld<double>(isc, dt, 2 * g),
                        mf_gld<double>(isc, dt, 2 * g + 1), mf_gld<double>(rot, dt, g), d.FW, d.FH, rmax, rmin, &u)) {
      double a2 = u.a * u.a, b2 = u.b * u.b, cs = u.c * u.s, cc = u.c * u.c, ss = u.s * u.s;
      o[0] = s[3] * d.FW;
      o[1] = s[4] * d.FH;
      o[2] = u.ga * 2 * u.a * (s[0] * cc + s[1] * cs + s[2] * ss);
      o[3] = u.gb * 2 * u.b * (s[0] * ss - s[1] * cs + s[2] * cc);
      o[4] = s[0] * 2 * (b2 - a2) * cs + s[1] * (a2 - b2) * (cc - ss) + s[2] * 2 * (a2 - b2) * cs;
      for (int c = 0; c < d.C; c++) o[5 + c] = s[5 + c];
    }
    for (int c = 0; c < d.stride; c++) mf_gst<double>(out, ot, g * d.stride + c, o[c]);
  }
}

/* ------------------------------------------------------------------ launchers */

typedef struct rs_run {
  rs_dims d;
  rs_layout L;
  char *ws;
  const long long *meta;
} rs_run;

/* table, boxes and (when the node selects) bins */
static void rs_prepare(const mf_kctx *k, const mf_node *n, void *const *src, void *ws, rs_run *r) {
  cudaStream_t st = mf_cuda_stream(k);
  const mf_node *pos = mf_csrc(k, n, 0);
  int hasfeat = n->op == MF_OP_GAUSS_RASTER || n->op == MF_OP_GAUSS_RASTER_BWD;
  r->L = rs_plan(k->g, n);
  rs_dims &d = r->d;
  d.W = n->ip[MF_RIP_W]; d.H = n->ip[MF_RIP_H]; d.K = n->ip[MF_RIP_K];
  d.C = hasfeat ? (int)mf_csrc(k, n, 3)->ne[1] : 0;
  d.TX = (d.W + 15) / 16; d.TY = (d.H + 15) / 16; d.T = d.TX * d.TY;
  d.N = (int)pos->ne[0]; d.stride = 5 + d.C;
  d.FW = (int)n->fp[2]; d.FH = (int)n->fp[3]; d.ox = d.oy = 0;
  if (n->ip[MF_RIP_ORIGIN] >= 0) { /* the window origin, an input in device memory: read it here (one small copy) */
    int32_t org[2] = {0, 0};
    mf_cuda_note(cudaMemcpyAsync(org, src[n->ip[MF_RIP_ORIGIN]], sizeof org, cudaMemcpyDeviceToHost, st), "gauss raster");
    mf_cuda_note(cudaStreamSynchronize(st), "gauss raster");
    if (org[0] < 0 || org[1] < 0 || org[0] % MF_RASTER_TILE || org[1] % MF_RASTER_TILE || org[0] > (1 << 21) || org[1] > (1 << 21)) {
      raster_bad_origin[0] = org[0]; raster_bad_origin[1] = org[1]; raster_bad_node = (int)(n - k->g->nodes);
      raster_pending = true; raster_graph = k->g;
      d.ox = d.FW; d.oy = d.FH; /* draws nothing; the sync reports the origin */
    } else { d.ox = org[0]; d.oy = org[1]; }
  }
  d.Wl = d.FW - d.ox < d.W ? d.FW - d.ox : d.W;
  d.Hl = d.FH - d.oy < d.H ? d.FH - d.oy : d.H;
  r->ws = (char *)ws;
  long long *meta = (long long *)(r->ws + r->L.meta);
  r->meta = meta;
  mf_cuda_note(cudaMemsetAsync(meta, 0, 2 * sizeof(long long), st), "gauss raster");
  int mi = n->ip[MF_RIP_MASK];
  const void *mask = mi >= 0 ? src[mi] : NULL;
  int mt = mi >= 0 ? mf_csrc(k, n, mi)->dtype : MF_F32;
  int32_t *tcount = r->L.bins ? (int32_t *)(r->ws + r->L.tcount) : NULL;
  if (tcount) mf_cuda_note(cudaMemsetAsync(tcount, 0, (size_t)d.T * sizeof(int32_t), st), "gauss raster");
  int32_t *boxes = (int32_t *)(r->ws + r->L.boxes);
  const void *feat = hasfeat ? src[3] : NULL;
  if (r->L.real64)
    k_rs_table<double><<<mf_blocks(d.N), MF_THREADS, 0, st>>>(d, src[0], src[1], src[2], feat, pos->dtype, mask, mt, n->fp[0], n->fp[1],
                                                              (double *)(r->ws + r->L.table), boxes, tcount);
  else
    k_rs_table<float><<<mf_blocks(d.N), MF_THREADS, 0, st>>>(d, src[0], src[1], src[2], feat, pos->dtype, mask, mt, n->fp[0], n->fp[1],
                                                             (float *)(r->ws + r->L.table), boxes, tcount);
  if (r->L.bins) {
    raster_pending = true;
    raster_graph = k->g;
    int32_t *tstart = (int32_t *)(r->ws + r->L.tstart), *cursor = (int32_t *)(r->ws + r->L.cursor);
    k_rs_scan<<<1, 1, 0, st>>>(d.T, tcount, tstart, cursor, (long long)n->ip[MF_RIP_CAP], meta, (int)(n - k->g->nodes));
    k_rs_fill<<<mf_blocks(d.N), MF_THREADS, 0, st>>>(d, boxes, cursor, (int32_t *)(r->ws + r->L.list), meta);
  }
}

#define RS_TABLE(T, r) ((const T *)((r).ws + (r).L.table))
#define RS_TSTART(r) ((r).L.bins ? (const int32_t *)((r).ws + (r).L.tstart) : (const int32_t *)NULL)
#define RS_LIST(r) ((r).L.bins ? (const int32_t *)((r).ws + (r).L.list) : (const int32_t *)NULL)

extern "C" void mf_cuda_gauss_topk(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  rs_run r;
  rs_prepare(k, n, src, ws, &r);
  int64_t HW = (int64_t)r.d.H * r.d.W;
  cudaStream_t st = mf_cuda_stream(k);
  if (r.L.real64) k_rs_topk<double><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(double, r), RS_TSTART(r), RS_LIST(r), r.meta, (int32_t *)out);
  else k_rs_topk<float><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(float, r), RS_TSTART(r), RS_LIST(r), r.meta, (int32_t *)out);
  MF_CUDA_LAUNCHED("gauss_topk");
}

extern "C" void mf_cuda_gauss_raster(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  rs_run r;
  rs_prepare(k, n, src, ws, &r);
  int64_t HW = (int64_t)r.d.H * r.d.W;
  cudaStream_t st = mf_cuda_stream(k);
  const int32_t *topk = n->ip[MF_RIP_TOPK] >= 0 ? (const int32_t *)src[n->ip[MF_RIP_TOPK]] : NULL;
  if (r.L.real64)
    k_rs_image<double><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(double, r), RS_TSTART(r), RS_LIST(r), topk, r.meta, out, n->dtype,
                                                             NULL, MF_F32, (double *)NULL);
  else
    k_rs_image<float><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(float, r), RS_TSTART(r), RS_LIST(r), topk, r.meta, out, n->dtype,
                                                            NULL, MF_F32, (float *)NULL);
  MF_CUDA_LAUNCHED("gauss_raster");
}

extern "C" void mf_cuda_gauss_raster_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  rs_run r;
  rs_prepare(k, n, src, ws, &r);
  int64_t HW = (int64_t)r.d.H * r.d.W;
  cudaStream_t st = mf_cuda_stream(k);
  const mf_node *dy = mf_csrc(k, n, 4), *pos = mf_csrc(k, n, 0);
  const int32_t *ids = n->ip[MF_RIP_TOPK] >= 0 ? (const int32_t *)src[n->ip[MF_RIP_TOPK]] : (const int32_t *)(r.ws + r.L.sel);
  const int32_t *boxes = (const int32_t *)(r.ws + r.L.boxes);
  if (r.L.real64) {
    if (n->ip[MF_RIP_TOPK] < 0)
      k_rs_topk<double><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(double, r), RS_TSTART(r), RS_LIST(r), r.meta, (int32_t *)ids);
    double *pix = (double *)(r.ws + r.L.pix);
    k_rs_image<double><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(double, r), NULL, NULL, ids, NULL, NULL, MF_F32, src[4], dy->dtype, pix);
    k_rs_grad<double><<<mf_blocks(r.d.N), MF_THREADS, 0, st>>>(r.d, RS_TABLE(double, r), boxes, ids, pix, src[4], dy->dtype, src[0], src[1], src[2],
                                                               pos->dtype, n->fp[0], n->fp[1], r.meta, out, n->dtype);
  } else {
    if (n->ip[MF_RIP_TOPK] < 0)
      k_rs_topk<float><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(float, r), RS_TSTART(r), RS_LIST(r), r.meta, (int32_t *)ids);
    float *pix = (float *)(r.ws + r.L.pix);
    k_rs_image<float><<<mf_blocks(HW), MF_THREADS, 0, st>>>(r.d, RS_TABLE(float, r), NULL, NULL, ids, NULL, NULL, MF_F32, src[4], dy->dtype, pix);
    k_rs_grad<float><<<mf_blocks(r.d.N), MF_THREADS, 0, st>>>(r.d, RS_TABLE(float, r), boxes, ids, pix, src[4], dy->dtype, src[0], src[1], src[2],
                                                              pos->dtype, n->fp[0], n->fp[1], r.meta, out, n->dtype);
  }
  MF_CUDA_LAUNCHED("gauss_raster_bwd");
}

/* one thread: the counts in Gaussian order (integers: any order gives the same) */
__global__ void k_rs_stats(rs_dims d, const void *pos, const void *isc, const void *rot, int dt, const void *mask, int mt, double rmax,
                           double rmin, int32_t *out) {
  long long v[MF_RSTAT_COUNT] = {0, 0, 0, 0, 0};
  for (int64_t g = 0; g < d.N; g++) {
    if (mask && mf_gld<double>(mask, mt, g) == 0) continue;
    v[MF_RSTAT_ACTIVE]++;
    mf_gs_setup u;
    if (!mf_gs_setup_one(mf_gld<double>(pos, dt, 2 * g), mf_gld<double>(pos, dt, 2 * g + 1), mf_gld<double>(isc, dt, 2 * g),
                         mf_gld<double>(isc, dt, 2 * g + 1), mf_gld<double>(rot, dt, g), d.W, d.H, rmax, rmin, &u)) {
      v[MF_RSTAT_SKIPPED]++;
      continue;
    }
    v[MF_RSTAT_CLAMP_LARGE] += u.clamp_large;
    v[MF_RSTAT_CLAMP_SMALL] += u.clamp_small;
    v[MF_RSTAT_PAIRS] += mf_gs_tiles(&u);
  }
  for (int i = 0; i < MF_RSTAT_COUNT; i++) out[i] = v[i] > 2147483647ll ? 2147483647 : (int32_t)v[i];
}

extern "C" void mf_cuda_gauss_stats(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *pos = mf_csrc(k, n, 0);
  rs_dims d;
  memset(&d, 0, sizeof d);
  d.W = n->ip[MF_RIP_W]; d.H = n->ip[MF_RIP_H]; d.N = (int)pos->ne[0];
  int mi = n->ip[MF_RIP_MASK];
  k_rs_stats<<<1, 1, 0, mf_cuda_stream(k)>>>(d, src[0], src[1], src[2], pos->dtype, mi >= 0 ? src[mi] : NULL,
                                             mi >= 0 ? mf_csrc(k, n, mi)->dtype : MF_F32, n->fp[0], n->fp[1], (int32_t *)out);
  MF_CUDA_LAUNCHED("gauss_stats");
}

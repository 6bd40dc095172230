/* shape.cu — CUDA kernels of concat, slice (+ its zero-padding backward), reshape, permute, reduce
 * (sums in double in an order fixed by the shapes alone, so results are the same every run) and
 * expand. Contiguous row copies go through cudaMemcpy2DAsync. */
#include "backend/cuda/common.cuh"

/* prod(ne[0..ax)) and prod(ne[ax+1..]) */
static void outer_inner(const mf_node *n, int ax, int64_t *outer, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= n->ne[i];
  for (int i = ax + 1; i < n->ndim; i++) *inner *= n->ne[i];
}

/* rows x width bytes from src (row pitch spitch) to dst (pitch dpitch), on stream s */
static void copy_rows(char *dst, size_t dpitch, const char *src, size_t spitch, size_t width, int64_t rows, cudaStream_t s) {
  if (!width || rows <= 0) return;
  cudaError_t e;
  if (rows == 1 || (dpitch == width && spitch == width)) e = cudaMemcpyAsync(dst, src, width * (size_t)rows, cudaMemcpyDeviceToDevice, s);
  else if (dpitch < ((size_t)1 << 31) && spitch < ((size_t)1 << 31)) /* below every device's maximum pitch */
    e = cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, (size_t)rows, cudaMemcpyDeviceToDevice, s);
  else
    for (int64_t r = 0; r < rows && (e = cudaMemcpyAsync(dst + (size_t)r * dpitch, src + (size_t)r * spitch, width, cudaMemcpyDeviceToDevice, s)) == cudaSuccess; r++) {}
  mf_cuda_note(e, "row copy");
}
static void zero_rows(char *dst, size_t dpitch, size_t width, int64_t rows, cudaStream_t s) {
  if (!width || rows <= 0) return;
  cudaError_t e;
  if (rows == 1 || dpitch == width) e = cudaMemsetAsync(dst, 0, width * (size_t)rows, s);
  else if (dpitch < ((size_t)1 << 31)) e = cudaMemset2DAsync(dst, dpitch, 0, width, (size_t)rows, s);
  else
    for (int64_t r = 0; r < rows && (e = cudaMemsetAsync(dst + (size_t)r * dpitch, 0, width, s)) == cudaSuccess; r++) {}
  mf_cuda_note(e, "row zero");
}

/* out [.., sum L_i, ..] = inputs [.., L_i, ..] side by side along ip0 (all share the dtype) */
extern "C" void mf_cuda_concat(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  int ax = n->ip[0];
  int64_t outer, inner, Lout = n->ne[ax], off = 0;
  outer_inner(n, ax, &outer, &inner);
  size_t esz = mf_dtype_size(n->dtype);
  cudaStream_t s = mf_cuda_stream(k);
  for (int i = 0; i < n->nsrc; i++) {
    int64_t L = mf_csrc(k, n, i)->ne[ax];
    copy_rows((char *)out + (size_t)(off * inner) * esz, (size_t)(Lout * inner) * esz, (const char *)src[i], (size_t)(L * inner) * esz,
              (size_t)(L * inner) * esz, outer, s);
    off += L;
  }
}

/* out [.., end-start, ..] = src [.., start:end, ..] along ip0 */
extern "C" void mf_cuda_slice(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  int ax = n->ip[0];
  int64_t outer, inner, L = x->ne[ax], start = n->ip[1], len = n->ne[ax];
  outer_inner(n, ax, &outer, &inner);
  size_t esz = mf_dtype_size(n->dtype);
  copy_rows((char *)out, (size_t)(len * inner) * esz, (const char *)src[0] + (size_t)(start * inner) * esz, (size_t)(L * inner) * esz,
            (size_t)(len * inner) * esz, outer, mf_cuda_stream(k));
}

/* out [.., L, ..] = zeros with dy [.., len, ..] at [start, start+len) along ip0 (0 bytes are 0.0) */
extern "C" void mf_cuda_slice_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *d = mf_csrc(k, n, 0);
  int ax = n->ip[0];
  int64_t outer, inner, L = n->ne[ax], start = n->ip[1], len = d->ne[ax];
  outer_inner(n, ax, &outer, &inner);
  size_t esz = mf_dtype_size(n->dtype), row = (size_t)(L * inner) * esz;
  size_t before = (size_t)(start * inner) * esz, mid = (size_t)(len * inner) * esz, after = row - before - mid;
  cudaStream_t s = mf_cuda_stream(k);
  zero_rows((char *)out, row, before, outer, s);
  copy_rows((char *)out + before, row, (const char *)src[0], mid, mid, outer, s);
  zero_rows((char *)out + before + mid, row, after, outer, s);
}

/* same bytes, new shape (a copy unless the planner made out and src the same storage) */
extern "C" void mf_cuda_reshape(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  if (out != src[0]) mf_cuda_note(cudaMemcpyAsync(out, src[0], mf_node_bytes(n), cudaMemcpyDeviceToDevice, mf_cuda_stream(k)), "reshape");
}

/* ------------------------------------------------------------------ permute */

typedef struct pshape {
  int D;
  int64_t ne[MF_MAX_DIMS], ps[MF_MAX_DIMS]; /* output dims; x's stride along each output axis */
} pshape;

template <typename E> __global__ void k_permute(E *y, const E *x, pshape s, int64_t n) {
  MF_GRID_LOOP(i, n) {
    int64_t r = i, xo = 0;
    for (int d = s.D - 1; d >= 0; d--) {
      xo += (r % s.ne[d]) * s.ps[d];
      r /= s.ne[d];
    }
    y[i] = x[xo];
  }
}

/* out[i0..iD] = x[index with axis perm[j] = i_j] (ip0..4 = perm) */
extern "C" void mf_cuda_permute(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  pshape s;
  memset(&s, 0, sizeof s);
  int64_t xst[MF_MAX_DIMS], st = 1;
  for (int i = x->ndim - 1; i >= 0; i--) { xst[i] = st; st *= x->ne[i]; }
  s.D = n->ndim;
  for (int i = 0; i < s.D; i++) { s.ne[i] = n->ne[i]; s.ps[i] = xst[n->ip[i]]; }
  int64_t total = mf_node_numel(n);
  cudaStream_t cs = mf_cuda_stream(k);
  switch (mf_dtype_size(n->dtype)) {
  case 8: k_permute<uint64_t><<<mf_blocks(total), MF_THREADS, 0, cs>>>((uint64_t *)out, (const uint64_t *)src[0], s, total); break;
  case 4: k_permute<uint32_t><<<mf_blocks(total), MF_THREADS, 0, cs>>>((uint32_t *)out, (const uint32_t *)src[0], s, total); break;
  case 2: k_permute<uint16_t><<<mf_blocks(total), MF_THREADS, 0, cs>>>((uint16_t *)out, (const uint16_t *)src[0], s, total); break;
  default: k_permute<uint8_t><<<mf_blocks(total), MF_THREADS, 0, cs>>>((uint8_t *)out, (const uint8_t *)src[0], s, total); break;
  }
  MF_CUDA_LAUNCHED("permute");
}

/* ------------------------------------------------------------------ reduce */


/* x's dims with size-1 axes dropped and neighbours of the same kind merged, split into kept and
 * reduced (dim, stride) lists, last fastest. Shared by the kernels and the workspace size. */
typedef struct rplan {
  int nk, nr;
  int64_t kd[MF_MAX_DIMS], ks[MF_MAX_DIMS], rd[MF_MAX_DIMS], rs[MF_MAX_DIMS];
  int64_t nout, R, total;
  int inner_reduced; /* the innermost merged axis is reduced (contiguous runs) */
} rplan;

static void reduce_plan(const mf_node *x, unsigned mask, rplan *p) {
  int64_t dims[MF_MAX_DIMS];
  bool red[MF_MAX_DIMS];
  int m = 0;
  for (int i = 0; i < x->ndim; i++) {
    int64_t e = x->ne[i];
    if (e == 1) continue;
    bool r = (mask == 0) || ((mask >> i) & 1u);
    if (m && red[m - 1] == r) dims[m - 1] *= e;
    else { dims[m] = e; red[m] = r; m++; }
  }
  int64_t st[MF_MAX_DIMS], s = 1;
  for (int i = m - 1; i >= 0; i--) { st[i] = s; s *= dims[i]; }
  memset(p, 0, sizeof *p);
  p->nout = p->R = 1;
  p->total = s;
  for (int i = 0; i < m; i++) {
    if (red[i]) { p->rd[p->nr] = dims[i]; p->rs[p->nr++] = st[i]; p->R *= dims[i]; }
    else { p->kd[p->nk] = dims[i]; p->ks[p->nk++] = st[i]; p->nout *= dims[i]; }
  }
  p->inner_reduced = m > 0 && red[m - 1];
}

__device__ __forceinline__ int64_t decompose(int64_t t, int cnt, const int64_t *dim, const int64_t *st) {
  int64_t off = 0;
  for (int i = cnt - 1; i >= 0; i--) {
    off += (t % dim[i]) * st[i];
    t /= dim[i];
  }
  return off;
}

/* full reduction, pass 1: block b sums the contiguous chunk [total*b/B, total*(b+1)/B) */
__global__ void k_reduce_partial(const void *x, int xt, int64_t total, double *part) {
  __shared__ double sh[MF_THREADS];
  int64_t lo = total * blockIdx.x / MF_RED_BLOCKS, hi = total * (blockIdx.x + 1) / MF_RED_BLOCKS;
  double acc = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += MF_THREADS) acc += mf_gld<double>(x, xt, i);
  double s = mf_block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
/* pass 2: one block adds the partials in a fixed tree and stores scale * sum */
__global__ void k_reduce_final(const double *part, int np, void *y, int yt, double scale) {
  __shared__ double sh[MF_THREADS];
  double acc = 0;
  for (int i = threadIdx.x; i < np; i += MF_THREADS) acc += part[i];
  double s = mf_block_sum(acc, sh);
  if (threadIdx.x == 0) mf_gst<double>(y, yt, 0, s * scale);
}
/* one block per output: threads stride over the reduced set, then a fixed tree */
__global__ void k_reduce_rows(const void *x, int xt, void *y, int yt, rplan p, double scale) {
  __shared__ double sh[MF_THREADS];
  for (int64_t o = blockIdx.x; o < p.nout; o += gridDim.x) {
    int64_t base = decompose(o, p.nk, p.kd, p.ks);
    double acc = 0;
    for (int64_t t = threadIdx.x; t < p.R; t += MF_THREADS) acc += mf_gld<double>(x, xt, base + decompose(t, p.nr, p.rd, p.rs));
    double s = mf_block_sum(acc, sh);
    if (threadIdx.x == 0) mf_gst<double>(y, yt, o, s * scale);
  }
}
/* one thread per output, summing the reduced set in order */
__global__ void k_reduce_cols(const void *x, int xt, void *y, int yt, rplan p, double scale) {
  MF_GRID_LOOP(o, p.nout) {
    int64_t base = decompose(o, p.nk, p.kd, p.ks);
    double acc = 0;
    for (int64_t t = 0; t < p.R; t++) acc += mf_gld<double>(x, xt, base + decompose(t, p.nr, p.rd, p.rs));
    mf_gst<double>(y, yt, o, acc * scale);
  }
}

/* A full reduction needs MF_RED_BLOCKS doubles of partials; everything else none. */
static size_t reduce_ws(const mf_graph *g, const mf_node *n) {
  rplan p;
  reduce_plan(&g->nodes[n->src[0]], (unsigned)n->ip[0], &p);
  return p.nout == 1 && p.total > 1 ? mf_ws_align(MF_RED_BLOCKS * sizeof(double)) : 0;
}

/* out = fp0 * sum of x over the axes in ip0 (0: all) */
extern "C" void mf_cuda_reduce(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *x = mf_csrc(k, n, 0);
  rplan p;
  reduce_plan(x, (unsigned)n->ip[0], &p);
  double scale = n->fp[0];
  cudaStream_t s = mf_cuda_stream(k);
  if (p.nout == 1 && p.total > 1) {
    k_reduce_partial<<<MF_RED_BLOCKS, MF_THREADS, 0, s>>>(src[0], x->dtype, p.total, (double *)ws);
    k_reduce_final<<<1, MF_THREADS, 0, s>>>((const double *)ws, MF_RED_BLOCKS, out, n->dtype, scale);
  } else if (p.R >= 256 && (p.inner_reduced || p.nout < 4096)) {
    k_reduce_rows<<<mf_blocks(p.nout * MF_THREADS), MF_THREADS, 0, s>>>(src[0], x->dtype, out, n->dtype, p, scale);
  } else {
    k_reduce_cols<<<mf_blocks(p.nout), MF_THREADS, 0, s>>>(src[0], x->dtype, out, n->dtype, p, scale);
  }
  MF_CUDA_LAUNCHED("reduce");
}

/* ------------------------------------------------------------------ expand */

template <typename T> __global__ void k_expand(void *y, int yt, const void *x, int xt, bshape s, int64_t n, T scale) {
  MF_GRID_LOOP(i, n) mf_gst<T>(y, yt, i, mf_gld<T>(x, xt, b_offset(s, i)) * scale);
}

/* out = fp0 * x broadcast (x's size-1 axes, right-aligned) to the node shape */
extern "C" void mf_cuda_expand(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_csrc(k, n, 0);
  int64_t total = mf_node_numel(n);
  bshape s = broadcast_shape(n, x);
  cudaStream_t st = mf_cuda_stream(k);
  if (mf_any_f64(n->dtype, x->dtype, MF_F32))
    k_expand<double><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], x->dtype, s, total, n->fp[0]);
  else
    k_expand<float><<<mf_blocks(total), MF_THREADS, 0, st>>>(out, n->dtype, src[0], x->dtype, s, total, (float)n->fp[0]);
  MF_CUDA_LAUNCHED("expand");
}

/* ------------------------------------------------------------------ workspace of the reductions */

/* softmax_ce: per-row loss (double) and valid flag (int); loss: MF_RED_BLOCKS partials */
extern "C" size_t mf_cuda_ws_reduce(const mf_graph *g, const mf_node *n) {
  switch (n->op) {
  case MF_OP_REDUCE: return reduce_ws(g, n);
  case MF_OP_LOSS: return mf_ws_align(MF_RED_BLOCKS * sizeof(double));
  case MF_OP_SOFTMAX_CE: {
    int64_t N = g->nodes[n->src[0]].ne[0];
    return mf_ws_align((size_t)N * sizeof(double)) + mf_ws_align((size_t)N * sizeof(int32_t));
  }
  default: return 0;
  }
}

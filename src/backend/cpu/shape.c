/* shape.c (CPU) — kernels for concat, slice (+ its zero-padding backward), reshape, permute,
 * reduce (sum over axes, deterministic: double accumulators in a fixed order) and expand. */
#include "backend/cpu/cpu.h"
#include <string.h>

/* prod(ne[0..ax)) and prod(ne[ax+1..]) */
static void outer_inner(const mf_node *n, int ax, int64_t *outer, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= n->ne[i];
  for (int i = ax + 1; i < n->ndim; i++) *inner *= n->ne[i];
}

/* out [.., sum L_i, ..] = inputs [.., L_i, ..] side by side along ip0 (all inputs share the dtype) */
void mf_cpu_concat(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  int ax = n->ip[0], ns = n->nsrc;
  int64_t outer, inner, Lout = n->ne[ax];
  outer_inner(n, ax, &outer, &inner);
  size_t esz = mf_dtype_size(n->dtype);
  int64_t off[MF_MAX_SRC + 1];
  off[0] = 0;
  for (int i = 0; i < ns; i++) off[i + 1] = off[i] + mf_src(k, n, i)->ne[ax];
  /* a source the planner stored at its slice of out (plan/concat.c: one slice, outer == 1) is already in place */
  bool in_place[MF_MAX_SRC];
  for (int i = 0; i < ns; i++) in_place[i] = outer == 1 && (const char *)src[i] == (const char *)out + (size_t)(off[i] * inner) * esz;
  int64_t jobs = outer * ns;
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 65536 && jobs > 1)
  for (int64_t j = 0; j < jobs; j++) {
    int64_t o = j / ns;
    int i = (int)(j % ns);
    if (in_place[i]) continue;
    int64_t L = off[i + 1] - off[i];
    memcpy((char *)out + (size_t)((o * Lout + off[i]) * inner) * esz, (const char *)src[i] + (size_t)(o * L * inner) * esz,
           (size_t)(L * inner) * esz);
  }
}

/* out [.., end-start, ..] = src [.., start:end, ..] along ip0 */
void mf_cpu_slice(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int ax = n->ip[0];
  int64_t outer, inner, L = x->ne[ax], start = n->ip[1], len = n->ne[ax];
  outer_inner(n, ax, &outer, &inner);
  size_t esz = mf_dtype_size(n->dtype), row = (size_t)(len * inner) * esz;
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 65536 && outer > 1)
  for (int64_t o = 0; o < outer; o++)
    memcpy((char *)out + (size_t)o * row, (const char *)src[0] + (size_t)((o * L + start) * inner) * esz, row);
}

/* out [.., L, ..] = zeros, with dy [.., end-start, ..] written at [start, end) along ip0 */
void mf_cpu_slice_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *d = mf_src(k, n, 0);
  int ax = n->ip[0];
  int64_t outer, inner, L = n->ne[ax], start = n->ip[1], len = d->ne[ax];
  outer_inner(n, ax, &outer, &inner);
  size_t esz = mf_dtype_size(n->dtype);
  size_t before = (size_t)(start * inner) * esz, mid = (size_t)(len * inner) * esz;
  size_t after = (size_t)((L - start - len) * inner) * esz, row = (size_t)(L * inner) * esz;
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 65536 && outer > 1)
  for (int64_t o = 0; o < outer; o++) {
    char *y = (char *)out + (size_t)o * row;
    memset(y, 0, before); /* all-zero bytes are 0.0 in every float dtype */
    memcpy(y + before, (const char *)src[0] + (size_t)o * mid, mid);
    memset(y + before + mid, 0, after);
  }
}

/* same bytes, new shape (a copy until the planner aliases it) */
void mf_cpu_reshape(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)k; (void)ws;
  if (out != src[0]) memmove(out, src[0], mf_node_bytes(n));
}

/* out[i0..iD] = x[index with axis perm[j] = i_j]: rows of the last output axis, strided reads */
void mf_cpu_permute(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int D = n->ndim;
  int64_t xst[MF_MAX_DIMS], ps[MF_MAX_DIMS];
  mf_strides(x, xst);
  for (int i = 0; i < D; i++) ps[i] = xst[n->ip[i]];
  int64_t W = D ? n->ne[D - 1] : 1, rows = mf_node_numel(n) / W, sw = D ? ps[D - 1] : 1;
  size_t esz = mf_dtype_size(n->dtype);
  #pragma omp parallel for schedule(static) if (mf_node_numel(n) > 32768)
  for (int64_t r = 0; r < rows; r++) {
    int64_t rem = r, xo = 0;
    for (int i = D - 2; i >= 0; i--) { xo += (rem % n->ne[i]) * ps[i]; rem /= n->ne[i]; }
    char *y = (char *)out + (size_t)(r * W) * esz;
    const char *s = (const char *)src[0];
    if (sw == 1) { memcpy(y, s + (size_t)xo * esz, (size_t)W * esz); continue; }
    switch (esz) {
    case 8: for (int64_t j = 0; j < W; j++) ((uint64_t *)y)[j] = ((const uint64_t *)s)[xo + j * sw]; break;
    case 4: for (int64_t j = 0; j < W; j++) ((uint32_t *)y)[j] = ((const uint32_t *)s)[xo + j * sw]; break;
    case 2: for (int64_t j = 0; j < W; j++) ((uint16_t *)y)[j] = ((const uint16_t *)s)[xo + j * sw]; break;
    default: for (int64_t j = 0; j < W; j++) y[j] = s[xo + j * sw]; break;
    }
  }
}

/* sum of len contiguous elements from off, in double */
static double span_sum(const void *p, mf_dtype dt, int64_t off, int64_t len) {
  double s = 0;
  if (dt == MF_F32) {
    const float *f = (const float *)p + off;
    for (int64_t i = 0; i < len; i++) s += f[i];
  } else if (dt == MF_F64) {
    const double *f = (const double *)p + off;
    for (int64_t i = 0; i < len; i++) s += f[i];
  } else
    for (int64_t i = 0; i < len; i++) s += mf_ld(p, dt, off + i);
  return s;
}

/* Offset of flat index t within a list of (dim, stride) pairs, last fastest. */
static inline int64_t decompose(int64_t t, int cnt, const int64_t *dim, const int64_t *st) {
  int64_t off = 0;
  for (int i = cnt - 1; i >= 0; i--) { off += (t % dim[i]) * st[i]; t /= dim[i]; }
  return off;
}

#define RED_CHUNKS 64 /* fixed partial count for a full reduction: same result on any thread count */
#define RED_LANES 256 /* inner kept elements accumulated at once (stack doubles) */

/* out = scale * sum of x over the axes in ip0. Axes of size 1 are dropped and neighbouring axes of
 * the same kind merged, so e.g. [N,C,H,W] over N,H,W becomes dims (N)(C)(HW): red, kept, red. */
void mf_cpu_reduce(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  unsigned mask = (unsigned)n->ip[0];
  double scale = n->fp[0];
  int64_t dims[MF_MAX_DIMS];
  bool red[MF_MAX_DIMS];
  int m = 0;
  for (int i = 0; i < x->ndim; i++) {
    int64_t e = x->ne[i];
    if (e == 1) continue;
    bool r = (mask >> i) & 1u;
    if (m && red[m - 1] == r) dims[m - 1] *= e;
    else { dims[m] = e; red[m] = r; m++; }
  }
  const void *xp = src[0];
  mf_dtype xt = x->dtype, ot = n->dtype;
  if (m == 0) { mf_st(out, ot, 0, mf_ld(xp, xt, 0) * scale); return; }
  int64_t st[MF_MAX_DIMS], s = 1;
  for (int i = m - 1; i >= 0; i--) { st[i] = s; s *= dims[i]; }
  int64_t total = s, nout = mf_node_numel(n);

  if (nout == 1) { /* everything reduced: contiguous, fixed chunks */
    double part[RED_CHUNKS];
    int64_t chunk = (total + RED_CHUNKS - 1) / RED_CHUNKS;
    #pragma omp parallel for schedule(static) if (total > 65536)
    for (int c = 0; c < RED_CHUNKS; c++) {
      int64_t a = c * chunk, b = a + chunk < total ? a + chunk : total;
      part[c] = a < b ? span_sum(xp, xt, a, b - a) : 0;
    }
    double acc = 0;
    for (int c = 0; c < RED_CHUNKS; c++) acc += part[c];
    mf_st(out, ot, 0, acc * scale);
    return;
  }

  /* kept and reduced (dim, stride) lists; the innermost run is handled apart */
  int64_t kd[MF_MAX_DIMS], ks[MF_MAX_DIMS], rd[MF_MAX_DIMS], rs[MF_MAX_DIMS];
  int nk = 0, nr = 0;
  for (int i = 0; i < m - 1; i++) {
    if (red[i]) { rd[nr] = dims[i]; rs[nr++] = st[i]; }
    else { kd[nk] = dims[i]; ks[nk++] = st[i]; }
  }
  int64_t rcount = 1;
  for (int i = 0; i < nr; i++) rcount *= rd[i];

  if (red[m - 1]) { /* innermost reduced: each output sums rcount contiguous runs of L */
    int64_t L = dims[m - 1];
    #pragma omp parallel for schedule(static) if (total > 32768 && nout > 1)
    for (int64_t o = 0; o < nout; o++) {
      int64_t base = decompose(o, nk, kd, ks);
      double acc = 0;
      for (int64_t t = 0; t < rcount; t++) acc += span_sum(xp, xt, base + decompose(t, nr, rd, rs), L);
      mf_st(out, ot, o, acc * scale);
    }
    return;
  }

  /* innermost kept (K contiguous outputs): add rows of K, in lanes of at most RED_LANES */
  int64_t K = dims[m - 1], nko = nout / K, nch = (K + RED_LANES - 1) / RED_LANES;
  #pragma omp parallel for schedule(static) if (total > 32768 && nko * nch > 1)
  for (int64_t job = 0; job < nko * nch; job++) {
    int64_t ko = job / nch, j0 = (job % nch) * RED_LANES, j1 = j0 + RED_LANES < K ? j0 + RED_LANES : K;
    int64_t base = decompose(ko, nk, kd, ks) + j0, w = j1 - j0;
    double acc[RED_LANES];
    for (int64_t j = 0; j < w; j++) acc[j] = 0;
    for (int64_t t = 0; t < rcount; t++) {
      int64_t o = base + decompose(t, nr, rd, rs);
      if (xt == MF_F32) { const float *f = (const float *)xp + o; for (int64_t j = 0; j < w; j++) acc[j] += f[j]; }
      else for (int64_t j = 0; j < w; j++) acc[j] += mf_ld(xp, xt, o + j);
    }
    for (int64_t j = 0; j < w; j++) mf_st(out, ot, ko * K + j0 + j, acc[j] * scale);
  }
}

/* out = scale * x broadcast (x's size-1 axes, right-aligned) to the node shape */
void mf_cpu_expand(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *x = mf_src(k, n, 0);
  int D = n->ndim, off = D - x->ndim;
  int64_t bst[MF_MAX_DIMS] = {0}, s = 1;
  for (int i = D - 1; i >= off; i--) {
    int64_t e = x->ne[i - off];
    bst[i] = e == 1 ? 0 : s;
    s *= e;
  }
  int64_t total = mf_node_numel(n), W = D ? n->ne[D - 1] : 1, rows = total / W, inner = D ? bst[D - 1] : 0;
  double scale = n->fp[0];
  bool f32 = n->dtype == MF_F32 && x->dtype == MF_F32;
  #pragma omp parallel for schedule(static) if (total > 32768)
  for (int64_t r = 0; r < rows; r++) {
    int64_t rem = r, xo = 0;
    for (int i = D - 2; i >= 0; i--) { xo += (rem % n->ne[i]) * bst[i]; rem /= n->ne[i]; }
    if (f32) {
      const float *a = (const float *)src[0] + xo;
      float *y = (float *)out + r * W, sc = (float)scale;
      if (inner) for (int64_t j = 0; j < W; j++) y[j] = a[j] * sc;
      else { float v = a[0] * sc; for (int64_t j = 0; j < W; j++) y[j] = v; }
    } else {
      for (int64_t j = 0; j < W; j++) mf_st(out, n->dtype, r * W + j, mf_ld(src[0], x->dtype, xo + j * inner) * scale);
    }
  }
}

/* attention.c (CPU) — fused attention (forward, kept probabilities, backward) and the VQ nearest-code
 * search on OpenBLAS GEMMs over tiles of rows, with the exact workspace each node needs.
 *
 * Compute type: f64 when the node's output (VQ: z) is f64, else f32. Operands stored in another dtype
 * are converted into workspace one batch item at a time; softmax and the row arithmetic run with OpenMP
 * over the rows of a tile, GEMMs on OpenBLAS's own threads. Items and tiles run in order, so the results
 * do not depend on the thread count, nor does the workspace. */
#include "backend/cpu/cpu.h"
#include "ops/attention.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

#define WS_ALIGN 64
static size_t align_up(size_t b) { return (b + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }
static mf_dtype ct_of(mf_dtype t) { return t == MF_F64 ? MF_F64 : MF_F32; }
static void *at(void *p, mf_dtype ct, int64_t i) { return (char *)p + (size_t)i * mf_dtype_size(ct); }
static const void *cat(const void *p, mf_dtype ct, int64_t i) { return (const char *)p + (size_t)i * mf_dtype_size(ct); }
/* a region of the workspace (NULL when the node needs none: no arithmetic on a null pointer) */
static void *wsp(char *ws, size_t off) { return ws ? ws + off : NULL; }

/* Row-major C[M,N] = alpha op(A) op(B) + beta C in the compute type. */
static void gemm(mf_dtype ct, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, const void *A, int64_t lda,
                 const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
  if (ct == MF_F64)
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K,
                alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
  else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K,
                (float)alpha, A, (blasint)lda, B, (blasint)ldb, (float)beta, C, (blasint)ldc);
}

/* n elements: dst (dtype dt) = src (dtype st) from element soff, in parallel */
static void convert(void *dst, mf_dtype dt, const void *src, mf_dtype st, int64_t soff, int64_t n) {
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) mf_st(dst, dt, i, mf_ld(src, st, soff + i));
}
/* n elements of a compute-type buffer into `out` (dtype dt) from element doff on */
static void store(void *out, mf_dtype dt, int64_t doff, const void *src, mf_dtype ct, int64_t n) {
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) mf_st(out, dt, doff + i, mf_ld(src, ct, i));
}

/* The operand `src` (dtype st) of item b, n elements each: itself when st is the compute type, else
 * converted into `buf`. */
static const void *operand(const void *src, mf_dtype st, int64_t b, int64_t n, mf_dtype ct, void *buf) {
  if (st == ct) return cat(src, ct, b * n);
  convert(buf, ct, src, st, b * n, n);
  return buf;
}

/* In place, rows of S [t, nk]: softmax along the row. */
static void softmax_rows(mf_dtype ct, void *S, int64_t t, int64_t nk) {
  #pragma omp parallel for schedule(static) if (t * nk > 32768)
  for (int64_t i = 0; i < t; i++) {
    if (ct == MF_F64) {
      double *r = (double *)S + i * nk, m = r[0], s = 0;
      for (int64_t j = 1; j < nk; j++) m = r[j] > m ? r[j] : m;
      for (int64_t j = 0; j < nk; j++) { r[j] = exp(r[j] - m); s += r[j]; }
      for (int64_t j = 0; j < nk; j++) r[j] /= s;
    } else {
      float *r = (float *)S + i * nk, m = r[0];
      double s = 0;
      for (int64_t j = 1; j < nk; j++) m = r[j] > m ? r[j] : m;
      for (int64_t j = 0; j < nk; j++) { r[j] = expf(r[j] - m); s += r[j]; }
      float inv = (float)(1 / s);
      for (int64_t j = 0; j < nk; j++) r[j] *= inv;
    }
  }
}

/* ---- workspace layouts (every region only when needed; offsets in bytes) ---- */

typedef struct attn_ws {
  size_t q, k, v, dy, p, acc, s, dp, total; /* conversions of q, k, v, dy, probs; f-type accumulator; tiles */
} attn_ws;

static void attn_layout(const mf_graph *g, const mf_node *n, attn_ws *w) {
  mf_attn_geo a;
  mf_attn_geometry(g, n, &a);
  mf_dtype ct = ct_of(n->dtype);
  size_t es = mf_dtype_size(ct), o = 0;
  const mf_node *q = &g->nodes[n->src[0]], *k = &g->nodes[n->src[1]];
  int ps = n->op == MF_OP_ATTN_PROBS ? -1 : mf_attn_probs_src(n);
  memset(w, 0, sizeof *w);
  w->q = o; if (q->dtype != ct) o += align_up((size_t)(a.Nq * a.D) * es);
  w->k = o; if (k->dtype != ct) o += align_up((size_t)(a.Nk * a.D) * es);
  w->v = o;
  if (n->op != MF_OP_ATTN_PROBS && g->nodes[n->src[2]].dtype != ct) o += align_up((size_t)(a.Nk * a.D) * es);
  w->dy = o;
  if (n->op == MF_OP_ATTENTION_BWD && g->nodes[n->src[3]].dtype != ct) o += align_up((size_t)(a.Nq * a.D) * es);
  w->p = o;
  if (ps >= 0 && g->nodes[ps].dtype != ct) o += align_up((size_t)(a.T * a.Nk) * es);
  w->acc = o;
  if (n->op == MF_OP_ATTENTION && n->dtype != ct) o += align_up((size_t)(a.T * a.D) * es);
  if (n->op == MF_OP_ATTENTION_BWD && n->dtype != ct) o += align_up((size_t)((a.Nq + 2 * a.Nk) * a.D) * es);
  w->s = o;
  /* the score tile: ATTN_PROBS writes into its output when that is the compute type; kept probabilities
   * in the compute type are read in place */
  if (n->op == MF_OP_ATTN_PROBS ? n->dtype != ct : ps < 0) o += align_up((size_t)(a.T * a.Nk) * es);
  w->dp = o;
  if (n->op == MF_OP_ATTENTION_BWD) o += align_up((size_t)(a.T * a.Nk) * es);
  w->total = o;
}

size_t mf_cpu_ws_attention(const mf_graph *g, const mf_node *n) {
  if (n->op == MF_OP_VQ_NEAREST) {
    const mf_node *z = &g->nodes[n->src[0]], *e = &g->nodes[n->src[1]];
    mf_dtype ct = ct_of(z->dtype);
    size_t es = mf_dtype_size(ct);
    int64_t N = z->ne[0], K = e->ne[0], D = e->ne[1], T = mf_vq_tile_rows(N, K);
    size_t b = align_up((size_t)K * es) + align_up((size_t)(T * K) * es);
    if (e->dtype != ct) b += align_up((size_t)(K * D) * es);
    if (z->dtype != ct) b += align_up((size_t)(T * D) * es);
    return b;
  }
  attn_ws w;
  attn_layout(g, n, &w);
  return w.total;
}

/* The probabilities of query rows [i0, i0+t) of item b into a tile: kept ones read (converted when
 * needed), else S = softmax(scale Q_t K^T). Returns the tile (row stride Nk). */
static const void *probs_tile(const mf_kctx *kc, const mf_node *n, const mf_attn_geo *a, mf_dtype ct, void *const *src,
                              const void *Q, const void *Kb, int64_t b, int64_t i0, int64_t t, char *ws, const attn_ws *w) {
  int ps = mf_attn_probs_src(n);
  if (ps >= 0) {
    int si = n->op == MF_OP_ATTENTION ? 3 : 4;
    mf_dtype pt = kc->g->nodes[ps].dtype;
    int64_t off = (b * a->Nq + i0) * a->Nk;
    if (pt == ct) return cat(src[si], ct, off);
    convert(wsp(ws, w->p), ct, src[si], pt, off, t * a->Nk);
    return wsp(ws, w->p);
  }
  void *S = wsp(ws, w->s);
  gemm(ct, 0, 1, t, a->Nk, a->D, a->scale, cat(Q, ct, i0 * a->D), a->D, Kb, a->D, 0.0, S, a->Nk);
  softmax_rows(ct, S, t, a->Nk);
  return S;
}

/* q, k -> P [B.., Nq, Nk] */
void mf_cpu_attn_probs(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  mf_attn_geo a;
  mf_attn_geometry(k->g, n, &a);
  mf_dtype ct = ct_of(n->dtype);
  attn_ws w;
  attn_layout(k->g, n, &w);
  char *wb = ws;
  const mf_node *nq = mf_src(k, n, 0), *nk = mf_src(k, n, 1);
  for (int64_t b = 0; b < a.B; b++) {
    const void *Q = operand(src[0], nq->dtype, b, a.Nq * a.D, ct, wsp(wb, w.q));
    const void *Kb = operand(src[1], nk->dtype, b, a.Nk * a.D, ct, wsp(wb, w.k));
    for (int64_t i0 = 0; i0 < a.Nq; i0 += a.T) {
      int64_t t = a.Nq - i0 < a.T ? a.Nq - i0 : a.T, off = (b * a.Nq + i0) * a.Nk;
      void *S = n->dtype == ct ? at(out, ct, off) : wsp(wb, w.s);
      gemm(ct, 0, 1, t, a.Nk, a.D, a.scale, cat(Q, ct, i0 * a.D), a.D, Kb, a.D, 0.0, S, a.Nk);
      softmax_rows(ct, S, t, a.Nk);
      if (n->dtype != ct) store(out, n->dtype, off, S, ct, t * a.Nk);
    }
  }
}

/* q, k, v[, P] -> y = softmax(scale q k^T) v [B.., Nq, D] */
void mf_cpu_attention(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  mf_attn_geo a;
  mf_attn_geometry(k->g, n, &a);
  mf_dtype ct = ct_of(n->dtype);
  attn_ws w;
  attn_layout(k->g, n, &w);
  char *wb = ws;
  const mf_node *nq = mf_src(k, n, 0), *nk = mf_src(k, n, 1), *nv = mf_src(k, n, 2);
  bool kept = mf_attn_probs_src(n) >= 0;
  for (int64_t b = 0; b < a.B; b++) {
    const void *Q = kept ? NULL : operand(src[0], nq->dtype, b, a.Nq * a.D, ct, wsp(wb, w.q));
    const void *Kb = kept ? NULL : operand(src[1], nk->dtype, b, a.Nk * a.D, ct, wsp(wb, w.k));
    const void *V = operand(src[2], nv->dtype, b, a.Nk * a.D, ct, wsp(wb, w.v));
    for (int64_t i0 = 0; i0 < a.Nq; i0 += a.T) {
      int64_t t = a.Nq - i0 < a.T ? a.Nq - i0 : a.T, off = (b * a.Nq + i0) * a.D;
      const void *P = probs_tile(k, n, &a, ct, src, Q, Kb, b, i0, t, wb, &w);
      void *Y = n->dtype == ct ? at(out, ct, off) : wsp(wb, w.acc);
      gemm(ct, 0, 0, t, a.D, a.Nk, 1.0, P, a.Nk, V, a.D, 0.0, Y, a.D);
      if (n->dtype != ct) store(out, n->dtype, off, Y, ct, t * a.D);
    }
  }
}

/* q, k, v, dy[, P] -> [B.., Nq+2Nk, D]: dq, dk, dv of item b in consecutive rows */
void mf_cpu_attention_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  mf_attn_geo a;
  mf_attn_geometry(k->g, n, &a);
  mf_dtype ct = ct_of(n->dtype);
  attn_ws w;
  attn_layout(k->g, n, &w);
  char *wb = ws;
  const mf_node *nq = mf_src(k, n, 0), *nk = mf_src(k, n, 1), *nv = mf_src(k, n, 2), *ndy = mf_src(k, n, 3);
  int64_t rows = (a.Nq + 2 * a.Nk) * a.D;
  for (int64_t b = 0; b < a.B; b++) {
    const void *Q = operand(src[0], nq->dtype, b, a.Nq * a.D, ct, wsp(wb, w.q));
    const void *Kb = operand(src[1], nk->dtype, b, a.Nk * a.D, ct, wsp(wb, w.k));
    const void *V = operand(src[2], nv->dtype, b, a.Nk * a.D, ct, wsp(wb, w.v));
    const void *DY = operand(src[3], ndy->dtype, b, a.Nq * a.D, ct, wsp(wb, w.dy));
    void *dst = n->dtype == ct ? at(out, ct, b * rows) : wsp(wb, w.acc);
    void *dq = dst, *dk = at(dst, ct, a.Nq * a.D), *dv = at(dst, ct, (a.Nq + a.Nk) * a.D);
    void *dP = wsp(wb, w.dp);
    for (int64_t i0 = 0; i0 < a.Nq; i0 += a.T) {
      int64_t t = a.Nq - i0 < a.T ? a.Nq - i0 : a.T;
      double beta = i0 == 0 ? 0.0 : 1.0;
      const void *P = probs_tile(k, n, &a, ct, src, Q, Kb, b, i0, t, wb, &w);
      const void *DYt = cat(DY, ct, i0 * a.D), *Qt = cat(Q, ct, i0 * a.D);
      gemm(ct, 1, 0, a.Nk, a.D, t, 1.0, P, a.Nk, DYt, a.D, beta, dv, a.D);   /* dv += P^T dy   [Nk, D] */
      gemm(ct, 0, 1, t, a.Nk, a.D, 1.0, DYt, a.D, V, a.D, 0.0, dP, a.Nk);    /* dP = dy v^T    [t, Nk] */
      #pragma omp parallel for schedule(static) if (t * a.Nk > 32768)
      for (int64_t i = 0; i < t; i++) { /* dS = scale P (dP - <P, dP>), in place of dP */
        if (ct == MF_F64) {
          const double *p = (const double *)P + i * a.Nk;
          double *d = (double *)dP + i * a.Nk, s = 0;
          for (int64_t j = 0; j < a.Nk; j++) s += p[j] * d[j];
          for (int64_t j = 0; j < a.Nk; j++) d[j] = a.scale * p[j] * (d[j] - s);
        } else {
          const float *p = (const float *)P + i * a.Nk;
          float *d = (float *)dP + i * a.Nk;
          double s = 0;
          for (int64_t j = 0; j < a.Nk; j++) s += (double)p[j] * d[j];
          float sf = (float)s, sc = (float)a.scale;
          for (int64_t j = 0; j < a.Nk; j++) d[j] = sc * p[j] * (d[j] - sf);
        }
      }
      gemm(ct, 0, 0, t, a.D, a.Nk, 1.0, dP, a.Nk, Kb, a.D, 0.0, at(dq, ct, i0 * a.D), a.D); /* dq = dS k   [t, D] */
      gemm(ct, 1, 0, a.Nk, a.D, t, 1.0, dP, a.Nk, Qt, a.D, beta, dk, a.D);                  /* dk += dS^T q [Nk, D] */
    }
    if (n->dtype != ct) store(out, n->dtype, b * rows, dst, ct, rows);
  }
}

/* z [N,D], codebook [K,D] -> i32 [N]: nearest row by ||e||^2 - 2 z.e over tiles of rows */
void mf_cpu_vq_nearest(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  const mf_node *z = mf_src(k, n, 0), *e = mf_src(k, n, 1);
  mf_dtype ct = ct_of(z->dtype);
  size_t es = mf_dtype_size(ct);
  int64_t N = z->ne[0], K = e->ne[0], D = e->ne[1], T = mf_vq_tile_rows(N, K);
  char *wb = ws;
  void *en = wb, *dist = wb + align_up((size_t)K * es);
  char *rest = (char *)dist + align_up((size_t)(T * K) * es);
  void *ebuf = rest, *zbuf = rest + (e->dtype != ct ? align_up((size_t)(K * D) * es) : 0);
  const void *E = operand(src[1], e->dtype, 0, K * D, ct, ebuf);
  #pragma omp parallel for schedule(static) if (K * D > 32768)
  for (int64_t c = 0; c < K; c++) {
    double s = 0;
    for (int64_t d = 0; d < D; d++) { double v = mf_ld(E, ct, c * D + d); s += v * v; }
    mf_st(en, ct, c, s);
  }
  int32_t *idx = out;
  for (int64_t r0 = 0; r0 < N; r0 += T) {
    int64_t t = N - r0 < T ? N - r0 : T;
    const void *Z = z->dtype == ct ? cat(src[0], ct, r0 * D) : (convert(zbuf, ct, src[0], z->dtype, r0 * D, t * D), zbuf);
    gemm(ct, 0, 1, t, K, D, -2.0, Z, D, E, D, 0.0, dist, K); /* -2 z e^T  [t, K] */
    #pragma omp parallel for schedule(static) if (t * K > 32768)
    for (int64_t i = 0; i < t; i++) {
      double best = mf_ld(dist, ct, i * K) + mf_ld(en, ct, 0);
      int32_t bi = 0;
      if (ct == MF_F32) best = (float)best; /* the f32 sum, as the kernel's compute type gives it */
      for (int64_t c = 1; c < K && !isnan(best); c++) {
        double v = ct == MF_F32 ? (double)((float *)dist)[i * K + c] + ((float *)en)[c] : ((double *)dist)[i * K + c] + ((double *)en)[c];
        if (ct == MF_F32) v = (float)v;
        if (v < best || isnan(v)) { best = v; bi = (int32_t)c; }
      }
      idx[r0 + i] = bi;
    }
  }
}

/* VQGAN's adaptive-weight tap (ops/adaptive.c): forward is a copy of x */
void mf_cpu_adaptive_tap(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)k; (void)ws;
  memcpy(out, src[0], mf_node_bytes(n));
}

/* value -> out, and into the state src[1] (ops/adaptive.c: lambda made readable after the step) */
void mf_cpu_state_write(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *st = mf_src(k, n, 1);
  memcpy(out, src[0], mf_node_bytes(n));
  for (int64_t i = 0; i < mf_node_numel(n); i++) mf_st(src[1], st->dtype, i, mf_ld(src[0], n->dtype, i));
}

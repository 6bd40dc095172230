/* loss.c (CPU) — MSE / L1 losses and softmax cross-entropy, forward and backward. Sums run in
 * double over a fixed number of chunks combined in order, so results do not depend on threads. */
#include "backend/cpu/cpu.h"
#include <math.h>

#define LOSS_CHUNKS 64

/* sum over [a,b) of (p-t)^2 (mse) or |p-t| (l1) */
static double span_loss(int kind, const void *p, mf_dtype pt, const void *t, mf_dtype tt, int64_t a, int64_t b) {
  double s = 0;
  if (pt == MF_F32 && tt == MF_F32) {
    const float *pf = p, *tf = t;
    if (kind == MF_LOSS_MSE) for (int64_t i = a; i < b; i++) { double d = (double)pf[i] - tf[i]; s += d * d; }
    else for (int64_t i = a; i < b; i++) s += fabs((double)pf[i] - tf[i]);
    return s;
  }
  for (int64_t i = a; i < b; i++) {
    double d = mf_ld(p, pt, i) - mf_ld(t, tt, i);
    s += kind == MF_LOSS_MSE ? d * d : fabs(d);
  }
  return s;
}

/* pred, target [...] -> [1] */
void mf_cpu_loss(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *p = mf_src(k, n, 0), *t = mf_src(k, n, 1);
  int64_t total = mf_node_numel(p), chunk = (total + LOSS_CHUNKS - 1) / LOSS_CHUNKS;
  int kind = n->ip[0];
  double part[LOSS_CHUNKS];
  #pragma omp parallel for schedule(static) if (total > 65536)
  for (int c = 0; c < LOSS_CHUNKS; c++) {
    int64_t a = c * chunk, b = a + chunk < total ? a + chunk : total;
    part[c] = a < b ? span_loss(kind, src[0], p->dtype, src[1], t->dtype, a, b) : 0;
  }
  double s = 0;
  for (int c = 0; c < LOSS_CHUNKS; c++) s += part[c];
  mf_st(out, n->dtype, 0, n->ip[1] ? s : s / (double)total);
}

/* pred, target, dL -> dpred = dL * {2(p-t) | sign(p-t)} (/ numel for the mean) */
void mf_cpu_loss_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *p = mf_src(k, n, 0), *t = mf_src(k, n, 1), *dl = mf_src(k, n, 2);
  int64_t total = mf_node_numel(n);
  int kind = n->ip[0];
  double coef = mf_ld(src[2], dl->dtype, 0) * (kind == MF_LOSS_MSE ? 2.0 : 1.0) / (n->ip[1] ? 1.0 : (double)total);
  if (n->dtype == MF_F32 && p->dtype == MF_F32 && t->dtype == MF_F32) {
    const float *pf = src[0], *tf = src[1];
    float *y = out, cf = (float)coef;
    #pragma omp parallel for schedule(static) if (total > 32768)
    for (int64_t i = 0; i < total; i++) {
      float d = pf[i] - tf[i];
      y[i] = kind == MF_LOSS_MSE ? cf * d : d > 0 ? cf : d < 0 ? -cf : 0.0f;
    }
    return;
  }
  #pragma omp parallel for schedule(static) if (total > 32768)
  for (int64_t i = 0; i < total; i++) {
    double d = mf_ld(src[0], p->dtype, i) - mf_ld(src[1], t->dtype, i);
    mf_st(out, n->dtype, i, kind == MF_LOSS_MSE ? coef * d : d > 0 ? coef : d < 0 ? -coef : 0.0);
  }
}

/* max and sum(exp(x - max)) of row r of logits [N,K] */
static void row_stats(const void *x, mf_dtype dt, int64_t off, int64_t K, double *mx, double *se) {
  double m = -INFINITY, s = 0;
  for (int64_t j = 0; j < K; j++) { double v = mf_ld(x, dt, off + j); if (v > m) m = v; }
  if (dt == MF_F32) { const float *f = (const float *)x + off; for (int64_t j = 0; j < K; j++) s += exp((double)f[j] - m); }
  else for (int64_t j = 0; j < K; j++) s += exp(mf_ld(x, dt, off + j) - m);
  *mx = m;
  *se = s;
}

/* logits [N,K], labels i32 [N] -> [1] mean over valid rows of logsumexp - logit[label] */
void mf_cpu_softmax_ce(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *l = mf_src(k, n, 0);
  int64_t N = l->ne[0], K = l->ne[1], chunk = (N + LOSS_CHUNKS - 1) / LOSS_CHUNKS;
  const int32_t *lab = src[1];
  double part[LOSS_CHUNKS];
  int64_t cnt[LOSS_CHUNKS];
  #pragma omp parallel for schedule(static) if (N * K > 32768)
  for (int c = 0; c < LOSS_CHUNKS; c++) {
    double s = 0;
    int64_t v = 0;
    for (int64_t r = c * chunk; r < (c + 1) * chunk && r < N; r++) {
      if (lab[r] < 0 || lab[r] >= K) continue;
      double m, se;
      row_stats(src[0], l->dtype, r * K, K, &m, &se);
      s += m + log(se) - mf_ld(src[0], l->dtype, r * K + lab[r]);
      v++;
    }
    part[c] = s;
    cnt[c] = v;
  }
  double s = 0;
  int64_t v = 0;
  for (int c = 0; c < LOSS_CHUNKS; c++) { s += part[c]; v += cnt[c]; }
  mf_st(out, n->dtype, 0, v ? s / (double)v : 0.0);
}

/* logits, labels, dL -> dlogits = dL / valid * (softmax - onehot(label)); ignored rows get 0 */
void mf_cpu_softmax_ce_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *l = mf_src(k, n, 0), *dl = mf_src(k, n, 2);
  int64_t N = l->ne[0], K = l->ne[1], valid = 0;
  const int32_t *lab = src[1];
  for (int64_t r = 0; r < N; r++) valid += lab[r] >= 0 && lab[r] < K;
  double coef = valid ? mf_ld(src[2], dl->dtype, 0) / (double)valid : 0.0;
  #pragma omp parallel for schedule(static) if (N * K > 32768)
  for (int64_t r = 0; r < N; r++) {
    int64_t o = r * K;
    if (lab[r] < 0 || lab[r] >= K) { for (int64_t j = 0; j < K; j++) mf_st(out, n->dtype, o + j, 0.0); continue; }
    double m, se;
    row_stats(src[0], l->dtype, o, K, &m, &se);
    double inv = coef / se;
    if (n->dtype == MF_F32 && l->dtype == MF_F32) {
      const float *x = (const float *)src[0] + o;
      float *y = (float *)out + o;
      for (int64_t j = 0; j < K; j++) y[j] = (float)(exp((double)x[j] - m) * inv);
      y[lab[r]] -= (float)coef;
    } else {
      for (int64_t j = 0; j < K; j++)
        mf_st(out, n->dtype, o + j, exp(mf_ld(src[0], l->dtype, o + j) - m) * inv - (j == lab[r] ? coef : 0.0));
    }
  }
}

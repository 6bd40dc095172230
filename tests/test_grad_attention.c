/* test_grad_attention.c — the fused attention op (mf_attention) and the tiled VQ nearest-code search
 * (mf_vq_nearest): gradients against finite differences in f64 (scores recomputed and kept), several
 * score tiles against a direct f64 evaluation, f32 against f64 within a derived bound, the workspace the
 * plan reserves, nearest codes against a brute-force search, ties, and the refusals. */
#include "gradcheck.h"
#include "graph/dtype.h"
#include "ops/attention.h"

typedef struct att_cfg { double scale; int keep; } att_cfg;
static mf_tensor build_att(mf_graph *g, const mf_tensor *in, void *c) {
  const att_cfg *a = c;
  return mf_attention(g, in[0], in[1], in[2], a->scale, a->keep);
}

static void grads(void) {
  for (int keep = 0; keep < 2; keep++) {
    att_cfg c = {0, keep};
    char nm[96];
    gc_input a[3] = {{3, {2, 5, 4}, GC_NORMAL}, {3, {2, 7, 4}, GC_NORMAL}, {3, {2, 7, 4}, GC_NORMAL}};
    snprintf(nm, sizeof nm, "attention q[2,5,4] k,v[2,7,4] %s", keep ? "kept" : "recomputed");
    gc_check(nm, 3, a, build_att, &c, 0, 1e-6);
    gc_input b[3] = {{4, {2, 2, 6, 3}, GC_NORMAL}, {4, {2, 2, 6, 3}, GC_NORMAL}, {4, {2, 2, 6, 3}, GC_NORMAL}};
    c.scale = 0.7;
    snprintf(nm, sizeof nm, "attention [2,2,6,3] heads, scale 0.7, %s", keep ? "kept" : "recomputed");
    gc_check(nm, 3, b, build_att, &c, 0, 1e-6);
    gc_input d[3] = {{2, {1, 3}, GC_NORMAL}, {2, {4, 3}, GC_NORMAL}, {2, {4, 3}, GC_NORMAL}};
    snprintf(nm, sizeof nm, "attention one query [1,3] %s", keep ? "kept" : "recomputed");
    gc_check(nm, 3, d, build_att, &c, 0, 1e-6);
  }
}

/* Runs y = attention(q,k,v) and the gradients of sum(y * w) in dtype dt on values given in double;
 * returns y and dq, dk, dv as doubles. */
typedef struct att_run { int64_t B, Nq, Nk, D; int keep; } att_run;
static void att_eval(mf_dtype dt, const att_run *s, const double *qv, const double *kv, const double *vv, const double *wv,
                     double *y, double *dq, double *dk, double *dv, size_t *ws_bytes) {
  mf_graph *g = mf_graph_init(dt);
  int64_t sq[3] = {s->B, s->Nq, s->D}, sk[3] = {s->B, s->Nk, s->D};
  mf_tensor q = mf_param(g, "q", 3, sq, MF_INIT_ZERO, 0), k = mf_param(g, "k", 3, sk, MF_INIT_ZERO, 0);
  mf_tensor v = mf_param(g, "v", 3, sk, MF_INIT_ZERO, 0), w = mf_input(g, "w", 3, sq);
  mf_tensor yy = mf_attention(g, q, k, v, 0, s->keep);
  mf_tensor loss = mf_sum(g, mf_mul(g, yy, w), 0, 0);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  if (ws_bytes) {
    *ws_bytes = 0;
    for (int id = 0; id < g->n; id++)
      if (g->nodes[id].op == MF_OP_ATTENTION || g->nodes[id].op == MF_OP_ATTENTION_BWD) {
        size_t b = mf_backend_cpu.workspace(g, &g->nodes[id]);
        if (b > *ws_bytes) *ws_bytes = b;
      }
  }
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  int ids[4] = {q, k, v, w};
  const double *vals[4] = {qv, kv, vv, wv};
  for (int i = 0; i < 4; i++) {
    const mf_node *nn = &g->nodes[ids[i]];
    leaf[ids[i]] = malloc(mf_node_bytes(nn));
    for (int64_t j = 0; j < mf_node_numel(nn); j++) mf_st(leaf[ids[i]], nn->dtype, j, vals[i][j]);
  }
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    int64_t nq = s->B * s->Nq * s->D, nk = s->B * s->Nk * s->D;
    mf_dtype gt = dt == MF_F64 ? MF_F64 : MF_F32;
    for (int64_t j = 0; j < nq; j++) y[j] = mf_ld(r.data[yy], g->nodes[yy].dtype, j);
    for (int64_t j = 0; j < nq; j++) dq[j] = mf_ld(r.data[g->nodes[q].grad], gt, j);
    for (int64_t j = 0; j < nk; j++) dk[j] = mf_ld(r.data[g->nodes[k].grad], gt, j);
    for (int64_t j = 0; j < nk; j++) dv[j] = mf_ld(r.data[g->nodes[v].grad], gt, j);
    mf_ref_free(&r);
  } else
    CHECK(0, "eval: %s", err);
  for (int i = 0; i < 4; i++) free(leaf[ids[i]]);
  free(leaf);
  mf_graph_free(g);
}

/* Direct f64 attention with its gradients (no tiles, no GEMM), and per element the sum of the absolute
 * values of the products that make it (for rounding bounds): ay, adq, adk, adv. */
static void att_direct(const att_run *s, const double *qv, const double *kv, const double *vv, const double *wv, double *y,
                       double *dq, double *dk, double *dv, double *ay, double *adq, double *adk, double *adv) {
  int64_t Nq = s->Nq, Nk = s->Nk, D = s->D;
  double sc = 1 / sqrt((double)D);
  double *P = malloc((size_t)(Nk * 2) * sizeof *P), *dS = P + Nk;
  int64_t nk = s->B * Nk * D;
  for (int64_t j = 0; j < nk; j++) dk[j] = dv[j] = adk[j] = adv[j] = 0;
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t i = 0; i < Nq; i++) {
      const double *qi = qv + (b * Nq + i) * D, *wi = wv + (b * Nq + i) * D;
      double m = -INFINITY, sum = 0, dl = 0;
      for (int64_t j = 0; j < Nk; j++) {
        double t = 0;
        for (int64_t d = 0; d < D; d++) t += qi[d] * kv[(b * Nk + j) * D + d];
        P[j] = t * sc;
        m = fmax(m, P[j]);
      }
      for (int64_t j = 0; j < Nk; j++) sum += (P[j] = exp(P[j] - m));
      for (int64_t j = 0; j < Nk; j++) P[j] /= sum;
      for (int64_t d = 0; d < D; d++) {
        double t = 0, at = 0;
        for (int64_t j = 0; j < Nk; j++) t += P[j] * vv[(b * Nk + j) * D + d], at += P[j] * fabs(vv[(b * Nk + j) * D + d]);
        y[(b * Nq + i) * D + d] = t;
        ay[(b * Nq + i) * D + d] = at;
      }
      for (int64_t j = 0; j < Nk; j++) {
        double t = 0;
        for (int64_t d = 0; d < D; d++) t += wi[d] * vv[(b * Nk + j) * D + d];
        dS[j] = t;
        dl += P[j] * t;
      }
      for (int64_t j = 0; j < Nk; j++) {
        double g = sc * P[j] * (dS[j] - dl), ag = sc * P[j] * (fabs(dS[j]) + fabs(dl));
        for (int64_t d = 0; d < D; d++) {
          dk[(b * Nk + j) * D + d] += g * qi[d];
          adk[(b * Nk + j) * D + d] += ag * fabs(qi[d]);
          dv[(b * Nk + j) * D + d] += P[j] * wi[d];
          adv[(b * Nk + j) * D + d] += P[j] * fabs(wi[d]);
        }
        dS[j] = g;
        P[j] = ag; /* reuse: |dS| bound per key */
      }
      for (int64_t d = 0; d < D; d++) {
        double t = 0, at = 0;
        for (int64_t j = 0; j < Nk; j++) t += dS[j] * kv[(b * Nk + j) * D + d], at += P[j] * fabs(kv[(b * Nk + j) * D + d]);
        dq[(b * Nq + i) * D + d] = t;
        adq[(b * Nq + i) * D + d] = at;
      }
    }
  free(P);
}

/* Several score tiles (Nq x Nk above MF_ATTN_TILE_ELEMS) in f64 and f32 against the direct f64 evaluation.
 * Bound: every result is a sum of products through exp and a softmax normalisation; with unit rounding u
 * each is within c (D + Nk + 8) u * (sum of |products|) of the exact value, c = 4 (a generous constant
 * over gamma_n's n u / (1 - n u)). The softmax's own rounding is relative, so |P| stands in for it. */
static void tiles(void) {
  att_run s = {1, 2100, 2000, 8, 0};
  CHECK(mf_attn_tile_rows(s.Nq, s.Nk) < s.Nq, "the shape spans more than one tile (%lld rows per tile)",
        (long long)mf_attn_tile_rows(s.Nq, s.Nk));
  int64_t nq = s.B * s.Nq * s.D, nk = s.B * s.Nk * s.D;
  double *buf = malloc((size_t)(4 * nq + 2 * nk + 4 * nq + 6 * nk + 4 * nq + 6 * nk) * sizeof *buf);
  double *qv = buf, *wv = qv + nq, *kv = wv + nq, *vv = kv + nk;
  double *y = vv + nk, *dq = y + nq, *dk = dq + nq, *dv = dk + nk, *ay = dv + nk, *adq = ay + nq, *adk = adq + nq, *adv = adk + nk;
  double *y2 = adv + nk, *dq2 = y2 + nq, *dk2 = dq2 + nq, *dv2 = dk2 + nk;
  for (int64_t j = 0; j < nq; j++) qv[j] = (float)gc_normal(), wv[j] = (float)gc_normal();
  for (int64_t j = 0; j < nk; j++) kv[j] = (float)gc_normal(), vv[j] = (float)gc_normal();
  att_direct(&s, qv, kv, vv, wv, y, dq, dk, dv, ay, adq, adk, adv);
  const char *names[4] = {"y", "dq", "dk", "dv"};
  for (int pass = 0; pass < 3; pass++) {
    mf_dtype dt = pass == 0 ? MF_F64 : MF_F32;
    s.keep = pass == 2;
    size_t ws = 0;
    att_eval(dt, &s, qv, kv, vv, wv, y2, dq2, dk2, dv2, &ws);
    double u = dt == MF_F64 ? 0x1p-53 : 0x1p-24, c = 4 * (double)(s.D + s.Nk + 8) * u;
    const double *got[4] = {y2, dq2, dk2, dv2}, *want[4] = {y, dq, dk, dv}, *mag[4] = {ay, adq, adk, adv};
    int64_t cnt[4] = {nq, nq, nk, nk};
    double worst = 0;
    int bad = 0;
    for (int t = 0; t < 4; t++)
      for (int64_t j = 0; j < cnt[t]; j++) {
        double b = c * mag[t][j] + 1e-300;
        double e = fabs(got[t][j] - want[t][j]);
        worst = fmax(worst, e / b);
        if (!(e <= b)) {
          if (bad < 4) fprintf(stderr, "  %s[%lld]: %.12g vs %.12g (bound %.3g)\n", names[t], (long long)j, got[t][j], want[t][j], b);
          bad++;
        }
      }
    CHECK(bad == 0, "%s %s attention over tiles: %d values beyond the rounding bound", mf_dtype_name(dt), s.keep ? "kept" : "recomputed", bad);
    printf("  attention [%lld,%lld,%lld] vs %lld keys, %s %s: worst error %.3f of the bound, workspace %zu B\n", (long long)s.B,
           (long long)s.Nq, (long long)s.D, (long long)s.Nk, mf_dtype_name(dt), s.keep ? "kept" : "recomputed", worst, ws);
    if (!s.keep) {
      /* recomputed: the scores never exist whole; the workspace holds at most two tiles of them */
      size_t es = mf_dtype_size(dt == MF_F64 ? MF_F64 : MF_F32);
      size_t tile = (size_t)(mf_attn_tile_rows(s.Nq, s.Nk) * s.Nk) * es;
      CHECK(ws < (size_t)(s.Nq * s.Nk) * es && ws <= 2 * tile + 1024, "workspace %zu B: less than one item's scores (%zu B), at most two tiles (%zu B)",
            ws, (size_t)(s.Nq * s.Nk) * es, 2 * tile);
    }
  }
  free(buf);
}

/* ---- VQ nearest code ---- */

/* idx of z [N,D] against e [K,D] in dtype dt */
static void vq_eval(mf_dtype dt, int64_t N, int64_t K, int64_t D, const double *zv, const double *ev, int32_t *idx) {
  mf_graph *g = mf_graph_init(dt);
  int64_t sz[2] = {N, D}, se[2] = {K, D};
  mf_tensor z = mf_input(g, "z", 2, sz), e = mf_input(g, "e", 2, se);
  mf_tensor ix = mf_vq_nearest(g, z, e);
  CHECK(ix >= 0, "vq_nearest: %s", mf_graph_error(g));
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[z] = malloc(mf_node_bytes(&g->nodes[z]));
  leaf[e] = malloc(mf_node_bytes(&g->nodes[e]));
  for (int64_t j = 0; j < N * D; j++) mf_st(leaf[z], g->nodes[z].dtype, j, zv[j]);
  for (int64_t j = 0; j < K * D; j++) mf_st(leaf[e], g->nodes[e].dtype, j, ev[j]);
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    memcpy(idx, r.data[ix], (size_t)N * sizeof *idx);
    mf_ref_free(&r);
  } else
    CHECK(0, "eval: %s", err);
  free(leaf[z]);
  free(leaf[e]);
  free(leaf);
  mf_graph_free(g);
}

/* Against a brute-force f64 search: the chosen code's exact distance is within the rounding bound of the
 * smallest, c (D + 2) u (||z||^2 + ||e_k||^2 + 2 |z|.|e_k|) for both codes (ties of the exact search are
 * then allowed to go either way, nothing else). */
static void vq_nearest_checks(void) {
  enum { N = 300, K = 1000, D = 6 };
  CHECK(mf_vq_tile_rows(N, K) < N, "the VQ shape spans more than one tile");
  static double zv[N * D], ev[K * D];
  static int32_t idx[N];
  for (int j = 0; j < N * D; j++) zv[j] = (float)gc_normal();
  for (int j = 0; j < K * D; j++) ev[j] = (float)gc_normal();
  for (int pass = 0; pass < 2; pass++) {
    mf_dtype dt = pass ? MF_F32 : MF_F64;
    vq_eval(dt, N, K, D, zv, ev, idx);
    double u = pass ? 0x1p-24 : 0x1p-53;
    int bad = 0, exact = 0;
    for (int n = 0; n < N; n++) {
      double best = INFINITY, bmag = 0;
      int bi = -1;
      double dsel = 0, msel = 0;
      for (int k = 0; k < K; k++) {
        double d = 0, zz = 0, ee = 0, ze = 0;
        for (int j = 0; j < D; j++) {
          double a = zv[n * D + j], b = ev[k * D + j];
          d += (a - b) * (a - b), zz += a * a, ee += b * b, ze += fabs(a * b);
        }
        double m = zz + ee + 2 * ze;
        if (d < best) best = d, bi = k, bmag = m;
        if (k == idx[n]) dsel = d, msel = m;
      }
      exact += bi == idx[n];
      if (idx[n] < 0 || idx[n] >= K || !(dsel - best <= 4 * (D + 2) * u * (bmag + msel))) bad++;
    }
    CHECK(bad == 0, "%s vq_nearest: %d rows chose a code farther than the rounding bound allows", mf_dtype_name(dt), bad);
    printf("  vq_nearest %s [%d,%d] vs %d codes over tiles: %d of %d rows the exact nearest\n", mf_dtype_name(dt), N, D, K, exact, N);
  }
  /* ties: duplicated rows give the lowest index */
  double e2[4 * 2] = {3, 3, 1, 0, 5, 5, 1, 0}, z2[2 * 2] = {1, 0.1, 4, 4};
  int32_t i2[2];
  vq_eval(MF_F64, 2, 4, 2, z2, e2, i2);
  CHECK(i2[0] == 1 && i2[1] == 0, "ties to the lowest index: got %d %d (want 1 0)", i2[0], i2[1]);
}

static void errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t s3[3] = {2, 5, 4}, s3b[3] = {2, 5, 3}, s2[2] = {5, 4}, e0[2] = {0, 4}, e3[2] = {8, 3};
  mf_tensor q = mf_input(g, "q", 3, s3), kb = mf_input(g, "k", 3, s3b);
  CHECK(mf_attention(g, q, kb, kb, 0, 0) < 0 && strstr(mf_graph_error(g), "attention") && strstr(mf_graph_error(g), "[2,5,3]"),
        "D mismatch: %s", mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  q = mf_input(g, "q", 3, s3);
  CHECK(mf_attention(g, q, q, q, -1, 0) < 0 && strstr(mf_graph_error(g), "scale"), "negative scale: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_tensor z = mf_input(g, "z", 2, s2), e = mf_input(g, "e", 2, e0);
  CHECK(mf_vq_nearest(g, z, e) < 0 && mf_graph_error(g), "empty codebook: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  z = mf_input(g, "z", 2, s2), e = mf_input(g, "e", 2, e3);
  CHECK(mf_vq_nearest(g, z, e) < 0 && strstr(mf_graph_error(g), "[8,3]") && strstr(mf_graph_error(g), "[5,4]"), "D mismatch: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
}

int main(void) {
  grads();
  tiles();
  vq_nearest_checks();
  errors();
  return check_finish("test_grad_attention");
}

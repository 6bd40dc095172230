/* test_vq.c — VQGAN's quantisers (src/models/vq.c): the VQ layer's values, loss and gradients in f64
 * against a host computation (straight-through, codebook term weight 1, commitment beta); the EMA codebook
 * over two accumulated micro-steps with dead-code restarts against a host EMA, measured == planned, f32 and
 * bf16; FSQ's grid, gradient and code indices; usage and perplexity; the refusals. */
#include "check.h"
#include "backend/reference.h"
#include "graph/dtype.h"
#include "models/vq.h"
#include "ops/autodiff.h"
#include "ops/ops.h"
#include <stdint.h>

static uint64_t rs = 12345;
static double unif(void) {
  rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rs >> 11) / 9007199254740992.0;
}
static double gauss(void) {
  double u = unif() + 1e-12, v = unif();
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Evaluates graph g in f64 with the given leaves (others zero); returns the reference result. */
static int ref_run(mf_graph *g, int n, const int *ids, double *const *vals, mf_ref *r) {
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  for (int i = 0; i < n; i++) {
    leaf[ids[i]] = malloc(mf_node_bytes(&g->nodes[ids[i]]));
    memcpy(leaf[ids[i]], vals[i], mf_node_bytes(&g->nodes[ids[i]]));
  }
  char err[256];
  int rc = mf_ref_eval(g, leaf, 1.0, r, err, sizeof err);
  if (rc < 0) CHECK(0, "eval: %s", err);
  for (int i = 0; i < n; i++) free(leaf[ids[i]]);
  free(leaf);
  return rc;
}

/* ---- VQ with a gradient codebook, f64 ---- */
enum { VB = 2, VD = 3, VH = 2, VW = 3, VK = 5, VN = VB * VH * VW };
static void vq_grad(void) {
  mf_graph *g = mf_graph_init(MF_F64);
  int64_t sz[4] = {VB, VD, VH, VW};
  mf_tensor z = mf_param(g, "z", 4, sz, MF_INIT_ZERO, 0), R = mf_input(g, "R", 4, sz);
  vq_cfg c = vq_cfg_default(VK, VD);
  vq_layer q;
  char err[256];
  CHECK(vq_build(g, &c, z, "quantize", &q, err, sizeof err) == 0, "vq_build: %s", err);
  mf_tensor loss = mf_add(g, mf_sum(g, mf_mul(g, q.out, R), 0, 0), q.loss);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  static double zv[VN * VD], Rv[VN * VD], ev[VK * VD];
  for (int i = 0; i < VN * VD; i++) zv[i] = gauss(), Rv[i] = gauss();
  for (int i = 0; i < VK * VD; i++) ev[i] = gauss();
  int ids[3] = {z, R, q.codebook};
  double *vals[3] = {zv, Rv, ev};
  mf_ref r;
  if (ref_run(g, 3, ids, vals, &r) < 0) { mf_graph_free(g); return; }
  const double *out = r.data[q.out], *gz = r.data[g->nodes[z].grad], *ge = r.data[g->nodes[q.codebook].grad];
  double want_loss = 0, ge_want[VK * VD] = {0};
  int bad_out = 0, bad_gz = 0;
  double M = VN * VD;
  for (int b = 0; b < VB; b++)
    for (int y = 0; y < VH; y++)
      for (int x = 0; x < VW; x++) {
        int best = 0;
        double bd = INFINITY;
        for (int k = 0; k < VK; k++) {
          double d = 0;
          for (int j = 0; j < VD; j++) {
            double t = zv[((b * VD + j) * VH + y) * VW + x] - ev[k * VD + j];
            d += t * t;
          }
          if (d < bd) bd = d, best = k;
        }
        want_loss += bd;
        for (int j = 0; j < VD; j++) {
          int i = ((b * VD + j) * VH + y) * VW + x;
          double e = ev[best * VD + j];
          bad_out += out[i] != e;
          double wz = Rv[i] + c.beta * 2 * (zv[i] - e) / M; /* straight-through + commitment */
          bad_gz += !(fabs(gz[i] - wz) <= 1e-12 * (1 + fabs(wz)));
          ge_want[best * VD + j] += 2 * (e - zv[i]) / M;    /* codebook term, weight 1 */
        }
      }
  want_loss = (1 + c.beta) * want_loss / M;
  int bad_ge = 0;
  for (int i = 0; i < VK * VD; i++) bad_ge += !(fabs(ge[i] - ge_want[i]) <= 1e-12 * (1 + fabs(ge_want[i])));
  double got_loss = *(const double *)r.data[q.loss];
  CHECK(bad_out == 0, "quantised output: %d values are not their nearest code", bad_out);
  CHECK(fabs(got_loss - want_loss) <= 1e-12 * want_loss, "loss %.15g, want (1 + beta) mean ||z - e||^2 = %.15g", got_loss, want_loss);
  CHECK(bad_gz == 0, "gradient of z: %d values differ from dy + 2 beta (z - e) / numel", bad_gz);
  CHECK(bad_ge == 0, "gradient of the codebook: %d values differ from the codebook term's", bad_ge);
  printf("  VQ [%d,%d,%d,%d] vs %d codes, f64: output, loss %.6f, gradients of z and the codebook as the host's\n", VB, VD, VH, VW, VK,
         got_loss);
  mf_ref_free(&r);
  mf_graph_free(g);
}

/* ---- EMA codebook in a session: accumulation 2, dead-code restarts, measured == planned ---- */
enum { EB = 2, ED = 4, EH = 3, EW = 3, EK = 6, EN = EB * EH * EW };
static void ema_session(mf_dtype dt) {
  mf_graph *g = mf_graph_init(dt);
  int64_t sx[4] = {EB, ED, EH, EW}, sw[4] = {ED, ED, 1, 1};
  mf_tensor x = mf_input(g, "x", 4, sx);
  mf_tensor w = mf_param(g, "w", 4, sw, MF_INIT_KAIMING, 0);
  mf_tensor z = mf_conv2d(g, x, w, -1, 1, 0, 1); /* [EB,ED,EH,EW] */
  vq_cfg c = vq_cfg_default(EK, ED);
  c.ema = 1;
  c.decay = 0.9;
  c.dead_threshold = 0.05;
  vq_layer q;
  char err[256];
  CHECK(vq_build(g, &c, z, "quantize", &q, err, sizeof err) == 0, "vq_build: %s", err);
  mf_tensor loss = mf_add(g, q.loss, mf_mse_loss(g, q.out, x));
  mf_tensor keep[4];
  mf_train_opts o = mf_train_opts_default();
  o.plan.n_keep = vq_keep(&q, keep);
  o.plan.keep = keep;
  o.plan.optim = MF_ADAM;
  o.accum_steps = 2;
  o.debug_memory = 1;
  o.threads = 2;
  o.loss_scaling = 0;
  mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (!s) { mf_graph_free(g); return; }
  CHECK(vq_session_ready(&q, s) == 0, "vq_session_ready");
  vq_stats st;
  CHECK(vq_stats_init(&st, &q, 7) == 0, "vq_stats_init");
  static float cb0[EK * ED], avg0[EK * ED], zr[2][EN * ED], idx[2][EN], xv[EN * ED];
  mf_session_read(s, q.codebook, cb0, EK * ED);
  mf_session_read(s, q.ema_sum, avg0, EK * ED);
  int same = 1;
  for (int i = 0; i < EK * ED; i++) same &= cb0[i] == avg0[i];
  CHECK(same, "embed_avg starts as the codebook");
  for (int m = 0; m < 2; m++) {
    for (int i = 0; i < EN * ED; i++) xv[i] = (float)((((i * 7 + m * 5) % 13) - 6) / 4.0);
    mf_session_write_input(s, x, xv, EN * ED);
    double l = mf_session_micro_step(s);
    CHECK(isfinite(l), "micro-step %d", m);
    CHECK(vq_observe(&st, &q, s, 1) == 0, "observe");
    mf_session_read(s, q.z_flat, zr[m], EN * ED);
    mf_session_read(s, q.idx, idx[m], EN);
  }
  CHECK(mf_session_update(s) == 1, "update");
  CHECK(vq_ema_apply(&st, &q, s) == 0, "ema apply");
  /* host EMA from the read vectors and codes (counts start at 0, embed_avg at the codebook) */
  double cnt[EK] = {0}, avg[EK * ED], tot = 0;
  for (int i = 0; i < EK * ED; i++) avg[i] = c.decay * avg0[i];
  for (int m = 0; m < 2; m++)
    for (int r = 0; r < EN; r++) {
      int k = (int)idx[m][r];
      cnt[k] += 1 - c.decay;
      for (int d = 0; d < ED; d++) avg[k * ED + d] += (1 - c.decay) * zr[m][r * ED + d];
    }
  for (int k = 0; k < EK; k++) tot += cnt[k];
  static float gcnt[EK], gavg[EK * ED], gcb[EK * ED];
  mf_session_read(s, q.ema_count, gcnt, EK);
  mf_session_read(s, q.ema_sum, gavg, EK * ED);
  mf_session_read(s, q.codebook, gcb, EK * ED);
  double ua = dt == MF_BF16 ? 0x1p-8 : 0x1p-24;
  int bad = 0, restarted = 0, live = 0;
  for (int k = 0; k < EK; k++) {
    if (cnt[k] < c.dead_threshold) { /* restarted at a vector of the last micro-batch, count 1 */
      int found = 0;
      for (int r = 0; r < EN && !found; r++) {
        int eq = 1;
        for (int d = 0; d < ED; d++) eq &= gavg[k * ED + d] == zr[1][r * ED + d] && fabs(gcb[k * ED + d] - zr[1][r * ED + d]) <= ua * fabs(zr[1][r * ED + d]);
        found = eq;
      }
      bad += !found || gcnt[k] != 1;
      restarted++;
      continue;
    }
    live++;
    double sm = (cnt[k] + c.eps) / (tot + EK * c.eps) * tot;
    bad += !(fabs(gcnt[k] - cnt[k]) <= 1e-6 * cnt[k]);
    for (int d = 0; d < ED; d++) {
      double a = avg[k * ED + d], e = a / sm;
      bad += !(fabs(gavg[k * ED + d] - a) <= 1e-6 * (fabs(a) + 1e-3));
      bad += !(fabs(gcb[k * ED + d] - e) <= (ua + 1e-6) * (fabs(e) + 1e-3));
    }
  }
  CHECK(bad == 0 && live > 0, "%s EMA codebook: %d values differ from the host EMA (%d live, %d restarted codes)", mf_dtype_name(dt), bad,
        live, restarted);
  CHECK(st.restarts == (uint64_t)restarted, "restart count %llu, host %d", (unsigned long long)st.restarts, restarted);
  double usage, ppl;
  vq_stats_usage(&st, &usage, &ppl);
  int used = 0;
  for (int k = 0; k < EK; k++) used += cnt[k] > 0;
  CHECK(fabs(usage - (double)used / EK) < 1e-12, "usage %.3f, host %d of %d", usage, used, EK);
  /* measured == planned per arena */
  const mf_plan *p = mf_session_plan(s);
  int arenas_ok = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    if (pl != me) { arenas_ok = 0; fprintf(stderr, "  arena %s planned %zu measured %zu\n", mf_arena_name((mf_arena_kind)a), pl, me); }
  }
  CHECK(arenas_ok, "%s: measured == planned per arena", mf_dtype_name(dt));
  printf("  EMA codebook %s, 2 micro-steps: %d live codes as the host EMA, %d restarted, usage %.2f, perplexity %.2f, "
         "state arena %zu B measured == planned\n", mf_dtype_name(dt), live, restarted, usage, ppl, mf_plan_arena_bytes(p, MF_ARENA_STATE));
  vq_stats_free(&st);
  mf_session_free(s);
  mf_graph_free(g);
}

/* ---- FSQ [8,5,5,5] ---- */
static void fsq(void) {
  static const int lv[4] = {8, 5, 5, 5};
  mf_graph *g = mf_graph_init(MF_F64);
  int64_t sz[4] = {2, 4, 3, 5};
  int n = 2 * 4 * 3 * 5;
  mf_tensor z = mf_param(g, "z", 4, sz, MF_INIT_ZERO, 0), R = mf_input(g, "R", 4, sz);
  vq_cfg c = vq_cfg_default(0, 4);
  c.kind = VQ_KIND_FSQ;
  memcpy(c.levels, lv, sizeof lv);
  vq_layer q;
  char err[256];
  CHECK(vq_build(g, &c, z, "quantize", &q, err, sizeof err) == 0, "fsq build: %s", err);
  CHECK(q.cfg.codes == 1000, "FSQ [8,5,5,5] has 1000 codes (%lld)", (long long)q.cfg.codes);
  mf_tensor loss = mf_sum(g, mf_mul(g, q.out, R), 0, 0);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  static double zv[120], Rv[120];
  for (int i = 0; i < n; i++) zv[i] = 2 * gauss(), Rv[i] = gauss();
  int ids[2] = {z, R};
  double *vals[2] = {zv, Rv};
  mf_ref r;
  if (ref_run(g, 2, ids, vals, &r) < 0) { mf_graph_free(g); return; }
  const double *out = r.data[q.out], *gz = r.data[g->nodes[z].grad];
  int bad = 0, badg = 0;
  for (int i = 0; i < n; i++) {
    int d = (i / 15) % 4;
    double L = lv[d], hl = (L - 1) * 1.001 / 2, off = lv[d] % 2 ? 0 : 0.5, sh = atanh(off / hl), hw = lv[d] / 2;
    double b = tanh(zv[i] + sh) * hl - off, want = nearbyint(b) / hw;
    bad += out[i] != want || out[i] * hw < -hw || out[i] * hw > (lv[d] % 2 ? hw : hw - 1);
    double t = tanh(zv[i] + sh), wg = Rv[i] * (1 - t * t) * hl / hw;
    badg += !(fabs(gz[i] - wg) <= 1e-12 * (1 + fabs(wg)));
  }
  CHECK(bad == 0, "FSQ values: %d not round(bound(z)) / (L div 2) on the grid", bad);
  CHECK(badg == 0, "FSQ gradient: %d differ from the straight-through derivative of the bound", badg);
  mf_ref_free(&r);
  mf_graph_free(g);
  printf("  FSQ [8,5,5,5] f64: grid values and straight-through gradient as the host's\n");
}

static void usage_and_errors(void) {
  vq_layer q;
  memset(&q, 0, sizeof q);
  q.cfg = vq_cfg_default(4, 2);
  q.N = 4;
  vq_stats st;
  CHECK(vq_stats_init(&st, &q, 1) == 0, "stats init");
  st.hist[0] = 2, st.hist[3] = 2;
  double u, p;
  vq_stats_usage(&st, &u, &p);
  CHECK(fabs(u - 0.5) < 1e-15 && fabs(p - 2) < 1e-12, "two codes used equally of four: usage %g (0.5), perplexity %g (2)", u, p);
  st.hist[1] = 4, st.hist[2] = 4, st.hist[0] = 4, st.hist[3] = 4;
  vq_stats_usage(&st, &u, &p);
  CHECK(fabs(u - 1) < 1e-15 && fabs(p - 4) < 1e-12, "uniform over four: usage %g, perplexity %g", u, p);
  vq_stats_free(&st);
  char err[256];
  vq_cfg c = vq_cfg_default(0, 8);
  CHECK(vq_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--codes"), "0 codes: %s", err);
  c = vq_cfg_default(16, 3);
  c.kind = VQ_KIND_FSQ;
  c.levels[0] = 8, c.levels[1] = 1, c.levels[2] = 5;
  CHECK(vq_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--fsq-levels") && strstr(err, "at least 2"), "FSQ level 1: %s", err);
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t sz[4] = {1, 5, 2, 2};
  mf_tensor z = mf_input(g, "z", 4, sz);
  c = vq_cfg_default(16, 4);
  CHECK(vq_build(g, &c, z, "quantize", &q, err, sizeof err) < 0 && strstr(err, "[B,4,h,w]"), "channels != dim: %s", err);
  mf_graph_free(g);
}

int main(void) {
  vq_grad();
  ema_session(MF_F32);
  ema_session(MF_BF16);
  fsq();
  usage_and_errors();
  return check_finish("test_vq");
}

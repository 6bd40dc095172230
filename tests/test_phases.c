/* test_phases.c — several phases per optimizer step (a GAN's generator and discriminator steps on one
 * graph) and no-grad branches: exact memory per phase, gradients against an f64 graph within a derived
 * rounding bound, untouched parameters outside a phase, checkpoints, the plan print and bad input. */
#include "check.h"
#include "backend/reference.h"
#include "ops/autodiff.h"
#include "ops/ops.h"
#include "train/session.h"
#include <unistd.h>

/* ---- the model: G (two convs) and D (a strided conv and a linear) ----
 * x [2,2,8,8] -> G: conv 3x3 (2->4, bias), leaky 0.2, conv 3x3 (4->2) -> xr [2,2,8,8]
 * D(z): conv 3x3 stride 2 (2->4, bias) [2,4,4,4], leaky 0.2, reshape [2,64], linear (64->1) -> [2,1]
 * gen:  loss_g = mse(xr, x) - 0.5 mean(D(xr))                       trains G (group 0)
 * disc: loss_d = mean(relu(1 - D(x))) + mean(relu(1 + D(detach(xr))))  trains D (group 1)
 * In "magnitude" mode (f64 only) the same network runs on |x| and |weights| and the losses become
 * sums of the outputs times constant seeds (inputs c1, c2, cr, cf): its gradients are the sums of the
 * magnitudes of every product the real gradient adds up, the quantity rounding bounds scale with. */
enum { N = 2, C = 2, H = 8, W = 8, GC = 4, DC = 4, NP = 6 };
#define ADV 0.5
#define SLOPE 0.2

typedef struct gan {
  mf_graph *g;
  mf_tensor x, c1, c2, cr, cf;
  mf_tensor p[NP];                /* gw1, gb1, gw2 (group 0); dw1, db1, dw2 (group 1) */
  mf_tensor pre_g, pre_dg, pre_dr, pre_df, d_g, d_real, d_fake, xr, loss_g, loss_d;
} gan;
static const char *pnames[NP] = {"gw1", "gb1", "gw2", "dw1", "db1", "dw2"};
static const int64_t pshape[NP][4] = {{GC, C, 3, 3}, {GC}, {C, GC, 3, 3}, {DC, C, 3, 3}, {DC}, {1, DC * 4 * 4}};
static const int pndim[NP] = {4, 1, 4, 4, 1, 2};

static int64_t numel_of(int k) {
  int64_t c = 1;
  for (int i = 0; i < pndim[k]; i++) c *= pshape[k][i];
  return c;
}

/* D(z): returns its output [2,1]; *pre gets the pre-activation of its conv */
static mf_tensor disc_apply(gan *m, mf_tensor z, mf_tensor *pre) {
  mf_graph *g = m->g;
  *pre = mf_conv2d(g, z, m->p[3], m->p[4], 2, 1, 1);
  mf_tensor h = mf_reshape(g, mf_leaky_relu(g, *pre, SLOPE), 2, (int64_t[]){N, DC * 4 * 4});
  return mf_linear(g, h, m->p[5], -1);
}

static int gan_segment; /* 1: G is a checkpoint segment (recomputed in the gen phase's backward) */
static void gan_build(gan *m, mf_dtype dt, int mag) {
  mf_graph *g = m->g = mf_graph_init(dt);
  m->x = mf_input(g, "x", 4, (int64_t[]){N, C, H, W});
  for (int k = 0; k < NP; k++) {
    m->p[k] = mf_param(g, pnames[k], pndim[k], pshape[k], MF_INIT_ZERO, 0);
    if (k >= 3) mf_param_group_set(g, m->p[k], 1);
  }
  if (gan_segment) mf_segment_begin(g, "G");
  m->pre_g = mf_conv2d(g, m->x, m->p[0], m->p[1], 1, 1, 1);
  m->xr = mf_conv2d(g, mf_leaky_relu(g, m->pre_g, SLOPE), m->p[2], -1, 1, 1, 1);
  if (gan_segment) mf_segment_end(g, 1, &m->x, 1, &m->xr, NULL, NULL);
  m->d_g = disc_apply(m, m->xr, &m->pre_dg);
  m->d_real = disc_apply(m, m->x, &m->pre_dr);
  m->d_fake = disc_apply(m, mf_detach(g, m->xr), &m->pre_df);
  if (!mag) {
    m->loss_g = mf_add(g, mf_mse_loss(g, m->xr, m->x), mf_mul_scalar(g, mf_mean(g, m->d_g, 0, 0), -ADV));
    mf_tensor hr = mf_mean(g, mf_relu(g, mf_add_scalar(g, mf_mul_scalar(g, m->d_real, -1), 1)), 0, 0);
    mf_tensor hf = mf_mean(g, mf_relu(g, mf_add_scalar(g, m->d_fake, 1)), 0, 0);
    m->loss_d = mf_add(g, hr, hf);
  } else {
    m->c1 = mf_input(g, "c1", 4, (int64_t[]){N, C, H, W});
    m->c2 = mf_input(g, "c2", 2, (int64_t[]){N, 1});
    m->cr = mf_input(g, "cr", 2, (int64_t[]){N, 1});
    m->cf = mf_input(g, "cf", 2, (int64_t[]){N, 1});
    m->loss_g = mf_add(g, mf_sum(g, mf_mul(g, m->xr, m->c1), 0, 0), mf_sum(g, mf_mul(g, m->d_g, m->c2), 0, 0));
    m->loss_d = mf_add(g, mf_sum(g, mf_mul(g, m->d_real, m->cr), 0, 0), mf_sum(g, mf_mul(g, m->d_fake, m->cf), 0, 0));
  }
}

/* Values: x in [0.2, 0.9] (an image), every weight of G and of D's conv positive (so every leaky relu works
 * in its linear part, far from the kink, whatever the rounding), D's last layer of both signs. */
static double xval(int64_t i) { return 0.55 + 0.35 * sin(1.7 * (double)i + 0.3); }
static double pval(int k, int64_t i) {
  double s = sin(0.9 * (double)i + 1.1 * k + 0.4);
  return k == 5 ? 0.04 * s : (k == 1 || k == 4 ? 0.05 + 0.05 * fabs(s) : 0.02 + 0.12 * fabs(s));
}

static mf_train_opts gan_opts(void) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.debug_memory = 1;
  o.lr = 1e-2;
  o.n_groups = 2;
  o.groups[1].name = "disc";
  o.groups[1].lr = 2e-2;
  o.groups[1].beta1 = 0.5;
  o.groups[1].beta2 = 0.9;
  return o;
}

static mf_session *gan_session(gan *m, const mf_train_opts *o, char *err, size_t errlen) {
  mf_phase_opts ph[2] = {{"gen", m->loss_g, 1u << 0}, {"disc", m->loss_d, 1u << 1}};
  mf_session *s = mf_session_init_phases(m->g, 2, ph, o, err, errlen);
  if (!s) return NULL;
  float buf[N * C * H * W];
  for (int k = 0; k < NP; k++) {
    int64_t c = numel_of(k);
    for (int64_t i = 0; i < c; i++) buf[i] = (float)pval(k, i);
    mf_session_write_param(s, m->p[k], buf, (size_t)c);
  }
  for (int i = 0; i < N * C * H * W; i++) buf[i] = (float)xval(i);
  mf_session_write_input(s, m->x, buf, N * C * H * W);
  return s;
}

static double gam(double k, double u) { return k * u / (1 - k * u); }

/* Reads a parameter's gradient (f32) or values into dst; returns 0. */
static int read_all(mf_session *s, const gan *m, int grads, float dst[NP][128]) {
  int rc = 0;
  for (int k = 0; k < NP; k++)
    rc |= grads ? mf_session_read_grad(s, m->p[k], dst[k], (size_t)numel_of(k)) : mf_session_read(s, m->p[k], dst[k], (size_t)numel_of(k));
  return rc;
}

/* f64 reference, independent of the phases: for each loss its own f64 graph, differentiated whole by
 * plain autodiff (every parameter), evaluated with one allocation per node on the same values. grad[k]
 * gets parameter k's gradient (G's from loss_g, D's from loss_d); *m and *out keep the loss_d graph and
 * its evaluation (the whole forward: xr, D's outputs; the caller frees both). */
static int ref_run(int mag, const double *c1, const double *c2, const double *cr, const double *cf, double grad[NP][128], gan *m,
                   mf_ref *out) {
  char err[256];
  double *xd = malloc(N * C * H * W * sizeof *xd), *pd[NP];
  for (int i = 0; i < N * C * H * W; i++) xd[i] = mag ? fabs(xval(i)) : xval(i);
  for (int k = 0; k < NP; k++) {
    pd[k] = malloc((size_t)numel_of(k) * sizeof(double));
    for (int64_t i = 0; i < numel_of(k); i++) pd[k][i] = mag ? fabs((double)(float)pval(k, i)) : (double)(float)pval(k, i);
  }
  int rc = 0;
  for (int w = 0; w < 2 && !rc; w++) {
    gan_build(m, MF_F64, mag);
    mf_ref r = {0};
    if (mf_autodiff(m->g, w ? m->loss_d : m->loss_g) < 0) {
      CHECK(0, "reference autodiff: %s", mf_graph_error(m->g));
      rc = -1;
    }
    void **leaf = calloc((size_t)m->g->n, sizeof *leaf);
    leaf[m->x] = xd;
    for (int k = 0; k < NP; k++) leaf[m->p[k]] = pd[k];
    if (mag) leaf[m->c1] = (void *)c1, leaf[m->c2] = (void *)c2, leaf[m->cr] = (void *)cr, leaf[m->cf] = (void *)cf;
    if (!rc && mf_ref_eval(m->g, leaf, 1.0, &r, err, sizeof err) < 0) {
      CHECK(0, "reference eval: %s", err);
      rc = -1;
    }
    for (int k = w ? 3 : 0; k < (w ? NP : 3) && !rc; k++) {
      int gid = m->g->nodes[m->p[k]].grad;
      for (int64_t i = 0; i < numel_of(k); i++) grad[k][i] = gid >= 0 ? ((double *)r.data[gid])[i] : 0;
    }
    free(leaf);
    if (w && !rc) *out = r;
    else {
      mf_ref_free(&r);
      mf_graph_free(m->g);
      m->g = NULL;
    }
  }
  free(xd);
  for (int k = 0; k < NP; k++) free(pd[k]);
  return rc;
}

/* The program of phase k contains a weight-gradient accumulator for parameter (master) id? */
static int phase_has_grad(const mf_plan *p, int k, int master) {
  const mf_program *pr = p->phase[k].prog;
  for (int i = 0; i < pr->n_steps; i++) {
    const mf_node *n = &p->g->nodes[pr->steps[i]];
    if (n->op == MF_OP_ACC_GRAD && n->master == master) return 1;
  }
  return 0;
}
static int master_of(const mf_graph *g, mf_tensor t) { return g->nodes[t].op == MF_OP_PARAM_LP ? g->nodes[t].master : t; }

/* The gradient bound. Every value the session computes is a sum of products of inputs, weights, leaky
 * slopes and loss seeds; Higham's gamma_k bounds the rounding of a k-term sum of products in any order
 * (FMA or not) relative to the sum of the magnitudes of its terms. Along the longest chain from the data
 * to a weight gradient the roundings add: k32 counts the f32 operations of every reduction on the way
 * (conv fan-ins, the linear's 64, the bias, activations, the loss seed, and backward's fan-ins, the
 * weight gradients' N*H*W sums), from the shapes. In bf16 each tensor the chain stores is rounded once
 * more to 8 bits (the weights' copies and the input too): k16 is the longest such chain in either
 * phase's program (chain_depth). The magnitudes are the f64 magnitude network's gradients, whose
 * seeds bound the real seeds' rounding: for gen 2(|xr| + |x|)/numel (xr - x cancels) and ADV/N, for
 * disc the hinge indicators / N. */
/* the longest chain of stored (so, in bf16, rounded) tensors in phase k's program: inputs and the
 * weights' low-precision copies count one, each step one more than its deepest input */
static int chain_depth(const mf_plan *p, int k) {
  const mf_graph *g = p->g;
  const mf_program *pr = p->phase[k].prog;
  int *d = calloc((size_t)g->n, sizeof *d), best = 0;
  for (int id = 0; id < g->n; id++) d[id] = g->nodes[id].op == MF_OP_INPUT || g->nodes[id].op == MF_OP_PARAM_LP;
  for (int i = 0; i < pr->n_steps; i++) {
    const mf_node *n = &g->nodes[pr->steps[i]];
    int m = 0;
    for (int j = 0; j < n->nsrc; j++) m = d[n->src[j]] > m ? d[n->src[j]] : m;
    d[pr->steps[i]] = m + 1;
    best = m + 1 > best ? m + 1 : best;
  }
  free(d);
  return best;
}

static double k32_chain(void) {
  double fwd = (C * 9 + 3) + (GC * 9 + 2) + (C * 9 + 3) + (DC * 16 + 2) + 4;
  double bwd = 4 + (1 + N) + (DC * 9 + N * 4 * 4) + (C * 9 + N * H * W) + (GC * 9 + N * H * W) + 4;
  return fwd + bwd;
}

/* The same two phases with G recomputed in backward (a checkpoint segment): the gradients meet the same
 * bound against the f64 reference, and memory is still exactly as planned. */
static void test_gan_recompute(mf_dtype dt, double gamma, double gr[NP][128], double gm[NP][128]) {
  const char *dn = mf_dtype_name(dt);
  char err[512];
  gan m;
  gan_segment = 1;
  gan_build(&m, dt, 0);
  gan_segment = 0;
  mf_train_opts o = gan_opts();
  o.plan.recompute = MF_RECOMPUTE_ALL;
  mf_session *s = gan_session(&m, &o, err, sizeof err);
  CHECK(s != NULL, "%s recompute: %s", dn, err);
  if (!s) { mf_graph_free(m.g); return; }
  const mf_plan *p = mf_session_plan(s);
  CHECK(p->n_recomputed == 1, "%s recompute: %d segments recomputed", dn, p->n_recomputed);
  static float g0[NP][128], g1[NP][128];
  mf_session_phase_step(s, 0);
  read_all(s, &m, 1, g0);
  mf_session_phase_step(s, 1);
  read_all(s, &m, 1, g1);
  int bad = 0;
  for (int k = 0; k < NP; k++)
    for (int64_t i = 0; i < numel_of(k); i++) {
      double got = k < 3 ? g0[k][i] : g1[k][i];
      if (fabs(got - gr[k][i]) > gamma * gm[k][i] && bad++ < 5)
        CHECK(0, "%s recompute: %s[%lld] gradient %.9g, f64 reference %.9g", dn, pnames[k], (long long)i, got, gr[k][i]);
    }
  CHECK(!bad, "%s recompute: %d gradient elements outside the bound", dn, bad);
  for (int ph = 0; ph < 2; ph++) mf_session_phase_update(s, ph);
  mf_session_forward(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s recompute: arena %s planned %zu measured %zu", dn, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  printf("  %s with G recomputed: ACT %zu B (gen %zu B, disc %zu B), gradients within the bound\n", dn,
         mf_plan_arena_bytes(p, MF_ARENA_ACT), mf_plan_phase_peak(p, 0, NULL), mf_plan_phase_peak(p, 1, NULL));
  mf_session_free(s);
  mf_graph_free(m.g);
}

static void test_gan(mf_dtype dt) {
  const char *dn = mf_dtype_name(dt);
  char err[512];
  gan m;
  gan_build(&m, dt, 0);
  mf_train_opts o = gan_opts();
  mf_session *s = gan_session(&m, &o, err, sizeof err);
  CHECK(s != NULL, "%s: two-phase session: %s", dn, err);
  if (!s) { mf_graph_free(m.g); return; }
  const mf_plan *p = mf_session_plan(s);
  CHECK(mf_plan_phase_count(p) == 2 && !strcmp(mf_plan_phase_name(p, 0), "gen") && !strcmp(mf_plan_phase_name(p, 1), "disc"),
        "%s: phases listed", dn);
  /* no weight-gradient op for the other phase's parameters; the ones of its own are there */
  for (int k = 0; k < NP; k++) {
    int id = master_of(p->g, m.p[k]), own = k < 3 ? 0 : 1;
    CHECK(phase_has_grad(p, own, id) && !phase_has_grad(p, 1 - own, id), "%s: %s has a weight gradient in phase %d only", dn,
          pnames[k], own);
  }
  static float g0[NP][128], g1[NP][128], w0[NP][128], w1[NP][128], w2[NP][128];
  double lg = mf_session_phase_step(s, 0);
  read_all(s, &m, 1, g0);
  double ld = mf_session_phase_step(s, 1);
  read_all(s, &m, 1, g1);
  CHECK(isfinite(lg) && isfinite(ld), "%s: losses %g %g", dn, lg, ld);
  /* gen left D's gradients at zero; disc added nothing to G's */
  int dzero = 1, gsame = 1;
  for (int k = 0; k < NP; k++)
    for (int64_t i = 0; i < numel_of(k); i++) {
      if (k >= 3) dzero &= g0[k][i] == 0;
      else gsame &= !memcmp(&g0[k][i], &g1[k][i], sizeof(float));
    }
  CHECK(dzero, "%s: the gen phase gave D's parameters a gradient", dn);
  CHECK(gsame, "%s: the disc phase changed G's gradients", dn);

  /* gradients against the f64 graph, bound from the f64 magnitude network */
  gan r = {0}, mg = {0}, mg0 = {0};
  static double gr[NP][128], gm[NP][128], dummy[NP][128];
  mf_ref rr = {0}, rm = {0}, rm0 = {0};
  /* the magnitude network's forward first (for |xr|, seeds zero), then its gradients with the seeds */
  static double c1[N * C * H * W], c2[N], cr[N], cf[N];
  memset(c1, 0, sizeof c1);
  for (int i = 0; i < N; i++) c2[i] = cr[i] = cf[i] = 0;
  if (ref_run(0, NULL, NULL, NULL, NULL, gr, &r, &rr) == 0 && ref_run(1, c1, c2, cr, cf, dummy, &mg0, &rm0) == 0) {
    const double *xrm = rm0.data[mg0.xr];
    double *dreal = rr.data[r.d_real], *dfake = rr.data[r.d_fake], *dmr = rm0.data[mg0.d_real], *dmf = rm0.data[mg0.d_fake];
    int d0 = chain_depth(p, 0), d1 = chain_depth(p, 1);
    double k32 = k32_chain(), k16 = d0 > d1 ? d0 : d1;
    double gamma = gam(k32, 0x1p-24) + (dt == MF_BF16 ? gam(k16, 0x1p-8) : 0);
    int margin = 1;
    double mratio = INFINITY;
    for (int i = 0; i < N * C * H * W; i++) c1[i] = 2 * (xrm[i] + fabs(xval(i))) / (N * C * H * W);
    for (int i = 0; i < N; i++) {
      c2[i] = ADV / N;
      /* the hinges' kinks: D's outputs are further from them than their rounding can move them */
      margin &= fabs(1 - dreal[i]) > gamma * (1 + dmr[i]) && fabs(1 + dfake[i]) > gamma * (1 + dmf[i]);
      mratio = fmin(mratio, fmin(fabs(1 - dreal[i]) / (gamma * (1 + dmr[i])), fabs(1 + dfake[i]) / (gamma * (1 + dmf[i]))));
      cr[i] = (1 - dreal[i] > 0) / (double)N;
      cf[i] = (1 + dfake[i] > 0) / (double)N;
    }
    CHECK(margin, "%s: D's outputs sit within rounding of the hinge's kink (choose other test values)", dn);
    if (ref_run(1, c1, c2, cr, cf, gm, &mg, &rm) == 0) {
      double worst = 0, maxg = 0;
      int bad = 0;
      for (int k = 0; k < NP; k++)
        for (int64_t i = 0; i < numel_of(k); i++) {
          double got = k < 3 ? g0[k][i] : g1[k][i], bound = gamma * gm[k][i] + 1e-300;
          double e = fabs(got - gr[k][i]);
          if (e > bound && bad++ < 5)
            CHECK(0, "%s: %s[%lld] gradient %.9g, f64 reference %.9g (bound %.3g)", dn, pnames[k], (long long)i, got, gr[k][i], bound);
          if (e / bound > worst) worst = e / bound;
          if (fabs(gr[k][i]) > maxg) maxg = fabs(gr[k][i]);
        }
      CHECK(!bad, "%s: %d gradient elements outside the bound", dn, bad);
      CHECK(maxg > 0, "%s: the reference gradients are not all zero", dn);
      test_gan_recompute(dt, gamma, gr, gm);
      double ldr = *(double *)rr.data[r.loss_d];
      printf("  %s: loss gen %.9g, disc %.9g (f64 %.9g); gradients within %.3f of the bound (gamma %.3g, chains %.0f f32 / "
             "%.0f stored); hinge margin %.1f x its bound\n", dn, lg, ld, ldr, worst, gamma, k32, k16, mratio);
    }
  }
  mf_ref_free(&rr);
  mf_ref_free(&rm);
  mf_ref_free(&rm0);
  mf_graph_free(r.g);
  mf_graph_free(mg.g);
  mf_graph_free(mg0.g);

  /* updates: each phase's touches its own groups only */
  read_all(s, &m, 0, w0);
  CHECK(mf_session_phase_update(s, 0) == 1, "%s: gen update", dn);
  read_all(s, &m, 0, w1);
  float ga[NP][128];
  read_all(s, &m, 1, ga);
  CHECK(mf_session_phase_update(s, 1) == 1, "%s: disc update", dn);
  read_all(s, &m, 0, w2);
  int d_kept = 1, g_moved = 0, g_kept = 1, d_moved = 0, g_zeroed = 1, d_grad_kept = 1;
  for (int k = 0; k < NP; k++)
    for (int64_t i = 0; i < numel_of(k); i++) {
      if (k >= 3) {
        d_kept &= !memcmp(&w0[k][i], &w1[k][i], sizeof(float));
        d_moved |= w2[k][i] != w1[k][i];
        d_grad_kept &= !memcmp(&ga[k][i], &g1[k][i], sizeof(float));
      } else {
        g_moved |= w1[k][i] != w0[k][i];
        g_kept &= !memcmp(&w1[k][i], &w2[k][i], sizeof(float));
        g_zeroed &= ga[k][i] == 0;
      }
    }
  CHECK(d_kept && g_moved, "%s: the gen update moved G (%d) and left D bit-unchanged (%d)", dn, g_moved, d_kept);
  CHECK(g_zeroed && d_grad_kept, "%s: the gen update zeroed G's gradients (%d) and kept D's (%d)", dn, g_zeroed, d_grad_kept);
  CHECK(g_kept && d_moved, "%s: the disc update moved D (%d) and left G bit-unchanged (%d)", dn, d_moved, g_kept);
  CHECK(mf_session_group_step(s, 0) == 1 && mf_session_group_step(s, 1) == 1 && mf_session_step(s) == 1,
        "%s: step counts %lld %lld %lld", dn, (long long)mf_session_group_step(s, 0), (long long)mf_session_group_step(s, 1),
        (long long)mf_session_step(s));

  /* another round and an evaluation, then memory: measured == planned for every arena */
  for (int ph = 0; ph < 2; ph++) {
    CHECK(isfinite(mf_session_phase_step(s, ph)), "%s: phase %d step", dn, ph);
    CHECK(mf_session_phase_update(s, ph) == 1, "%s: phase %d update", dn, ph);
  }
  mf_session_forward(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", dn, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  const char *op0, *op1;
  size_t pk0 = mf_plan_phase_peak(p, 0, &op0), pk1 = mf_plan_phase_peak(p, 1, &op1);
  size_t act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  CHECK(pk0 > 0 && pk1 > 0 && act == (pk0 > pk1 ? pk0 : pk1), "%s: ACT arena %zu is the larger phase peak (%zu, %zu)", dn, act, pk0, pk1);
  CHECK(mf_plan_phase_peak(p, 2, NULL) == 0 && !mf_plan_phase_name(p, 2), "%s: phase 2 does not exist", dn);
  printf("  %s: ACT %zu B (gen %zu B at %s; disc %zu B at %s), total %zu B\n", dn, act, pk0, op0, pk1, op1, mf_plan_total_bytes(p));
  /* the plan print: one line per phase, which one sets the arena, the no-gradient bytes */
  char *txt = NULL;
  size_t tl = 0;
  FILE *f = open_memstream(&txt, &tl);
  mf_plan_print(p, f);
  fclose(f);
  CHECK(strstr(txt, "phase 0 'gen'") && strstr(txt, "phase 1 'disc'"), "%s: plan print lists both phases:\n%s", dn, txt);
  CHECK(strstr(txt, "sets the activation arena") && strstr(txt, "no gradient:"), "%s: plan print says which phase sets the arena "
        "and the no-gradient bytes:\n%s", dn, txt);
  if (dt == MF_F32) fputs(txt, stdout);
  free(txt);
  /* one-phase calls refuse a two-phase session; bad phase indices are refused */
  CHECK(isnan(mf_session_micro_step(s)) && mf_session_update(s) == -1, "%s: micro_step/update refuse two phases", dn);
  CHECK(isnan(mf_session_phase_step(s, 2)) && mf_session_phase_update(s, -1) == -1, "%s: bad phase index", dn);
  mf_session_free(s);
  mf_graph_free(m.g);
}

/* ---- checkpoints: save after k rounds (and mid-round with gradients pending), load into a fresh
 * session, continue: the same losses and parameters to the bit as the run that went on ---- */
static void round_run(mf_session *s, double *loss) {
  loss[0] = mf_session_phase_step(s, 0);
  mf_session_phase_update(s, 0);
  loss[1] = mf_session_phase_step(s, 1);
  mf_session_phase_update(s, 1);
}

static void test_checkpoint(mf_dtype dt) {
  const char *dn = mf_dtype_name(dt);
  char err[512], path[2][64];
  for (int i = 0; i < 2; i++) snprintf(path[i], sizeof path[i], "/tmp/memfit_phases_%d_%d_%s.st", (int)getpid(), i, dn);
  gan a;
  gan_build(&a, dt, 0);
  mf_train_opts o = gan_opts();
  mf_session *s = gan_session(&a, &o, err, sizeof err);
  if (!s) { CHECK(0, "%s: session: %s", dn, err); mf_graph_free(a.g); return; }
  double la[6][2], lb[6][2];
  for (int r = 0; r < 2; r++) round_run(s, la[r]);
  CHECK(mf_session_save(s, path[0], err, sizeof err) == 0, "%s: save: %s", dn, err);
  /* round 3, saved in the middle: after gen's update and disc's step (disc's gradients pending) */
  la[2][0] = mf_session_phase_step(s, 0);
  mf_session_phase_update(s, 0);
  la[2][1] = mf_session_phase_step(s, 1);
  CHECK(mf_session_save(s, path[1], err, sizeof err) == 0, "%s: save mid-round: %s", dn, err);
  mf_session_phase_update(s, 1);
  for (int r = 3; r < 5; r++) round_run(s, la[r]);
  static float wa[NP][128], wb[NP][128];
  read_all(s, &a, 0, wa);
  for (int v = 0; v < 2; v++) {
    gan b;
    gan_build(&b, dt, 0);
    mf_train_opts ob = gan_opts();
    mf_session *t = gan_session(&b, &ob, err, sizeof err); /* fresh: same initial values, then the checkpoint */
    if (!t) { CHECK(0, "%s: second session: %s", dn, err); mf_graph_free(b.g); continue; }
    /* scribble on it first: a load must replace everything that matters */
    round_run(t, lb[5]);
    CHECK(mf_session_load(t, path[v], err, sizeof err) == 0, "%s: load %d: %s", dn, v, err);
    int from = 2;
    if (v == 1) {
      mf_session_phase_update(t, 1);
      from = 3;
    }
    for (int r = from; r < 5; r++) round_run(t, lb[r]);
    read_all(t, &b, 0, wb);
    int same = 1;
    for (int r = from; r < 5; r++) same &= !memcmp(la[r], lb[r], sizeof la[r]);
    CHECK(same, "%s: resumed (%s) losses differ: %.17g %.17g vs %.17g %.17g", dn, v ? "mid-round" : "after 2 rounds", la[4][0], la[4][1],
          lb[4][0], lb[4][1]);
    int wsame = 1;
    for (int k = 0; k < NP; k++) wsame &= !memcmp(wa[k], wb[k], (size_t)numel_of(k) * sizeof(float));
    CHECK(wsame, "%s: resumed (%s) parameters differ from the uninterrupted run", dn, v ? "mid-round" : "after 2 rounds");
    CHECK(mf_session_group_step(t, 0) == 5 && mf_session_group_step(t, 1) == 5 && mf_session_step(t) == 5,
          "%s: resumed step counts", dn);
    mf_session_free(t);
    mf_graph_free(b.g);
  }
  printf("  %s checkpoint: 5 rounds, resumed after 2 and mid-round 3: losses %.9g %.9g bit-identical\n", dn, la[4][0], la[4][1]);
  for (int i = 0; i < 2; i++) unlink(path[i]);
  mf_session_free(s);
  mf_graph_free(a.g);
}

/* ---- no-grad branches: a branch b1 = conv(x), a1 = leaky(b1), b2 = conv(a1) (each [4,4,16,16]) whose
 * loss term is (0) trained, (1) detached, (2) built from parameters the phase does not train. Trained,
 * backward reads a1 (the second conv's weight gradient, and the leaky ReLU's own, which differentiates from
 * its output) and b2 (the loss's gradient, which the program may run first, freeing b2 before the peak);
 * otherwise none outlives its last forward use, so the plan's ACT peak drops by at least a1's bytes, and the
 * branch's weights get no gradient or optimizer slot. ---- */
enum { BN = 4, BC = 4, BH = 16, MC = 16 };
static void test_nograd(mf_dtype dt) {
  const char *dn = mf_dtype_name(dt);
  size_t act[3], grad[3], opt[3], ng[3];
  for (int mode = 0; mode < 3; mode++) {
    mf_graph *g = mf_graph_init(dt);
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){BN, BC, BH, BH}), t = mf_input(g, "t", 4, (int64_t[]){BN, BC, BH, BH});
    mf_tensor wb1 = mf_param(g, "wb1", 4, (int64_t[]){BC, BC, 3, 3}, MF_INIT_KAIMING, 0);
    mf_tensor wb2 = mf_param(g, "wb2", 4, (int64_t[]){BC, BC, 3, 3}, MF_INIT_KAIMING, 0);
    mf_tensor wm1 = mf_param(g, "wm1", 4, (int64_t[]){MC, BC, 3, 3}, MF_INIT_KAIMING, 0);
    mf_tensor wm2 = mf_param(g, "wm2", 4, (int64_t[]){BC, MC, 3, 3}, MF_INIT_KAIMING, 0);
    if (mode == 2) {
      mf_param_group_set(g, wb1, 1);
      mf_param_group_set(g, wb2, 1);
    }
    mf_tensor b2 = mf_conv2d(g, mf_leaky_relu(g, mf_conv2d(g, x, wb1, -1, 1, 1, 1), 0.1), wb2, -1, 1, 1, 1);
    mf_tensor branch = mf_mse_loss(g, mode == 1 ? mf_detach(g, b2) : b2, t);
    mf_tensor main = mf_mse_loss(g, mf_conv2d(g, mf_leaky_relu(g, mf_conv2d(g, x, wm1, -1, 1, 1, 1), 0.1), wm2, -1, 1, 1, 1), t);
    mf_tensor loss = mf_add(g, main, branch);
    mf_train_opts o = mf_train_opts_default();
    o.threads = 2;
    o.debug_memory = 1;
    o.n_groups = 2;
    char err[512];
    mf_phase_opts ph = {"step", loss, mode == 2 ? 1u : 0u};
    mf_session *s = mf_session_init_phases(g, 1, &ph, &o, err, sizeof err);
    CHECK(s != NULL, "%s/%d: session: %s", dn, mode, err);
    if (!s) { mf_graph_free(g); return; }
    float *xb = malloc(BN * BC * BH * BH * sizeof(float));
    for (int i = 0; i < BN * BC * BH * BH; i++) xb[i] = (float)xval(i);
    mf_session_write_input(s, x, xb, BN * BC * BH * BH);
    mf_session_write_input(s, t, xb, BN * BC * BH * BH);
    free(xb);
    for (int i = 0; i < 2; i++) {
      CHECK(isfinite(mf_session_phase_step(s, 0)), "%s/%d: step", dn, mode);
      CHECK(mf_session_phase_update(s, 0) == 1, "%s/%d: update", dn, mode);
    }
    const mf_plan *p = mf_session_plan(s);
    for (int a = 0; a < MF_ARENA_COUNT; a++) {
      size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
      CHECK(planned == measured, "%s/%d: arena %s planned %zu measured %zu", dn, mode, mf_arena_name((mf_arena_kind)a), planned, measured);
    }
    float gb[BC * BC * 9];
    CHECK((mode == 0) == (mf_session_read_grad(s, wb1, gb, BC * BC * 9) == 0), "%s/%d: the branch's weight has a gradient only when trained", dn, mode);
    act[mode] = mf_plan_arena_bytes(p, MF_ARENA_ACT);
    grad[mode] = mf_plan_arena_bytes(p, MF_ARENA_GRAD);
    opt[mode] = mf_plan_arena_bytes(p, MF_ARENA_OPT);
    ng[mode] = p->phase[0].nograd_bytes - p->phase[0].nograd_kept;
    mf_session_free(s);
    mf_graph_free(g);
  }
  size_t tb = (size_t)BN * BC * BH * BH * mf_dtype_size(dt), branch = tb; /* a1, alive across the turn */
  size_t wbytes = 2 * (size_t)BC * BC * 9 * 4, wal = 2 * (((size_t)BC * BC * 9 * 4 + MF_ALIGN - 1) / MF_ALIGN * MF_ALIGN);
  for (int mode = 1; mode < 3; mode++) {
    CHECK(act[mode] + branch <= act[0], "%s/%s: ACT %zu B, with the branch trained %zu B: should be at least %zu B (the branch) smaller", dn,
          mode == 1 ? "detached" : "frozen", act[mode], act[0], branch);
    CHECK(ng[mode] >= branch, "%s/%d: %zu B counted as freed at last forward use, the branch has %zu B", dn, mode, ng[mode], branch);
    CHECK(grad[0] - grad[mode] == wal && opt[0] - opt[mode] == 2 * wal, "%s/%d: gradient %zu -> %zu B, optimizer state %zu -> %zu B "
          "(the branch's %zu B of weights)", dn, mode, grad[0], grad[mode], opt[0], opt[mode], wbytes);
  }
  CHECK(ng[0] == 0, "%s: nothing of the trained graph needs no gradient (%zu B)", dn, ng[0]);
  printf("  %s no-grad branch (%zu B): ACT trained %zu B, detached %zu B, frozen %zu B\n", dn, branch, act[0], act[1], act[2]);
}

/* ---- f16 with dynamic loss scaling: the scale starts at 65536, so the first phase updates overflow and
 * are skipped (their gradients dropped, nothing else touched) until the scale fits; training then goes
 * on, and memory is still as planned ---- */
static void test_f16_scaling(void) {
  char err[512];
  gan m;
  gan_build(&m, MF_F16, 0);
  mf_train_opts o = gan_opts();
  mf_session *s = gan_session(&m, &o, err, sizeof err);
  CHECK(s != NULL, "f16: session: %s", err);
  if (!s) { mf_graph_free(m.g); return; }
  static float w0[NP][128], w1[NP][128], gz[NP][128];
  int skipped = 0, applied[2] = {0, 0}, untouched = 1, dropped = 1;
  for (int r = 0; r < 40 && (applied[0] < 2 || applied[1] < 2); r++)
    for (int ph = 0; ph < 2; ph++) {
      mf_session_phase_step(s, ph);
      read_all(s, &m, 0, w0);
      int rc = mf_session_phase_update(s, ph);
      read_all(s, &m, 0, w1);
      if (rc == 0) {
        skipped++;
        untouched &= !memcmp(w0, w1, sizeof w0);
        read_all(s, &m, 1, gz);
        for (int k = ph ? 3 : 0; k < (ph ? NP : 3); k++)
          for (int64_t i = 0; i < numel_of(k); i++) dropped &= gz[k][i] == 0;
      } else if (rc == 1)
        applied[ph]++;
    }
  CHECK(skipped > 0 && untouched && dropped, "f16: %d skipped updates (parameters untouched %d, gradients dropped %d)", skipped,
        untouched, dropped);
  CHECK(applied[0] >= 2 && applied[1] >= 2, "f16: updates applied: gen %d, disc %d", applied[0], applied[1]);
  CHECK(mf_session_group_step(s, 0) == applied[0] && mf_session_group_step(s, 1) == applied[1], "f16: step counts count applied updates");
  int finite = 1;
  for (int k = 0; k < NP; k++)
    for (int64_t i = 0; i < numel_of(k); i++) finite &= isfinite(w1[k][i]);
  CHECK(finite, "f16: parameters finite");
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_session_measured_bytes(s, (mf_arena_kind)a), "f16: arena %s planned %zu measured %zu",
          mf_arena_name((mf_arena_kind)a), mf_plan_arena_bytes(p, (mf_arena_kind)a), mf_session_measured_bytes(s, (mf_arena_kind)a));
  printf("  f16: %d phase updates skipped while the loss scale came down to %g, then gen %d and disc %d applied\n", skipped,
         mf_session_loss_scale(s), applied[0], applied[1]);
  mf_session_free(s);
  mf_graph_free(m.g);
}

/* ---- one phase: mf_session_init_phases with one phase of mask 0 is mf_session_init, whichever calls run
 * it (phase_step/phase_update or micro_step/update); the plans are the same to the byte ---- */
static void test_one_phase(void) {
  char err[512];
  mf_session *s[3];
  gan m[3];
  double loss[3][3];
  static float w[3][NP][128];
  for (int v = 0; v < 3; v++) {
    gan_build(&m[v], MF_F32, 0);
    mf_train_opts o = gan_opts();
    o.n_groups = 1; /* every parameter in group 0 */
    for (int k = 3; k < NP; k++) mf_param_group_set(m[v].g, m[v].p[k], 0);
    mf_phase_opts ph = {NULL, m[v].loss_g, 0};
    s[v] = v == 0 ? mf_session_init(m[v].g, m[v].loss_g, &o, err, sizeof err) : mf_session_init_phases(m[v].g, 1, &ph, &o, err, sizeof err);
    CHECK(s[v] != NULL, "one phase %d: %s", v, err);
    if (!s[v]) return;
    /* values as gan_session writes them */
    float buf[N * C * H * W];
    for (int k = 0; k < NP; k++) {
      for (int64_t i = 0; i < numel_of(k); i++) buf[i] = (float)pval(k, i);
      mf_session_write_param(s[v], m[v].p[k], buf, (size_t)numel_of(k));
    }
    for (int i = 0; i < N * C * H * W; i++) buf[i] = (float)xval(i);
    mf_session_write_input(s[v], m[v].x, buf, N * C * H * W);
    for (int st = 0; st < 3; st++) {
      if (v == 2) {
        loss[v][st] = mf_session_phase_step(s[v], 0);
        mf_session_phase_update(s[v], 0);
      } else {
        loss[v][st] = mf_session_micro_step(s[v]);
        mf_session_update(s[v]);
      }
    }
    read_all(s[v], &m[v], 0, w[v]);
  }
  for (int v = 1; v < 3; v++) {
    CHECK(!memcmp(loss[v], loss[0], sizeof loss[0]) && !memcmp(w[v], w[0], sizeof w[0]),
          "one phase (%s): losses or parameters differ from mf_session_init's", v == 1 ? "micro_step" : "phase_step");
    for (int a = 0; a < MF_ARENA_COUNT; a++)
      CHECK(mf_plan_arena_bytes(mf_session_plan(s[v]), (mf_arena_kind)a) == mf_plan_arena_bytes(mf_session_plan(s[0]), (mf_arena_kind)a),
            "one phase: arena %s differs", mf_arena_name((mf_arena_kind)a));
  }
  /* phase_step after mf_session_update starts from zero gradients, as micro_step does */
  float g1[128], g2[128];
  mf_session_micro_step(s[1]);
  mf_session_update(s[1]);
  mf_session_micro_step(s[1]);
  mf_session_read_grad(s[1], m[1].p[0], g1, (size_t)numel_of(0));
  mf_session_micro_step(s[0]);
  mf_session_update(s[0]);
  mf_session_phase_step(s[0], 0);
  mf_session_read_grad(s[0], m[0].p[0], g2, (size_t)numel_of(0));
  CHECK(!memcmp(g1, g2, (size_t)numel_of(0) * sizeof(float)), "phase_step after update accumulated onto old gradients");
  printf("  one phase: mf_session_init, micro_step and phase_step sessions agree to the bit (losses %.9g %.9g %.9g)\n", loss[0][0],
         loss[0][1], loss[0][2]);
  for (int v = 0; v < 3; v++) {
    mf_session_free(s[v]);
    mf_graph_free(m[v].g);
  }
}

/* ---- bad input: clear errors naming the phase ---- */
static void test_bad_input(void) {
  gan m;
  gan_build(&m, MF_F32, 0);
  mf_train_opts o = gan_opts();
  char err[512];
  struct { mf_phase_opts ph[2]; const char *want; } cases[] = {
    {{{"gen", m.loss_g, 1}, {"disc", mf_mse_loss(m.g, mf_detach(m.g, m.xr), m.x), 0}}, "phase 'disc' trains no parameter"},
    {{{"gen", m.loss_g, 1}, {"disc", m.d_real, 2}}, "must be a scalar (one element), got shape [2,1]"},
    {{{"gen", m.loss_g, 1 | 4}, {"disc", m.loss_d, 2}}, "names group 2, which has no parameters"},
    {{{"gen", m.loss_g, 1u << 9}, {"disc", m.loss_d, 2}}, "names group 9; groups are 0 .. 7"},
    {{{"gen", 100000, 1}, {"disc", m.loss_d, 2}}, "phase 'gen': the loss (tensor 100000) is not a tensor"},
    {{{NULL, m.loss_g, 1}, {NULL, m.loss_d, 1}}, "phase 'phase 1' trains no parameter"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    err[0] = 0;
    mf_plan *pl = mf_plan_init_phases(m.g, 2, cases[i].ph, &o.plan, err, sizeof err);
    CHECK(!pl && strstr(err, cases[i].want), "bad input %zu: wanted '%s', got '%s'", i, cases[i].want, pl ? "a plan" : err);
    mf_plan_free(pl);
  }
  o.n_groups = 3; /* the session refuses the empty group 2 the same way */
  mf_phase_opts ph2[2] = {{"gen", m.loss_g, 1 | 4}, {"disc", m.loss_d, 2}};
  mf_session *s2 = mf_session_init_phases(m.g, 2, ph2, &o, err, sizeof err);
  CHECK(!s2 && strstr(err, "names group 2, which has no parameters"), "session, empty group: %s", s2 ? "a session" : err);
  mf_session_free(s2);
  o.n_groups = 2;
  mf_phase_opts ph[2] = {{"gen", m.loss_g, 1}, {"disc", m.loss_d, 2 | 4}}; /* group 2 is past n_groups */
  mf_session *s = mf_session_init_phases(m.g, 2, ph, &o, err, sizeof err);
  CHECK(!s && strstr(err, "phase 'disc' trains group 2, but n_groups is 2"), "group past n_groups: %s", s ? "a session" : err);
  mf_session_free(s);
  o = gan_opts();
  s = mf_session_init_phases(m.g, 0, ph, &o, err, sizeof err);
  CHECK(!s && strstr(err, "0 phases"), "no phases: %s", s ? "a session" : err);
  mf_plan *pl = mf_plan_init_phases(m.g, MF_MAX_PHASES + 1, ph, NULL, err, sizeof err);
  CHECK(!pl && strstr(err, "phases: expected 1 to"), "too many phases: %s", pl ? "a plan" : err);
  mf_plan_free(pl);
  mf_graph_free(m.g);
}

int main(void) {
  test_gan(MF_F32);
  test_gan(MF_BF16);
  test_checkpoint(MF_F32);
  test_checkpoint(MF_BF16);
  test_nograd(MF_F32);
  test_nograd(MF_BF16);
  test_one_phase();
  test_f16_scaling();
  test_bad_input();
  return check_finish("test_phases");
}

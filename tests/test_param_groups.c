/* test_param_groups.c — optimizer parameter groups (own lr, weight decay, betas, momentum, step count)
 * against a reference written here, with a rounding bound derived from the arithmetic; the schedule
 * per group; reduce-on-plateau; checkpoints of both (strictly validated); and an unchanged memory plan. */
#include "check.h"
#include "train/safetensors.h"
#include "st_rewrite.h"
#include "train/session.h"
#include <float.h>
#include <math.h>
#include <unistd.h>

/* y = x w0 + x w1 against t (mse): w0 in group 0, w1 in group 1 */
typedef struct net { mf_graph *g; mf_tensor x, t, w[2], loss; } net;
static void net_build_dt(net *n, mf_dtype dt, int groups) {
  n->g = mf_graph_init(dt);
  n->x = mf_input(n->g, "x", 2, (int64_t[]){4, 4});
  n->t = mf_input(n->g, "t", 2, (int64_t[]){4, 2});
  n->w[0] = mf_param(n->g, "w0", 2, (int64_t[]){4, 2}, MF_INIT_NORMAL, 0.5);
  n->w[1] = mf_param(n->g, "w1", 2, (int64_t[]){4, 2}, MF_INIT_NORMAL, 0.5);
  if (groups) mf_param_group_set(n->g, n->w[1], 1);
  mf_tensor y = mf_add(n->g, mf_matmul(n->g, n->x, n->w[0], 0, 0), mf_matmul(n->g, n->x, n->w[1], 0, 0));
  n->loss = mf_mse_loss(n->g, y, n->t);
}
static void net_build(net *n, int groups) { net_build_dt(n, MF_F32, groups); }
static void fill(float *v, int n, int seed) {
  for (int i = 0; i < n; i++) v[i] = (float)sin(1.3 * i + 0.7 * seed);
}
static mf_session *net_session(net *n, const mf_train_opts *o) {
  char err[512];
  mf_session *s = mf_session_init(n->g, n->loss, o, err, sizeof err);
  if (!s) fprintf(stderr, "session: %s\n", err);
  return s;
}
static void net_inputs(mf_session *s, net *n) {
  float x[16], t[8];
  fill(x, 16, 3);
  fill(t, 8, 4);
  mf_session_write_input(s, n->x, x, 16);
  mf_session_write_input(s, n->t, t, 8);
}

/* The settings of one group as the reference sees them (exact decimals, not the kernel's floats). */
typedef struct gset { double lr, wd, b1, b2, eps, mu; } gset;

static const double U = 0x1p-24; /* unit roundoff of f32 */
static double gam(int k) { return k * U / (1 - k * U); }

/* One element's reference state and a bound on |kernel - exact| for w, propagated step by step:
 * every f32 rounding is a relative error of at most u, each constant the kernel takes as a float
 * (lr, decay, betas, eps, the bias corrections) is one more, and 1 - beta computed in f32 from the
 * rounded beta is off by u*beta/(1-beta) relative. mm/vm are the sums of the magnitudes of the terms
 * that m and v add up (Higham's gamma_k times those sums bounds a sum's rounding); em/ev/ew the
 * errors carried from earlier steps. The reference stores m, v, w in f32 like the kernel, so its own
 * rounding is within the same bound: the two differ by at most twice it. */
typedef struct ref { double w, m, v, mm, vm, em, ev, ew; } ref;
static void ref_step(ref *r, double g, int kind, const gset *q, int t) {
  double wd_g = kind == MF_ADAMW ? 0 : q->wd;
  double gi = g + wd_g * r->w, gim = fabs(g) + wd_g * fabs(r->w);
  double egi = gam(3) * wd_g * fabs(r->w) + gam(1) * gim + wd_g * r->ew; /* wd, product, sum; w's error */
  if (kind == MF_SGD) {
    r->m = (float)(q->mu * r->m + gi);
    r->em = q->mu * r->em + egi + gam(4) * (q->mu * r->mm + gim); /* mu, product, sum, store */
    r->mm = q->mu * r->mm + gim;
    double upd = q->lr * r->m;
    r->ew += q->lr * r->em + gam(4) * (fabs(r->w) + fabs(upd)); /* lr, product, difference, store */
    r->w = (float)(r->w - upd);
    return;
  }
  double r1 = U * q->b1 / (1 - q->b1), r2 = U * q->b2 / (1 - q->b2);
  r->m = (float)(q->b1 * r->m + (1 - q->b1) * gi);
  r->em = q->b1 * r->em + (1 - q->b1) * egi + (gam(4) + r1) * (q->b1 * r->mm + (1 - q->b1) * gim);
  r->mm = q->b1 * r->mm + (1 - q->b1) * gim;
  r->v = (float)(q->b2 * r->v + (1 - q->b2) * gi * gi); /* terms all >= 0: a relative bound */
  r->ev = q->b2 * r->ev + (1 - q->b2) * (2 * fabs(gi) + egi) * egi + (gam(5) + r2) * (q->b2 * r->vm + (1 - q->b2) * gi * gi);
  r->vm = q->b2 * r->vm + (1 - q->b2) * gi * gi;
  double c1 = 1 / (1 - pow(q->b1, t)), c2 = 1 / (1 - pow(q->b2, t));
  double sv = sqrt(r->v * c2), D = sv + q->eps;
  /* |sqrt(a) - sqrt(b)| <= min(|a-b| / (2 sqrt b), sqrt|a-b|); then c2, its product, the sqrt, eps, the sum */
  double esv = c2 * r->ev, eD = fmin(sv > 0 ? esv / (2 * sv) : INFINITY, sqrt(esv)) + gam(4) * sv + 2 * U * q->eps;
  double upd = r->m * c1 / D;
  double eupd = (c1 * r->em + gam(3) * c1 * fabs(r->m)) / D + fabs(upd) * (eD / D) / (1 - fmin(eD / D, 0.5)) +
                gam(1) * fabs(upd);
  if (kind == MF_ADAMW) {
    r->ew = r->ew * (1 + q->lr * q->wd) + gam(5) * q->lr * q->wd * fabs(r->w); /* lr, wd, products, difference */
    r->w = (float)(r->w - q->lr * q->wd * r->w);
  }
  r->ew += q->lr * eupd + gam(4) * (fabs(r->w) + q->lr * fabs(upd));
  r->w = (float)(r->w - q->lr * upd);
}

/* Two groups with different lr / weight decay / betas / momentum / eps, three updates, each weight
 * against the reference with its own group's settings; the other group's settings are checked to be
 * told apart by the bound (the test could fail). */
static void test_group_optimizers(void) {
  const mf_optim_kind kinds[3] = {MF_SGD, MF_ADAM, MF_ADAMW};
  const char *names[3] = {"sgd", "adam", "adamw"};
  const gset gs[2] = {{0.1, 0.05, 0.9, 0.999, 1e-8, 0.9}, {0.02, 0.2, 0.5, 0.9, 1e-6, 0.5}};
  for (int k = 0; k < 3; k++) {
    net n;
    net_build(&n, 1);
    mf_train_opts o = mf_train_opts_default();
    o.threads = 1;
    o.plan.optim = kinds[k];
    o.lr = gs[0].lr, o.weight_decay = gs[0].wd, o.beta1 = gs[0].b1, o.beta2 = gs[0].b2, o.eps = gs[0].eps, o.momentum = gs[0].mu;
    o.n_groups = 2;
    o.groups[1] = (mf_param_group_opts){"disc", gs[1].lr, gs[1].b1, gs[1].b2, gs[1].eps, gs[1].wd, gs[1].mu, 0};
    mf_session *s = net_session(&n, &o);
    CHECK(s != NULL, "%s: session with two groups", names[k]);
    if (!s) { mf_graph_free(n.g); continue; }
    net_inputs(s, &n);
    ref r[2][8], alt[8]; /* alt: w1 under group 0's settings */
    for (int p = 0; p < 2; p++) {
      float w[8];
      mf_session_read(s, n.w[p], w, 8);
      for (int i = 0; i < 8; i++) r[p][i] = (ref){.w = w[i]};
      if (p == 1)
        for (int i = 0; i < 8; i++) alt[i] = r[1][i];
    }
    for (int step = 1; step <= 3; step++) {
      float g[2][8];
      mf_session_micro_step(s);
      for (int p = 0; p < 2; p++) mf_session_read_grad(s, n.w[p], g[p], 8);
      CHECK(mf_session_update(s) == 1, "%s: update", names[k]);
      for (int p = 0; p < 2; p++)
        for (int i = 0; i < 8; i++) ref_step(&r[p][i], g[p][i], kinds[k], &gs[p], step);
      for (int i = 0; i < 8; i++) ref_step(&alt[i], g[1][i], kinds[k], &gs[0], step);
    }
    int told_apart = 0;
    for (int p = 0; p < 2; p++) {
      float got[8];
      mf_session_read(s, n.w[p], got, 8);
      for (int i = 0; i < 8; i++) {
        double bound = 2 * r[p][i].ew;
        CHECK(fabs(got[i] - r[p][i].w) <= bound, "%s: group %d weight %d: %.9g, reference %.9g (rounding bound %.3g)", names[k],
              p, i, got[i], r[p][i].w, bound);
        if (p == 1 && fabs(alt[i].w - r[1][i].w) > 2 * (bound + 2 * alt[i].ew)) told_apart = 1;
      }
    }
    CHECK(told_apart, "%s: group 1's own settings change its weights by more than the bound", names[k]);
    CHECK(mf_session_group_step(s, 0) == 3 && mf_session_group_step(s, 1) == 3, "%s: both groups took 3 updates", names[k]);
    mf_session_free(s);
    mf_graph_free(n.g);
  }
}

/* A frozen group keeps its weights and its step count: its first real update later is Adam's first
 * (bias correction t = 1), bit-identical to a session's first update. Group 0 has lr 0, so the
 * gradients of group 1 are the same in both sessions. */
static void test_freeze(void) {
  net a, b;
  net_build(&a, 1);
  net_build(&b, 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.optim = MF_ADAM;
  o.lr = 0;
  o.n_groups = 2;
  o.groups[1] = (mf_param_group_opts){"g1", 0.05, 0.5, 0.9, 1e-8, 0.01, 0, 0};
  mf_session *sa = net_session(&a, &o), *sb = net_session(&b, &o);
  CHECK(sa && sb, "freeze: sessions");
  if (sa && sb) {
    net_inputs(sa, &a);
    net_inputs(sb, &b);
    float w0[8], w[8], wb[8];
    mf_session_read(sa, a.w[1], w0, 8);
    CHECK(mf_session_group_freeze(sa, 1, 1) == 0 && mf_session_group_freeze(sa, 2, 1) < 0, "freeze group 1; group 2 is none");
    mf_session_micro_step(sa), mf_session_update(sa);
    mf_session_read(sa, a.w[1], w, 8);
    CHECK(!memcmp(w, w0, sizeof w) && mf_session_group_step(sa, 1) == 0 && mf_session_group_step(sa, 0) == 1,
          "a frozen group's weights and step count stay");
    mf_session_group_freeze(sa, 1, 0);
    mf_session_micro_step(sa), mf_session_update(sa);
    mf_session_micro_step(sb), mf_session_update(sb);
    mf_session_read(sa, a.w[1], w, 8);
    mf_session_read(sb, b.w[1], wb, 8);
    CHECK(!memcmp(w, wb, sizeof w), "after thawing, the group's update is its first (bias correction from its own count)");
  }
  if (sa) mf_session_free(sa);
  if (sb) mf_session_free(sb);
  mf_graph_free(a.g);
  mf_graph_free(b.g);
}

/* each group's lr is the run's warm-up + cosine scaled to its own base lr */
static void test_group_schedule(void) {
  net n;
  net_build(&n, 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.optim = MF_SGD;
  o.lr = 1.0;
  o.schedule = MF_SCHED_COSINE;
  o.warmup_steps = 3;
  o.total_steps = 9;
  o.n_groups = 2;
  o.groups[1].lr = 0.25;
  mf_session *s = net_session(&n, &o);
  CHECK(s != NULL, "schedule: session");
  if (!s) { mf_graph_free(n.g); return; }
  for (int step = 0; step < 10; step++) {
    mf_session_micro_step(s);
    mf_session_update(s);
    double f = step < 3 ? (step + 1) / 3.0 : 0.5 * (1 + cos(M_PI * fmin(1, (step - 3) / 6.0)));
    /* lr * (step+1) / warmup and lr * 0.5 * (1 + cos): a few roundings of a double, relative */
    CHECK(fabs(mf_session_group_lr(s, 0) - f) <= 8 * DBL_EPSILON, "group 0 lr at step %d: %.17g, want %.17g", step,
          mf_session_group_lr(s, 0), f);
    CHECK(fabs(mf_session_group_lr(s, 1) - 0.25 * f) <= 8 * DBL_EPSILON, "group 1 lr at step %d: %.17g, want %.17g", step,
          mf_session_group_lr(s, 1), 0.25 * f);
    CHECK(mf_session_last_lr(s) == mf_session_group_lr(s, 0), "last_lr is group 0's");
  }
  mf_session_free(s);
  mf_graph_free(n.g);
}

/* reduce-on-plateau: PyTorch's rule (mode min, relative threshold) */
static mf_session *plateau_session(net *n, int patience) {
  net_build(n, 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.optim = MF_SGD;
  o.weight_decay = 0;
  o.lr = 1.0;
  o.schedule = MF_SCHED_PLATEAU;
  o.plateau_factor = 0.5;
  o.plateau_patience = patience;
  o.plateau_threshold = 0.1;
  o.plateau_min_lr = 0.05;
  o.n_groups = 2;
  o.groups[1].lr = 0.1;
  o.groups[1].weight_decay = 0;
  o.groups[1].min_lr = 0.02;
  return net_session(n, &o);
}
static void lr_now(mf_session *s, double *l0, double *l1) {
  mf_session_micro_step(s); /* inputs never written: zeros, so the weights stay put */
  mf_session_update(s);
  *l0 = mf_session_group_lr(s, 0);
  *l1 = mf_session_group_lr(s, 1);
}
static void test_plateau(void) {
  net n;
  mf_session *s = plateau_session(&n, 2);
  CHECK(s != NULL, "plateau: session");
  if (!s) { mf_graph_free(n.g); return; }
  double l0, l1, best;
  int bad;
  lr_now(s, &l0, &l1);
  CHECK(l0 == 1.0 && l1 == 0.1, "plateau: starts at the base lrs (%g, %g)", l0, l1);
  CHECK(mf_session_report_metric(s, 10) == 0, "first report sets best");
  /* 9.05 is lower than 10 but not below 10 * (1 - 0.1): no improvement; nor NaN */
  const double no_gain[3] = {9.5, 9.05, NAN};
  for (int i = 0; i < 2; i++) {
    CHECK(mf_session_report_metric(s, no_gain[i]) == 0, "report %d without improvement: no cut yet (patience 2)", i + 1);
    lr_now(s, &l0, &l1);
    CHECK(l0 == 1.0 && l1 == 0.1, "no cut before patience runs out (%g, %g)", l0, l1);
  }
  mf_session_plateau_scale(s, &best, &bad);
  CHECK(best == 10 && bad == 2, "best %g, bad reports %d (want 10, 2)", best, bad);
  CHECK(mf_session_report_metric(s, no_gain[2]) == 1, "third report without improvement (NaN): cut");
  lr_now(s, &l0, &l1);
  CHECK(l0 == 0.5 && l1 == 0.05, "after the cut: %g, %g (want 0.5, 0.05)", l0, l1);
  CHECK(mf_session_plateau_scale(s, &best, &bad) == 0.5 && bad == 0, "scale 0.5, count restarts");
  CHECK(mf_session_report_metric(s, 8.99) == 0, "8.99 < 9: an improvement");
  mf_session_plateau_scale(s, &best, &bad);
  CHECK(best == 8.99 && bad == 0, "best %g, bad %d after an improvement", best, bad);
  /* keep failing: group 1 reaches its floor 0.02 first (0.05 -> 0.025 -> 0.02), group 0 at 0.05 */
  int cuts = 0;
  for (int i = 0; i < 30; i++) {
    cuts += mf_session_report_metric(s, 9);
    lr_now(s, &l0, &l1);
    CHECK(l0 >= 0.05 && l1 >= 0.02, "never below min lr (%g, %g)", l0, l1);
  }
  CHECK(l0 == 0.05 && l1 == 0.02, "both at their floors: %g, %g", l0, l1);
  /* group 0: 0.5 (above) -> 0.25 -> 0.125 -> 0.0625 -> 0.05 (its floor): 4 more cuts, then none */
  CHECK(cuts == 4, "%d cuts until every group sits at its floor (want 4)", cuts);
  CHECK(mf_session_plateau_scale(s, NULL, NULL) == 0.03125, "scale stops shrinking at the floor: %g", mf_session_plateau_scale(s, NULL, NULL));
  mf_session_free(s);
  mf_graph_free(n.g);
  /* patience 0: the first report without improvement cuts */
  s = plateau_session(&n, 0);
  if (s) {
    CHECK(mf_session_report_metric(s, 1) == 0 && mf_session_report_metric(s, 1) == 1, "patience 0 cuts at once");
    mf_session_free(s);
  }
  mf_graph_free(n.g);
}


static mf_session *ck_session(net *n) {
  net_build(n, 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.optim = MF_ADAM;
  o.schedule = MF_SCHED_PLATEAU;
  o.plateau_patience = 1;
  o.plateau_factor = 0.5;
  o.n_groups = 2;
  o.groups[1] = (mf_param_group_opts){"disc", 2e-3, 0.5, 0.9, 1e-8, 0, 0, 0};
  mf_session *s = net_session(n, &o);
  if (s) net_inputs(s, n);
  return s;
}

/* the groups' step counts and the plateau state survive save + load; damaged keys are refused by name */
static void test_checkpoint(const char *dir) {
  char ck[512], bad[512], err[512];
  snprintf(ck, sizeof ck, "%s/pg.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  net a, b;
  mf_session *s = ck_session(&a), *r = ck_session(&b);
  CHECK(s && r, "checkpoint: sessions");
  if (!s || !r) goto done;
  for (int i = 0; i < 4; i++) { /* group 1 frozen for one update: it takes 3 of 4 */
    mf_session_group_freeze(s, 1, i == 1);
    mf_session_micro_step(s);
    mf_session_update(s);
  }
  mf_session_report_metric(s, 2.0);
  mf_session_report_metric(s, 3.0);
  mf_session_report_metric(s, 3.0); /* patience 1: cut to 0.5 */
  mf_session_report_metric(s, 2.5); /* one bad report */
  double best, best_r;
  int nbad, nbad_r;
  double scale = mf_session_plateau_scale(s, &best, &nbad);
  CHECK(scale == 0.5 && best == 2.0 && nbad == 1, "plateau state before saving: %g %g %d", scale, best, nbad);
  CHECK(mf_session_group_step(s, 0) == 4 && mf_session_group_step(s, 1) == 3, "frozen group skipped an update: %lld %lld",
        (long long)mf_session_group_step(s, 0), (long long)mf_session_group_step(s, 1));
  CHECK(mf_session_save(s, ck, err, sizeof err) == 0, "save: %s", err);
  CHECK(mf_session_load(r, ck, err, sizeof err) == 0, "load: %s", err);
  double scale_r = mf_session_plateau_scale(r, &best_r, &nbad_r);
  CHECK(scale_r == scale && best_r == best && nbad_r == nbad, "plateau state restored: %g %g %d", scale_r, best_r, nbad_r);
  CHECK(mf_session_group_step(r, 0) == 4 && mf_session_group_step(r, 1) == 3, "group steps restored: %lld %lld",
        (long long)mf_session_group_step(r, 0), (long long)mf_session_group_step(r, 1));
  /* the next update is the same bits in both (group 1's bias correction uses its own count) */
  mf_session_micro_step(s), mf_session_update(s);
  mf_session_micro_step(r), mf_session_update(r);
  for (int p = 0; p < 2; p++) {
    float ws[8], wr[8];
    mf_session_read(s, a.w[p], ws, 8);
    mf_session_read(r, b.w[p], wr, 8);
    CHECK(!memcmp(ws, wr, sizeof ws), "group %d: the update after resuming is bit-identical", p);
  }
  /* a fresh plateau before the file was saved, so "inf" is a valid best */
  {
    net c;
    mf_session *f = ck_session(&c);
    if (f) {
      int rc = mf_session_save(f, bad, err, sizeof err) == 0 && mf_session_load(r, bad, err, sizeof err) == 0;
      scale_r = mf_session_plateau_scale(r, &best_r, NULL);
      CHECK(rc && scale_r == 1 && isinf(best_r) && best_r > 0, "an unreported plateau (best inf) round-trips: %s", err);
      mf_session_free(f);
    }
    mf_graph_free(c.g);
  }
  CHECK(mf_session_load(r, ck, err, sizeof err) == 0, "reload: %s", err);
  static const struct { const char *key, *value; } damaged[] = {
    {"plateau.scale", "0"}, {"plateau.scale", "1.5"}, {"plateau.scale", "nan"}, {"plateau.scale", " 0.5"},
    {"plateau.scale", "0x1p-1"}, {"plateau.scale", NULL}, {"plateau.best", "nan"}, {"plateau.best", "1e999"},
    {"plateau.best", "-inf"}, {"plateau.best", "2.0abc"}, {"plateau.bad", "-1"}, {"plateau.bad", "1.5"},
    {"plateau.bad", "99999999999"}, {"group.1.step", "6"}, {"group.0.step", "x"}, {"group.1.step", NULL},
    {"group.2.step", "1"},
  };
  for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
    if (st_rewrite(ck, bad, damaged[i].key, damaged[i].value, NULL, 0) < 0) { CHECK(0, "rewrite"); continue; }
    err[0] = 0;
    int rc = mf_session_load(r, bad, err, sizeof err);
    CHECK(rc < 0 && strstr(err, damaged[i].key) && strstr(err, bad) && (!damaged[i].value || strstr(err, damaged[i].value)),
          "%s='%s' refused naming key, value and file: %s", damaged[i].key, damaged[i].value ? damaged[i].value : "(removed)",
          err);
  }
  scale_r = mf_session_plateau_scale(r, &best_r, &nbad_r);
  CHECK(scale_r == 0.5 && best_r == 2.0 && mf_session_group_step(r, 1) == 3, "refused files leave the session as it was");
  /* a file from before groups (none of the keys): every group resumes at the session's step, plateau fresh */
  const char *keys[5] = {"group.0.step", "group.1.step", "plateau.best", "plateau.bad", "plateau.scale"};
  char tmp[2][512];
  snprintf(tmp[0], sizeof tmp[0], "%s/t0.safetensors", dir);
  snprintf(tmp[1], sizeof tmp[1], "%s/t1.safetensors", dir);
  int ok = st_rewrite(ck, tmp[0], keys[0], NULL, NULL, 0) == 0;
  for (int i = 1; i < 5 && ok; i++) ok = st_rewrite(tmp[(i - 1) % 2], tmp[i % 2], keys[i], NULL, NULL, 0) == 0;
  CHECK(ok && mf_session_load(r, tmp[0], err, sizeof err) == 0, "a checkpoint without group keys loads: %s", err);
  CHECK(mf_session_group_step(r, 1) == 4 && mf_session_plateau_scale(r, NULL, NULL) == 1, "... with group steps = step, fresh plateau");
  /* the caller may not take the session's key prefixes */
  const char *k1[1] = {"plateau.mine"}, *v1[1] = {"1"};
  CHECK(mf_checkpoint_save(s, bad, 1, k1, v1, err, sizeof err) < 0 && strstr(err, "plateau.mine"), "caller key plateau.* refused");
  unlink(tmp[0]), unlink(tmp[1]), unlink(bad), unlink(ck);
done:
  if (s) mf_session_free(s);
  if (r) mf_session_free(r);
  mf_graph_free(a.g);
  mf_graph_free(b.g);
}

/* groups add no bytes: the plan equals the plan without groups, and measured == planned per arena */
static void test_memory(void) {
  const mf_dtype dts[2] = {MF_F32, MF_BF16};
  for (int d = 0; d < 2; d++)
    for (int groups = 0; groups < 2; groups++) {
      net n;
      net_build_dt(&n, dts[d], groups);
      mf_train_opts o = mf_train_opts_default();
      o.threads = 1;
      o.debug_memory = 1;
      o.n_groups = 2;
      o.groups[1].lr = 0.5;
      mf_session *s = net_session(&n, &o);
      CHECK(s != NULL, "memory: session");
      if (!s) { mf_graph_free(n.g); continue; }
      net_inputs(s, &n);
      for (int i = 0; i < 2; i++) mf_session_micro_step(s), mf_session_update(s);
      static size_t without[2][MF_ARENA_COUNT];
      for (int a = 0; a < MF_ARENA_COUNT; a++) {
        size_t planned = mf_plan_arena_bytes(mf_session_plan(s), (mf_arena_kind)a);
        size_t measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
        CHECK(planned == measured, "%s, %s groups: arena %s planned %zu measured %zu", mf_dtype_name(dts[d]), groups ? "two" : "no",
              mf_arena_name((mf_arena_kind)a), planned, measured);
        if (!groups) without[d][a] = planned;
        else CHECK(planned == without[d][a], "arena %s: %zu bytes with groups, %zu without", mf_arena_name((mf_arena_kind)a), planned,
                   without[d][a]);
      }
      mf_session_free(s);
      mf_graph_free(n.g);
    }
}

/* bad groups are refused with the reason */
static void test_refused(void) {
  net n;
  net_build(&n, 1);
  char err[512] = "";
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  mf_session *s = mf_session_init(n.g, n.loss, &o, err, sizeof err);
  CHECK(!s && strstr(err, "'w1'") && strstr(err, "group 1"), "a parameter in a group past n_groups: %s", err);
  if (s) mf_session_free(s);
  o.n_groups = 2;
  o.groups[1].beta2 = 1.0;
  s = mf_session_init(n.g, n.loss, &o, err, sizeof err);
  CHECK(!s && strstr(err, "beta2"), "beta2 = 1 refused: %s", err);
  if (s) mf_session_free(s);
  o.groups[1].beta2 = 0.9;
  o.schedule = MF_SCHED_PLATEAU;
  o.plateau_factor = 1.0;
  s = mf_session_init(n.g, n.loss, &o, err, sizeof err);
  CHECK(!s && strstr(err, "factor"), "plateau factor 1 refused: %s", err);
  if (s) mf_session_free(s);
  CHECK(mf_param_group_get(n.g, n.w[1]) == 1 && mf_param_group_get(n.g, n.w[0]) == 0 && mf_param_group_get(n.g, n.x) == -1,
        "mf_param_group_get");
  CHECK(mf_param_group_set(n.g, n.w[0], MF_MAX_PARAM_GROUPS) < 0 && mf_graph_error(n.g) && strstr(mf_graph_error(n.g), "w0"),
        "group out of range: %s", mf_graph_error(n.g) ? mf_graph_error(n.g) : "(no error)");
  mf_graph_free(n.g);
  n.g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(n.g, "x", 1, (int64_t[]){2});
  CHECK(mf_param_group_set(n.g, x, 1) < 0 && strstr(mf_graph_error(n.g), "not a parameter"), "an input is no parameter");
  mf_graph_free(n.g);
}

int main(void) {
  char dir[] = "/tmp/memfit_pgroups_XXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  test_group_optimizers();
  test_group_schedule();
  test_freeze();
  test_plateau();
  test_checkpoint(dir);
  test_memory();
  test_refused();
  rmdir(dir);
  return check_finish("test_param_groups");
}

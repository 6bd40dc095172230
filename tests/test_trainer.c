/* test_trainer.c — the one training loop (mf_trainer) through the public API: its losses are bit-identical to a
 * hand-written loop over the same loader (f32 and bf16, with accumulation; a plain net, and one with an EMA, a
 * ring buffer, two parameter groups and a model that grows); stop / Ctrl-C (a real SIGINT) / --stop-after then
 * resume continue bit-identically, state included; validation and checkpoint cadence; plateau; the JSON-lines
 * log; measured == planned memory; bad arguments refused. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "memfit.h"
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define B 4         /* micro-batch */
#define EXPECT(c) CHECK(c, "%s", "see the condition")
#define UPDATES 7
#define PER_EPOCH 3

/* stateful: an EMA of w1 computing keys into a ring buffer the loss reads, w2 in a parameter group of its own,
 * and hidden units behind an active mask that grows from 4 to 6 after update GROW_AT (trainer hook) */
/* stateful 2: two phases, a generator (w1, w2; group 0) and a discriminator (w3 [48,4]; group 1) that sees the
 * generator's output detached in its own phase */
typedef struct net { mf_graph *g; mf_tensor x, w1, w2, w3, loss, loss_d, ema, ring, mask; int stateful; } net;
#define GROW_AT 3

/* x [B,3,4,4] -> [B,48] -> relu(x w1) [B,8] -> w2 [B,48]; loss = mse(reconstruction, x) */
static void net_build(net *n, mf_dtype dt, int stateful, int accum) {
  n->g = mf_graph_init(dt);
  mf_graph_set_seed(n->g, 7);
  int64_t xs[4] = {B, 3, 4, 4}, fs[2] = {B, 48}, w1s[2] = {48, 8}, w2s[2] = {8, 48};
  n->x = mf_input(n->g, "x", 4, xs);
  n->w1 = mf_param(n->g, "w1", 2, w1s, MF_INIT_KAIMING, 0);
  n->w2 = mf_param(n->g, "w2", 2, w2s, MF_INIT_XAVIER, 0);
  mf_tensor f = mf_reshape(n->g, n->x, 2, fs);
  mf_tensor h = mf_relu(n->g, mf_matmul(n->g, f, n->w1, 0, 0));
  n->stateful = stateful;
  n->ema = n->ring = n->mask = -1;
  if (!stateful) {
    n->loss = mf_mse_loss(n->g, mf_matmul(n->g, h, n->w2, 0, 0), f);
    EXPECT(mf_graph_error(n->g) == NULL);
    return;
  }
  if (stateful == 2) {
    int64_t w3s[2] = {48, 4};
    n->w3 = mf_param(n->g, "w3", 2, w3s, MF_INIT_XAVIER, 0);
    EXPECT(mf_param_group_set(n->g, n->w3, 1) == 0);
    mf_tensor y = mf_matmul(n->g, h, n->w2, 0, 0); /* [B,48] */
    mf_tensor fake = mf_sigmoid(n->g, mf_mul_scalar(n->g, mf_matmul(n->g, y, n->w3, 0, 0), -1));           /* [B,4] */
    n->loss = mf_add(n->g, mf_mse_loss(n->g, y, f), mf_mul_scalar(n->g, mf_mean(n->g, fake, 0, 0), 0.1));
    mf_tensor df = mf_sigmoid(n->g, mf_matmul(n->g, mf_detach(n->g, y), n->w3, 0, 0));
    mf_tensor dr = mf_sigmoid(n->g, mf_mul_scalar(n->g, mf_matmul(n->g, f, n->w3, 0, 0), -1));
    n->loss_d = mf_add(n->g, mf_mean(n->g, df, 0, 0), mf_mean(n->g, dr, 0, 0));
    EXPECT(mf_graph_error(n->g) == NULL);
    return;
  }
  int64_t ms[2] = {1, 8};
  n->mask = mf_active_mask(n->g, "mask", 8, 4);
  EXPECT(mf_mask_rows(n->g, n->mask, n->w2) == 0);
  EXPECT(mf_param_group_set(n->g, n->w2, 1) == 0);
  h = mf_mul(n->g, h, mf_reshape(n->g, n->mask, 2, ms));           /* [B,8], inactive units 0 */
  n->ema = mf_ema(n->g, "w1_ema", n->w1, 0.9);
  mf_tensor k = mf_relu(n->g, mf_matmul(n->g, f, n->ema, 0, 0));  /* keys [B,8], no gradient */
  n->ring = mf_ring(n->g, "queue", 10, 8);
  EXPECT(mf_ring_push_steps(n->g, n->ring, k, accum) == 0);     /* once per update, all micro-steps' keys */
  mf_tensor logits = mf_matmul(n->g, h, n->ring, 0, 1);          /* [B,10] against the queue */
  n->loss = mf_add(n->g, mf_mse_loss(n->g, mf_matmul(n->g, h, n->w2, 0, 0), f), mf_mul_scalar(n->g, mf_mean(n->g, logits, 0, 0), 1e-3));
  EXPECT(mf_graph_error(n->g) == NULL);
}

static mf_session *session_make(net *n, mf_dtype dt, int accum, mf_schedule sched, int stateful) {
  net_build(n, dt, stateful, accum);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.threads = 1;
  o.plan.optim = MF_ADAM;
  o.accum_steps = accum;
  o.schedule = sched;
  o.lr = 1e-2;
  o.plateau_patience = 0;
  o.plateau_factor = 0.5;
  o.n_groups = 2;
  o.groups[1].lr = 5e-3;
  o.debug_memory = 1;
  o.plan.n_keep = 1;
  o.plan.keep = &n->loss;
  char err[512];
  mf_phase_opts ph[2] = {{"gen", n->loss, 1u << 0}, {"disc", n->loss_d, 1u << 1}};
  mf_session *s = stateful == 2 ? mf_session_init_phases(n->g, 2, ph, &o, err, sizeof err) : mf_session_init(n->g, n->loss, &o, err, sizeof err);
  if (!s) fprintf(stderr, "%s\n", err);
  EXPECT(s != NULL);
  return s;
}

static mf_loader_opts loader_opts(mf_dataset *ds) {
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = ds;
  lo.batch_size = B;
  lo.workers = 2;
  lo.seed = 11;
  lo.quiet = 1;
  lo.tf.out_w = lo.tf.out_h = 4;
  lo.tf.crop = MF_CROP_RANDOM;
  lo.tf.hflip = 0.5f;
  return lo;
}

/* ---- hooks ---- */
typedef struct hctx {
  net *n;
  int micro_steps, validations, stop_at, sigint_at;
  int64_t last_update;       /* after_update: the last update number seen (must count up by one) */
  int update_order_bad;
  mf_trainer *t;
} hctx;

static int feed(void *ctx, mf_session *s, const mf_batch *b, char *err, size_t n) {
  hctx *c = ctx;
  const float *d[1] = {b->images};
  if (mf_session_stage_inputs(s, 1, &c->n->x, d) < 0) { snprintf(err, n, "stage failed"); return -1; }
  return 0;
}
static void read_terms(void *ctx, mf_session *s, double *v) {
  hctx *c = ctx;
  float l = 0;
  if (c->n->stateful != 2) mf_session_read(s, c->n->loss, &l, 1); /* with phases the last phase ran the disc's loss */
  v[0] = l;
  c->micro_steps++;
  if (c->stop_at && c->micro_steps == c->stop_at) mf_trainer_stop(c->t);
  if (c->sigint_at && c->micro_steps == c->sigint_at) raise(SIGINT);
}
/* the stateful net grows after update GROW_AT (the same in the hand loop) */
static int net_grow(net *n, mf_session *s, int64_t update) {
  if (n->stateful != 1 || update != GROW_AT) return 0;
  return mf_session_grow(s, n->mask, 6, 1, &n->w2, NULL);
}

static int after_update(void *ctx, mf_session *s, int64_t update, char *err, size_t n) {
  hctx *c = ctx;
  if (net_grow(c->n, s, update) < 0) { snprintf(err, n, "grow failed"); return -1; }
  if ((c->last_update && update != c->last_update + 1) || update != mf_session_step(s)) c->update_order_bad = 1;
  c->last_update = update;
  return 0;
}
static int validate(void *ctx, mf_session *s, const char *path, int64_t *bad, const char **names, double *vals, char *line,
                    size_t n, int *failed) {
  hctx *c = ctx;
  (void)s; (void)path; (void)bad; (void)failed;
  c->validations++;
  names[0] = "val_loss";
  vals[0] = 1.0; /* never improves: the plateau schedule cuts after every report but the first */
  snprintf(line, n, "val_loss 1");
  return 1;
}

typedef struct run_opts {
  const char *out, *resume;
  int64_t stop_after, every, val_every;
  int accum, signals;
} run_opts;

/* one trainer run over the generated set; returns its status */
static int trainer_run(mf_session *s, net *n, mf_dataset *ds, const run_opts *r, hctx *hc) {
  mf_loader_opts lo = loader_opts(ds);
  static const char *const terms[1] = {"loss_read"};
  mf_trainer_opts o = mf_trainer_opts_default();
  o.name = "test trainer";
  o.out = r->out;
  o.total_steps = UPDATES;
  o.steps_per_epoch = PER_EPOCH;
  o.accum = r->accum;
  o.samples_per_step = B * r->accum;
  o.log_every = -1;
  o.n_terms = 1;
  o.term_names = terms;
  o.resume = r->resume;
  o.stop_after = r->stop_after;
  o.every = r->every;
  o.val_every = r->val_every;
  o.handle_signals = r->signals;
  o.data_source = "generated";
  char ll[700];
  snprintf(ll, sizeof ll, "%s/loss.txt", r->out);
  o.loss_log = ll;
  hc->n = n;
  mf_trainer_hooks h = {.ctx = hc, .feed = feed, .read_terms = read_terms, .validate = validate,
                       .after_update = after_update};
  char err[1024];
  mf_trainer *t = mf_trainer_init(s, &lo, &o, &h, err, sizeof err);
  if (!t) { fprintf(stderr, "mf_trainer_init: %s\n", err); return -1; }
  hc->t = t;
  int rc = mf_trainer_run(t);
  mf_trainer_free(t);
  return rc;
}

/* the losses of the loss log, in update order; returns how many */
static int loss_log_read(const char *out, double *loss, double *term) {
  char p[700];
  snprintf(p, sizeof p, "%s/loss.txt", out);
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  int n = 0;
  long long u;
  double l, t;
  while (n < 64 && fscanf(f, "%lld %lf %lf", &u, &l, &t) == 3) {
    EXPECT(u == n + 1);
    loss[n] = l;
    term[n] = t;
    n++;
  }
  fclose(f);
  return n;
}

/* the same steps without the trainer: batches in loader order (a new pass when one ends), written, stepped */
static void hand_loop(mf_session *s, net *n, mf_dataset *ds, int accum, double *loss) {
  mf_loader_opts lo = loader_opts(ds);
  char err[512];
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  EXPECT(L != NULL);
  for (int u = 0; u < UPDATES && n->stateful == 2; u++) { /* phases: each micro-batch through gen then disc */
    double sum = 0;
    for (int k = 0; k < accum; k++) {
      const mf_batch *b = mf_loader_next(L);
      if (!b) b = mf_loader_next(L);
      EXPECT(b != NULL);
      const float *d[1] = {b->images};
      for (int ph = 0; ph < 2; ph++) {
        EXPECT(mf_session_stage_inputs(s, 1, &n->x, d) == 0);
        sum += mf_session_phase_step(s, ph);
        if (k + 1 == accum) EXPECT(mf_session_phase_update(s, ph) == 1);
      }
      mf_loader_release(L, b);
    }
    loss[u] = sum / accum;
  }
  for (int u = 0; u < UPDATES && n->stateful != 2; u++) {
    double sum = 0;
    for (int k = 0; k < accum; k++) {
      const mf_batch *b = mf_loader_next(L);
      if (!b) b = mf_loader_next(L);
      EXPECT(b != NULL);
      const float *d[1] = {b->images};
      EXPECT(mf_session_stage_inputs(s, 1, &n->x, d) == 0);
      sum += mf_session_micro_step(s);
      mf_loader_release(L, b);
    }
    EXPECT(mf_session_update(s) == 1);
    EXPECT(net_grow(n, s, u + 1) == 0);
    loss[u] = sum / accum;
  }
  mf_loader_free(L);
}

/* the parameters, and with state the EMA, the ring, its position and the active count: everything resume restores */
#define STATE_FLOATS (2 * 48 * 8 + 48 * 8 + 10 * 8 + 2)
static void params_read(mf_session *s, net *n, float *w) {
  memset(w, 0, STATE_FLOATS * sizeof *w);
  EXPECT(mf_session_read(s, n->w1, w, 48 * 8) == 0);
  EXPECT(mf_session_read(s, n->w2, w + 48 * 8, 8 * 48) == 0);
  if (n->stateful == 2) EXPECT(mf_session_read(s, n->w3, w + 2 * 48 * 8, 48 * 4) == 0);
  if (n->stateful != 1) return;
  EXPECT(mf_session_read(s, n->ema, w + 2 * 48 * 8, 48 * 8) == 0);
  EXPECT(mf_session_read(s, n->ring, w + 3 * 48 * 8, 10 * 8) == 0);
  w[STATE_FLOATS - 2] = (float)mf_session_ring_pos(s, n->ring);
  w[STATE_FLOATS - 1] = (float)mf_session_active(s, n->mask);
}

static int files_equal(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb;
  while (same) {
    int ca = fgetc(fa), cb = fgetc(fb);
    if (ca != cb) same = 0;
    if (ca == EOF || cb == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static void memory_exact(mf_session *s) {
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    EXPECT(mf_session_measured_bytes(s, (mf_arena_kind)a) == mf_plan_arena_bytes(p, (mf_arena_kind)a));
}

int main(void) {
  char root[] = "/tmp/memfit-trainer-XXXXXX";
  EXPECT(mkdtemp(root) != NULL);
  char err[512];
  mf_dataset *ds = mf_dataset_generated(22, 8, 8, 5, err, sizeof err); /* 5 batches of 4 a pass: passes end mid-run */
  EXPECT(ds != NULL);
  char out[600], out2[600], ll[700], ll2[700];

  /* 1. the trainer's losses are the hand loop's, bit for bit (f32 and bf16, with accumulation); memory exact */
  const struct { mf_dtype dt; int accum, stateful; } cases[7] = {{MF_F32, 1, 0}, {MF_F32, 2, 0}, {MF_BF16, 2, 0}, {MF_F32, 1, 1},
                                                                  {MF_BF16, 2, 1}, {MF_F32, 2, 2}, {MF_BF16, 1, 2}};
  for (int c = 0; c < 7; c++) {
    net n1, n2;
    mf_session *s1 = session_make(&n1, cases[c].dt, cases[c].accum, MF_SCHED_CONSTANT, cases[c].stateful);
    mf_session *s2 = session_make(&n2, cases[c].dt, cases[c].accum, MF_SCHED_CONSTANT, cases[c].stateful);
    double hand[UPDATES], got[64], term[64];
    hand_loop(s1, &n1, ds, cases[c].accum, hand);
    snprintf(out, sizeof out, "%s/same%d", root, c);
    hctx hc = {0};
    EXPECT(trainer_run(s2, &n2, ds, &(run_opts){.out = out, .accum = cases[c].accum}, &hc) == 0);
    EXPECT(loss_log_read(out, got, term) == UPDATES);
    for (int u = 0; u < UPDATES; u++) {
      EXPECT(got[u] == hand[u]);           /* %.17g reads back to the same double */
      EXPECT(isfinite(got[u]) && got[u] > 0);
    }
    EXPECT(hc.micro_steps == UPDATES * cases[c].accum);
    EXPECT(hc.last_update == UPDATES && !hc.update_order_bad);
    float w1[STATE_FLOATS], w2[STATE_FLOATS];
    params_read(s1, &n1, w1);
    params_read(s2, &n2, w2);
    EXPECT(memcmp(w1, w2, sizeof w1) == 0);
    if (cases[c].stateful == 1) EXPECT(w2[STATE_FLOATS - 1] == 6 && w2[STATE_FLOATS - 2] == (float)(UPDATES * cases[c].accum * B % 10));
    EXPECT(mf_session_step(s2) == UPDATES);
    memory_exact(s2);
    /* validation at each epoch end: updates 3, 6 and the last, 7 */
    EXPECT(hc.validations == 3);
    mf_session_free(s1); mf_graph_free(n1.g);
    mf_session_free(s2); mf_graph_free(n2.g);
  }

  /* 2. --stop-after, mf_trainer_stop and SIGINT, then resume: the same losses and weights as uninterrupted (the
   * net with an EMA, a ring, groups and growth; then SIGINT on the two-phase net), accumulation 2 */
  net nr;
  mf_session *sr = NULL;
  float wref[STATE_FLOATS];
  for (int run = 0; run < 4; run++) {
    int how = run < 3 ? run : 2, kind = run < 3 ? 1 : 2;
    if (run == 0 || run == 3) { /* the uninterrupted reference */
      if (sr) { mf_session_free(sr); mf_graph_free(nr.g); }
      sr = session_make(&nr, MF_F32, 2, MF_SCHED_CONSTANT, kind);
      snprintf(out, sizeof out, "%s/ref%d", root, kind);
      hctx hr = {0};
      EXPECT(trainer_run(sr, &nr, ds, &(run_opts){.out = out, .accum = 2}, &hr) == 0);
      params_read(sr, &nr, wref);
      snprintf(ll, sizeof ll, "%s/loss.txt", out);
    }
    net na, nb;
    mf_session *sa = session_make(&na, MF_F32, 2, MF_SCHED_CONSTANT, kind);
    snprintf(out2, sizeof out2, "%s/stop%d", root, run);
    hctx ha = {0};
    run_opts ra = {.out = out2, .accum = 2, .signals = how == 2};
    if (how == 0) ra.stop_after = 4;
    if (how == 1) ha.stop_at = 2 * 5;   /* the 2nd micro-step of update 5 */
    if (how == 2) ha.sigint_at = 2 * 2 - 1; /* during update 2 */
    int rc = trainer_run(sa, &na, ds, &ra, &ha);
    EXPECT(rc == (how == 2 ? 128 + SIGINT : 0));
    int64_t stopped = mf_session_step(sa);
    EXPECT(stopped == (how == 0 ? 4 : how == 1 ? 5 : 2));
    char ck[700];
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out2);
    EXPECT(access(ck, R_OK) == 0);
    mf_session *sb = session_make(&nb, MF_F32, 2, MF_SCHED_CONSTANT, kind);
    hctx hb = {0};
    EXPECT(trainer_run(sb, &nb, ds, &(run_opts){.out = out2, .resume = ck, .accum = 2}, &hb) == 0);
    EXPECT(hb.micro_steps == 2 * (UPDATES - (int)stopped));
    EXPECT(ha.last_update == stopped && hb.last_update == UPDATES && !ha.update_order_bad && !hb.update_order_bad);
    snprintf(ll2, sizeof ll2, "%s/loss.txt", out2);
    EXPECT(files_equal(ll, ll2)); /* the loss log continues where it stopped: byte for byte the reference's */
    float wb[STATE_FLOATS];
    params_read(sb, &nb, wb);
    EXPECT(memcmp(wb, wref, sizeof wb) == 0);
    memory_exact(sb);
    mf_session_free(sa); mf_graph_free(na.g);
    mf_session_free(sb); mf_graph_free(nb.g);
  }
  mf_session_free(sr); mf_graph_free(nr.g);

  /* 3. cadence: validation every 2 updates besides epoch ends (2, 3, 4, 6, 7), a checkpoint every 2; the plateau
   * schedule cuts after every report but the first (the hook's metric never improves); the log is JSON lines */
  {
    net n;
    mf_session *s = session_make(&n, MF_F32, 1, MF_SCHED_PLATEAU, 0);
    snprintf(out, sizeof out, "%s/cadence", root);
    hctx hc = {0};
    EXPECT(trainer_run(s, &n, ds, &(run_opts){.out = out, .accum = 1, .every = 2, .val_every = 2}, &hc) == 0);
    EXPECT(hc.validations == 5);
    double best;
    int bad;
    EXPECT(mf_session_plateau_scale(s, &best, &bad) == 0.5 * 0.5 * 0.5 * 0.5);
    EXPECT(best == 1.0);
    char lp[700];
    snprintf(lp, sizeof lp, "%s/log.jsonl", out);
    FILE *f = fopen(lp, "r");
    EXPECT(f != NULL);
    char line[8192];
    int updates = 0, vals = 0, ends = 0, starts = 0;
    while (f && fgets(line, sizeof line, f)) {
      EXPECT(strncmp(line, "{\"step\": ", 9) == 0 && line[strlen(line) - 2] == '}');
      updates += strstr(line, "\"type\": \"update\"") != NULL;
      vals += strstr(line, "\"type\": \"validation\"") != NULL;
      starts += strstr(line, "\"type\": \"start\"") != NULL;
      ends += strstr(line, "\"type\": \"end\"") != NULL && strstr(line, "\"ended\": \"done\"") != NULL;
      if (strstr(line, "\"type\": \"update\"")) EXPECT(strstr(line, "\"loss_read\": ") && strstr(line, "\"samples_per_s\": "));
    }
    if (f) fclose(f);
    EXPECT(updates == UPDATES && vals == 5 && starts == 1 && ends == 1);
    snprintf(lp, sizeof lp, "%s/report.html", out);
    EXPECT(access(lp, R_OK) == 0);
    mf_session_free(s); mf_graph_free(n.g);
  }

  /* 4. bad arguments: no feed hook; a resume file that is no checkpoint; stop-after before the checkpoint */
  {
    net n; /* accumulation 2 as stop0's checkpoint: its ring stages one micro-step's keys */
    mf_session *s = session_make(&n, MF_F32, 2, MF_SCHED_CONSTANT, 1);
    mf_loader_opts lo = loader_opts(ds);
    mf_trainer_opts o = mf_trainer_opts_default();
    snprintf(out, sizeof out, "%s/bad", root);
    o.out = out;
    mf_trainer_hooks h = {0};
    char e[512];
    EXPECT(mf_trainer_init(s, &lo, &o, &h, e, sizeof e) == NULL && strstr(e, "feed"));
    h.feed = feed;
    o.resume = ll; /* a text file */
    EXPECT(mf_trainer_init(s, &lo, &o, &h, e, sizeof e) == NULL);
    snprintf(ll2, sizeof ll2, "%s/stop0/checkpoint.safetensors", root);
    o.resume = ll2;
    o.stop_after = 2;
    hctx hc = {.n = &n};
    h.ctx = &hc;
    mf_trainer *t = mf_trainer_init(s, &lo, &o, &h, e, sizeof e);
    EXPECT(t != NULL);
    EXPECT(mf_trainer_run(t) == 2); /* the checkpoint is at update 7 (its run was resumed to the end) */
    mf_trainer_free(t);
    mf_session_free(s); mf_graph_free(n.g);
  }
  mf_dataset_free(ds);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  EXPECT(system(cmd) == 0);
  return check_finish("test_trainer");
}

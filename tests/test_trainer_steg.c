/* test_trainer_steg.c — `memfit train steg` trains through the one trainer with the losses of the loop it had
 * before (cmd_steg.c's: covers = first half of each loader batch, secrets = second half, micro-steps in loader
 * order, a new pass when one ends, then the update), bit for bit, in f32 and bf16 with accumulation and the
 * SSIM and DCT terms; the job the workload builds plans exactly (measured == planned). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "graph/graph.h"
#include "models/workload.h"
#include <unistd.h>

#define EXPECT(c) CHECK(c, "%s", "see the condition")
#define UPDATES 5

static mf_session *session_make(const mf_train_job *job, const mf_train_choice *ch) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = o.plan.threads = 1;
  o.plan.optim = job->optim;
  o.lr = 1e-3;
  o.beta1 = 0.5;
  o.weight_decay = 0;
  o.accum_steps = ch->accum;
  o.seed = 3;
  o.plan.recompute = MF_RECOMPUTE_ALL;
  o.plan.invertible = 1;
  o.plan.keep = job->keep;
  o.plan.n_keep = job->n_keep;
  o.debug_memory = 1;
  char err[512];
  mf_session *s = mf_session_init(job->g, job->loss, &o, err, sizeof err);
  if (!s) fprintf(stderr, "%s\n", err);
  EXPECT(s != NULL);
  if (s) EXPECT(job->session_ready(job->hooks.ctx, s, err, sizeof err) == 0);
  return s;
}

static int job_make(const mf_workload *w, void *tcfg, mf_train_args *a, const mf_train_choice *ch, mf_train_job *job) {
  memset(job, 0, sizeof *job);
  char err[512];
  if (w->train->train_setup(tcfg, a, ch, job, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return -1; }
  return 0;
}

int main(void) {
  const mf_workload *w = mf_workload_find("steg");
  EXPECT(w && w->train);
  char root[] = "/tmp/memfit-trainer-steg-XXXXXX";
  EXPECT(mkdtemp(root) != NULL);
  const struct { mf_dtype dt; int accum; const char *ssim, *dct; } cases[2] = {{MF_F32, 1, NULL, NULL}, {MF_BF16, 2, "0.1", "0.1"}};
  for (int c = 0; c < 2; c++) {
    void *tcfg = w->train->train_cfg_new();
    char err[512];
    EXPECT(w->train->train_cfg_set(tcfg, "blocks", "1", err, sizeof err) == 0);
    EXPECT(w->train->train_cfg_set(tcfg, "growth", "4", err, sizeof err) == 0);
    EXPECT(w->train->train_cfg_set(tcfg, "size", "16", err, sizeof err) == 0);
    EXPECT(w->train->train_cfg_set(tcfg, "gen-count", "10", err, sizeof err) == 0);
    EXPECT(w->train->train_cfg_set(tcfg, "val-count", "2", err, sizeof err) == 0);
    if (cases[c].ssim) EXPECT(w->train->train_cfg_set(tcfg, "ssim", cases[c].ssim, err, sizeof err) == 0);
    if (cases[c].dct) EXPECT(w->train->train_cfg_set(tcfg, "dct", cases[c].dct, err, sizeof err) == 0);
    EXPECT(w->train->train_cfg_set(tcfg, "nonsense", "1", err, sizeof err) == -2);
    EXPECT(w->train->train_cfg_set(tcfg, "size", "x", err, sizeof err) == -1 && strstr(err, "--size"));
    mf_train_args a;
    memset(&a, 0, sizeof a);
    w->train->train_defaults(&a);
    a.batch = 2 * cases[c].accum;
    a.workers = 2;
    a.variant = -1;
    a.mode = -2;
    EXPECT(mf_train_check(w->train, tcfg, &a, err, sizeof err) == 0);
    mf_train_choice ch = {.micro_batch = 2, .accum = cases[c].accum, .variant = 0, .dtype = cases[c].dt};

    /* the old loop, by hand */
    mf_train_job j1, j2;
    EXPECT(job_make(w, tcfg, &a, &ch, &j1) == 0);
    mf_session *s1 = session_make(&j1, &ch);
    double hand[UPDATES];
    mf_loader *L = mf_loader_init(&j1.lo, err, sizeof err);
    EXPECT(L != NULL);
    size_t img = (size_t)2 * 3 * 16 * 16;
    mf_tensor ins[2] = {0, 1};
    for (int id = 0; id < j1.g->n; id++) { /* the inputs the workload's feed hook stages */
      if (!strcmp(j1.g->nodes[id].name, "cover")) ins[0] = id;
      if (!strcmp(j1.g->nodes[id].name, "secret")) ins[1] = id;
    }
    EXPECT(!strcmp(j1.g->nodes[ins[0]].name, "cover") && !strcmp(j1.g->nodes[ins[1]].name, "secret"));
    for (int u = 0; u < UPDATES && L; u++) {
      double sum = 0;
      for (int k = 0; k < ch.accum; k++) {
        const mf_batch *b = mf_loader_next(L);
        if (!b) b = mf_loader_next(L);
        const float *d[2] = {b->images, b->images + img};
        EXPECT(mf_session_stage_inputs(s1, 2, ins, d) == 0);
        sum += mf_session_micro_step(s1);
        mf_loader_release(L, b);
      }
      EXPECT(mf_session_update(s1) == 1);
      hand[u] = sum / ch.accum;
    }
    mf_loader_free(L);

    /* the trainer, with the workload's hooks */
    EXPECT(job_make(w, tcfg, &a, &ch, &j2) == 0);
    mf_session *s2 = session_make(&j2, &ch);
    char out[256], ll[300];
    snprintf(out, sizeof out, "%s/run%d", root, c);
    snprintf(ll, sizeof ll, "%s/loss.txt", root);
    mf_trainer_opts o = mf_trainer_opts_default();
    o.name = "train steg";
    o.out = out;
    o.total_steps = UPDATES;
    o.accum = ch.accum;
    o.log_every = -1;
    o.n_terms = j2.n_terms;
    o.term_names = j2.term_names;
    o.loss_log = ll;
    mf_trainer *t = mf_trainer_init(s2, &j2.lo, &o, &j2.hooks, err, sizeof err);
    EXPECT(t != NULL);
    if (t) EXPECT(mf_trainer_run(t) == 0);
    mf_trainer_free(t);
    FILE *f = fopen(ll, "r");
    EXPECT(f != NULL);
    int n = 0;
    long long u;
    double l, g, r;
    while (f && fscanf(f, "%lld %lf %lf %lf", &u, &l, &g, &r) == 4 && n < UPDATES) {
      EXPECT(u == n + 1 && l == hand[n] && isfinite(g) && isfinite(r));
      n++;
    }
    if (f) fclose(f);
    EXPECT(n == UPDATES);
    /* the model file the hook wrote, and exact memory */
    char mp[300];
    snprintf(mp, sizeof mp, "%s/model.safetensors", out);
    EXPECT(access(mp, R_OK) == 0);
    const mf_plan *p = mf_session_plan(s2);
    for (int k = 0; k < MF_ARENA_COUNT; k++)
      EXPECT(mf_session_measured_bytes(s2, (mf_arena_kind)k) == mf_plan_arena_bytes(p, (mf_arena_kind)k));
    mf_session_free(s1);
    mf_session_free(s2);
    mf_train_job_free(&j1);
    mf_train_job_free(&j2);
    free(tcfg);
  }
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  EXPECT(system(cmd) == 0);
  return check_finish("test_trainer_steg");
}

/* test_checkpoint.c — a training run killed (SIGKILL) while checkpointing every step and then
 * resumed produces exactly the losses of an uninterrupted run; truncated or corrupted
 * checkpoints and checkpoints of another model are refused with a clear error; a caller's extra
 * metadata (mf_checkpoint_save) is stored and does not disturb loading. */
#include "check.h"
#include "models.h"
#include "train/safetensors.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define STEPS 8

static mf_session *make(int kind, mf_graph **gp, tm_model *m) {
  *gp = mf_graph_init(MF_F32);
  if (tm_build(*gp, kind, 2, 8, m) < 0) return NULL;
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.accum_steps = 2;
  o.clip_norm = 1.0;
  o.schedule = MF_SCHED_COSINE;
  o.warmup_steps = 2;
  o.total_steps = STEPS;
  o.plan.recompute = MF_RECOMPUTE_ALL;
  char err[256];
  mf_session *s = mf_session_init(*gp, m->loss, &o, err, sizeof err);
  if (!s) fprintf(stderr, "session: %s\n", err);
  return s;
}

/* one optimizer step = two micro-batches whose data depend on the step number */
static double train_step(mf_session *s, mf_graph *g, tm_model *m) {
  int64_t st = mf_session_step(s);
  tm_fill_inputs(s, g, m, (uint64_t)(2 * st + 1));
  double l = mf_session_micro_step(s);
  tm_fill_inputs(s, g, m, (uint64_t)(2 * st + 2));
  l += mf_session_micro_step(s);
  mf_session_update(s);
  return l;
}

static void run_kind(int kind, const char *dir) {
  char ck[512], err[512];
  snprintf(ck, sizeof ck, "%s/%s.safetensors", dir, tm_names[kind]);
  /* uninterrupted reference */
  double ref[STEPS];
  mf_graph *g;
  tm_model m;
  mf_session *s = make(kind, &g, &m);
  CHECK(s != NULL, "%s: session", tm_names[kind]);
  if (!s) { mf_graph_free(g); return; }
  for (int i = 0; i < STEPS; i++) ref[i] = train_step(s, g, &m);
  mf_session_free(s);
  mf_graph_free(g);

  /* child: trains and checkpoints after every step, slowly; parent kills it mid-run */
  unlink(ck);
  pid_t pid = fork();
  if (pid == 0) {
    mf_graph *cg;
    tm_model cm;
    mf_session *cs = make(kind, &cg, &cm);
    if (!cs) _exit(3);
    for (int i = 0; i < STEPS; i++) {
      train_step(cs, cg, &cm);
      char e[256];
      if (mf_session_save(cs, ck, e, sizeof e) < 0) { fprintf(stderr, "%s\n", e); _exit(2); }
      usleep(40000);
    }
    _exit(0);
  }
  /* wait until at least 3 steps are saved, then SIGKILL */
  for (int tries = 0; tries < 3000; tries++) {
    mf_graph *pg;
    tm_model pm;
    usleep(5000);
    if (access(ck, F_OK) != 0) continue;
    mf_session *ps = make(kind, &pg, &pm);
    int ok = ps && mf_session_load(ps, ck, err, sizeof err) == 0 && mf_session_step(ps) >= 3;
    mf_session_free(ps);
    mf_graph_free(pg);
    if (ok) break;
  }
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  /* resume */
  s = make(kind, &g, &m);
  int rc = mf_session_load(s, ck, err, sizeof err);
  CHECK(rc == 0, "%s: resume failed: %s", tm_names[kind], err);
  int64_t from = mf_session_step(s);
  CHECK(from >= 3 && from <= STEPS, "%s: resumed at step %lld", tm_names[kind], (long long)from);
  int same = 1;
  for (int64_t i = from; i < STEPS; i++) {
    double l = train_step(s, g, &m);
    if (l != ref[i]) { same = 0; fprintf(stderr, "  step %lld: resumed %.17g uninterrupted %.17g\n", (long long)i, l, ref[i]); }
  }
  CHECK(same, "%s: resumed run's losses differ from the uninterrupted run", tm_names[kind]);
  printf("  %s: killed after step %lld, resumed, %d steps identical\n", tm_names[kind], (long long)from, (int)(STEPS - from));

  /* truncated and corrupted checkpoints */
  FILE *f = fopen(ck, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)size);
  CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size, "read back");
  fclose(f);
  char bad[600];
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  long cuts[3] = {5, size / 2, size - 3};
  for (int c = 0; c < 3; c++) {
    f = fopen(bad, "wb");
    fwrite(buf, 1, (size_t)cuts[c], f);
    fclose(f);
    err[0] = 0;
    CHECK(mf_session_load(s, bad, err, sizeof err) < 0 && strstr(err, "bad.safetensors"), "%s: truncated to %ld bytes: '%s'", tm_names[kind], cuts[c], err);
  }
  buf[size - 10] ^= 0x40; /* a flipped bit in the data */
  f = fopen(bad, "wb");
  fwrite(buf, 1, (size_t)size, f);
  fclose(f);
  CHECK(mf_session_load(s, bad, err, sizeof err) < 0, "%s: corrupted data was accepted", tm_names[kind]);
  /* the session is untouched by failed loads: it continues like the reference */
  free(buf);
  mf_session_free(s);
  mf_graph_free(g);
}

/* extra metadata: written next to the session's own keys, read back, ignored by mf_session_load;
 * the session's own keys and memfit's reserved ones are refused */
static void extra_metadata(const char *dir) {
  char ck[600], err[512];
  snprintf(ck, sizeof ck, "%s/extra.safetensors", dir);
  mf_graph *g;
  tm_model m;
  mf_session *s = make(TM_MLP, &g, &m);
  CHECK(s != NULL, "extra metadata: session");
  if (!s) { mf_graph_free(g); return; }
  train_step(s, g, &m);
  const char *keys[2] = {"data.epoch", "data.source"}, *vals[2] = {"3", "photos/"};
  CHECK(mf_checkpoint_save(s, ck, 2, keys, vals, err, sizeof err) == 0, "save with extra metadata: %s", err);
  mf_st_file *f = mf_st_open(ck, err, sizeof err);
  CHECK(f && mf_st_meta(f, "data.epoch") && !strcmp(mf_st_meta(f, "data.epoch"), "3") && mf_st_meta(f, "data.source") &&
        !strcmp(mf_st_meta(f, "data.source"), "photos/") && mf_st_meta(f, "step") && !strcmp(mf_st_meta(f, "step"), "1"),
        "extra keys and the session's own are in the file");
  mf_st_close(f);
  mf_graph *g2;
  tm_model m2;
  mf_session *s2 = make(TM_MLP, &g2, &m2);
  CHECK(s2 && mf_session_load(s2, ck, err, sizeof err) == 0 && mf_session_step(s2) == 1, "load ignores extra keys: %s", err);
  mf_session_free(s2);
  mf_graph_free(g2);
  const char *own[1] = {"step"}, *reserved[1] = {"memfit.crc32"}, *v1[1] = {"9"};
  CHECK(mf_checkpoint_save(s, ck, 1, own, v1, err, sizeof err) < 0 && strstr(err, "'step'") && strstr(err, "extra.safetensors"),
        "the session's own key refused: %s", err);
  CHECK(mf_checkpoint_save(s, ck, 1, reserved, v1, err, sizeof err) < 0 && strstr(err, "memfit.crc32"), "reserved key refused: %s", err);
  f = mf_st_open(ck, err, sizeof err);
  CHECK(f && mf_st_meta(f, "data.epoch"), "a refused save leaves the file as it was");
  mf_st_close(f);
  /* the public reader */
  char buf[16], tiny[4];
  CHECK(mf_checkpoint_meta(ck, "data.source", buf, sizeof buf, err, sizeof err) == 0 && !strcmp(buf, "photos/"),
        "mf_checkpoint_meta reads a caller key: '%s' (%s)", buf, err);
  CHECK(mf_checkpoint_meta(ck, "data.nosuch", buf, sizeof buf, err, sizeof err) == 1, "an absent key gives 1");
  CHECK(mf_checkpoint_meta(ck, "data.source", tiny, sizeof tiny, err, sizeof err) < 0 && strstr(err, "data.source"),
        "a value longer than the buffer is an error naming the key: %s", err);
  char missing[700];
  snprintf(missing, sizeof missing, "%s.nosuch", ck);
  CHECK(mf_checkpoint_meta(missing, "data.source", buf, sizeof buf, err, sizeof err) < 0 && strstr(err, ".nosuch"),
        "a missing file is an error naming it: %s", err);
  mf_session_free(s);
  mf_graph_free(g);
}

int main(void) {
  char dir[] = "/tmp/memfit-ckXXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  run_kind(TM_MLP, dir);
  run_kind(TM_COUPLING, dir);
  /* a checkpoint of another model is refused, naming the tensor */
  char a[600], err[512];
  snprintf(a, sizeof a, "%s/mlp.safetensors", dir);
  mf_graph *g;
  tm_model m;
  mf_session *s = make(TM_COUPLING, &g, &m);
  CHECK(s && mf_session_load(s, a, err, sizeof err) < 0 && strstr(err, "mlp.safetensors"), "cross-model load: '%s'", err);
  printf("  cross-model load refused: %s\n", err);
  mf_session_free(s);
  mf_graph_free(g);
  extra_metadata(dir);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_finish("test_checkpoint");
}

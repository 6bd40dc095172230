/* trainer.c — the one training loop every workload and the library use: data batches in order, micro-steps
 * and updates, progress lines, --loss-log and --log records, validation and checkpoint cadence, exact resume
 * (weights, optimizer, schedule and the data position), Ctrl-C / SIGTERM that save first, the run report. */
#define _POSIX_C_SOURCE 200809L
#include "memfit.h"
#include "train/json.h"
#include "train/report.h"
#include "train/safetensors.h"
#include "train/session.h"
#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct mf_trainer {
  mf_session *s;
  mf_trainer_opts o;
  mf_trainer_hooks h;
  mf_loader_opts lo;
  mf_loader *L;
  int64_t start, total, per_epoch;
  int epochs;
  FILE *loss_log, *jlog;
  char jlog_path[1100], ck[1100], mp[1100];
  char ck_own[1200];              /* ZeRO-1: the checkpoint this rank writes and resumes from (rank 0: ck) */
  volatile sig_atomic_t stop_req; /* mf_trainer_stop */
  int last_metric_n;              /* the last validation's metrics, and its first (data parallel: for the other ranks) */
  double last_metric;
  int early_status;               /* mf_trainer_run returns it at once (-1: run) */
};

mf_trainer_opts mf_trainer_opts_default(void) {
  mf_trainer_opts o;
  memset(&o, 0, sizeof o);
  o.name = "train";
  o.out = "run";
  o.epochs = 1;
  o.log_every = 10;
  o.sample_unit = "samples";
  o.loss_divisor = 1;
  o.samples_per_step = 1;
  o.accum = 1;
  return o;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fmt_dur(double s, char *buf, size_t n) {
  if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "?"); return; }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

/* ---------------------------------------------------------------- exact resume: the data position */

static int meta_u64(const mf_st_file *f, const char *key, int base, uint64_t *out) {
  const char *v = mf_st_meta(f, key);
  char *end;
  /* digits only: strtoull alone would take "-5" (as 2^64 - 5), spaces and a "0x" */
  if (!v || !*v || strspn(v, base == 16 ? "0123456789abcdefABCDEF" : "0123456789") != strlen(v)) return -1;
  errno = 0;
  *out = strtoull(v, &end, base);
  return *end || errno ? -1 : 0;
}

/* Where the data order of the resumed run starts, from the checkpoint's metadata. Returns 0 (pos set;
 * zeros with restart_data), or -1 after printing why the order cannot continue, naming the setting. */
static int resume_position(const mf_st_file *f, const mf_trainer_opts *o, mf_loader_pos *pos) {
  memset(pos, 0, sizeof *pos);
  if (o->restart_data) {
    printf("--restart-data: the data order starts again at its first epoch (weights, optimizer state and schedule "
           "continue from %s)\n", o->resume);
    return 0;
  }
  if (!mf_st_meta(f, "data.id")) {
    uint64_t step = 0;
    if (meta_u64(f, "step", 10, &step) != 0) step = 0;
    pos->batch = (int64_t)step * o->accum;
    fprintf(stderr, "memfit %s: warning: --resume %s has no data position (an older memfit wrote it): continuing "
                    "the data order at batch %lld, where an uninterrupted run with these --data, --seed and --batch settings "
                    "would be; the batches differ if that run used other settings or was itself resumed\n",
            o->name, o->resume, (long long)pos->batch);
    return 0;
  }
  for (int i = 0; i < o->n_data_settings; i++) {
    const mf_data_setting *ds = &o->data_settings[i];
    const char *was = mf_st_meta(f, ds->key);
    if (!was || !strcmp(was, ds->value)) continue;
    if (!ds->decisive) {
      printf("note: %s is %s here, %s in the checkpoint's run: the batches do not depend on it\n", ds->option, ds->value, was);
      continue;
    }
    fprintf(stderr, "memfit %s: --resume %s: %s is %s here but was %s in the checkpoint's run, so the data order "
                    "cannot continue where it stopped. Use the checkpoint's value, or add --restart-data to keep the weights "
                    "and optimizer state and start a new data order.\n", o->name, o->resume, ds->option, ds->value, was);
    return -1;
  }
  /* data.epoch, data.batch: whole numbers up to 2^63 - 1; data.seed: up to 2^64 - 1; data.id: nonzero hex */
  static const struct { const char *key; int base; } pk[4] = {{"data.epoch", 10}, {"data.batch", 10}, {"data.seed", 10},
                                                              {"data.id", 16}};
  uint64_t pv[4];
  for (int i = 0; i < 4; i++)
    if (meta_u64(f, pk[i].key, pk[i].base, &pv[i]) || (i < 2 && pv[i] > (uint64_t)INT64_MAX) || (i == 3 && !pv[i])) {
      const char *v = mf_st_meta(f, pk[i].key);
      fprintf(stderr, "memfit %s: --resume %s: metadata '%s' is %s%.40s%s, not a %s: the data position is damaged; "
                      "add --restart-data to resume without it\n", o->name, o->resume, pk[i].key, v ? "'" : "missing",
              v ? v : "", v ? "'" : "", i == 3 ? "nonzero hexadecimal number" : "whole number");
      return -1;
    }
  pos->epoch = (int64_t)pv[0];
  pos->batch = (int64_t)pv[1];
  pos->seed = pv[2];
  pos->data_id = pv[3];
  return 0;
}

/* Opens the --loss-log or --log (a line starts with its update number, or {"step": N). A new run starts it
 * afresh; a run resumed at update `start` keeps the lines up to that update and appends after them, so lines a
 * killed run wrote after its last checkpoint (and a cut last line) are not written twice. Sets *dropped to the
 * lines removed. NULL with errno on failure. */
static FILE *log_open(const char *path, int64_t start, long long *dropped) {
  *dropped = 0;
  if (start <= 0) return fopen(path, "w");
  FILE *f = fopen(path, "r+");
  if (!f) return errno == ENOENT ? fopen(path, "w") : NULL;
  char *line = NULL; /* any length: a start record holds the whole command line */
  size_t cap = 0;
  long keep = 0;
  int cut = 0;
  while (getline(&line, &cap, f) >= 0) {
    long long u;
    size_t n = strlen(line);
    if (!cut && n && line[n - 1] == '\n' && (sscanf(line, "%lld", &u) == 1 || sscanf(line, "{\"step\": %lld", &u) == 1) &&
        u <= start)
      keep = ftell(f);
    else { cut = 1; (*dropped)++; } /* lines are in update order: all after the first later one go */
  }
  free(line);
  if (ferror(f) || keep < 0 || fflush(f) != 0 || ftruncate(fileno(f), (off_t)keep) != 0 || fseek(f, keep, SEEK_SET) != 0) {
    int e = errno;
    fclose(f);
    errno = e;
    return NULL;
  }
  return f;
}

/* --log records: {"step": N, "type": "...", then name / number pairs}; 0, or -1 when the write failed */
static int jlog_record(FILE *f, int64_t step, const char *type, int n, const char *const *names, const double *vals) {
  fprintf(f, "{\"step\": %lld, \"type\": ", (long long)step);
  mf_json_str(f, type);
  for (int i = 0; i < n; i++) {
    fputs(", ", f);
    mf_json_str(f, names[i]);
    fputs(": ", f);
    mf_json_num(f, vals[i]);
  }
  fputs("}\n", f);
  return ferror(f) || fflush(f) != 0 ? -1 : 0; /* flushed per record: a killed run keeps its log */
}

/* the closing --log record: how the run ended and planned vs measured bytes per arena */
static int jlog_end(FILE *f, mf_session *s, int64_t step, int64_t updates, double seconds, const char *how) {
  fprintf(f, "{\"step\": %lld, \"type\": \"end\", \"updates\": %lld, \"seconds\": ", (long long)step, (long long)updates);
  mf_json_num(f, seconds);
  fputs(", \"ended\": ", f);
  mf_json_str(f, how);
  fputs(", \"arenas\": {", f);
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    if (a) fputs(", ", f);
    mf_json_str(f, mf_arena_name((mf_arena_kind)a));
    fprintf(f, ": {\"planned\": %zu, \"measured\": %zu}", mf_plan_arena_bytes(p, (mf_arena_kind)a),
            mf_session_measured_bytes(s, (mf_arena_kind)a));
  }
  fprintf(f, "}, \"plan_bytes\": %zu, \"peak_rss_bytes\": %zu}\n", mf_plan_total_bytes(p), mf_peak_rss_bytes());
  return ferror(f) || fflush(f) != 0 ? -1 : 0;
}

/* mf_checkpoint_save plus the loader's position and the data settings, so resume continues the data order.
 * held: a batch taken from the loader ahead of the step that will use it (NULL if none); the checkpoint's
 * data position is then that batch's, so a resumed run trains on it. */
static int checkpoint_save(mf_trainer *t, const mf_batch *held, char *err, size_t errlen) {
  mf_loader_pos p = mf_loader_position(t->L);
  if (held) {
    int64_t per = (int64_t)mf_loader_batches_per_epoch(t->L);
    p.epoch = held->step / per;
    p.batch = held->step % per;
  }
  char v[7][32];
  const char *keys[8 + MF_MAX_DATA_SETTINGS], *vals[8 + MF_MAX_DATA_SETTINGS];
  snprintf(v[0], sizeof v[0], "%lld", (long long)p.epoch);
  snprintf(v[1], sizeof v[1], "%lld", (long long)p.batch);
  snprintf(v[2], sizeof v[2], "%llu", (unsigned long long)p.seed);
  snprintf(v[3], sizeof v[3], "%016llx", (unsigned long long)p.data_id);
  snprintf(v[4], sizeof v[4], "%zu", mf_dataset_size(t->lo.dataset));
  const char *k5[5] = {"data.epoch", "data.batch", "data.seed", "data.id", "data.images"};
  int n = 0;
  for (int i = 0; i < 5; i++, n++) { keys[n] = k5[i]; vals[n] = v[i]; }
  keys[n] = "data.source"; vals[n++] = t->o.data_source ? t->o.data_source : "";
  /* data parallel: how many ranks wrote it, and whether each holds its own slice of the optimizer state */
  snprintf(v[5], sizeof v[5], "%d", t->s->comm ? t->s->comm->size : 1);
  snprintf(v[6], sizeof v[6], "%d", mf_session_plan(t->s)->shard_n ? 1 : 0);
  keys[n] = "dist.ranks"; vals[n++] = v[5];
  keys[n] = "dist.sharded"; vals[n++] = v[6];
  for (int i = 0; i < t->o.n_data_settings && n < 8 + MF_MAX_DATA_SETTINGS; i++, n++) {
    keys[n] = t->o.data_settings[i].key;
    vals[n] = t->o.data_settings[i].value;
  }
  return mf_checkpoint_save(t->s, t->ck_own, n, keys, vals, err, errlen);
}

/* Resuming with another number of ranks: the data order is one of global batches, so it continues whatever the
 * ranks; a ZeRO-1 checkpoint keeps each rank's optimizer slice in its own file, so it resumes only as it was
 * written, and an unsharded one does not resume sharded. 0, or -1 after saying why. */
static int resume_ranks(const mf_st_file *f, const mf_trainer_opts *o, const mf_session *s) {
  const char *vr = mf_st_meta(f, "dist.ranks"), *vs = mf_st_meta(f, "dist.sharded");
  int was_r = vr ? atoi(vr) : 1, was_s = vs && !strcmp(vs, "1"), now_r = s->comm ? s->comm->size : 1;
  int now_s = mf_session_plan(s)->shard_n != NULL;
  if (was_s && (!now_s || was_r != now_r)) {
    fprintf(stderr, "memfit %s: --resume %s: the checkpoint was written by %d ranks with --shard-optimizer (each rank's slice "
                    "of the optimizer state is in its own file): resume it with mpirun -np %d and --shard-optimizer, or start "
                    "a new run from its weights with --init\n", o->name, o->resume, was_r, was_r);
    return -1;
  }
  if (!was_s && now_s) {
    fprintf(stderr, "memfit %s: --resume %s: the checkpoint holds the whole optimizer state (written without "
                    "--shard-optimizer): resume it without --shard-optimizer, with any number of ranks\n", o->name, o->resume);
    return -1;
  }
  if (was_r != now_r && mf_session_rank(s) == 0)
    printf("note: the checkpoint was written by %d rank%s, this run has %d: the global batches and their order stay the same\n",
           was_r, was_r == 1 ? "" : "s", now_r);
  return 0;
}

/* data parallel: rank 0 (or the only process) prints, logs, validates and saves; the others train alongside */
static int lead(const mf_trainer *t) { return mf_session_rank(t->s) == 0; }

/* ZeRO-1: rank r > 0 keeps its slice of the optimizer state in its own file beside rank 0's, PATH-rankR.safetensors
 * (the rest of each file is the same); otherwise every rank's checkpoint is rank 0's */
static void ck_rank_path(const mf_trainer *t, const char *path, char *out, size_t n) {
  int r = mf_session_rank(t->s);
  size_t l = strlen(path);
  if (!r || !mf_session_plan(t->s)->shard_n) snprintf(out, n, "%s", path);
  else if (l > 12 && !strcmp(path + l - 12, ".safetensors")) snprintf(out, n, "%.*s-rank%d.safetensors", (int)(l - 12), path, r);
  else snprintf(out, n, "%s-rank%d", path, r);
}

/* the checkpoint and (through the workload) the model file; 0, or -1 after saying why. Data parallel: the ranks'
 * parameters are checked identical first (a hash compared with MIN and MAX), rank 0 writes, and every rank
 * learns whether that worked. */
static int run_save(mf_trainer *t, const mf_batch *held) {
  char err[2048];
  int failed = 0;
  mf_comm *c = t->s->comm;
  if (c) {
    int bad = -1, ok = mf_comm_agree(c, mf_session_param_hash(t->s), "the check that all ranks hold the same parameters", &bad);
    if (ok < 0) return -1;
    if (!ok) {
      if (lead(t))
        fprintf(stderr, "memfit %s: at update %lld rank %d's parameters differ from rank 0's (a bug: please report it); "
                        "nothing saved\n", t->o.name, (long long)mf_session_step(t->s), bad);
      return -1;
    }
  }
  int zero = mf_session_plan(t->s)->shard_n != NULL; /* ZeRO-1: each rank saves its slice of the optimizer state */
  if ((lead(t) || zero) && checkpoint_save(t, held, err, sizeof err) < 0) {
    fprintf(stderr, "memfit %s: %s\n", t->o.name, err);
    failed = 1;
  }
  if (c && zero) { /* a checkpoint is whole when every rank's file is */
    uint64_t f = (uint64_t)failed;
    if (c->allreduce(c, &f, 1, MF_COMM_U64, MF_COMM_MAX, "the result of saving the checkpoint") < 0) return -1;
    failed = (int)f;
  }
  if (lead(t)) {
    if (t->h.save_model && t->h.save_model(t->h.ctx, t->s, t->mp, err, sizeof err) < 0) {
      fprintf(stderr, "memfit %s: %s\n", t->o.name, err);
      failed = 1;
    }
  }
  if (c) { /* rank 0 writes the files, as long as that takes: no deadline for the others meanwhile */
    double dl = c->timeout_s;
    c->timeout_s = 1e12;
    int brc = c->broadcast(c, &failed, sizeof failed, 0, "the result of saving the checkpoint");
    c->timeout_s = dl;
    if (brc < 0) return -1;
  }
  return failed ? -1 : 0;
}

/* ---------------------------------------------------------------- init */

/* the loader's "fewer than one batch" and "start position" errors, said in the user's terms */
static void loader_error(const mf_trainer *t, const mf_st_file *ckf, const char *err) {
  const mf_trainer_opts *o = &t->o;
  size_t nuse = 0;
  const char *ck_source = ckf ? mf_st_meta(ckf, "data.source") : NULL, *data = o->data_source ? o->data_source : "?";
  if (t->lo.start.data_id && strstr(err, "start position")) {
    const char *was_n = mf_st_meta(ckf, "data.images");
    if (ck_source && strcmp(ck_source, data))
      fprintf(stderr, "memfit %s: --resume %s: --data %s does not hold the images of the checkpoint's run (--data %s, "
                      "%s images; this one has %zu), so its data order cannot continue (%s). Give the same images, or add "
                      "--restart-data to keep the weights and optimizer state and start a new data order.\n",
              o->name, o->resume, data, ck_source, was_n ? was_n : "?", mf_dataset_size(t->lo.dataset), err);
    else
      fprintf(stderr, "memfit %s: --resume %s: the images under --data %s changed since the checkpoint was written "
                      "(%s images then, %zu now), so its data order cannot continue (%s). Restore them, or add "
                      "--restart-data to keep the weights and optimizer state and start a new data order.\n",
              o->name, o->resume, data, was_n ? was_n : "?", mf_dataset_size(t->lo.dataset), err);
  } else if (sscanf(err, "dataset has %zu usable samples, fewer than one batch", &nuse) == 1)
    fprintf(stderr, "memfit %s: --data %s: %zu usable training images, fewer than the %d one micro-batch takes%s: add "
                    "images, lower --batch%s\n", o->name, data, nuse, t->lo.batch_size, o->batch_note ? o->batch_note : "",
            o->more_data_hint ? o->more_data_hint : "");
  else fprintf(stderr, "memfit %s: %s\n", o->name, err);
}

mf_trainer *mf_trainer_init(mf_session *s, const mf_loader_opts *lo, const mf_trainer_opts *o, const mf_trainer_hooks *h,
                            char *err, size_t errlen) {
  if (!s || !lo || !lo->dataset || !o || !h || !h->feed || o->n_terms < 0 || o->n_terms > MF_MAX_TERMS ||
      o->n_data_settings < 0 || o->n_data_settings > MF_MAX_DATA_SETTINGS || o->accum < 1 || !o->out) {
    snprintf(err, errlen, "mf_trainer_init: missing or bad arguments (session, loader options with a dataset, hooks with "
                          "feed, accum >= 1, out, at most %d terms and %d data settings)", MF_MAX_TERMS, MF_MAX_DATA_SETTINGS);
    return NULL;
  }
  mf_trainer *t = calloc(1, sizeof *t);
  if (!t) { snprintf(err, errlen, "out of host memory"); return NULL; }
  t->s = s;
  t->o = *o;
  t->h = *h;
  t->lo = *lo;
  t->early_status = -1;
  err[0] = 0;
  /* resume: the data order continues where the checkpoint's run stopped */
  mf_st_file *ckf = NULL;
  if (o->resume) {
    ckf = mf_st_open(o->resume, err, errlen);
    const char *fmt = ckf ? mf_st_meta(ckf, "format") : NULL;
    if (!ckf) fprintf(stderr, "memfit %s: --resume: %s\n", o->name, err);
    else if (!fmt || strcmp(fmt, "memfit-checkpoint-1"))
      fprintf(stderr, "memfit %s: --resume %s: not a training checkpoint; --resume needs the checkpoint.safetensors of "
                      "a run's --out folder (weights, optimizer state and data position)\n", o->name, o->resume);
    if (!ckf || !fmt || strcmp(fmt, "memfit-checkpoint-1") || resume_ranks(ckf, o, s) < 0 ||
        resume_position(ckf, o, &t->lo.start) < 0) {
      snprintf(err, errlen, "said above");
      mf_st_close(ckf);
      free(t);
      return NULL;
    }
  }
  t->L = mf_loader_init(&t->lo, err, errlen);
  if (!t->L) {
    loader_error(t, ckf, err);
    snprintf(err, errlen, "said above");
    mf_st_close(ckf);
    free(t);
    return NULL;
  }
  const char *ck_source = ckf ? mf_st_meta(ckf, "data.source") : NULL;
  if (ck_source && t->lo.start.data_id && o->data_source && strcmp(ck_source, o->data_source))
    printf("note: --data %s is not the checkpoint's --data %s, but it holds the same images: the data order continues\n",
           o->data_source, ck_source);
  mf_st_close(ckf);
  t->per_epoch = (int64_t)mf_loader_batches_per_epoch(t->L) / o->accum;
  if (t->per_epoch < 1) t->per_epoch = 1;
  if (o->steps_per_epoch > 0) t->per_epoch = o->steps_per_epoch;
  t->total = o->total_steps > 0 ? o->total_steps : (int64_t)(o->epochs > 0 ? o->epochs : 1) * t->per_epoch;
  t->epochs = (int)((t->total + t->per_epoch - 1) / t->per_epoch);
  /* the schedule follows the run: its length, and the step schedule's interval (a third of the run) when unset */
  if (s->opts.total_steps <= 0) s->opts.total_steps = t->total > INT32_MAX ? INT32_MAX : (int)t->total;
  if (s->opts.schedule == MF_SCHED_STEP && s->opts.step_every <= 0)
    s->opts.step_every = t->total / 3 > 0 ? (int)(t->total / 3 > INT32_MAX ? INT32_MAX : t->total / 3) : 1;
  if (o->init && !o->resume) { /* a new run from another run's weights: the optimizer, schedule and data start afresh */
    if (mf_session_load_weights(s, o->init, err, errlen) < 0) {
      fprintf(stderr, "memfit %s: --init: %s\n", o->name, err);
      snprintf(err, errlen, "said above");
      mf_trainer_free(t);
      return NULL;
    }
    printf("weights from %s (optimizer, schedule and data order start afresh)\n", o->init);
  }
  if (o->resume) {
    char own[1200];
    ck_rank_path(t, o->resume, own, sizeof own);
    if (mf_session_load(s, own, err, errlen) < 0) {
      fprintf(stderr, "memfit %s: --resume: %s\n", o->name, err);
      snprintf(err, errlen, "said above");
      mf_trainer_free(t);
      return NULL;
    }
    t->start = mf_session_step(s);
    mf_loader_pos lp = mf_loader_position(t->L);
    printf("resumed from %s at update %lld (epoch %lld); the data order continues at its epoch %lld, batch %lld\n", o->resume,
           (long long)t->start, (long long)(t->start / t->per_epoch + 1), (long long)lp.epoch + 1, (long long)lp.batch + 1);
    if (o->stop_after && o->stop_after <= t->start) {
      fprintf(stderr, "memfit %s: --stop-after %lld: %s is already at update %lld\n", o->name, (long long)o->stop_after,
              o->resume, (long long)t->start);
      t->early_status = 2;
      return t;
    }
    if (t->start >= t->total) {
      printf("%s is at update %lld, the end of this run (%lld updates): nothing to train (raise --steps or --epochs to "
             "go on)\n", o->resume, (long long)t->start, (long long)t->total);
      t->early_status = 0;
      return t;
    }
  }
  if (mkdir(o->out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "memfit %s: cannot create --out %s: %s\n", o->name, o->out, strerror(errno));
    snprintf(err, errlen, "said above");
    mf_trainer_free(t);
    return NULL;
  }
  snprintf(t->ck, sizeof t->ck, "%s/checkpoint.safetensors", o->out);
  ck_rank_path(t, t->ck, t->ck_own, sizeof t->ck_own);
  snprintf(t->mp, sizeof t->mp, "%s/%s", o->out, o->model_file && o->model_file[0] ? o->model_file : "model.safetensors");
  { /* an existing file as --out, or a folder where a checkpoint goes, would fail only at the first save */
    struct stat ost;
    const char *bad = stat(o->out, &ost) != 0 || !S_ISDIR(ost.st_mode) ? "--out is not a folder" : NULL, *p = o->out;
    for (int k = 0; k < 2 && !bad; k++) {
      p = k ? t->mp : t->ck;
      if (stat(p, &ost) == 0 && S_ISDIR(ost.st_mode)) bad = "a folder is where a checkpoint is to be written";
    }
    if (bad) {
      fprintf(stderr, "memfit %s: --out %s: %s (%s); nothing could be saved there\n", o->name, o->out, bad, p);
      snprintf(err, errlen, "said above");
      mf_trainer_free(t);
      return NULL;
    }
  }
  long long dropped = 0;
  if (!lead(t)) { /* data parallel: rank 0 writes the logs */
    if (!(t->jlog = fopen("/dev/null", "w"))) {
      snprintf(err, errlen, "cannot open /dev/null: %s", strerror(errno));
      mf_trainer_free(t);
      return NULL;
    }
    return t;
  }
  if (o->loss_log && !(t->loss_log = log_open(o->loss_log, t->start, &dropped))) {
    fprintf(stderr, "memfit %s: cannot write --loss-log %s: %s\n", o->name, o->loss_log, strerror(errno));
    snprintf(err, errlen, "said above");
    mf_trainer_free(t);
    return NULL;
  }
  if (dropped)
    printf("note: --loss-log %s: %lld line(s) after update %lld removed (written after the checkpoint; this run writes them "
           "again)\n", o->loss_log, dropped, (long long)t->start);
  /* without --log the records go to OUT/log.jsonl: the run report is drawn from them */
  snprintf(t->jlog_path, sizeof t->jlog_path, "%s", o->log ? o->log : "");
  if (!o->log) snprintf(t->jlog_path, sizeof t->jlog_path, "%s/log.jsonl", o->out);
  if (!(t->jlog = log_open(t->jlog_path, t->start, &dropped))) {
    fprintf(stderr, "memfit %s: cannot write --log %s: %s\n", o->name, t->jlog_path, strerror(errno));
    snprintf(err, errlen, "said above");
    mf_trainer_free(t);
    return NULL;
  }
  return t;
}

int64_t mf_trainer_first_step(const mf_trainer *t) { return t->start; }
int64_t mf_trainer_total_steps(const mf_trainer *t) { return t->total; }
int64_t mf_trainer_steps_per_epoch(const mf_trainer *t) { return t->per_epoch; }
int mf_trainer_epochs(const mf_trainer *t) { return t->epochs; }
mf_loader *mf_trainer_loader(mf_trainer *t) { return t->L; }
void mf_trainer_stop(mf_trainer *t) { t->stop_req = 1; }

void mf_trainer_free(mf_trainer *t) {
  if (!t) return;
  if (t->loss_log) fclose(t->loss_log);
  if (t->jlog) fclose(t->jlog);
  mf_loader_free(t->L);
  free(t);
}

/* ---------------------------------------------------------------- the loop */

/* SIGINT / SIGTERM during training: the first asks the loop to stop after the current update and save
 * a checkpoint (exit 128 + signal); a second one ends the process at once (the checkpoint files are
 * written atomically, so the last saved one stays whole). */
static volatile sig_atomic_t train_signal;
static void train_on_signal(int sig) {
  if (train_signal) _exit(128 + sig);
  train_signal = sig;
}

/* the loader's next batch (a new pass when one ends), staged by the workload for the session's next micro-step */
static int batch_feed(mf_trainer *t, const mf_batch *b, int *failed);
static const mf_batch *batch_take(mf_trainer *t, int *failed) {
  const mf_batch *b = mf_loader_next(t->L);
  if (!b && !mf_loader_error(t->L)) b = mf_loader_next(t->L); /* a new pass over the data */
  if (!b) {
    fprintf(stderr, "memfit %s: %s\n", t->o.name, mf_loader_error(t->L) ? mf_loader_error(t->L) : "no data");
    *failed = 1;
    return NULL;
  }
  if (batch_feed(t, b, failed) < 0) {
    mf_loader_release(t->L, b);
    return NULL;
  }
  return b;
}

/* stages b (again) for the session's next step through the workload's feed hook; 0, or -1 (said) */
static int batch_feed(mf_trainer *t, const mf_batch *b, int *failed) {
  char err[1024];
  if (t->h.feed(t->h.ctx, t->s, b, err, sizeof err) < 0) {
    fprintf(stderr, "memfit %s: %s\n", t->o.name, err);
    *failed = 1;
    return -1;
  }
  return 0;
}

/* validation and its record; the sample picture goes to OUT/samples-epochNNN.png (OUT/samples-stepNNNNNNN.png
 * between epoch ends). Returns -1 when writing failed (said). */
static int run_validate(mf_trainer *t, int ep, int64_t step, int at_epoch_end, int64_t *bad_val) {
  mf_comm *c = t->s->comm;
  if (c && t->h.validate) { /* data parallel: rank 0 validates; the others take its first metric for the schedule */
    double m[2] = {0, 0}; /* has a metric, its value */
    int rc = 0;
    if (lead(t)) {
      mf_comm *keep = t->s->comm;
      t->s->comm = NULL; /* rank 0 alone */
      rc = run_validate(t, ep, step, at_epoch_end, bad_val);
      t->s->comm = keep;
      m[0] = t->last_metric_n;
      m[1] = t->last_metric;
    }
    double dl = c->timeout_s; /* rank 0 validates alone, as long as it takes: no deadline while the others wait (mpirun
                                 still ends the job when a rank dies) */
    c->timeout_s = 1e12;
    int brc = c->broadcast(c, m, sizeof m, 0, "the validation metric");
    c->timeout_s = dl;
    if (brc < 0) return -1;
    if (!lead(t) && m[0] > 0) mf_session_report_metric(t->s, m[1]);
    return rc;
  }
  if (!t->h.validate) {
    if (at_epoch_end) printf("epoch %d/%d\n", ep + 1, t->epochs);
    return 0;
  }
  char grid[1100], line[1024] = "";
  if (at_epoch_end) snprintf(grid, sizeof grid, "%s/samples-epoch%03d.png", t->o.out, ep + 1);
  else snprintf(grid, sizeof grid, "%s/samples-step%07lld.png", t->o.out, (long long)step);
  const char *names[MF_MAX_METRICS + 1];
  double vals[MF_MAX_METRICS + 1];
  int samples_failed = 0;
  int n = t->h.validate(t->h.ctx, t->s, grid, bad_val, names + 1, vals + 1, line, sizeof line, &samples_failed);
  if (n < 0 || n > MF_MAX_METRICS) n = 0;
  t->last_metric_n = n;
  t->last_metric = n ? vals[1] : 0;
  const char *what = at_epoch_end ? "epoch" : "update";
  long long num = at_epoch_end ? ep + 1 : (long long)step, den = at_epoch_end ? t->epochs : (long long)t->total;
  if (n) printf("%s %lld/%lld %s\n", what, num, den, line);
  else printf("%s %lld/%lld (no validation %s)\n", what, num, den, t->o.sample_unit);
  if (n && mf_session_report_metric(t->s, vals[1]) == 1) { /* the PLATEAU schedule minimises the first metric */
    double best;
    int bad_reports;
    double scale = mf_session_plateau_scale(t->s, &best, &bad_reports);
    printf("  %s did not improve on %.6g: learning rate cut to %.3g x the base\n", names[1], best, scale);
  }
  if (n) {
    names[0] = "epoch";
    vals[0] = ep + 1;
    if (jlog_record(t->jlog, step, "validation", n + 1, names, vals) < 0) {
      fprintf(stderr, "memfit %s: writing --log %s failed: %s\n", t->o.name, t->jlog_path, strerror(errno));
      return -1;
    }
  }
  return samples_failed ? -1 : 0;
}

int mf_trainer_run(mf_trainer *t) {
  if (t->early_status >= 0) return t->early_status;
  const mf_trainer_opts *o = &t->o;
  mf_session *s = t->s;
  mf_loader *L = t->L;
  int accum = o->accum, nt = o->n_terms, nph = mf_plan_phase_count(mf_session_plan(t->s));
  int64_t start = t->start, total = t->total, per_epoch = t->per_epoch, step = start;
  int epochs = t->epochs, epoch0 = (int)(start / per_epoch);
  double t0 = now_s(), last_log = t0;
  int64_t bad_val[2] = {0, 0}; /* validation images: unreadable, smaller than the crop */
  double run_loss = 0, run_terms[MF_MAX_TERMS] = {0};
  int run_n = 0, failed = 0, stopped = 0;
  const mf_batch *cur = NULL; /* taken from the loader and staged for the next micro-step */
  int64_t last_bad = 0;
  { /* the report's inputs: a record with the command, settings and planned arenas; the step's memory timeline */
    char tl[1100], settings[1200];
    snprintf(settings, sizeof settings, "%s%s%d epochs of %lld updates", o->settings ? o->settings : "", o->settings ? "; " : "",
             epochs, (long long)per_epoch);
    char psnr[512] = "";
    for (int i = 0; i < o->n_terms; i++)
      if (o->psnr_terms >> i & 1)
        snprintf(psnr + strlen(psnr), sizeof psnr - strlen(psnr), "%s%s", psnr[0] ? " " : "", o->term_names[i]);
    if (mf_report_start_record(t->jlog, start, o->command ? o->command : "", settings, o->values_per_sample, psnr,
                               mf_session_plan(s)) < 0) {
      fprintf(stderr, "memfit %s: writing --log %s failed: %s\n", o->name, t->jlog_path, strerror(errno));
      failed = 1;
    }
    snprintf(tl, sizeof tl, "%s/timeline.svg", o->out);
    if (!failed)
      mf_report_timeline_svg(tl, mf_session_plan(s), o->timeline_title ? o->timeline_title : "one training step", o->name);
  }
  struct sigaction sa, old_int, old_term;
  if (o->handle_signals) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = train_on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    train_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  t->stop_req = 0;
  /* an update after which nothing is taken ahead: the epoch's end, --stop-after, a validation or checkpoint
   * between epoch ends (validation reads its own inputs; the checkpoint's data position is the steps done) */
  #define BOUNDARY(u) ((u) == end || (o->stop_after && (u) == o->stop_after) || (o->val_every && (u) % o->val_every == 0) || \
                       (o->every && (u) % o->every == 0))
  for (int ep = epoch0; ep < epochs && !failed; ep++) {
    int64_t end = (int64_t)(ep + 1) * per_epoch;
    if (end > total) end = total;
    for (; step < end; step++) {
      double upd_loss = 0, upd_terms[MF_MAX_TERMS] = {0};
      double ph_loss[MF_MAX_PHASES] = {0};
      for (int k = 0; k < accum && nph > 1; k++) {
        /* phases: each micro-batch goes through every phase in order (fed again for each); on the last one a
         * phase's update follows its step at once, so a later phase sees it (a GAN's discriminator sees the
         * generator just updated), as PyTorch Lightning steps several optimizers */
        const mf_batch *b = batch_take(t, &failed);
        if (!b) break;
        double tv[MF_MAX_TERMS] = {0};
        for (int ph = 0; ph < nph && !failed; ph++) {
          double l = ph ? (batch_feed(t, b, &failed) < 0 ? NAN : mf_session_phase_step(s, ph)) : mf_session_phase_step(s, ph);
          if (t->h.step_loss && !isnan(l)) l = t->h.step_loss(t->h.ctx, s, ph, l);
          if (isnan(l)) {
            if (!failed) fprintf(stderr, "memfit %s: phase %s: the step failed (see above)\n", o->name, mf_plan_phase_name(mf_session_plan(s), ph));
            failed = 1;
            break;
          }
          if (nt && t->h.read_terms && ph == nph - 1) {
            t->h.read_terms(t->h.ctx, s, tv);
            if (mf_session_reduce_values(s, tv, nt) < 0) { failed = 1; break; }
          }
          if (mf_session_reduce_values(s, &l, 1) < 0) { failed = 1; break; }
          ph_loss[ph] += l;
          upd_loss += l;
          run_loss += l / o->loss_divisor;
          if (k + 1 == accum && mf_session_phase_update(s, ph) < 0) {
            fprintf(stderr, "memfit %s: phase %s: the update failed (see above)\n", o->name, mf_plan_phase_name(mf_session_plan(s), ph));
            failed = 1;
          }
        }
        mf_loader_release(L, b);
        if (failed) break;
        for (int i = 0; i < nt; i++) { run_terms[i] += tv[i]; upd_terms[i] += tv[i]; }
        run_n++;
      }
      for (int k = 0; k < accum && nph == 1; k++) {
        if (!cur && !(cur = batch_take(t, &failed))) break;
        int more = k + 1 < accum || !BOUNDARY(step + 1);
        const mf_batch *nxt = more ? batch_take(t, &failed) : NULL;
        if (failed) break;
        double l = mf_session_micro_step(s);
        if (t->h.step_loss && !isnan(l)) l = t->h.step_loss(t->h.ctx, s, 0, l);
        mf_loader_release(L, cur);
        cur = nxt;
        if (isnan(l)) { fprintf(stderr, "memfit %s: the step failed (see above)\n", o->name); failed = 1; break; }
        double tv[MF_MAX_TERMS + 1] = {0};
        if (nt && t->h.read_terms) t->h.read_terms(t->h.ctx, s, tv);
        if (s->comm) { /* data parallel: the global batch's loss and terms */
          tv[nt] = l;
          if (mf_session_reduce_values(s, tv, nt + 1) < 0) { failed = 1; break; }
          l = tv[nt];
        }
        run_loss += l / o->loss_divisor;
        upd_loss += l;
        for (int i = 0; i < nt; i++) { run_terms[i] += tv[i]; upd_terms[i] += tv[i]; }
        run_n++;
      }
      if (failed) break;
      if (nph == 1 && mf_session_update(s) < 0) { fprintf(stderr, "memfit %s: the update failed (see above)\n", o->name); failed = 1; break; }
      if (t->h.after_update) {
        char err[1024];
        if (t->h.after_update(t->h.ctx, s, step + 1, err, sizeof err) < 0) {
          fprintf(stderr, "memfit %s: after update %lld: %s\n", o->name, (long long)(step + 1), err);
          failed = 1;
          break;
        }
      }
      if (t->loss_log) {
        int bad = fprintf(t->loss_log, "%lld %.17g", (long long)(step + 1), upd_loss / accum) < 0;
        for (int i = 0; i < nt; i++) bad |= fprintf(t->loss_log, " %.17g", upd_terms[i] / accum) < 0;
        if (bad || fputc('\n', t->loss_log) == EOF || fflush(t->loss_log) != 0) { /* flushed per line: a killed run keeps it */
          fprintf(stderr, "memfit %s: writing --loss-log %s failed: %s\n", o->name, o->loss_log, strerror(errno));
          failed = 1;
          break;
        }
      }
      {
        double el = now_s() - t0;
        char rate_name[48];
        snprintf(rate_name, sizeof rate_name, "%s_per_s", o->sample_unit);
        const char *nm[8 + MF_MAX_TERMS + MF_MAX_PHASES + 2];
        double v[8 + MF_MAX_TERMS + MF_MAX_PHASES + 2];
        char phn[MF_MAX_PHASES][48];
        int n = 0;
        nm[n] = "epoch"; v[n++] = ep + 1;
        nm[n] = "loss"; v[n++] = upd_loss / accum; /* with phases: their sum */
        for (int ph = 0; ph < nph && nph > 1; ph++) {
          snprintf(phn[ph], sizeof phn[ph], "loss_%s", mf_plan_phase_name(mf_session_plan(s), ph));
          nm[n] = phn[ph]; v[n++] = ph_loss[ph] / accum;
        }
        for (int i = 0; i < nt; i++) { nm[n] = o->term_names[i]; v[n++] = upd_terms[i] / accum; }
        nm[n] = "lr"; v[n++] = mf_session_last_lr(s);
        nm[n] = "grad_norm"; v[n++] = mf_session_last_grad_norm(s);
        nm[n] = "loss_scale"; v[n++] = mf_session_loss_scale(s);
        nm[n] = rate_name; v[n++] = el > 0 ? (double)(step + 1 - start) * o->samples_per_step / el : 0;
        nm[n] = "data_wait_share"; v[n++] = el > 0 ? mf_loader_get_stats(L).wait_s / el : 0;
        nm[n] = "plan_bytes"; v[n++] = (double)mf_plan_total_bytes(mf_session_plan(s));
        nm[n] = "peak_rss_bytes"; v[n++] = (double)mf_peak_rss_bytes();
        if (jlog_record(t->jlog, step + 1, "update", n, nm, v) < 0) {
          fprintf(stderr, "memfit %s: writing --log %s failed: %s\n", o->name, t->jlog_path, strerror(errno));
          failed = 1;
          break;
        }
      }
      double now = now_s();
      if (o->log_every >= 0 && (now - last_log >= o->log_every || step + 1 == end) && run_n) {
        char eta[32], pl[32], rss[32], terms[256] = "";
        double rate = (double)(step + 1 - start) / (now - t0), mean[MF_MAX_TERMS];
        for (int i = 0; i < nt; i++) mean[i] = run_terms[i] / run_n;
        if (t->h.describe_terms) {
          terms[0] = ' ';
          terms[1] = ' ';
          t->h.describe_terms(t->h.ctx, mean, terms + 2, sizeof terms - 2);
        }
        fmt_dur((double)(total - step - 1) / rate, eta, sizeof eta);
        mf_format_bytes(mf_plan_total_bytes(mf_session_plan(s)), pl, sizeof pl);
        mf_format_bytes(mf_peak_rss_bytes(), rss, sizeof rss);
        printf("  [%3.0f%%] step %lld/%lld epoch %d/%d  loss %.4g%s  %.2f %s/s  ETA %s  mem plan %s, RSS %s\n",
               100.0 * (double)(step + 1) / (double)total, (long long)(step + 1), (long long)total, ep + 1, epochs,
               run_loss / run_n, terms, rate * o->samples_per_step, o->sample_unit, eta, pl, rss);
        fflush(stdout);
        run_loss = 0;
        memset(run_terms, 0, sizeof run_terms);
        run_n = 0;
        last_log = now;
      }
      int64_t u = step + 1;
      if (s->comm) { /* data parallel: a signal or mf_trainer_stop on any rank stops all after this same update */
        uint64_t want = train_signal || t->stop_req;
        if (s->comm->allreduce(s->comm, &want, 1, MF_COMM_U64, MF_COMM_MAX, "the agreement on stopping") < 0) { failed = 1; step++; break; }
        if (want) t->stop_req = 1;
      }
      if ((o->stop_after && u == o->stop_after) || train_signal || t->stop_req) { stopped = 1; step++; break; }
      if (u < end && o->val_every && u % o->val_every == 0 && run_validate(t, ep, u, 0, bad_val) < 0) { failed = 1; step++; break; }
      if (u < end && o->every && u % o->every == 0) {
        if (run_save(t, cur) < 0) { failed = 1; step++; break; }
        printf("  saved %s at update %lld\n", t->ck, (long long)u);
        fflush(stdout);
      }
    }
    if (failed) break;
    if (stopped && step < end) { /* mid-epoch: only what resume needs (validation stays at epoch ends) */
      if (run_save(t, cur) < 0) failed = 1;
      if (!failed) {
        printf("  saved %s (resume with --resume)", t->ck);
        if (t->h.save_model) printf(" and %s%s", t->mp, o->model_use ? o->model_use : "");
        printf("\n");
      }
      if (cur) { mf_loader_release(L, cur); cur = NULL; } /* its position is the checkpoint's */
      break;
    }
    /* ---- end of epoch: validation, samples, checkpoint ---- */
    int vfail = run_validate(t, ep, step, 1, bad_val) < 0;
    mf_loader_stats st = mf_loader_get_stats(L);
    if (st.bad_files + st.skipped_files + bad_val[0] + bad_val[1] > last_bad) {
      mf_loader_summary(L, stdout);
      printf("\n");
      last_bad = st.bad_files + st.skipped_files + bad_val[0] + bad_val[1];
    }
    if (run_save(t, cur) < 0) failed = 1;
    if (vfail) failed = 1; /* said above */
    if (failed) break; /* a run whose checkpoints cannot be written is not worth continuing */
    printf("  saved %s (resume with --resume)", t->ck);
    if (t->h.save_model) printf(" and %s%s", t->mp, o->model_use ? o->model_use : "");
    char grid[1100];
    snprintf(grid, sizeof grid, "%s/samples-epoch%03d.png", o->out, ep + 1);
    if (t->h.validate && access(grid, F_OK) == 0) printf("; samples %s", grid);
    printf("\n");
    fflush(stdout);
    if (lead(t)) mf_report_update(o->out, t->jlog_path, o->name); /* OUT/report.html */
    if (stopped) break;
  }
  #undef BOUNDARY
  int sig = train_signal;
  if (o->handle_signals) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    train_signal = 0;
  }
  if (stopped && !failed && sig)
    printf("interrupted by %s after update %lld of %lld: saved; continue with the same options and --resume %s\n",
           sig == SIGINT ? "SIGINT (Ctrl-C)" : "SIGTERM", (long long)step, (long long)total, t->ck);
  else if (stopped && !failed && t->stop_req)
    printf("stopped after update %lld of %lld; continue with --resume %s\n", (long long)step, (long long)total, t->ck);
  else if (stopped && !failed)
    printf("stopped after update %lld of %lld (--stop-after); continue with --resume %s\n", (long long)step, (long long)total, t->ck);
  if (t->loss_log) {
    int bad = fclose(t->loss_log) != 0;
    t->loss_log = NULL;
    if (bad) {
      fprintf(stderr, "memfit %s: writing --loss-log %s failed: %s\n", o->name, o->loss_log, strerror(errno));
      failed = 1;
    }
  }
  double el = now_s() - t0;
  char dur[32];
  fmt_dur(el, dur, sizeof dur);
  mf_loader_stats st = mf_loader_get_stats(L);
  printf("trained %lld updates in %s (%.1fs); waiting for data %.1f%% of the time; %lld unreadable files skipped; "
         "%lld images smaller than %s skipped\n", (long long)(step - start), dur, el,
         el > 0 ? 100.0 * st.wait_s / el : 0.0, (long long)(st.bad_files + st.skipped_files - st.too_small_files + bad_val[0]),
         (long long)(st.too_small_files + bad_val[1]), o->crop_option ? o->crop_option : "the crop");
  int exact = 1;
  if (step > start) { /* before the first update some arenas (the optimizer's) were never touched */
    exact = mf_report_memory(s, "");
    if (!exact) fprintf(stderr, "memfit %s: measured memory differs from the plan (a bug: please report it)\n", o->name);
  } else
    printf("memory: not compared with the plan: no update ran\n");
  const char *how = failed ? "failed" : !stopped ? "done" : sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM"
                    : t->stop_req ? "stopped" : "stop-after";
  if (o->json && jlog_end(stdout, s, step, step - start, el, how) < 0) failed = 1;
  int bad = jlog_end(t->jlog, s, step, step - start, el, how) < 0;
  bad |= fclose(t->jlog) != 0;
  t->jlog = NULL;
  if (bad) {
    fprintf(stderr, "memfit %s: writing --log %s failed: %s\n", o->name, t->jlog_path, strerror(errno));
    failed = 1;
  } else if (lead(t)) mf_report_update(o->out, t->jlog_path, o->name);
  if (failed && s->comm) { /* data parallel: the other ranks would wait for this one in their next collective */
    char msg[256];
    snprintf(msg, sizeof msg, "memfit %s: rank %d of %d failed (said above): ending the job", o->name, s->comm->rank, s->comm->size);
    s->comm->abort(s->comm, msg);
  }
  if (stopped && sig) return failed ? 1 : 128 + sig; /* 130 SIGINT, 143 SIGTERM: interrupted, progress saved */
  return failed ? 1 : exact ? 0 : 1;
}

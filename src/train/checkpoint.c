/* checkpoint.c — saves and resumes a training session as a safetensors file: f32 parameters, the
 * STATE arena (batch-norm buffers, EMA averages, rings and their positions, masks), optimizer state,
 * accumulated gradients (mid-accumulation), and in the metadata the step counters (the session's and
 * each parameter group's), the reduce-on-plateau state, loss scale, RNG state and any keys of the
 * caller's (a trainer's data position).
 * Written atomically; every mismatch is a clear error. */
#include "train/safetensors.h"
#include "train/session.h"
#include "ops/ops.h"
#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CK_FORMAT "memfit-checkpoint-1"

static const char *optim_name(mf_optim_kind k) { return k == MF_SGD ? "sgd" : k == MF_ADAM ? "adam" : "adamw"; }

/* Visits every tensor a checkpoint holds, with its file name and storage. */
typedef int (*ck_visit_fn)(void *ctx, const char *name, mf_dtype dt, int ndim, const int64_t *shape, void *data);
static int ck_visit(mf_session *s, int with_grads, ck_visit_fn fn, void *ctx) {
  const mf_graph *g = s->plan->g;
  /* host views of the persistent arenas (device backends copy them out first) */
  mf_arena_kind ars[4] = {MF_ARENA_PARAM, MF_ARENA_OPT, MF_ARENA_GRAD, MF_ARENA_STATE};
  for (int i = 0; i < 4; i++)
    if (s->arena[ars[i]] && !mf_session_host_arena(s, ars[i])) return -1;
  int sp = mf_optim_state_per_param(s->opts.plan.optim);
  char nm[MF_NAME_LEN + 24];
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM && n->role != MF_ROLE_BUFFER) continue;
    if (n->op == MF_OP_PARAM) snprintf(nm, sizeof nm, "param.%s", n->name);
    else mf_state_key(n, nm, sizeof nm); /* "buffer.<name>" (batch norm) or "state.<name>" */
    if (fn(ctx, nm, n->dtype, n->ndim, n->ne, mf_session_host_ptr(s, id)) < 0) return -1;
    if (n->op != MF_OP_PARAM || n->grad < 0 || !s->plan->has_train) continue;
    uint8_t *opt = s->opts.plan.offload_opt || !s->be->copy_out ? s->arena[MF_ARENA_OPT] : s->host_mirror[MF_ARENA_OPT];
    if (s->plan->shard_n) { /* ZeRO-1: this rank's slice of the state, flat: "opt.m.<name>" [count] (each rank's own file) */
      int64_t cnt = s->plan->shard_n[id];
      float *st = cnt ? (float *)(opt + s->plan->opt_off[id]) : NULL;
      for (int k = 0; k < sp && cnt; k++) {
        snprintf(nm, sizeof nm, "opt.%s.slice.%s", sp == 1 ? "momentum" : k == 0 ? "m" : "v", n->name);
        if (fn(ctx, nm, MF_F32, 1, &cnt, st + (size_t)k * (size_t)cnt) < 0) return -1;
      }
    }
    float *st = s->plan->shard_n ? NULL : (float *)(opt + s->plan->opt_off[id]); /* sharded: none here (above) */
    for (int k = 0; k < sp && st; k++) {
      snprintf(nm, sizeof nm, "opt.%s.%s", sp == 1 ? "momentum" : k == 0 ? "m" : "v", n->name);
      if (fn(ctx, nm, MF_F32, n->ndim, n->ne, st + (size_t)k * (size_t)mf_node_numel(n)) < 0) return -1;
    }
    if (with_grads) {
      snprintf(nm, sizeof nm, "grad.%s", n->name);
      if (fn(ctx, nm, MF_F32, n->ndim, n->ne, mf_session_host_ptr(s, n->grad)) < 0) return -1;
    }
  }
  return 0;
}

static int add_visit(void *ctx, const char *name, mf_dtype dt, int ndim, const int64_t *shape, void *data) {
  return mf_st_writer_add(ctx, name, dt, ndim, shape, data);
}

/* the metadata keys the session itself writes (an extra key may not take one of them) */
static const char *const own_keys[] = {"format", "optimizer", "act_dtype", "step", "micro", "loss_scale", "clean_steps",
                                       "skipped", "rng"};

int mf_session_save(mf_session *s, const char *path, char *err, size_t errlen) {
  return mf_checkpoint_save(s, path, 0, NULL, NULL, err, errlen);
}

int mf_checkpoint_save(mf_session *s, const char *path, int n_meta, const char *const *keys, const char *const *values,
                       char *err, size_t errlen) {
  for (int i = 0; i < n_meta; i++)
    for (size_t k = 0; k < sizeof own_keys / sizeof *own_keys; k++)
      if (!strcmp(keys[i], own_keys[k])) {
        snprintf(err, errlen, "checkpoint %s: metadata key '%s' is the session's own; use another name", path, keys[i]);
        return -1;
      }
  for (int i = 0; i < n_meta; i++)
    if (!strncmp(keys[i], "group.", 6) || !strncmp(keys[i], "plateau.", 8) || !strncmp(keys[i], "phase.", 6)) {
      snprintf(err, errlen, "checkpoint %s: metadata key '%s' is the session's own (group.*, plateau.* and phase.* are); use another name",
               path, keys[i]);
      return -1;
    }
  mf_st_writer *w = mf_st_writer_init();
  if (!w) { snprintf(err, errlen, "checkpoint %s: out of host memory", path); return -1; }
  char v[64];
  for (int i = 0; i < n_meta; i++) mf_st_writer_meta(w, keys[i], values[i]);
  mf_st_writer_meta(w, "format", CK_FORMAT);
  mf_st_writer_meta(w, "optimizer", optim_name(s->opts.plan.optim));
  mf_st_writer_meta(w, "act_dtype", mf_dtype_name(s->plan->g->act_dtype));
  snprintf(v, sizeof v, "%" PRId64, s->step); mf_st_writer_meta(w, "step", v);
  snprintf(v, sizeof v, "%d", s->micro); mf_st_writer_meta(w, "micro", v);
  snprintf(v, sizeof v, "%.17g", s->loss_scale); mf_st_writer_meta(w, "loss_scale", v);
  snprintf(v, sizeof v, "%d", s->clean_steps); mf_st_writer_meta(w, "clean_steps", v);
  snprintf(v, sizeof v, "%" PRId64, s->skipped); mf_st_writer_meta(w, "skipped", v);
  snprintf(v, sizeof v, "%" PRIu64, s->rng); mf_st_writer_meta(w, "rng", v);
  for (int k = 0; k < s->opts.n_groups; k++) { /* parameter groups' update counts (Adam's bias correction) */
    char key[32];
    snprintf(key, sizeof key, "group.%d.step", k);
    snprintf(v, sizeof v, "%" PRId64, s->group_step[k]); mf_st_writer_meta(w, key, v);
  }
  for (int k = 0; k < s->plan->n_phases && s->plan->n_phases > 1; k++) { /* phase steps since each phase's update */
    char key[32];
    snprintf(key, sizeof key, "phase.%d.micro", k);
    snprintf(v, sizeof v, "%d", s->phase_micro[k]); mf_st_writer_meta(w, key, v);
  }
  snprintf(v, sizeof v, "%.17g", s->plateau_best); mf_st_writer_meta(w, "plateau.best", v); /* "inf" before any report */
  snprintf(v, sizeof v, "%d", s->plateau_bad); mf_st_writer_meta(w, "plateau.bad", v);
  snprintf(v, sizeof v, "%.17g", s->plateau_scale); mf_st_writer_meta(w, "plateau.scale", v);
  int rc = ck_visit(s, s->micro > 0, add_visit, w);
  if (rc < 0 || mf_st_writer_error(w)) {
    snprintf(err, errlen, "checkpoint %s: %s", path, mf_st_writer_error(w) ? mf_st_writer_error(w) : "could not add a tensor");
    mf_st_writer_free(w);
    return -1;
  }
  rc = mf_st_writer_save(w, path, err, errlen);
  mf_st_writer_free(w);
  return rc;
}

typedef struct load_ctx { mf_st_file *f; const char *path; char *err; size_t errlen; int found; int copy; } load_ctx;

static int load_visit(void *ctx, const char *name, mf_dtype dt, int ndim, const int64_t *shape, void *data) {
  load_ctx *c = ctx;
  char e[384];
  const void *src = mf_st_get(c->f, name, dt, ndim, shape, e, sizeof e);
  if (!src) { snprintf(c->err, c->errlen, "%s (was it saved from another model or settings?)", e); return -1; }
  /* weights, buffers and optimizer state must be finite (accumulated gradients may overflow under loss scaling) */
  int64_t bad = strncmp(name, "grad.", 5) && !c->copy ? mf_st_nonfinite(mf_st_find(c->f, name)) : -1;
  if (bad >= 0) {
    snprintf(c->err, c->errlen, "checkpoint %s: tensor '%s' holds a non-finite value (NaN or infinity) at element %lld; "
                                "the file is damaged or its run diverged: resume from an earlier checkpoint",
             c->path, name, (long long)bad);
    return -1;
  }
  c->found++;
  if (c->copy) {
    int64_t cnt = 1;
    for (int i = 0; i < ndim; i++) cnt *= shape[i];
    memcpy(data, src, (size_t)cnt * mf_dtype_size(dt));
  }
  return 0;
}

/* Strict decimal integer metadata: digits only (a '-' only when lo < 0), no spaces, exponent or
 * fraction, within [lo, hi]. Anything else is an error naming the key, the value and the file. */
static int meta_int(mf_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                    size_t errlen) {
  const char *v = mf_st_meta(f, key);
  if (!v) { snprintf(err, errlen, "checkpoint %s: metadata '%s' is missing", path, key); return -1; }
  const char *p = v + (*v == '-' && lo < 0);
  int ok = *p != 0, over = 0;
  int64_t x = 0;
  for (; ok && *p; p++) {
    if (*p < '0' || *p > '9') { ok = 0; break; }
    int d = *p - '0';
    if (x > (INT64_MAX - d) / 10) over = 1;
    else x = x * 10 + d;
  }
  if (*v == '-') x = -x;
  if (!ok || over || x < lo || x > hi) {
    snprintf(err, errlen, "checkpoint %s: metadata '%s' is '%.40s%s': expected a whole number from %lld to %lld "
                          "(was the file edited?)", path, key, v, strlen(v) > 40 ? "..." : "", (long long)lo, (long long)hi);
    return -1;
  }
  *out = x;
  return 0;
}

/* the session RNG state: a decimal unsigned 64-bit integer */
static int meta_u64(mf_st_file *f, const char *path, const char *key, uint64_t *out, char *err, size_t errlen) {
  const char *v = mf_st_meta(f, key);
  if (!v) { snprintf(err, errlen, "checkpoint %s: metadata '%s' is missing", path, key); return -1; }
  uint64_t x = 0;
  int ok = *v != 0;
  for (const char *p = v; ok && *p; p++) {
    int d = *p - '0';
    if (d < 0 || d > 9 || x > (UINT64_MAX - (uint64_t)d) / 10) ok = 0;
    else x = x * 10 + (uint64_t)d;
  }
  if (!ok) {
    snprintf(err, errlen, "checkpoint %s: metadata '%s' is '%.40s%s': expected a whole number from 0 to %llu (was the file "
                          "edited?)", path, key, v, strlen(v) > 40 ? "..." : "", (unsigned long long)UINT64_MAX);
    return -1;
  }
  *out = x;
  return 0;
}

/* the loss scale: a finite number, 1 or more (the session never lowers it below 1) */
static int meta_scale(mf_st_file *f, const char *path, const char *key, double *out, char *err, size_t errlen) {
  const char *v = mf_st_meta(f, key);
  if (!v) { snprintf(err, errlen, "checkpoint %s: metadata '%s' is missing", path, key); return -1; }
  char *end;
  double x = *v && !isspace((unsigned char)*v) ? strtod(v, &end) : NAN;
  if (isnan(x) || *end || !(x >= 1 && x <= 1e300)) {
    snprintf(err, errlen, "checkpoint %s: metadata '%s' is '%.40s%s': expected a finite number of 1 or more (was the file "
                          "edited?)", path, key, v, strlen(v) > 40 ? "..." : "");
    return -1;
  }
  *out = x;
  return 0;
}

/* A real number from strtod's decimal form (no leading space, nothing after it), finite within [lo, hi]
 * (lo < x when lo_open), or exactly "inf" when allow_inf. */
static int meta_real(mf_st_file *f, const char *path, const char *key, double lo, int lo_open, double hi, int allow_inf,
                     double *out, char *err, size_t errlen) {
  const char *v = mf_st_meta(f, key);
  if (!v) { snprintf(err, errlen, "checkpoint %s: metadata '%s' is missing", path, key); return -1; }
  char *end = NULL;
  int hex = strchr(v, 'x') || strchr(v, 'X');
  double x = *v && !isspace((unsigned char)*v) && !hex ? strtod(v, &end) : NAN;
  if (allow_inf && !strcmp(v, "inf")) { *out = INFINITY; return 0; }
  if (!isfinite(x) || *end || x > hi || x < lo || (lo_open && x == lo)) {
    snprintf(err, errlen, "checkpoint %s: metadata '%s' is '%.40s%s': expected a finite number %s %g and at most %g%s (was the "
                          "file edited?)", path, key, v, strlen(v) > 40 ? "..." : "", lo_open ? "above" : "of at least", lo, hi,
             allow_inf ? ", or inf" : "");
    return -1;
  }
  *out = x;
  return 0;
}

/* The parameter groups' step counts and the PLATEAU state. A checkpoint from before groups (none of these
 * keys) resumes with every group at the session's step and a fresh plateau; otherwise every key must be there. */
static int meta_groups(mf_st_file *f, const char *path, mf_session *s, int64_t step, int64_t *gstep, double *best, int64_t *bad,
                       double *scale, char *err, size_t errlen) {
  char key[32];
  int n = s->opts.n_groups;
  if (!mf_st_meta(f, "group.0.step") && !mf_st_meta(f, "plateau.best") && !mf_st_meta(f, "plateau.bad") &&
      !mf_st_meta(f, "plateau.scale")) {
    for (int k = 0; k < n; k++) gstep[k] = step;
    *best = INFINITY, *bad = 0, *scale = 1;
    return 0;
  }
  for (int k = 0; k < n; k++) {
    snprintf(key, sizeof key, "group.%d.step", k);
    if (meta_int(f, path, key, 0, step, &gstep[k], err, errlen)) return -1;
  }
  for (int k = n; k < MF_MAX_PARAM_GROUPS; k++) {
    snprintf(key, sizeof key, "group.%d.step", k);
    const char *v = mf_st_meta(f, key);
    if (v) {
      snprintf(err, errlen, "checkpoint %s: metadata '%s' is '%.40s%s': the file was saved with more parameter groups than "
                            "this run's %d (n_groups)", path, key, v, strlen(v) > 40 ? "..." : "", n);
      return -1;
    }
  }
  return meta_real(f, path, "plateau.best", -DBL_MAX, 0, DBL_MAX, 1, best, err, errlen) ||
         meta_int(f, path, "plateau.bad", 0, INT32_MAX, bad, err, errlen) ||
         meta_real(f, path, "plateau.scale", 0, 1, 1, 0, scale, err, errlen) ? -1 : 0;
}

/* a tensor's data in the file, or NULL (mf_state_load_check runs after every tensor was validated) */
static const void *st_lookup(void *ctx, const char *name) {
  const mf_st_tensor *t = mf_st_find(ctx, name);
  return t ? t->data : NULL;
}

int mf_session_load(mf_session *s, const char *path, char *err, size_t errlen) {
  mf_st_file *f = mf_st_open(path, err, errlen);
  if (!f) return -1;
  int rc = -1;
  const char *fmt = mf_st_meta(f, "format"), *opt = mf_st_meta(f, "optimizer");
  int64_t step, micro, clean, skipped, gstep[MF_MAX_PARAM_GROUPS], pbad;
  uint64_t rng;
  double scale, pbest, pscale;
  int accum = (s->opts.accum_steps > 1 ? s->opts.accum_steps : 1) * s->plan->n_phases; /* phases: steps of all of them */
  if (!fmt || strcmp(fmt, CK_FORMAT)) { snprintf(err, errlen, "checkpoint %s: not a memfit checkpoint (format '%s')", path, fmt ? fmt : "missing"); goto out; }
  if (s->plan->has_train && (!opt || strcmp(opt, optim_name(s->opts.plan.optim)))) {
    snprintf(err, errlen, "checkpoint %s: saved with optimizer '%s', this run uses '%s'", path, opt ? opt : "?", optim_name(s->opts.plan.optim));
    goto out;
  }
  /* micro counts the micro-steps since the last update: at most accum_steps (per phase); clean_steps resets at 2000 */
  if (meta_int(f, path, "step", 0, INT64_MAX - 1, &step, err, errlen) ||
      meta_int(f, path, "micro", 0, accum, &micro, err, errlen) ||
      meta_scale(f, path, "loss_scale", &scale, err, errlen) ||
      meta_int(f, path, "clean_steps", 0, 2000, &clean, err, errlen) ||
      meta_int(f, path, "skipped", 0, INT64_MAX - 1, &skipped, err, errlen) ||
      meta_u64(f, path, "rng", &rng, err, errlen) ||
      meta_groups(f, path, s, step, gstep, &pbest, &pbad, &pscale, err, errlen))
    goto out;
  /* phases: the steps each has taken since its update, adding up to micro (a file of one phase: none) */
  int64_t pmicro[MF_MAX_PHASES] = {micro}; /* one phase: its pending count is micro (the queue's stage reads it) */
  if (s->plan->n_phases > 1) {
    int64_t sum = 0;
    for (int k = 0; k < s->plan->n_phases; k++) {
      char key[32];
      snprintf(key, sizeof key, "phase.%d.micro", k);
      if (meta_int(f, path, key, 0, accum, &pmicro[k], err, errlen)) goto out;
      sum += pmicro[k];
    }
    if (sum != micro) {
      snprintf(err, errlen, "checkpoint %s: metadata phase.*.micro add up to %lld, micro is %lld (was the file edited?)", path,
               (long long)sum, (long long)micro);
      goto out;
    }
  }
  /* validate everything first, then copy: a bad file leaves the session untouched */
  load_ctx c = {f, path, err, errlen, 0, 0};
  if (ck_visit(s, micro > 0, load_visit, &c) < 0) goto out;
  if (c.found != mf_st_count(f)) {
    snprintf(err, errlen, "checkpoint %s: holds %d tensors, this model has %d (saved from another model?)", path, mf_st_count(f), c.found);
    goto out;
  }
  if (mf_state_load_check(s, st_lookup, f, path, err, errlen) < 0) goto out; /* masks and ring positions make sense */
  c.copy = 1;
  if (ck_visit(s, micro > 0, load_visit, &c) < 0) goto out;
  mf_state_load_done(s);
  s->step = step;
  s->micro = (int)micro;
  for (int k = 0; k < MF_MAX_PHASES; k++) s->phase_micro[k] = (int)pmicro[k];
  if (!micro && s->arena[MF_ARENA_GRAD]) { /* no gradients pending when saved: none now either (phase steps add to them) */
    uint8_t *gh = mf_session_host_arena(s, MF_ARENA_GRAD);
    if (gh) memset(gh, 0, s->plan->arena[MF_ARENA_GRAD]);
  }
  s->loss_scale = scale;
  s->clean_steps = (int)clean;
  s->skipped = skipped;
  s->rng = rng;
  for (int k = 0; k < s->opts.n_groups; k++) s->group_step[k] = gstep[k];
  s->plateau_best = pbest;
  s->plateau_bad = (int)pbad;
  s->plateau_scale = pscale;
  mf_session_push_arena(s, MF_ARENA_PARAM);
  mf_session_push_arena(s, MF_ARENA_OPT);
  mf_session_push_arena(s, MF_ARENA_GRAD);
  mf_session_push_arena(s, MF_ARENA_STATE);
  mf_session_refresh_lp(s); /* the low-precision copies (of parameters and EMA averages) follow the loaded masters */
  rc = 0;
out:
  mf_st_close(f);
  return rc;
}

/* --init: the weights of a model file or checkpoint (keys "param.<name>", "buffer.<name>"), by name and shape.
 * Every parameter must be in the file and the file may hold no parameter this model lacks; batch-norm buffers
 * are taken when present. EMA averages restart at the loaded parameters (as at initialisation); the optimizer,
 * rings, masks and step counts stay as a new run starts them. Validates everything before copying. */
static int weights_visit(mf_session *s, mf_st_file *f, const char *path, int copy, int *n_params, char *err, size_t errlen) {
  const mf_graph *g = s->plan->g;
  char nm[MF_NAME_LEN + 24], e[384];
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM) snprintf(nm, sizeof nm, "param.%s", n->name);
    else if (n->role == MF_ROLE_BUFFER && n->state_kind == MF_STATE_BUFFER) mf_state_key(n, nm, sizeof nm);
    else continue;
    const mf_st_tensor *t = mf_st_find(f, nm);
    if (!t && n->op != MF_OP_PARAM) continue; /* a buffer the file lacks keeps its initial value */
    if (!t) {
      snprintf(err, errlen, "%s has no tensor '%s': it was written for another model or with other settings (the model's "
                            "settings, e.g. --preset, --blocks, --width, must be those of the run that wrote it)", path, nm);
      return -1;
    }
    const void *src = mf_st_get(f, nm, n->dtype, n->ndim, n->ne, e, sizeof e);
    if (!src) { snprintf(err, errlen, "%s (was it written for another model or with other settings?)", e); return -1; }
    int64_t bad = copy ? -1 : mf_st_nonfinite(t);
    if (bad >= 0) {
      snprintf(err, errlen, "%s: tensor '%s' holds a non-finite value (NaN or infinity) at element %lld", path, nm, (long long)bad);
      return -1;
    }
    *n_params += n->op == MF_OP_PARAM;
    if (copy) memcpy(mf_session_host_ptr(s, id), src, mf_node_bytes(n));
  }
  return 0;
}

int mf_session_load_weights(mf_session *s, const char *path, char *err, size_t errlen) {
  const mf_graph *g = s->plan->g;
  if (!mf_session_host_arena(s, MF_ARENA_PARAM) || (s->arena[MF_ARENA_STATE] && !mf_session_host_arena(s, MF_ARENA_STATE))) {
    snprintf(err, errlen, "%s: could not read the session's arenas back from the device", path);
    return -1;
  }
  mf_st_file *f = mf_st_open(path, err, errlen);
  if (!f) return -1;
  int rc = -1, n_params = 0, file_params = 0;
  for (int i = 0; i < mf_st_count(f); i++) file_params += !strncmp(mf_st_at(f, i)->name, "param.", 6);
  if (weights_visit(s, f, path, 0, &n_params, err, errlen) < 0) goto out;
  if (file_params != n_params) {
    snprintf(err, errlen, "%s holds %d parameters, this model has %d: it was written for another model or with other settings",
             path, file_params, n_params);
    goto out;
  }
  n_params = 0;
  if (weights_visit(s, f, path, 1, &n_params, err, errlen) < 0) goto out;
  for (int id = 0; id < g->n; id++) { /* EMA averages start at their (loaded) parameters */
    const mf_node *n = &g->nodes[id];
    if (n->role == MF_ROLE_BUFFER && n->state_kind == MF_STATE_EMA)
      memcpy(mf_session_host_ptr(s, id), mf_session_host_ptr(s, n->link), mf_node_bytes(n));
  }
  mf_session_push_arena(s, MF_ARENA_PARAM);
  mf_session_push_arena(s, MF_ARENA_STATE);
  mf_session_refresh_lp(s);
  rc = 0;
out:
  mf_st_close(f);
  return rc;
}

int mf_checkpoint_meta(const char *path, const char *key, char *buf, size_t buflen, char *err, size_t errlen) {
  mf_st_file *f = mf_st_open(path, err, errlen);
  if (!f) return -1;
  const char *v = mf_st_meta(f, key);
  int rc = v ? 0 : 1;
  if (v && strlen(v) >= buflen) {
    snprintf(err, errlen, "checkpoint %s: metadata '%s' holds %zu bytes, more than the %zu the caller gave", path, key, strlen(v),
             buflen ? buflen - 1 : 0);
    rc = -1;
  } else if (buflen)
    snprintf(buf, buflen, "%s", v ? v : "");
  mf_st_close(f);
  return rc;
}

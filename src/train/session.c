/* session.c — the training runtime: allocates each planned arena once, initialises parameters,
 * runs the planned programs with no allocation during a step, and applies the optimizer with
 * gradient accumulation, clipping, schedules and dynamic loss scaling. */
#include "train/session.h"
#include "graph/dtype.h"
#include "ops/ops.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

mf_train_opts mf_train_opts_default(void) {
  mf_train_opts o;
  memset(&o, 0, sizeof o);
  o.plan = mf_plan_opts_default();
  o.lr = 1e-3;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  o.weight_decay = 0.01;
  o.momentum = 0.9;
  o.schedule = MF_SCHED_CONSTANT;
  o.step_gamma = 0.5;
  o.accum_steps = 1;
  o.loss_scaling = -1; /* auto: on for f16 */
  o.seed = 1234;
  return o;
}

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double rng_uniform(uint64_t *x) { return (double)(splitmix(x) >> 11) / 9007199254740992.0; }
static double rng_normal(uint64_t *x) {
  double u = rng_uniform(x) + 1e-300, v = rng_uniform(x);
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* fan-in of a weight: all dims but the first ([OC,C,KH,KW] -> C*KH*KW; [OUT,IN] -> IN) */
static void param_init(const mf_node *n, void *data, uint64_t seed) {
  int64_t cnt = mf_node_numel(n), fan_in = 1, fan_out = n->ndim ? n->ne[0] : 1;
  for (int i = 1; i < n->ndim; i++) fan_in *= n->ne[i];
  for (int i = 2; i < n->ndim; i++) fan_out *= n->ne[i];
  uint64_t r = seed;
  for (int64_t i = 0; i < cnt; i++) {
    double v = 0;
    switch (n->init) {
    case MF_INIT_ZERO: v = 0; break;
    case MF_INIT_ONE: v = 1; break;
    case MF_INIT_CONST: v = n->init_scale; break;
    case MF_INIT_UNIFORM: v = (2 * rng_uniform(&r) - 1) * n->init_scale; break;
    case MF_INIT_NORMAL: v = rng_normal(&r) * n->init_scale; break;
    case MF_INIT_KAIMING: v = rng_normal(&r) * sqrt(2.0 / (double)fan_in) * (n->init_scale > 0 ? n->init_scale : 1); break;
    case MF_INIT_XAVIER: v = (2 * rng_uniform(&r) - 1) * sqrt(6.0 / (double)(fan_in + fan_out)); break;
    }
    mf_st(data, n->dtype, i, v);
  }
}

void *mf_session_ptr(mf_session *s, const mf_program *pr, int id) {
  const mf_plan *p = s->plan;
  const mf_node *n = &p->g->nodes[id];
  mf_arena_kind a = mf_node_arena(n);
  size_t off = a == MF_ARENA_ACT ? (pr ? pr->act_off[id] : MF_NO_OFFSET) : p->pers_off[id];
  if (off == MF_NO_OFFSET || !s->arena[a]) return NULL;
  return s->arena[a] + off;
}

static void refresh_lp_copies(mf_session *s) {
  const mf_graph *g = s->plan->g;
  mf_kctx k = {.g = g, .nthreads = s->opts.threads};
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM_LP) continue;
    void *src[1] = {mf_session_ptr(s, NULL, n->src[0])};
    mf_backend_cpu.kernels[MF_OP_PARAM_LP](&k, n, mf_session_ptr(s, NULL, id), src, NULL);
  }
}

mf_session *mf_session_init(mf_graph *g, mf_tensor loss, const mf_train_opts *o, char *err, size_t errlen) {
  mf_session *s = calloc(1, sizeof *s);
  if (!s) { snprintf(err, errlen, "session: out of host memory"); return NULL; }
  s->opts = o ? *o : mf_train_opts_default();
  if (s->opts.accum_steps < 1) { snprintf(err, errlen, "session: accum_steps must be >= 1 (got %d)", s->opts.accum_steps); free(s); return NULL; }
  if (s->opts.threads <= 0) s->opts.threads = omp_get_num_procs();
  omp_set_num_threads(s->opts.threads);
  s->opts.plan.threads = s->opts.threads;
  if (s->opts.loss_scaling < 0) s->opts.loss_scaling = g->act_dtype == MF_F16;
  s->loss_scale = s->opts.loss_scaling ? 65536.0 : 1.0;
  s->rng = s->opts.seed;
  s->plan = mf_plan_init(g, loss, &s->opts.plan, err, errlen);
  if (!s->plan) { free(s); return NULL; }
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t b = s->plan->arena[a];
    if (!b) continue;
    size_t total = b + (s->opts.debug_memory ? MF_GUARD_BYTES : 0);
    s->arena[a] = aligned_alloc(MF_ALIGN, (total + MF_ALIGN - 1) / MF_ALIGN * MF_ALIGN);
    if (!s->arena[a]) {
      char h[32];
      mf_format_bytes(total, h, sizeof h);
      snprintf(err, errlen, "session: could not allocate the %s arena (%s)", mf_arena_name((mf_arena_kind)a), h);
      mf_session_free(s);
      return NULL;
    }
    memset(s->arena[a], s->opts.debug_memory && (a == MF_ARENA_ACT) ? MF_SENTINEL : 0, total);
    if (s->opts.debug_memory && a != MF_ARENA_ACT) memset(s->arena[a] + b, MF_SENTINEL, MF_GUARD_BYTES);
    s->measured[a] = a == MF_ARENA_ACT ? 0 : b;
  }
  const mf_graph *pg = s->plan->g;
  for (int id = 0; id < pg->n; id++) {
    const mf_node *n = &pg->nodes[id];
    if (n->op == MF_OP_PARAM || n->op == MF_OP_BUFFER)
      param_init(n, mf_session_ptr(s, NULL, id), s->opts.seed * 0x100000001b3ULL + (uint64_t)id * 0x9e3779b97f4a7c15ULL);
  }
  refresh_lp_copies(s);
  return s;
}

void mf_session_free(mf_session *s) {
  if (!s) return;
  for (int a = 0; a < MF_ARENA_COUNT; a++) free(s->arena[a]);
  mf_plan_free(s->plan);
  free(s);
}

const mf_plan *mf_session_plan(const mf_session *s) { return s->plan; }

void *mf_session_input(mf_session *s, mf_tensor t) {
  if (t < 0 || t >= s->plan->g->n || s->plan->g->nodes[t].role != MF_ROLE_INPUT) return NULL;
  return mf_session_ptr(s, NULL, t);
}

int mf_session_run(mf_session *s, const mf_program *pr) {
  const mf_graph *g = s->plan->g;
  mf_kctx k = {.g = g, .nthreads = s->opts.threads,
               .grad_seed = s->loss_scale / (double)s->opts.accum_steps};
  uint8_t *act = s->arena[MF_ARENA_ACT];
  size_t hw = s->measured[MF_ARENA_ACT];
  for (int i = 0; i < pr->n_steps; i++) {
    int id = pr->steps[i];
    const mf_node *n = &g->nodes[id];
    void *src[MF_MAX_SRC];
    for (int j = 0; j < n->nsrc; j++) src[j] = mf_session_ptr(s, pr, n->src[j]);
    void *out = mf_session_ptr(s, pr, id);
    void *ws = pr->ws_size[i] ? act + pr->ws_off[i] : NULL;
    /* the debug counter: highest byte of the activation arena handed to a kernel */
    if (mf_node_arena(n) == MF_ARENA_ACT) {
      size_t end = pr->act_off[id] + mf_node_bytes(n);
      if (end > hw) hw = end;
    }
    if (ws && pr->ws_off[i] + pr->ws_size[i] > hw) hw = pr->ws_off[i] + pr->ws_size[i];
    s->plan->be->kernels[n->op](&k, n, out, src, ws);
  }
  s->measured[MF_ARENA_ACT] = hw;
  s->last_prog = pr;
  if (s->opts.debug_memory) mf_session_scan(s);
  return 0;
}

void mf_session_scan(mf_session *s) {
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    if (!s->arena[a]) continue;
    size_t b = s->plan->arena[a], top = b + MF_GUARD_BYTES;
    if (a != MF_ARENA_ACT) { /* persistent arenas: only the guard is checked */
      size_t hi = b;
      for (size_t i = top; i > b; i--)
        if (s->arena[a][i - 1] != MF_SENTINEL) { hi = i; break; }
      s->scanned[a] = hi;
      continue;
    }
    size_t hi = 0;
    for (size_t i = top; i > 0; i--)
      if (s->arena[a][i - 1] != MF_SENTINEL) { hi = i; break; }
    if (hi > s->scanned[a]) s->scanned[a] = hi;
  }
}

double mf_session_micro_step(mf_session *s) {
  mf_plan *p = s->plan;
  if (!p->has_train) return mf_session_forward(s);
  if (s->micro == 0) memset(s->arena[MF_ARENA_GRAD], 0, p->arena[MF_ARENA_GRAD]);
  mf_session_run(s, &p->train);
  s->micro++;
  const mf_node *ln = &p->g->nodes[p->loss];
  return mf_ld(mf_session_ptr(s, &p->train, p->loss), ln->dtype, 0);
}

double mf_session_forward(mf_session *s) {
  mf_plan *p = s->plan;
  mf_session_run(s, &p->fwd);
  const mf_node *ln = &p->g->nodes[p->loss];
  return mf_ld(mf_session_ptr(s, &p->fwd, p->loss), ln->dtype, 0);
}

static double lr_at(const mf_train_opts *o, int64_t step) {
  double lr = o->lr;
  if (o->warmup_steps > 0 && step < o->warmup_steps) return lr * (double)(step + 1) / (double)o->warmup_steps;
  switch (o->schedule) {
  case MF_SCHED_STEP:
    return o->step_every > 0 ? lr * pow(o->step_gamma, (double)(step / o->step_every)) : lr;
  case MF_SCHED_COSINE: {
    int64_t span = o->total_steps - o->warmup_steps;
    if (span <= 0) return lr;
    double t = (double)(step - o->warmup_steps) / (double)span;
    if (t > 1) t = 1;
    return lr * 0.5 * (1 + cos(3.141592653589793 * t));
  }
  default: return lr;
  }
}

int mf_session_update(mf_session *s) {
  mf_plan *p = s->plan;
  const mf_graph *g = p->g;
  const mf_train_opts *o = &s->opts;
  if (!p->has_train) return 0;
  double inv_scale = 1.0 / s->loss_scale;
  /* one pass over all gradients: finiteness and the global norm (unscaled) */
  double sq = 0;
  int finite = 1;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM || n->grad < 0) continue;
    const float *gr = mf_session_ptr(s, NULL, n->grad);
    int64_t cnt = mf_node_numel(n);
    /* fixed chunks summed in order: the same bits whatever the thread count */
    enum { CHUNKS = 64 };
    double part[CHUNKS];
    #pragma omp parallel for schedule(static) if (cnt > 65536)
    for (int c = 0; c < CHUNKS; c++) {
      int64_t lo = cnt * c / CHUNKS, hi = cnt * (c + 1) / CHUNKS;
      double acc = 0;
      for (int64_t i = lo; i < hi; i++) acc += (double)gr[i] * gr[i];
      part[c] = acc;
    }
    for (int c = 0; c < CHUNKS; c++) sq += part[c];
  }
  if (!isfinite(sq)) finite = 0;
  s->micro = 0;
  if (o->loss_scaling) {
    if (!finite) {
      s->loss_scale = fmax(s->loss_scale * 0.5, 1.0);
      s->clean_steps = 0;
      s->skipped++;
      return 0;
    }
    if (++s->clean_steps >= 2000) { s->loss_scale *= 2; s->clean_steps = 0; }
  }
  double norm = sqrt(sq) * inv_scale;
  s->last_grad_norm = norm;
  double gscale = inv_scale;
  if (o->clip_norm > 0 && norm > o->clip_norm) gscale *= o->clip_norm / (norm + 1e-6);
  double lr = lr_at(o, s->step);
  s->last_lr = lr;
  int64_t t = s->step + 1;
  double bc1 = 1 - pow(o->beta1, (double)t), bc2 = 1 - pow(o->beta2, (double)t);
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM || n->grad < 0) continue;
    float *w = mf_session_ptr(s, NULL, id);
    const float *gr = mf_session_ptr(s, NULL, n->grad);
    float *m = (float *)(s->arena[MF_ARENA_OPT] + p->opt_off[id]);
    int64_t cnt = mf_node_numel(n);
    float flr = (float)lr, fgs = (float)gscale, wd = (float)o->weight_decay;
    if (o->plan.optim == MF_SGD) {
      float mu = (float)o->momentum;
      #pragma omp parallel for schedule(static) if (cnt > 65536)
      for (int64_t i = 0; i < cnt; i++) {
        float gi = gr[i] * fgs + wd * w[i];
        m[i] = mu * m[i] + gi;
        w[i] -= flr * m[i];
      }
    } else {
      float *v = m + cnt, b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
      float c1 = (float)(1.0 / bc1), c2 = (float)(1.0 / bc2);
      bool adamw = o->plan.optim == MF_ADAMW;
      #pragma omp parallel for schedule(static) if (cnt > 65536)
      for (int64_t i = 0; i < cnt; i++) {
        float gi = gr[i] * fgs;
        if (!adamw) gi += wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        float upd = (m[i] * c1) / (sqrtf(v[i] * c2) + eps);
        if (adamw) w[i] -= flr * wd * w[i];
        w[i] -= flr * upd;
      }
    }
  }
  refresh_lp_copies(s);
  s->step++;
  return 1;
}

static int node_check(mf_session *s, mf_tensor t, size_t n, const char *what) {
  const mf_graph *g = s->plan->g;
  if (t < 0 || t >= g->n) { fprintf(stderr, "memfit: %s: tensor %d is not in this session\n", what, t); return -1; }
  if ((size_t)mf_node_numel(&g->nodes[t]) != n) {
    fprintf(stderr, "memfit: %s: '%s' has %lld elements, caller passed %zu\n", what, g->nodes[t].name, (long long)mf_node_numel(&g->nodes[t]), n);
    return -1;
  }
  return 0;
}

int mf_session_read(mf_session *s, mf_tensor t, float *dst, size_t n) {
  if (node_check(s, t, n, "read") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  int id = t;
  if (nd->op == MF_OP_PARAM_LP) id = nd->master; /* read the f32 master */
  void *p = mf_session_ptr(s, s->last_prog, id);
  if (!p) { fprintf(stderr, "memfit: read: '%s' is not live after the step (keep it in mf_plan_opts.keep)\n", nd->name); return -1; }
  mf_convert(dst, MF_F32, p, s->plan->g->nodes[id].dtype, (int64_t)n);
  return 0;
}

int mf_session_write_param(mf_session *s, mf_tensor t, const float *src, size_t n) {
  if (node_check(s, t, n, "write_param") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  int id = nd->op == MF_OP_PARAM_LP ? nd->master : t;
  if (s->plan->g->nodes[id].op != MF_OP_PARAM && s->plan->g->nodes[id].op != MF_OP_BUFFER) return -1;
  mf_convert(mf_session_ptr(s, NULL, id), s->plan->g->nodes[id].dtype, src, MF_F32, (int64_t)n);
  refresh_lp_copies(s);
  return 0;
}

int mf_session_write_input(mf_session *s, mf_tensor t, const float *src, size_t n) {
  if (node_check(s, t, n, "write_input") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  if (nd->role != MF_ROLE_INPUT) { fprintf(stderr, "memfit: write_input: '%s' is not an input\n", nd->name); return -1; }
  mf_convert(mf_session_ptr(s, NULL, t), nd->dtype, src, MF_F32, (int64_t)n);
  return 0;
}

int mf_session_read_grad(mf_session *s, mf_tensor t, float *dst, size_t n) {
  if (node_check(s, t, n, "read_grad") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  int id = nd->op == MF_OP_PARAM_LP ? nd->master : t;
  int gid = s->plan->g->nodes[id].grad;
  if (gid < 0) return -1;
  mf_convert(dst, MF_F32, mf_session_ptr(s, NULL, gid), s->plan->g->nodes[gid].dtype, (int64_t)n);
  return 0;
}

double mf_session_loss_scale(const mf_session *s) { return s->loss_scale; }
int64_t mf_session_step(const mf_session *s) { return s->step; }
size_t mf_session_measured_bytes(const mf_session *s, mf_arena_kind a) {
  if ((unsigned)a >= MF_ARENA_COUNT) return 0;
  if (s->opts.debug_memory && a == MF_ARENA_ACT) return s->scanned[a] > s->measured[a] ? s->scanned[a] : s->measured[a];
  return s->measured[a];
}

size_t mf_peak_rss_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (size_t)ru.ru_maxrss * 1024;
}

int64_t mf_parse_bytes(const char *str) {
  if (!str || !*str) return -1;
  char *end;
  double v = strtod(str, &end);
  if (end == str || v < 0) return -1;
  while (*end == ' ') end++;
  double mul = 1;
  if (!*end || !strcmp(end, "B")) mul = 1;
  else if (!strcmp(end, "KiB") || !strcmp(end, "K") || !strcmp(end, "k")) mul = 1024.0;
  else if (!strcmp(end, "MiB") || !strcmp(end, "M")) mul = 1024.0 * 1024;
  else if (!strcmp(end, "GiB") || !strcmp(end, "G")) mul = 1024.0 * 1024 * 1024;
  else if (!strcmp(end, "TiB") || !strcmp(end, "T")) mul = 1024.0 * 1024 * 1024 * 1024;
  else if (!strcmp(end, "KB") || !strcmp(end, "kB")) mul = 1e3;
  else if (!strcmp(end, "MB")) mul = 1e6;
  else if (!strcmp(end, "GB")) mul = 1e9;
  else if (!strcmp(end, "TB")) mul = 1e12;
  else return -1;
  double b = v * mul;
  if (b > 9.0e18) return -1;
  return (int64_t)(b + 0.5);
}

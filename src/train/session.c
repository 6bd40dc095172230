/* session.c — the training runtime: allocates each planned arena once, initialises parameters,
 * runs the planned programs with no allocation during a step, and applies the optimizer with
 * gradient accumulation, clipping, schedules and dynamic loss scaling. */
#include "train/session.h"
#include "base/rng.h"
#include "graph/dtype.h"
#include "ops/ops.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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
  o.plateau_factor = 0.1; /* PyTorch's ReduceLROnPlateau defaults */
  o.plateau_patience = 10;
  o.plateau_threshold = 1e-4;
  o.n_groups = 1;
  for (int k = 0; k < MF_MAX_PARAM_GROUPS; k++)
    o.groups[k] = (mf_param_group_opts){NULL, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.momentum, 0};
  return o;
}

/* Parameter initialisation draws from the splitmix64 stream of base/rng.h (checkpoints and recorded
 * losses depend on this exact stream: do not switch it to rng_t). */
static double init_normal(uint64_t *x) {
  double u = splitmix64_uniform(x) + 1e-300, v = splitmix64_uniform(x);
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
    case MF_INIT_UNIFORM: v = (2 * splitmix64_uniform(&r) - 1) * n->init_scale; break;
    case MF_INIT_NORMAL: v = init_normal(&r) * n->init_scale; break;
    case MF_INIT_KAIMING: v = init_normal(&r) * sqrt(2.0 / (double)fan_in) * (n->init_scale > 0 ? n->init_scale : 1); break;
    case MF_INIT_XAVIER: v = (2 * splitmix64_uniform(&r) - 1) * sqrt(6.0 / (double)(fan_in + fan_out)); break;
    }
    mf_st(data, n->dtype, i, v);
  }
}

void *mf_session_ptr(mf_session *s, const mf_program *pr, int id) {
  const mf_plan *p = s->plan;
  id = mf_node_alias_root(p->g, id); /* a detach is stored as what it detaches */
  if (s->bound && s->bound[id]) return s->bound[id];
  const mf_node *n = &p->g->nodes[id];
  mf_arena_kind a = mf_node_arena(n);
  size_t off = a == MF_ARENA_ACT ? (pr ? pr->act_off[id] : MF_NO_OFFSET) : p->pers_off[id];
  if (off == MF_NO_OFFSET || !s->arena[a]) return NULL;
  if (a == MF_ARENA_DATA) off += (size_t)s->cur_slot * p->input_slot_bytes;
  return s->arena[a] + off;
}

void mf_session_refresh_lp(mf_session *s) {
  const mf_graph *g = s->plan->g;
  mf_kctx k = {.g = g, .nthreads = s->opts.threads, .stream = s->stream};
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM_LP) continue;
    void *src[1] = {mf_session_ptr(s, NULL, n->src[0])};
    s->be->kernels[MF_OP_PARAM_LP](&k, n, mf_session_ptr(s, NULL, id), src, NULL);
  }
}

/* ---- backend memory helpers: host memory when the backend has no allocator ---- */
static void *mem_alloc(mf_session *s, size_t bytes, char *err, size_t errlen) {
  if (s->be->alloc) return s->be->alloc(bytes, err, errlen);
  void *p = aligned_alloc(MF_ALIGN, (bytes + MF_ALIGN - 1) / MF_ALIGN * MF_ALIGN);
  if (!p) snprintf(err, errlen, "out of host memory");
  return p;
}
static void mem_free(mf_session *s, void *p) {
  if (s->be->free) s->be->free(p);
  else free(p);
}
static void mem_in(mf_session *s, void *dst, const void *src, size_t n) {
  if (s->be->copy_in) s->be->copy_in(dst, src, n);
  else memcpy(dst, src, n);
}
static void mem_out(mf_session *s, void *dst, const void *src, size_t n) {
  if (s->be->copy_out) s->be->copy_out(dst, src, n);
  else memcpy(dst, src, n);
}
static void mem_fill(mf_session *s, void *dst, int byte, size_t n) {
  if (s->be->fill) s->be->fill(dst, byte, n);
  else memset(dst, byte, n);
}

uint8_t *mf_session_host_arena(mf_session *s, mf_arena_kind a) {
  if (!s->be->copy_out || !s->arena[a]) return s->arena[a];
  size_t b = s->plan->arena[a];
  if (!s->host_mirror[a] && !(s->host_mirror[a] = malloc(b))) return NULL;
  mem_out(s, s->host_mirror[a], s->arena[a], b);
  return s->host_mirror[a];
}
int mf_session_push_arena(mf_session *s, mf_arena_kind a) {
  if (s->be->copy_in && s->host_mirror[a]) mem_in(s, s->arena[a], s->host_mirror[a], s->plan->arena[a]);
  return 0;
}
void *mf_session_host_ptr(mf_session *s, int id) {
  const mf_node *n = &s->plan->g->nodes[id];
  mf_arena_kind a = mf_node_arena(n);
  uint8_t *base = s->be->copy_out ? s->host_mirror[a] : s->arena[a];
  return base && s->plan->pers_off[id] != MF_NO_OFFSET ? base + s->plan->pers_off[id] : NULL;
}

/* the staging queue, per-input state and (device backends) the page-locked conversion buffers */
static int stage_init(mf_session *s, char *err, size_t errlen) {
  const mf_plan *p = s->plan;
  int N = p->g->n > 0 ? p->g->n : 1, ni = 0;
  for (int id = 0; id < p->g->n; id++) ni += p->g->nodes[id].role == MF_ROLE_INPUT;
  s->input_state = malloc((size_t)N);
  for (int i = 0; i < 2; i++) {
    s->staged[i].t = malloc((size_t)(ni ? ni : 1) * sizeof *s->staged[i].t);
    s->staged[i].data = malloc((size_t)(ni ? ni : 1) * sizeof *s->staged[i].data);
  }
  if (!s->input_state || !s->staged[0].t || !s->staged[0].data || !s->staged[1].t || !s->staged[1].data) {
    snprintf(err, errlen, "session: out of host memory");
    return -1;
  }
  memset(s->input_state, MF_INPUT_WRITTEN, (size_t)N); /* unwritten inputs read as zeros */
  if (!p->input_convert_bytes) return 0;
  if (!(s->convert = s->be->host_alloc(p->input_convert_bytes, NULL))) {
    snprintf(err, errlen, "session: could not allocate %zu bytes of page-locked host memory for input conversion", p->input_convert_bytes);
    return -1;
  }
  return 0;
}

/* Group 0 from the top-level settings; checks the groups and the PLATEAU settings against the graph. */
static int groups_init(mf_session *s, const mf_graph *g, char *err, size_t errlen) {
  mf_train_opts *o = &s->opts;
  if (o->n_groups == 0) o->n_groups = 1; /* options not made by mf_train_opts_default */
  if (o->n_groups < 1 || o->n_groups > MF_MAX_PARAM_GROUPS) {
    snprintf(err, errlen, "session: n_groups is %d: expected 1 to %d", o->n_groups, MF_MAX_PARAM_GROUPS);
    return -1;
  }
  o->groups[0] = (mf_param_group_opts){o->groups[0].name, o->lr, o->beta1, o->beta2, o->eps, o->weight_decay, o->momentum,
                                       o->plateau_min_lr};
  for (int k = 0; k < MF_MAX_PARAM_GROUPS; k++) {
    mf_param_group_opts *q = &o->groups[k];
    if (q->name) snprintf(s->group_name[k], sizeof s->group_name[k], "%s", q->name);
    else snprintf(s->group_name[k], sizeof s->group_name[k], "group %d", k);
    q->name = s->group_name[k];
    if (k == 0 || k >= o->n_groups) continue; /* group 0's settings are the run's, unchecked as before */
    const char *bad = !(q->lr >= 0 && isfinite(q->lr)) ? "lr" : !(q->beta1 >= 0 && q->beta1 < 1) ? "beta1"
                    : !(q->beta2 >= 0 && q->beta2 < 1) ? "beta2" : !(q->eps > 0 && isfinite(q->eps)) ? "eps"
                    : !(q->weight_decay >= 0 && isfinite(q->weight_decay)) ? "weight_decay"
                    : !(q->momentum >= 0 && q->momentum < 1) ? "momentum" : !(q->min_lr >= 0 && isfinite(q->min_lr)) ? "min_lr" : NULL;
    if (bad) {
      double v = !strcmp(bad, "lr") ? q->lr : !strcmp(bad, "beta1") ? q->beta1 : !strcmp(bad, "beta2") ? q->beta2
               : !strcmp(bad, "eps") ? q->eps : !strcmp(bad, "weight_decay") ? q->weight_decay
               : !strcmp(bad, "momentum") ? q->momentum : q->min_lr;
      snprintf(err, errlen, "session: parameter group %d (%s): %s is %g: expected %s", k, s->group_name[k], bad, v,
               !strcmp(bad, "eps") ? "a number above 0" : !strncmp(bad, "beta", 4) || !strcmp(bad, "momentum")
               ? "0 <= value < 1" : "a finite number of 0 or more");
      return -1;
    }
  }
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM && n->group >= o->n_groups) {
      snprintf(err, errlen, "session: parameter '%s' is in group %d, but n_groups is %d: raise n_groups and fill in groups[%d]",
               n->name, n->group, o->n_groups, n->group);
      return -1;
    }
  }
  if (o->schedule == MF_SCHED_PLATEAU &&
      (!(o->plateau_factor > 0 && o->plateau_factor < 1) || o->plateau_patience < 0 ||
       !(o->plateau_threshold >= 0 && o->plateau_threshold < 1))) {
    snprintf(err, errlen, "session: plateau schedule: factor %g, patience %d, threshold %g: expected 0 < factor < 1, "
             "patience >= 0, 0 <= threshold < 1", o->plateau_factor, o->plateau_patience, o->plateau_threshold);
    return -1;
  }
  s->plateau_best = INFINITY;
  s->plateau_scale = 1;
  return 0;
}

/* n_phases 0: mf_session_init (one phase, plan of mf_plan_init); else mf_session_init_phases */
static mf_session *session_init(mf_graph *g, mf_tensor loss, int n_phases, const mf_phase_opts *ph, const mf_train_opts *o,
                                char *err, size_t errlen) {
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
  if (groups_init(s, g, err, errlen) < 0) { free(s); return NULL; }
  for (int k = 0; k < n_phases && ph; k++)
    for (int b = s->opts.n_groups; b < MF_MAX_PARAM_GROUPS; b++)
      if (ph[k].groups >> b & 1u) {
        char nm[32];
        snprintf(nm, sizeof nm, "phase %d", k);
        snprintf(err, errlen, "session: phase '%s' trains group %d, but n_groups is %d: raise n_groups and fill in groups[%d]",
                 ph[k].name && ph[k].name[0] ? ph[k].name : nm, b, s->opts.n_groups, b);
        free(s);
        return NULL;
      }
  s->plan = n_phases ? mf_plan_init_phases(g, n_phases, ph, &s->opts.plan, err, errlen)
                     : mf_plan_init(g, loss, &s->opts.plan, err, errlen);
  if (!s->plan) { free(s); return NULL; }
  s->be = s->plan->be;
  s->prof = mf_profile_init(s->plan->g->n);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t b = s->plan->arena[a];
    if (!b) continue;
    size_t total = b + (s->opts.debug_memory ? MF_GUARD_BYTES : 0);
    char e[256] = "";
    if (a == MF_ARENA_OPT && s->opts.plan.offload_opt && s->be->host_alloc) {
      /* offloaded optimizer state: page-locked host memory the device reads and writes in place
       * (mapped, so the optimizer kernel streams it over the link instead of holding it on the device) */
      s->arena[a] = s->be->host_alloc(total, NULL);
      s->opt_on_host = 1;
      if (!s->arena[a]) snprintf(e, sizeof e, "page-locked host allocation failed");
    } else
      s->arena[a] = mem_alloc(s, total, e, sizeof e);
    if (!s->arena[a]) {
      char h[32];
      mf_format_bytes(total, h, sizeof h);
      snprintf(err, errlen, "session: could not allocate the %s arena (%s): %s", mf_arena_name((mf_arena_kind)a), h, e);
      mf_session_free(s);
      return NULL;
    }
    bool host = a == MF_ARENA_OPT && s->opt_on_host;
    if (host) memset(s->arena[a], 0, total);
    else mem_fill(s, s->arena[a], s->opts.debug_memory && (a == MF_ARENA_ACT) ? MF_SENTINEL : 0, total);
    if (s->opts.debug_memory && a != MF_ARENA_ACT) {
      if (host) memset(s->arena[a] + b, MF_SENTINEL, MF_GUARD_BYTES);
      else mem_fill(s, s->arena[a] + b, MF_SENTINEL, MF_GUARD_BYTES);
    }
    s->measured[a] = a == MF_ARENA_ACT ? 0 : b;
  }
  /* parameters and states are initialised on the host, then copied in */
  bool host = (!s->arena[MF_ARENA_PARAM] || mf_session_host_arena(s, MF_ARENA_PARAM)) &&
              (!s->arena[MF_ARENA_STATE] || mf_session_host_arena(s, MF_ARENA_STATE));
  const mf_graph *pg = s->plan->g;
  for (int id = 0; id < pg->n && host; id++) {
    const mf_node *n = &pg->nodes[id];
    if (n->op == MF_OP_PARAM || n->op == MF_OP_BUFFER)
      param_init(n, mf_session_host_ptr(s, id), s->opts.seed * 0x100000001b3ULL + (uint64_t)id * 0x9e3779b97f4a7c15ULL);
  }
  if (!host) { snprintf(err, errlen, "session: out of host memory"); mf_session_free(s); return NULL; }
  if (mf_state_init(s, err, errlen) < 0 || mf_state_check_steps(s, err, errlen) < 0) { mf_session_free(s); return NULL; }
  mf_session_push_arena(s, MF_ARENA_PARAM);
  mf_session_push_arena(s, MF_ARENA_STATE);
  mf_session_refresh_lp(s);
  if (stage_init(s, err, errlen) < 0) { mf_session_free(s); return NULL; }
  return s;
}

mf_session *mf_session_init(mf_graph *g, mf_tensor loss, const mf_train_opts *o, char *err, size_t errlen) {
  return session_init(g, loss, 0, NULL, o, err, errlen);
}

mf_session *mf_session_init_phases(mf_graph *g, int n_phases, const mf_phase_opts *ph, const mf_train_opts *o, char *err,
                                   size_t errlen) {
  if (n_phases < 1 || n_phases > MF_MAX_PHASES || !ph) {
    snprintf(err, errlen, "session: %d phases: expected 1 to %d (and their options)", n_phases, MF_MAX_PHASES);
    return NULL;
  }
  return session_init(g, -1, n_phases, ph, o, err, errlen);
}

void mf_session_free(mf_session *s) {
  if (!s) return;
  for (int i = 0; i < 2; i++) {
    free(s->staged[i].t);
    free((void *)s->staged[i].data);
  }
  free(s->input_state);
  if (s->convert) s->be->host_free(s->convert, s->plan->input_convert_bytes, NULL);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    if (a == MF_ARENA_OPT && s->opt_on_host && s->arena[a]) s->be->host_free(s->arena[a], s->plan->arena[a], NULL);
    else if (s->arena[a]) mem_free(s, s->arena[a]);
    free(s->host_mirror[a]);
  }
  free(s->bound);
  free(s->n_active);
  free(s->comm_started);
  if (s->prof) {
    mf_profile_print(s->prof, s->plan, stderr);
    mf_profile_free(s->prof);
  }
  if (s->acomm && s->acomm != s->comm) s->acomm->free(s->acomm);
  mf_plan_free(s->plan);
  free(s);
}

const mf_plan *mf_session_plan(const mf_session *s) { return s->plan; }

void *mf_session_input(mf_session *s, mf_tensor t) {
  if (t < 0 || t >= s->plan->g->n || s->plan->g->nodes[t].role != MF_ROLE_INPUT) return NULL;
  return mf_session_ptr(s, NULL, t);
}

/* ---- data parallel: gradient buckets all-reduced over the session's communicator ---- */
static int comm_start(mf_session *s, int k) {
  const struct mf_grad_bucket *b = &s->plan->buckets[k];
  int slot = k % MF_COMM_MAX_PENDING;
  if (k >= MF_COMM_MAX_PENDING && s->acomm->wait(s->acomm, slot) < 0) return -1; /* the bucket before in that slot */
  s->comm_started[k] = 1;
  return s->acomm->iallreduce(s->acomm, (float *)(s->arena[MF_ARENA_GRAD] + b->off), b->bytes / sizeof(float), slot,
                             "the all-reduce of a gradient bucket");
}

/* after step i of the training program on an update's last micro-step: the buckets it finished start */
static int comm_after_step(mf_session *s, int i) {
  const mf_plan *p = s->plan;
  int any = 0;
  for (int k = 0; k < p->n_buckets; k++)
    if (p->buckets[k].ready_step == i && !s->comm_started[k]) {
      if (comm_start(s, k) < 0) return -1;
      s->comm_early++;
      any = 1;
    }
  return any ? 0 : s->acomm->test(s->acomm); /* lets the ones in flight progress */
}

/* before the optimizer: the buckets not started yet start now, and all are waited for */
static int comm_finish(mf_session *s) {
  mf_comm *c = s->acomm;
  const mf_plan *p = s->plan;
  s->comm_live = 0;
  if (!c) return 0; /* one process: no communicator (unless MEMFIT_DIST_DEVICE forced one, whose one-rank path then runs) */
  if (!p->n_buckets) /* a plan made without opts.ranks: the whole gradient arena at once */
    return p->arena[MF_ARENA_GRAD] ? c->allreduce(c, s->arena[MF_ARENA_GRAD], p->arena[MF_ARENA_GRAD] / sizeof(float), MF_COMM_F32,
                                                  MF_COMM_SUM, "the all-reduce of the gradients") : 0;
  for (int k = 0; k < p->n_buckets; k++)
    if (!s->comm_started[k]) {
      if (comm_start(s, k) < 0) return -1;
      s->comm_late++;
    }
  for (int k = p->n_buckets > MF_COMM_MAX_PENDING ? p->n_buckets - MF_COMM_MAX_PENDING : 0; k < p->n_buckets; k++)
    if (c->wait(c, k % MF_COMM_MAX_PENDING) < 0) return -1;
  memset(s->comm_started, 0, (size_t)p->n_buckets);
  return 0;
}

/* An all-gather node after its kernel put this rank's rows into block `rank` of out [ranks * B, ...] and zeroed the
 * others: every rank's block to every rank over the arenas' communicator (a block of whole 4-byte words: an all-gather
 * in place, which copies bits whatever the dtype; else a bitwise-OR all-reduce of the bytes, exact since each byte is
 * non-zero on one rank at most; NCCL has no such reduction and says so). 0, or -1 after saying why. */
static int allgather_run(mf_session *s, const mf_node *n, void *out) {
  if (!s->comm || s->comm->size != n->ip[0]) {
    fprintf(stderr, "memfit: the step failed: all-gather '%s' is for %d ranks but the session has %s: set the job's communicator "
                    "(mf_session_set_comm)\n", n->name, n->ip[0], s->comm ? "another number" : "none");
    return -1;
  }
  size_t block = mf_node_bytes(n) / (size_t)n->ip[0];
  if (block % sizeof(float) == 0) /* any dtype: an all-gather copies bits */
    return s->acomm->allgather(s->acomm, (float *)out, block / sizeof(float), "the all-gather op's rows");
  return s->acomm->allreduce(s->acomm, out, mf_node_bytes(n), MF_COMM_U8, MF_COMM_BOR, "the all-gather op's rows");
}

static int host_copy(void *dst, const void *src, size_t n) {
  memcpy(dst, src, n);
  return 0;
}

/* 1 when two ranks compute on the same device (their backends' device keys gathered over c), 0 when not, -1 */
static int ranks_share_device(mf_session *s, mf_comm *c) {
  size_t R = (size_t)c->size;
  unsigned char *keys = calloc(R, 16); /* [R][16], each rank's row its own */
  if (!keys || s->be->device_key(keys + 16 * (size_t)c->rank) < 0 ||
      c->allreduce(c, keys, 16 * R, MF_COMM_U8, MF_COMM_BOR, "the gathering of the ranks' devices") < 0) {
    free(keys);
    return -1;
  }
  int shared = 0;
  for (size_t i = 0; i < R; i++)
    for (size_t j = 0; j < i; j++) shared |= !memcmp(keys + 16 * i, keys + 16 * j, 16);
  free(keys);
  return shared;
}

/* The communicator for the arenas' collectives (see mf_session_set_comm): c itself on host memory; on a device, NCCL
 * when built in and no two ranks share a device, else c through a host staging buffer as large as the largest
 * collective (the gradient arena, or an all-gather node's output). Every rank comes to the same choice: the device
 * sharing is gathered, and a failed NCCL start anywhere makes every rank stage. NULL with err. */
static mf_comm *arena_comm_init(mf_session *s, mf_comm *c, char *err, size_t errlen) {
  const char *want = getenv("MEMFIT_DIST_DEVICE");
  if (want && !*want) want = NULL;
  if (want && strcmp(want, "nccl") && strcmp(want, "host")) {
    snprintf(err, errlen, "session: MEMFIT_DIST_DEVICE=%s: expected nccl or host", want);
    return NULL;
  }
  int device = s->be->copy_in != NULL;
  if (!device && !want) return c;
  if (!device && !strcmp(want, "nccl")) {
    snprintf(err, errlen, "session: MEMFIT_DIST_DEVICE=nccl needs a device backend; backend '%s' computes in host memory", s->be->name);
    return NULL;
  }
  if (device && (!want || !strcmp(want, "nccl"))) {
    const char *why = NULL;
    int shared = s->be->device_key ? ranks_share_device(s, c) : 0;
    if (shared < 0) {
      snprintf(err, errlen, "session: the ranks could not compare their devices");
      return NULL;
    }
    mf_comm *d = NULL;
    char nerr[256] = "";
    mf_comm_nccl_init_fn nccl_init = NULL;
    void *sym = mf_backend_symbol(s->be, "mf_comm_nccl_init");
    memcpy(&nccl_init, &sym, sizeof nccl_init); /* POSIX: a data pointer from dlsym holds the function's address */
    if (!nccl_init) why = "this build has no NCCL";
    else if (shared) why = "two ranks share a device, which NCCL refuses";
    else { /* on the kernels' stream, so each bucket's reduction follows the kernels that finished it */
      void *stream = s->stream ? s->stream : s->be->compute_stream ? s->be->compute_stream() : NULL;
      d = nccl_init(c, stream, nerr, sizeof nerr);
      uint64_t ok = d != NULL;
      if (c->allreduce(c, &ok, 1, MF_COMM_U64, MF_COMM_MIN, "the agreement on NCCL") < 0) ok = 0;
      if (ok) return d;
      if (d) d->free(d);
      why = nerr[0] ? nerr : "NCCL failed to start on another rank";
    }
    if (want) {
      snprintf(err, errlen, "session: MEMFIT_DIST_DEVICE=nccl, but %s", why);
      return NULL;
    }
    if (c->rank == 0) fprintf(stderr, "memfit: data parallel on '%s' through host memory over %s: %s\n", s->be->name, c->kind, why);
  }
  const mf_plan *p = s->plan;
  const mf_graph *g = p->g;
  size_t cap = p->arena[MF_ARENA_GRAD];
  if ((size_t)c->size * p->shard_bytes > cap) cap = (size_t)c->size * p->shard_bytes;
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_ALLGATHER && mf_node_bytes(&g->nodes[id]) > cap) cap = mf_node_bytes(&g->nodes[id]);
  return mf_comm_staged_init(c, device ? s->be->copy_out : host_copy, device ? s->be->copy_in : host_copy, s->arena[MF_ARENA_GRAD], cap,
                             err, errlen);
}

int mf_session_set_comm(mf_session *s, mf_comm *c, int loss_sum, char *err, size_t errlen) {
  const char *forced = getenv("MEMFIT_DIST_DEVICE"); /* set: even one process runs its collectives that way (a test) */
  if (!c || (c->size == 1 && !(forced && *forced))) {
    if (s->acomm && s->acomm != s->comm) s->acomm->free(s->acomm);
    s->comm = s->acomm = NULL;
    return 0;
  }
  if (s->plan->opts.ranks != c->size) {
    snprintf(err, errlen, "session: the plan is for %d rank(s) (mf_plan_opts.ranks) but the job has %d", s->plan->opts.ranks < 1 ? 1 : s->plan->opts.ranks,
             c->size);
    return -1;
  }
  if (s->plan->shard_n && s->plan->opts.rank != c->rank) {
    snprintf(err, errlen, "session: the plan's optimizer slice is rank %d's (mf_plan_opts.rank) but this is rank %d", s->plan->opts.rank,
             c->rank);
    return -1;
  }
  mf_comm *ac = arena_comm_init(s, c, err, errlen);
  if (!ac) return -1;
  if (s->acomm && s->acomm != s->comm) s->acomm->free(s->acomm);
  s->acomm = ac;
  free(s->comm_started);
  if (!(s->comm_started = calloc((size_t)(s->plan->n_buckets ? s->plan->n_buckets : 1), 1))) {
    snprintf(err, errlen, "session: out of host memory");
    return -1;
  }
  s->comm = c;
  s->comm_loss_sum = loss_sum != 0;
  return 0;
}

int mf_session_rank(const mf_session *s) { return s->comm ? s->comm->rank : 0; }

int64_t mf_session_next_micro(const mf_session *s) {
  return s->step * (int64_t)(s->opts.accum_steps > 0 ? s->opts.accum_steps : 1) + s->micro + s->n_staged;
}

int mf_session_reduce_values(mf_session *s, double *v, int n) {
  if (!s->comm || n <= 0) return 0;
  if (s->comm->allreduce(s->comm, v, (size_t)n, MF_COMM_F64, MF_COMM_SUM, "the all-reduce of the losses") < 0) return -1;
  for (int i = 0; i < n && !s->comm_loss_sum; i++) v[i] /= s->comm->size;
  return 0;
}

uint64_t mf_session_param_hash(mf_session *s) {
  const mf_graph *g = s->plan->g;
  const uint8_t *pa = mf_session_host_arena(s, MF_ARENA_PARAM), *sa = mf_session_host_arena(s, MF_ARENA_STATE);
  uint64_t h = pa ? mf_comm_hash(0, pa, s->plan->arena[MF_ARENA_PARAM]) : 0;
  uint8_t *written = calloc((size_t)g->n, 1); /* [g->n] 1: a STATE_WRITE stores into this state (NULL: none known) */
  for (int k = 0; k < g->n && written; k++)
    if (g->nodes[k].op == MF_OP_STATE_WRITE && g->nodes[k].src[1] >= 0) written[g->nodes[k].src[1]] = 1;
  for (int id = 0; id < g->n && sa; id++) { /* states too (EMA copies, rings), but not batch-norm statistics nor what a
                                                STATE_WRITE stores (VQGAN's lambda): each rank's are of its own samples,
                                                as in PyTorch's DistributedDataParallel */
    const mf_node *n = &g->nodes[id];
    if (mf_node_arena(n) != MF_ARENA_STATE || (n->role == MF_ROLE_BUFFER && n->state_kind == MF_STATE_BUFFER)) continue;
    if (written && written[id]) continue;
    h = mf_comm_hash(h, sa + s->plan->pers_off[id], mf_node_bytes(n));
  }
  free(written);
  return h;
}

/* OpenMP's thread count is a setting of each thread: whatever thread runs a session's kernels (not necessarily the one
 * that made it) gets the session's count for them (OpenBLAS's OpenMP build and oneDNN follow it too), then its own
 * back; without this a step called from a thread with a larger OpenMP default started that many threads. */
static int threads_enter(const mf_session *s) {
  int saved = omp_get_max_threads();
  if (saved != s->opts.threads) omp_set_num_threads(s->opts.threads);
  return saved;
}
static void threads_leave(const mf_session *s, int saved) {
  if (saved != s->opts.threads) omp_set_num_threads(saved);
}

static double prof_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int mf_session_run(mf_session *s, const mf_program *pr) {
  const mf_graph *g = s->plan->g;
  int saved_threads = threads_enter(s);
  char fault[256] = "";
  double ranks = s->comm && !s->comm_loss_sum ? (double)s->comm->size : 1.0; /* a mean loss: each rank's share */
  mf_kctx k = {.g = g, .nthreads = s->opts.threads, .stream = s->stream,
               .grad_seed = s->loss_scale / (double)s->opts.accum_steps / ranks, .fault = fault, .fault_len = sizeof fault};
  /* random ops (dropout) draw from this micro-step's seed: the session's seed (checkpointed), its update count and
   * micro-step (checkpointed: a resumed run draws the same masks) and its rank (each rank its own masks); the
   * evaluation program draws nothing */
  k.training = pr != &s->plan->fwd;
  k.step_seed = hash_words(s->rng, (uint64_t)s->step, ((uint64_t)mf_session_rank(s) << 32) ^ (uint64_t)s->micro);
  k.rank = mf_session_rank(s);
  int gather_failed = 0;
  int comm_steps = s->comm_live && pr == &s->plan->train && s->plan->n_buckets;
  uint8_t *act = s->arena[MF_ARENA_ACT];
  size_t hw = s->measured[MF_ARENA_ACT];
  /* training programs only (a step's time), from the second run of each */
  mf_profile *prof = pr != &s->plan->fwd && mf_profile_take(s->prof, pr) ? s->prof : NULL;
  double t_run = prof ? prof_now() : 0;
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
    double t0 = prof ? prof_now() : 0;
    s->be->kernels[n->op](&k, n, out, src, ws);
    if (prof) { /* a device kernel is timed to its end */
      if (s->be->sync) s->be->sync(s->stream);
      prof->sec[id] += prof_now() - t0;
      prof->calls[id]++;
    }
    if (n->op == MF_OP_ALLGATHER && n->ip[0] > 1 && allgather_run(s, n, out) < 0) gather_failed = 1; /* said */
    if (comm_steps > 0 && comm_after_step(s, i) < 0) comm_steps = -1; /* said; the step fails below */
  }
  int rc = s->be->sync && s->be->sync(s->stream) < 0 ? -1 : 0; /* a device error surfaces here */
  if (comm_steps < 0 || gather_failed) rc = -1;
  if (fault[0]) { /* a kernel's input was out of range (gather's indices): the step's values are not usable */
    fprintf(stderr, "memfit: the step failed: %s\n", fault);
    rc = -1;
  }
  s->measured[MF_ARENA_ACT] = hw;
  s->last_prog = pr;
  if (prof) {
    prof->steps++;
    prof->step_sec += prof_now() - t_run;
  }
  if (s->opts.debug_memory) mf_session_scan(s);
  threads_leave(s, saved_threads);
  return rc;
}

void mf_session_scan(mf_session *s) {
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    if (!s->arena[a]) continue;
    size_t b = s->plan->arena[a], top = b + MF_GUARD_BYTES;
    uint8_t *mem = s->arena[a], *tmp = NULL;
    if (s->be->copy_out) { /* device arena: scan a host copy (debug only) */
      if (!(tmp = malloc(top))) continue;
      mem_out(s, tmp, s->arena[a], top);
      mem = tmp;
    }
    size_t hi = a == MF_ARENA_ACT ? 0 : b; /* persistent arenas: only the guard is checked */
    for (size_t i = top; i > (a == MF_ARENA_ACT ? 0 : b); i--)
      if (mem[i - 1] != MF_SENTINEL) { hi = i; break; }
    free(tmp);
    if (a != MF_ARENA_ACT) s->scanned[a] = hi;
    else if (hi > s->scanned[a]) s->scanned[a] = hi;
  }
}

static double read_scalar(mf_session *s, const mf_program *pr, int id) {
  uint8_t v[8];
  const mf_node *n = &s->plan->g->nodes[id];
  mem_out(s, v, mf_session_ptr(s, pr, id), mf_dtype_size(n->dtype));
  return mf_ld(v, n->dtype, 0);
}

/* ---- staged inputs: the next batch arrives while the current step runs ---- */
static int node_in_f32(mf_session *s, int id, const float *src, size_t n);
static size_t slot_off(const mf_session *s, int id, int slot) {
  return s->plan->pers_off[id] + (size_t)slot * s->plan->input_slot_bytes;
}
static bool stage_async(const mf_session *s) { return s->be->stage_copy && s->plan->input_slots == 2; }

int mf_session_stage_inputs(mf_session *s, int n, const mf_tensor *inputs, const float *const *data) {
  const mf_graph *g = s->plan->g;
  if (s->n_staged == 2) {
    fprintf(stderr, "memfit: stage_inputs: two batches are already staged; run a step before staging a third\n");
    return -1;
  }
  struct mf_staged *q = &s->staged[s->n_staged];
  for (int i = 0; i < n; i++) {
    mf_tensor t = inputs[i];
    if (t < 0 || t >= g->n || g->nodes[t].role != MF_ROLE_INPUT) {
      fprintf(stderr, "memfit: stage_inputs: tensor %d (item %d) is not an input of this session\n", t, i);
      return -1;
    }
    for (int j = 0; j < i; j++)
      if (inputs[j] == t) { fprintf(stderr, "memfit: stage_inputs: input '%s' is listed twice\n", g->nodes[t].name); return -1; }
    if (!data[i]) { fprintf(stderr, "memfit: stage_inputs: no data for input '%s'\n", g->nodes[t].name); return -1; }
    q->t[i] = t;
    q->data[i] = data[i];
  }
  q->n = n;
  /* the slot no queued batch uses; the one the last step read is free, since steps end synchronised */
  q->slot = s->plan->input_slots == 1 ? 0 : s->n_staged ? 1 - s->staged[0].slot : 1 - s->cur_slot;
  if (stage_async(s)) {
    for (int i = 0; i < n; i++) {
      const mf_node *nd = &g->nodes[q->t[i]];
      const void *src = q->data[i];
      if (nd->dtype != MF_F32) { /* converted on the host into this slot's page-locked buffer */
        uint8_t *c = s->convert + slot_off(s, q->t[i], q->slot); /* the host mirror of the slot */
        mf_convert(c, nd->dtype, q->data[i], MF_F32, mf_node_numel(nd));
        src = c;
      }
      if (s->be->stage_copy(s->arena[MF_ARENA_DATA] + slot_off(s, q->t[i], q->slot), src, mf_node_bytes(nd), q->slot) < 0) {
        fprintf(stderr, "memfit: stage_inputs: the copy of '%s' to the device failed\n", nd->name);
        return -1;
      }
    }
  }
  s->n_staged++;
  return 0;
}

/* Makes the oldest staged batch the one the step reads; refuses inputs staged for an earlier step only. */
static int stage_take(mf_session *s) {
  const mf_graph *g = s->plan->g;
  if (s->n_staged) {
    struct mf_staged *q = &s->staged[0];
    s->cur_slot = q->slot;
    for (int i = 0; i < q->n; i++) {
      int id = q->t[i];
      const mf_node *nd = &g->nodes[id];
      if (!stage_async(s)) {
        if (s->bound) s->bound[id] = NULL;
        if (nd->dtype == MF_F32 && !s->be->copy_in) { /* the CPU reads the caller's f32 batch in place */
          if (mf_session_bind_input(s, id, (void *)q->data[i]) < 0) return -1;
        } else if (node_in_f32(s, id, q->data[i], (size_t)mf_node_numel(nd)) < 0)
          return -1;
      }
      s->input_state[id] = MF_INPUT_STAGED;
    }
    if (stage_async(s) && s->be->stage_wait(q->slot, s->stream) < 0) {
      fprintf(stderr, "memfit: stage_inputs: waiting for the staged batch failed\n");
      return -1;
    }
    struct mf_staged done = *q; /* keep both queue entries' arrays: rotate instead of copying */
    s->staged[0] = s->staged[1];
    s->staged[1] = done;
    s->n_staged--;
  }
  for (int id = 0; id < g->n; id++)
    if (s->input_state[id] == MF_INPUT_SPENT) {
      fprintf(stderr, "memfit: input '%s' was staged for an earlier step only: stage it (or write it) again for this one\n",
              g->nodes[id].name);
      return -1;
    }
  return 0;
}
/* after the step: inputs taken from a staged batch are spent (the caller may reuse that memory) */
static void stage_done(mf_session *s) {
  const mf_graph *g = s->plan->g;
  for (int id = 0; id < g->n; id++)
    if (s->input_state[id] == MF_INPUT_STAGED) {
      s->input_state[id] = MF_INPUT_SPENT;
      if (s->bound) s->bound[id] = NULL;
    }
}

double mf_session_micro_step(mf_session *s) {
  mf_plan *p = s->plan;
  if (p->n_phases > 1) {
    fprintf(stderr, "memfit: micro_step: this session has %d phases: run each with mf_session_phase_step\n", p->n_phases);
    return NAN;
  }
  if (!p->has_train) return mf_session_forward(s);
  if (stage_take(s) < 0) return NAN;
  if (s->micro == 0 && s->arena[MF_ARENA_GRAD]) mem_fill(s, s->arena[MF_ARENA_GRAD], 0, p->arena[MF_ARENA_GRAD]);
  s->comm_live = s->comm && s->micro == s->opts.accum_steps - 1; /* the update's last: its buckets start in backward */
  int rc = mf_session_run(s, &p->train);
  if (rc == 0) rc = mf_state_after_micro(s, &p->train, s->micro); /* rings: after backward read them, once per update */
  stage_done(s);
  if (rc < 0) return NAN;
  s->micro++;
  s->phase_micro[0]++; /* so that mf_session_phase_update may follow */
  return read_scalar(s, &p->train, p->loss);
}

double mf_session_forward(mf_session *s) {
  mf_plan *p = s->plan;
  if (stage_take(s) < 0) return NAN;
  int rc = mf_session_run(s, &p->fwd);
  stage_done(s);
  return rc < 0 ? NAN : read_scalar(s, &p->fwd, p->loss);
}

/* a parameter's group; one moved to a group past n_groups after mf_session_init stays in group 0 */
static int param_group(const mf_session *s, const mf_node *n) { return n->group < s->opts.n_groups ? n->group : 0; }

/* the schedule's lr at `step` for a group of base lr `lr` (group 0: o->lr, the same arithmetic as ever) */
static double lr_at(const mf_train_opts *o, double lr, int64_t step) {
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

/* group k's learning rate at schedule position `step` (PLATEAU: times the cuts so far, not below its min_lr) */
static double group_lr_at(const mf_session *s, int k, int64_t step) {
  const mf_train_opts *o = &s->opts;
  const mf_param_group_opts *q = &o->groups[k];
  double lr = lr_at(o, q->lr, step);
  if (o->schedule == MF_SCHED_PLATEAU && s->plateau_scale < 1) lr = fmax(lr * s->plateau_scale, q->min_lr);
  return lr;
}

/* group k's optimizer arguments for its next update at schedule position `step` (records its lr; group 0's is
 * also the session's last lr): its own decay and betas, and its own step count for Adam's bias correction */
static mf_optim_args group_args(mf_session *s, int k, int64_t step, double gscale) {
  const mf_train_opts *o = &s->opts;
  const mf_param_group_opts *q = &o->groups[k];
  double lr = group_lr_at(s, k, step);
  if (k == 0) s->last_lr = lr;
  s->group_lr[k] = lr;
  int64_t t = s->group_step[k] + 1;
  return (mf_optim_args){.kind = o->plan.optim, .lr = (float)lr, .beta1 = (float)q->beta1, .beta2 = (float)q->beta2,
                         .eps = (float)q->eps, .weight_decay = (float)q->weight_decay, .momentum = (float)q->momentum,
                         .gscale = (float)gscale, .bc1 = (float)(1.0 / (1 - pow(q->beta1, (double)t))),
                         .bc2 = (float)(1.0 / (1 - pow(q->beta2, (double)t)))};
}

/* the optimizer on parameter id with its group's arguments (a growing model's inactive rows: untouched) */
static void param_step(mf_session *s, int id, const mf_optim_args *a) {
  const mf_node *n = &s->plan->g->nodes[id];
  int64_t cnt = mf_node_numel(n), act = mf_state_active_elems(s, n);
  if (s->plan->shard_n) { /* ZeRO-1: this rank's slice of the parameter, with the state of that slice only */
    int64_t lo = s->plan->shard_lo[id], k = s->plan->shard_n[id];
    if (!k) return;
    float *m = (float *)(s->arena[MF_ARENA_OPT] + s->plan->opt_off[id]);
    s->be->optim_update((float *)mf_session_ptr(s, NULL, id) + lo, (float *)mf_session_ptr(s, NULL, n->grad) + lo, m,
                        a->kind == MF_SGD ? NULL : m + k, k, a, s->stream);
    return;
  }
  float *m = (float *)(s->arena[MF_ARENA_OPT] + s->plan->opt_off[id]);
  if (act > 0)
    s->be->optim_update(mf_session_ptr(s, NULL, id), mf_session_ptr(s, NULL, n->grad), m, a->kind == MF_SGD ? NULL : m + cnt, act, a,
                        s->stream);
}

/* ZeRO-1 after the update: every rank's updated slice goes to all. The gradient arena (its gradients are spent) carries
 * them: each rank writes its slice of the parameters there, the arena is all-gathered, and every parameter is read
 * back from it. No memory beyond the plan's. */
static int arena_copy(mf_session *s, void *dst, const void *src, size_t n) { /* both in the arenas' memory */
  if (s->be->copy_dd) return s->be->copy_dd(dst, src, n, s->stream);
  memcpy(dst, src, n);
  return 0;
}

static int zero_gather(mf_session *s) {
  const mf_plan *p = s->plan;
  const mf_graph *g = p->g;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM && n->grad >= 0 && p->shard_n[id] &&
        arena_copy(s, (float *)mf_session_ptr(s, NULL, n->grad) + p->shard_lo[id], (float *)mf_session_ptr(s, NULL, id) + p->shard_lo[id],
                   (size_t)p->shard_n[id] * sizeof(float)) < 0)
      return -1;
  }
  if (s->acomm->allgather(s->acomm, (float *)s->arena[MF_ARENA_GRAD], p->shard_bytes / sizeof(float), "the all-gather of the parameters") < 0)
    return -1;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM && n->grad >= 0 &&
        arena_copy(s, mf_session_ptr(s, NULL, id), mf_session_ptr(s, NULL, n->grad), (size_t)mf_node_numel(n) * sizeof(float)) < 0)
      return -1;
  }
  return 0;
}

/* MEMFIT_PROFILE: an optimizer update started at t0 has ended (the first is not timed: it faults the optimizer
 * state's pages in) */
static void prof_update_end(mf_session *s, double t0) {
  if (!s->prof || !s->prof->update_warm++) return;
  if (s->be->sync) s->be->sync(s->stream);
  s->prof->update_sec += prof_now() - t0;
  s->prof->updates++;
}

static int session_update(mf_session *s);
int mf_session_update(mf_session *s) {
  int saved = threads_enter(s);
  double t0 = s->prof ? prof_now() : 0;
  int rc = session_update(s);
  prof_update_end(s, t0);
  threads_leave(s, saved);
  return rc;
}
static int session_update(mf_session *s) {
  mf_plan *p = s->plan;
  const mf_graph *g = p->g;
  const mf_train_opts *o = &s->opts;
  if (p->n_phases > 1) {
    fprintf(stderr, "memfit: update: this session has %d phases: update each with mf_session_phase_update\n", p->n_phases);
    return -1;
  }
  if (!p->has_train) return 0;
  if (p->shard_n && !s->comm) {
    fprintf(stderr, "memfit: update: the plan shards the optimizer state over %d ranks: the session needs their communicator "
                    "(mf_session_set_comm)\n", p->opts.ranks);
    return -1;
  }
  int zero = p->shard_n != NULL; /* ZeRO-1: this rank holds the summed gradients of its slice only */
  double t0 = s->comm ? omp_get_wtime() : 0;
  if (zero) {
    s->comm_live = 0;
    if (s->acomm->reduce_scatter(s->acomm, (float *)s->arena[MF_ARENA_GRAD], p->shard_bytes / sizeof(float),
                                "the reduce-scatter of the gradients") < 0)
      return -1;
  } else if (comm_finish(s) < 0) return -1; /* data parallel: every rank now holds the gradients summed over the ranks */
  if (s->comm) s->comm_wait_s += omp_get_wtime() - t0;
  double inv_scale = 1.0 / s->loss_scale;
  /* one pass over all gradients: finiteness and the global norm (unscaled) */
  double sq = 0;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM || n->grad < 0 || s->group_frozen[param_group(s, n)]) continue;
    if (zero) sq += p->shard_n[id] ? s->be->sum_squares((float *)mf_session_ptr(s, NULL, n->grad) + p->shard_lo[id], p->shard_n[id], s->stream) : 0;
    else sq += s->be->sum_squares(mf_session_ptr(s, NULL, n->grad), mf_state_active_elems(s, n), s->stream);
  }
  if (zero && s->comm->allreduce(s->comm, &sq, 1, MF_COMM_F64, MF_COMM_SUM, "the all-reduce of the gradient norm") < 0) return -1;
  if (mf_state_before_update(s, s->phase_micro[0]) < 0) return -1; /* keys still staged go into their rings */
  s->micro = 0;
  s->phase_micro[0] = 0;
  if (o->loss_scaling) {
    if (!isfinite(sq)) {
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
  /* each group: the schedule scaled to its own base lr (PLATEAU: times the cuts so far, not below its
   * min_lr), its own decay and betas, and its own step count for Adam's bias correction */
  mf_optim_args ga[MF_MAX_PARAM_GROUPS];
  for (int k = 0; k < o->n_groups; k++) {
    if (s->group_frozen[k]) {
      if (k == 0) s->last_lr = group_lr_at(s, 0, s->step);
      continue;
    }
    ga[k] = group_args(s, k, s->step, gscale);
  }
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM || n->grad < 0 || s->group_frozen[param_group(s, n)]) continue;
    param_step(s, id, &ga[param_group(s, n)]);
  }
  if (zero && zero_gather(s) < 0) return -1;
  for (int k = 0; k < o->n_groups; k++) s->group_step[k] += !s->group_frozen[k];
  mf_state_after_update(s); /* EMA averages follow the updated masters */
  mf_session_refresh_lp(s);
  if (s->be->sync && s->be->sync(s->stream) < 0) return -1; /* the device error is on stderr */
  s->step++;
  return 1;
}

/* ---- phases ---- */
static int phase_check(const mf_session *s, int phase, const char *what) {
  if (phase >= 0 && phase < s->plan->n_phases) return 0;
  fprintf(stderr, "memfit: %s: phase %d is not in 0 .. %d\n", what, phase, s->plan->n_phases - 1);
  return -1;
}

double mf_session_phase_step(mf_session *s, int phase) {
  mf_plan *p = s->plan;
  if (phase_check(s, phase, "phase_step") < 0) return NAN;
  if (!p->has_train) return mf_session_forward(s);
  const mf_plan_phase *ph = &p->phase[phase];
  if (stage_take(s) < 0) return NAN;
  /* no phase step pending since the updates: start from zero gradients, as mf_session_micro_step does
   * (after mf_session_update too); otherwise add to them (phase updates zero what they update) */
  if (s->micro == 0 && s->arena[MF_ARENA_GRAD]) mem_fill(s, s->arena[MF_ARENA_GRAD], 0, p->arena[MF_ARENA_GRAD]);
  int rc = mf_session_run(s, ph->prog);
  if (rc == 0 && phase == 0) rc = mf_state_after_micro(s, ph->prog, s->phase_micro[0]); /* rings take phase 0's keys */
  stage_done(s);
  if (rc < 0) return NAN;
  s->micro++;
  s->phase_micro[phase]++;
  return read_scalar(s, ph->prog, ph->loss);
}

/* zeroes the gradients of the parameters phase ph trains */
static void phase_grads_zero(mf_session *s, const mf_plan_phase *ph) {
  const mf_graph *g = s->plan->g;
  for (int id = 0; id < g->n_fwd; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM && n->grad >= 0 && ph->trains[id])
      mem_fill(s, mf_session_ptr(s, NULL, n->grad), 0, (size_t)mf_node_numel(n) * sizeof(float));
  }
}

static int session_phase_update(mf_session *s, int phase);
int mf_session_phase_update(mf_session *s, int phase) {
  int saved = threads_enter(s);
  double t0 = s->prof ? prof_now() : 0;
  int rc = session_phase_update(s, phase);
  prof_update_end(s, t0);
  threads_leave(s, saved);
  return rc;
}
static int session_phase_update(mf_session *s, int phase) {
  mf_plan *p = s->plan;
  const mf_graph *g = p->g;
  const mf_train_opts *o = &s->opts;
  if (phase_check(s, phase, "phase_update") < 0) return -1;
  if (!p->has_train) return 0;
  const mf_plan_phase *ph = &p->phase[phase];
  if (phase == 0 && mf_state_before_update(s, s->phase_micro[0]) < 0) return -1;
  /* data parallel: this phase's gradients summed over the ranks, after its backward (the other phases' may be
   * half accumulated, so the arena is not reduced as a whole) */
  for (int id = 0; id < g->n_fwd && s->comm; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM && n->grad >= 0 && ph->trains[id] &&
        s->acomm->allreduce(s->acomm, mf_session_ptr(s, NULL, n->grad), (size_t)mf_node_numel(n), MF_COMM_F32, MF_COMM_SUM,
                           "the all-reduce of a phase's gradients") < 0)
      return -1;
  }
  s->micro -= s->phase_micro[phase];
  s->phase_micro[phase] = 0;
  /* the parameters this phase trains whose group is not frozen */
#define PHASE_PARAM(n, id) ((n)->op == MF_OP_PARAM && (n)->grad >= 0 && ph->trains[id] && !s->group_frozen[param_group(s, n)])
  double inv_scale = 1.0 / s->loss_scale, sq = 0;
  for (int id = 0; id < g->n_fwd; id++) {
    const mf_node *n = &g->nodes[id];
    if (PHASE_PARAM(n, id)) sq += s->be->sum_squares(mf_session_ptr(s, NULL, n->grad), mf_state_active_elems(s, n), s->stream);
  }
  if (o->loss_scaling) {
    if (!isfinite(sq)) {
      s->loss_scale = fmax(s->loss_scale * 0.5, 1.0);
      s->clean_steps = 0;
      s->skipped++;
      phase_grads_zero(s, ph);
      return s->be->sync && s->be->sync(s->stream) < 0 ? -1 : 0;
    }
    if (++s->clean_steps >= 2000) { s->loss_scale *= 2; s->clean_steps = 0; }
  }
  double norm = sqrt(sq) * inv_scale;
  s->last_grad_norm = norm;
  double gscale = inv_scale;
  if (o->clip_norm > 0 && norm > o->clip_norm) gscale *= o->clip_norm / (norm + 1e-6);
  unsigned mask = ph->groups ? ph->groups : ~0u;
  mf_optim_args ga[MF_MAX_PARAM_GROUPS];
  for (int k = 0; k < o->n_groups; k++)
    if ((mask >> k & 1u) && !s->group_frozen[k]) ga[k] = group_args(s, k, s->group_step[k], gscale); /* its own schedule position */
  for (int id = 0; id < g->n_fwd; id++) {
    const mf_node *n = &g->nodes[id];
    if (!PHASE_PARAM(n, id) || !(mask >> param_group(s, n) & 1u)) continue;
    param_step(s, id, &ga[param_group(s, n)]);
  }
#undef PHASE_PARAM
  for (int k = 0; k < o->n_groups; k++)
    if (mask >> k & 1u && !s->group_frozen[k] && ++s->group_step[k] > s->step) s->step = s->group_step[k];
  phase_grads_zero(s, ph);
  mf_state_after_update_some(s, ph->trains); /* the EMA averages of what this phase updated follow their masters */
  mf_session_refresh_lp(s);
  if (s->be->sync && s->be->sync(s->stream) < 0) return -1; /* the device error is on stderr */
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

/* copies node id (in program pr) out to the host as f32 */
static int node_out_f32(mf_session *s, const mf_program *pr, int id, float *dst, size_t n) {
  const mf_node *nd = &s->plan->g->nodes[id];
  void *p = mf_session_ptr(s, pr, id);
  if (!p) return -1;
  if (!s->be->copy_out) { mf_convert(dst, MF_F32, p, nd->dtype, (int64_t)n); return 0; }
  void *tmp = malloc(mf_node_bytes(nd));
  if (!tmp) return -1;
  mem_out(s, tmp, p, mf_node_bytes(nd));
  mf_convert(dst, MF_F32, tmp, nd->dtype, (int64_t)n);
  free(tmp);
  return 0;
}
static int node_in_f32(mf_session *s, int id, const float *src, size_t n) {
  const mf_node *nd = &s->plan->g->nodes[id];
  void *p = mf_session_ptr(s, NULL, id);
  if (!p) return -1;
  if (!s->be->copy_in) { mf_convert(p, nd->dtype, src, MF_F32, (int64_t)n); return 0; }
  void *tmp = malloc(mf_node_bytes(nd));
  if (!tmp) return -1;
  mf_convert(tmp, nd->dtype, src, MF_F32, (int64_t)n);
  mem_in(s, p, tmp, mf_node_bytes(nd));
  free(tmp);
  return 0;
}

int mf_session_read(mf_session *s, mf_tensor t, float *dst, size_t n) {
  if (node_check(s, t, n, "read") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  int id = nd->op == MF_OP_PARAM_LP ? nd->master : t; /* read the f32 master */
  if (node_out_f32(s, s->last_prog, id, dst, n) < 0) {
    fprintf(stderr, "memfit: read: '%s' is not live after the step (keep it in mf_plan_opts.keep)\n", nd->name);
    return -1;
  }
  return 0;
}

int mf_session_write_param(mf_session *s, mf_tensor t, const float *src, size_t n) {
  if (node_check(s, t, n, "write_param") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  int id = nd->op == MF_OP_PARAM_LP ? nd->master : t;
  if (s->plan->g->nodes[id].op == MF_OP_BUFFER) return mf_session_write_state(s, id, src, n);
  if (s->plan->g->nodes[id].op != MF_OP_PARAM) return -1;
  if (node_in_f32(s, id, src, n) < 0) return -1;
  mf_session_refresh_lp(s);
  return 0;
}

int mf_session_write_input(mf_session *s, mf_tensor t, const float *src, size_t n) {
  if (node_check(s, t, n, "write_input") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  if (nd->role != MF_ROLE_INPUT) { fprintf(stderr, "memfit: write_input: '%s' is not an input\n", nd->name); return -1; }
  for (int q = 0; q < s->n_staged; q++) /* its staged copy may still be in flight into a slot this would write */
    for (int i = 0; i < s->staged[q].n; i++)
      if (s->staged[q].t[i] == t) {
        fprintf(stderr, "memfit: write_input: '%s' has a staged batch waiting for a step; run the step first\n", nd->name);
        return -1;
      }
  if (s->bound) s->bound[t] = NULL; /* writing means: read the session's own buffer again */
  int cur = s->cur_slot, rc = 0;
  for (int k = 0; k < s->plan->input_slots && !rc; k++) { /* every copy, so any slot a step reads has it */
    s->cur_slot = k;
    rc = node_in_f32(s, t, src, n);
  }
  s->cur_slot = cur;
  if (!rc) s->input_state[t] = MF_INPUT_WRITTEN;
  return rc;
}

int mf_session_bind_input(mf_session *s, mf_tensor t, void *data) {
  const mf_graph *g = s->plan->g;
  if (t < 0 || t >= g->n || g->nodes[t].role != MF_ROLE_INPUT) { fprintf(stderr, "memfit: bind_input: tensor %d is not an input\n", t); return -1; }
  if (s->be->copy_in) { fprintf(stderr, "memfit: bind_input: backend '%s' needs its own staging copy\n", s->be->name); return -1; }
  if (data) s->input_state[t] = MF_INPUT_WRITTEN;
  if (!s->bound && !(s->bound = calloc((size_t)g->n, sizeof *s->bound))) return -1;
  s->bound[t] = data;
  return 0;
}

int mf_session_read_grad(mf_session *s, mf_tensor t, float *dst, size_t n) {
  if (node_check(s, t, n, "read_grad") < 0) return -1;
  const mf_node *nd = &s->plan->g->nodes[t];
  int id = nd->op == MF_OP_PARAM_LP ? nd->master : t;
  int gid = s->plan->g->nodes[id].grad;
  if (gid < 0) return -1;
  return node_out_f32(s, NULL, gid, dst, n);
}

double mf_session_loss_scale(const mf_session *s) { return s->loss_scale; }
int64_t mf_session_step(const mf_session *s) { return s->step; }
double mf_session_last_lr(const mf_session *s) { return s->last_lr; }
double mf_session_last_grad_norm(const mf_session *s) { return s->last_grad_norm; }
double mf_session_group_lr(const mf_session *s, int group) {
  return group >= 0 && group < s->opts.n_groups ? s->group_lr[group] : -1;
}
int64_t mf_session_group_step(const mf_session *s, int group) {
  return group >= 0 && group < s->opts.n_groups ? s->group_step[group] : -1;
}
int mf_session_group_freeze(mf_session *s, int group, int frozen) {
  if (group < 0 || group >= s->opts.n_groups) {
    fprintf(stderr, "memfit: group_freeze: group %d is not in 0 .. %d (n_groups)\n", group, s->opts.n_groups - 1);
    return -1;
  }
  s->group_frozen[group] = frozen != 0;
  return 0;
}

/* ReduceLROnPlateau, mode "min", threshold_mode "rel", no cooldown: an improvement is a value below
 * best * (1 - threshold); after more than `patience` reports without one, the lr is cut by `factor`
 * unless every group already sits at its min_lr (a cut smaller than 1e-8 is no cut, as in PyTorch). */
int mf_session_report_metric(mf_session *s, double value) {
  const mf_train_opts *o = &s->opts;
  if (o->schedule != MF_SCHED_PLATEAU) return 0;
  if (isfinite(value) && value < s->plateau_best * (1 - o->plateau_threshold)) {
    s->plateau_best = value;
    s->plateau_bad = 0;
    return 0;
  }
  if (++s->plateau_bad <= o->plateau_patience) return 0;
  s->plateau_bad = 0;
  int cut = 0;
  for (int k = 0; k < o->n_groups && !cut; k++) {
    const mf_param_group_opts *q = &o->groups[k];
    double now = fmax(q->lr * s->plateau_scale, q->min_lr), next = fmax(q->lr * s->plateau_scale * o->plateau_factor, q->min_lr);
    cut = now - next > 1e-8;
  }
  if (cut) s->plateau_scale *= o->plateau_factor;
  return cut;
}
double mf_session_plateau_scale(const mf_session *s, double *best, int *bad_reports) {
  if (best) *best = s->plateau_best;
  if (bad_reports) *bad_reports = s->plateau_bad;
  return s->plateau_scale;
}
size_t mf_session_measured_bytes(const mf_session *s, mf_arena_kind a) {
  if ((unsigned)a >= MF_ARENA_COUNT) return 0;
  /* debug: the sentinel scan also sees writes the counter cannot (past a persistent arena's end) */
  if (s->opts.debug_memory) return s->scanned[a] > s->measured[a] ? s->scanned[a] : s->measured[a];
  return s->measured[a];
}


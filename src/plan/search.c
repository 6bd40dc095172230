/* search.c — fit to a budget. For each graph variant, storage dtype and micro-batch (a divisor of the
 * effective batch), it plans storing everything, recomputing everything, and the fewest segments
 * that fit (binary search over segments ordered by memory freed per FLOP recomputed), with and
 * without optimizer offload; every number is an exact plan, and candidates that fit are ranked by
 * a cost model calibrated on the backend. */
#include "plan/search.h"
#include "ops/ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

mf_search_opts mf_search_opts_default(void) {
  mf_search_opts o;
  memset(&o, 0, sizeof o);
  o.backend = "cpu";
  o.dtypes = 1u << MF_F32 | 1u << MF_BF16;
  o.fixed_variant = -1;
  o.fixed_mode = -1;
  o.optim = mf_plan_opts_default().optim;
  return o;
}

void mf_calibration_nominal(mf_calibration *c, const char *why) {
  memset(c, 0, sizeof *c);
  for (int d = 0; d < MF_DTYPE_COUNT; d++) {
    c->flops_per_s[d] = 1e12;
    c->bytes_per_s[d] = 1e11;
  }
  c->op_overhead_s = c->gemm_overhead_s = 5e-6;
  c->offload_bytes_per_s = 2e10;
  snprintf(c->source, sizeof c->source, "nominal (%.140s)", why);
}

static double program_seconds(const mf_plan *p, const mf_program *pr, const mf_calibration *cal) {
  const mf_graph *g = p->g;
  double t = 0;
  for (int s = 0; s < pr->n_steps; s++) {
    const mf_node *n = &g->nodes[pr->steps[s]];
    double traffic = (double)mf_node_bytes(n);
    for (int j = 0; j < n->nsrc; j++) traffic += (double)mf_node_bytes(&g->nodes[n->src[j]]);
    double F = cal->flops_per_s[n->dtype] > 0 ? cal->flops_per_s[n->dtype] : cal->flops_per_s[MF_F32];
    double B = cal->bytes_per_s[n->dtype] > 0 ? cal->bytes_per_s[n->dtype] : cal->bytes_per_s[MF_F32];
    bool gemm = n->op == MF_OP_MATMUL || n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT;
    t += mf_node_flops(g, n) / F + traffic / B + (gemm ? cal->gemm_overhead_s : cal->op_overhead_s);
  }
  return t;
}

typedef struct ctx {
  const mf_model_builder *m;
  const mf_search_opts *o;
  const mf_calibration *cal;
  mf_graph *g;
  mf_tensor loss;
  mf_candidate *all;
  int n_all, cap_all, n_planned;
  double store_flops;  /* flops per micro-step with nothing recomputed */
  size_t fixed;        /* backend's fixed overhead */
  size_t side;         /* the model's side_bytes: held besides the step's plan */
  const char *side_what; /* what they are (or NULL) */
  signed char *shard_ok; /* per variant: ZeRO-1 applies (1), not (0), not probed yet (-1) */
} ctx;

/* Plans candidate c (its mask/invertible/offload set) and fills its numbers; 0 or -1. */
static int evaluate(ctx *x, mf_candidate *c, char *err, size_t errlen) {
  mf_plan_opts po = mf_plan_opts_default();
  mf_candidate_apply(c, &po);
  po.optim = x->o->optim;
  po.threads = x->o->threads;
  po.backend = x->o->backend;
  po.ranks = x->o->ranks;
  mf_plan *p = mf_plan_init(x->g, x->loss, &po, err, errlen);
  x->n_planned++;
  if (!p) return -1;
  memcpy(c->arena, p->arena, sizeof c->arena);
  c->device_bytes = mf_plan_total_bytes(p) + x->fixed + x->side;
  c->side_bytes = x->side;
  c->side_what = x->side_what;
  c->staging_bytes = x->m->staging_bytes ? x->m->staging_bytes(c->micro_batch, x->m->ctx) : 0;
  snprintf(c->peak_desc, sizeof c->peak_desc, "%s", p->peak_desc);
  double micro = program_seconds(p, &p->train, x->cal);
  size_t params = p->arena[MF_ARENA_PARAM];
  double update = (double)params * 7.0 / x->cal->bytes_per_s[MF_F32];
  if (c->shard_ranks > 1) /* ZeRO-1: the update of one slice, then every parameter copied back from the gathered arena */
    update = update / c->shard_ranks + (double)params * 2.0 / x->cal->bytes_per_s[MF_F32];
  if (c->offload) update += 2.0 * (double)p->arena[MF_ARENA_OPT] / x->cal->offload_bytes_per_s;
  c->step_s = c->accum * micro + update;
  if (x->store_flops <= 0 && !c->n_recomputed) x->store_flops = p->train.flops;
  c->recompute_flops = x->store_flops > 0 ? c->accum * fmax(0, p->train.flops - x->store_flops) : 0;
  int64_t host_needed = c->offload ? (int64_t)p->arena[MF_ARENA_OPT] : 0;
  c->fits = (!x->o->budget || (int64_t)c->device_bytes <= x->o->budget) &&
            (!x->o->host_budget || host_needed <= x->o->host_budget);
  mf_plan_free(p);
  if (x->n_all == x->cap_all) {
    int cap = x->cap_all ? x->cap_all * 2 : 64;
    mf_candidate *a = realloc(x->all, (size_t)cap * sizeof *a);
    if (!a) { snprintf(err, errlen, "search: out of host memory"); return -1; }
    x->all = a;
    x->cap_all = cap;
  }
  x->all[x->n_all++] = *c;
  return 0;
}

/* segments ordered by activation bytes they hold per FLOP their recompute costs, earliest first on ties */
typedef struct seg_rank { int id; double score; } seg_rank;
static int seg_cmp(const void *a, const void *b) {
  const seg_rank *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->id - y->id;
}

static void mask_topk(mf_candidate *c, const seg_rank *order, int k) {
  memset(c->mask, 0, sizeof c->mask);
  for (int i = 0; i < k; i++) c->mask[order[i].id] = 1;
  c->n_recomputed = k;
}

static int search_graph(ctx *x, int variant, mf_dtype dt, int mb, int *any_fit, char *err, size_t errlen) {
  mf_graph *g = x->g;
  int nseg = mf_graph_segment_count(g);
  if (nseg > MF_SEARCH_MAX_SEG) nseg = MF_SEARCH_MAX_SEG;
  seg_rank order[MF_SEARCH_MAX_SEG];
  bool invertible = false;
  for (int k = 0; k < nseg; k++) {
    const mf_segment *s = &g->segs[k];
    double bytes = 0, flops = 0;
    for (int id = s->first; id <= s->last; id++) {
      bytes += (double)mf_node_bytes(&g->nodes[id]);
      flops += mf_node_flops(g, &g->nodes[id]);
    }
    order[k].id = k;
    order[k].score = bytes / (flops + 1);
    invertible |= s->inverse != NULL;
  }
  qsort(order, (size_t)nseg, sizeof *order, seg_cmp);
  int E = x->m->effective_batch;
  int n_off = x->o->allow_offload ? 2 : 1;
  /* ZeRO-1 as one more knob (not with offload): where the model allows it (one phase, no growth: the plan says).
   * Whether it does is the graph's structure (its phases, parameters tied to masks), not its micro-batch or
   * precision, and sharding changes only the gradient arena's padding and the optimizer state, both laid out from
   * the parameters: one probe per variant answers for all its graphs. */
  int sh0 = x->o->shard == 2 && x->o->ranks > 1, sh1 = x->o->shard && x->o->ranks > 1;
  if (sh1 && x->shard_ok[variant] >= 0) sh1 = x->shard_ok[variant];
  else if (sh1) {
    mf_plan_opts po = mf_plan_opts_default();
    po.optim = x->o->optim;
    po.threads = x->o->threads;
    po.backend = x->o->backend;
    po.ranks = x->o->ranks;
    po.shard_optimizer = 1;
    char e[256];
    mf_plan *p = mf_plan_init(x->g, x->loss, &po, e, sizeof e);
    x->n_planned++;
    if (!p && x->o->shard == 2) { snprintf(err, errlen, "search: %s: %s", x->m->name, e); return -1; }
    if (!p) sh1 = 0;
    x->shard_ok[variant] = (signed char)sh1;
    mf_plan_free(p);
  }
  x->store_flops = 0;
  for (int k = 0; k < n_off * (sh1 - sh0 + 1); k++) {
    int off = k % n_off, sh = sh0 + k / n_off;
    if (off && sh) continue;
    mf_candidate base;
    memset(&base, 0, sizeof base);
    base.variant = variant;
    base.micro_batch = mb;
    base.accum = x->m->micro_steps ? x->m->micro_steps(variant, mb, x->m->ctx) : E / mb;
    if (base.accum < 1) { snprintf(err, errlen, "search: %s: variant %d gives %d micro-steps per update", x->m->name, variant, base.accum); return -1; }
    base.dtype = dt;
    base.offload = off;
    base.shard_ranks = sh ? x->o->ranks : 0;
    base.invertible = invertible;
    base.n_seg = nseg;
    if (x->m->variant_names) snprintf(base.variant_name, sizeof base.variant_name, "%s", x->m->variant_names[variant]);
    else snprintf(base.variant_name, sizeof base.variant_name, "variant %d", variant);
    mf_candidate store = base, all = base;
    mask_topk(&store, order, 0);
    /* a graph without segments has one plan, also when everything is to be recomputed */
    if ((x->o->fixed_mode != 1 || nseg == 0) && evaluate(x, &store, err, errlen) < 0) return -1;
    if (x->o->fixed_mode == 0 || nseg == 0) { *any_fit |= store.fits; continue; }
    mask_topk(&all, order, nseg);
    if (evaluate(x, &all, err, errlen) < 0) return -1;
    *any_fit |= store.fits | all.fits;
    if (x->o->fixed_mode == 1 || store.fits || !all.fits) continue;
    int lo = 0, hi = nseg; /* store (k=0) does not fit, all (k=nseg) does */
    while (hi - lo > 1) {
      int mid = (lo + hi) / 2;
      mf_candidate c = base;
      mask_topk(&c, order, mid);
      if (evaluate(x, &c, err, errlen) < 0) return -1;
      if (x->all[x->n_all - 1].fits) hi = mid;
      else lo = mid;
    }
  }
  return 0;
}

/* Ranking cost: predicted time, with low precision charged 3% for the accuracy it gives up, so
 * that f32 wins unless bf16/f16 is clearly faster or needed to fit. */
static double rank_cost(const mf_candidate *c) { return c->step_s * (c->dtype == MF_F32 ? 1.0 : 1.03); }

static int cand_cmp(const void *a, const void *b) {
  const mf_candidate *x = a, *y = b;
  if (x->fits != y->fits) return y->fits - x->fits;
  if (rank_cost(x) != rank_cost(y)) return rank_cost(x) < rank_cost(y) ? -1 : 1;
  return x->device_bytes < y->device_bytes ? -1 : x->device_bytes > y->device_bytes;
}

/* with nothing recomputed the graph variant makes no difference, unless it plans differently (Image-GS's variants
 * are tile sizes and backward modes: other micro-steps, other bytes) */
static bool same_kind(const mf_candidate *a, const mf_candidate *b) {
  bool var = a->variant == b->variant ||
             (!a->n_recomputed && !b->n_recomputed && a->accum == b->accum && a->device_bytes == b->device_bytes);
  return var && a->micro_batch == b->micro_batch && a->dtype == b->dtype && a->offload == b->offload &&
         a->shard_ranks == b->shard_ranks;
}

static bool same_settings(const mf_candidate *a, const mf_candidate *b) {
  return a->micro_batch == b->micro_batch && a->dtype == b->dtype && a->offload == b->offload && a->shard_ranks == b->shard_ranks;
}

/* 1 when variant v is the preferred one of another variant (mf_model_builder.preferred_variant) */
static bool is_preferred(const mf_model_builder *m, int n_variants, int v) {
  for (int u = 0; u < n_variants; u++)
    if (u != v && m->preferred_variant(u, m->ctx) == v) return true;
  return false;
}

/* The workload's preferred variants, after the ranking (all[0] is the best, then in order): when the best has a preferred
 * variant (it is the slower kind, e.g. Image-GS's top-K recomputed), the cheapest fitting candidate of a preferred kind at
 * the same settings (micro-batch, precision, offload, ZeRO-1 ranks) takes its place, whatever the cost model predicts
 * (among those the cost model still ranks, e.g. tile sizes). The best's note says which way it went and why. */
static void prefer_variants(const mf_model_builder *m, int n_variants, mf_candidate *all, int n) {
  if (!m->preferred_variant || n < 1 || !all[0].fits) return;
  mf_candidate *b = &all[0];
  int pv = m->preferred_variant(b->variant, m->ctx);
  if (pv < 0 || pv == b->variant) {
    for (int v = 0; v < n_variants; v++) /* the best is itself some variant's preferred one */
      if (v != b->variant && m->preferred_variant(v, m->ctx) == b->variant) {
        snprintf(b->note, sizeof b->note, "'%.60s' fits and runs faster than '%.60s'", b->variant_name,
                 m->variant_names ? m->variant_names[v] : "the other variant");
        break;
      }
    return;
  }
  int k = -1;
  size_t need = 0;
  for (int i = 1; i < n && k < 0; i++) {
    const mf_candidate *c = &all[i];
    if (!same_settings(c, b) || !is_preferred(m, n_variants, c->variant)) continue;
    if (c->fits) k = i;
    else if (!need || c->device_bytes < need) need = c->device_bytes;
  }
  if (k > 0) {
    mf_candidate was = *b, c = all[k];
    memmove(&all[1], &all[0], (size_t)k * sizeof *all);
    all[0] = c;
    snprintf(all[0].note, sizeof all[0].note, "'%.40s' fits and runs faster than '%.40s' (the cost model, blind to that, "
             "predicted %.2fx)", c.variant_name, was.variant_name, was.step_s / c.step_s);
  } else if (need) {
    char h[32];
    mf_format_bytes(need, h, sizeof h);
    snprintf(b->note, sizeof b->note, "'%.60s' would run faster but needs %s at the least, over the budget",
             m->variant_names ? m->variant_names[pv] : "the preferred variant", h);
  }
}

int mf_search_plans(const mf_model_builder *m, const mf_search_opts *o, const mf_calibration *cal, mf_search_result *r, char *err,
                    size_t errlen) {
  memset(r, 0, sizeof *r);
  r->cal = *cal;
  if (!m || !m->build || m->effective_batch < 1) {
    snprintf(err, errlen, "search: model '%s': %s", m && m->name ? m->name : "?",
             !m || !m->build ? "no build function" : "effective_batch must be at least 1");
    return -1;
  }
  int n_variants = m->n_variants > 0 ? m->n_variants : 1;
  ctx x = {.m = m, .o = o, .cal = &r->cal};
  const mf_backend *be = mf_backend_get(o->backend, err, errlen);
  if (!be) return -1;
  x.fixed = be->fixed_overhead ? be->fixed_overhead() : 0;
  x.side = m->side_bytes ? m->side_bytes(m->ctx, o->threads, o->backend, &x.side_what) : 0;
  int E = m->effective_batch;
  if (o->fixed_micro_batch > 0 && (o->fixed_micro_batch > E || E % o->fixed_micro_batch)) {
    char divs[256] = "";
    size_t len = 0;
    for (int mb = 1; mb <= E && len + 16 < sizeof divs; mb++)
      if (E % mb == 0) len += (size_t)snprintf(divs + len, sizeof divs - len, "%s%d", len ? ", " : "", mb);
    snprintf(err, errlen, "search: micro-batch %d does not divide the effective batch of %d (micro-batch x accumulation "
                          "steps must equal it): use one of %s", o->fixed_micro_batch, E, divs);
    return -1;
  }
  if (!(x.shard_ok = malloc((size_t)n_variants))) { snprintf(err, errlen, "search: out of host memory"); return -1; }
  memset(x.shard_ok, -1, (size_t)n_variants);
  char refused[200] = ""; /* why the workload refused a micro-batch, when it did */
  mf_dtype dts[3] = {MF_F32, MF_BF16, MF_F16};
  for (int v = 0; v < n_variants; v++) {
    if (o->fixed_variant >= 0 && v != o->fixed_variant) continue;
    for (int d = 0; d < 3; d++) {
      if (!((o->dtypes ? o->dtypes : 1u << MF_F32) & (1u << dts[d]))) continue;
      for (int mb = 1; mb <= E; mb++) {
        if (E % mb || (o->fixed_micro_batch > 0 && mb != o->fixed_micro_batch)) continue;
        char why[160];
        if (m->batch_ok && m->batch_ok(mb, m->ctx, why, sizeof why) < 0) {
          snprintf(refused, sizeof refused, "micro-batch %d: %s", mb, why);
          continue;
        }
        x.g = mf_graph_init(dts[d]);
        int any_fit = 0;
        int rc = !x.g ? (snprintf(err, errlen, "search: out of host memory"), -1) : m->build(x.g, v, mb, m->ctx, &x.loss, err, errlen);
        if (rc == 0 && mf_graph_error(x.g)) rc = (snprintf(err, errlen, "%s", mf_graph_error(x.g)), -1);
        if (rc == 0) rc = search_graph(&x, v, dts[d], mb, &any_fit, err, errlen);
        mf_graph_free(x.g);
        x.g = NULL;
        if (m->release) m->release(m->ctx);
        if (rc < 0) {
          free(x.all);
          free(x.shard_ok);
          return -1;
        }
        /* memory grows with the micro-batch: once nothing fits, larger ones will not either */
        if (!any_fit && o->budget) break;
      }
    }
  }
  r->n_planned = x.n_planned;
  free(x.shard_ok);
  if (!x.n_all) {
    snprintf(err, errlen, "search: no setting could be planned%s%s%s", refused[0] ? " (" : "", refused, refused[0] ? ")" : "");
    free(x.all);
    return -1;
  }
  /* fastest ignoring the budget, and smallest of all */
  r->unconstrained = x.all[0];
  r->smallest = x.all[0];
  for (int i = 1; i < x.n_all; i++) {
    if (rank_cost(&x.all[i]) < rank_cost(&r->unconstrained)) r->unconstrained = x.all[i];
    if (x.all[i].device_bytes < r->smallest.device_bytes) r->smallest = x.all[i];
  }
  if (m->preferred_variant) { /* the fastest ignoring the budget: its preferred variant, when the search planned it */
    int pv = m->preferred_variant(r->unconstrained.variant, m->ctx), k = -1;
    for (int i = 0; i < x.n_all && pv >= 0 && pv != r->unconstrained.variant; i++)
      if (x.all[i].variant == pv && same_settings(&x.all[i], &r->unconstrained) && (k < 0 || rank_cost(&x.all[i]) < rank_cost(&x.all[k])))
        k = i;
    if (k >= 0) r->unconstrained = x.all[k];
  }
  qsort(x.all, (size_t)x.n_all, sizeof *x.all, cand_cmp);
  prefer_variants(m, n_variants, x.all, x.n_all);
  r->found = x.all[0].fits;
  r->best = x.all[0];
  for (int i = 1; i < x.n_all && r->n_runners < 3 && r->found; i++) {
    const mf_candidate *c = &x.all[i];
    bool dup = same_kind(c, &r->best);
    for (int j = 0; j < r->n_runners; j++) dup |= same_kind(c, &r->runners[j]);
    if (dup) continue;
    r->runners[r->n_runners] = *c;
    mf_candidate *rc = &r->runners[r->n_runners++];
    if (!c->fits) snprintf(rc->note, sizeof rc->note, "does not fit");
    else if (m->preferred_variant && m->preferred_variant(c->variant, m->ctx) >= 0 && same_settings(c, &r->best) &&
             m->preferred_variant(r->best.variant, m->ctx) < 0)
      snprintf(rc->note, sizeof rc->note, "predicted %.2fx the chosen step time, but '%.60s' runs faster", c->step_s / r->best.step_s,
               r->best.variant_name);
    else snprintf(rc->note, sizeof rc->note, "predicted %.2fx the chosen step time", c->step_s / r->best.step_s);
  }
  r->all = x.all;
  r->n_all = x.n_all;
  if (!r->found) {
    char need[32], have[32], d[256];
    mf_format_bytes(r->smallest.device_bytes, need, sizeof need);
    mf_format_bytes((size_t)o->budget, have, sizeof have);
    mf_candidate_describe(&r->smallest, d, sizeof d);
    snprintf(r->message, sizeof r->message, "%s: nothing fits in %s (%lld bytes); the smallest setting (%s) needs %s (%zu bytes)",
             m->name ? m->name : "model", have, (long long)o->budget, d, need, r->smallest.device_bytes);
  }
  return 0;
}

void mf_search_result_free(mf_search_result *r) {
  free(r->all);
  r->all = NULL;
  r->n_all = 0;
}

void mf_candidate_describe(const mf_candidate *c, char *buf, size_t n) {
  const char *mode = c->n_recomputed == 0 ? "nothing recomputed"
                     : c->invertible     ? "segments inverted or recomputed (memory-free backprop)"
                                         : "segments recomputed";
  char more[64] = "";
  if (c->offload) snprintf(more, sizeof more, ", optimizer state offloaded");
  else if (c->shard_ranks > 1) snprintf(more, sizeof more, ", optimizer state sharded over %d ranks (ZeRO-1)", c->shard_ranks);
  if (c->n_recomputed)
    snprintf(buf, n, "micro-batch %d x %d accumulation, %s, %s, %d/%d %s%s", c->micro_batch, c->accum,
             mf_dtype_name(c->dtype), c->variant_name, c->n_recomputed, c->n_seg, mode, more);
  else
    snprintf(buf, n, "micro-batch %d x %d accumulation, %s, %s, %s%s", c->micro_batch, c->accum, mf_dtype_name(c->dtype),
             c->variant_name, mode, more);
}

void mf_candidate_apply(const mf_candidate *c, mf_plan_opts *po) {
  po->recompute = c->n_recomputed ? MF_RECOMPUTE_SELECTED : MF_RECOMPUTE_NONE;
  po->segment_mask = c->mask;
  po->invertible = c->invertible;
  po->offload_opt = c->offload;
  if (c->shard_ranks > 1) {
    po->ranks = c->shard_ranks;
    po->shard_optimizer = 1;
  }
}

/* test_search.c — fit to a budget: the chosen settings fit and are the cheapest predicted among all
 * that fit; a budget too small gets the smallest setting that would fit; a workload's constraint on
 * the micro-batch is honoured; and a session run with the chosen settings measures exactly its plan. */
#include "check.h"
#include "train/measure.h"
#include "models/workload.h"
#include <stdlib.h>

/* the steg workload with a constraint: even micro-batches only */
static int even_only(const void *cfg, int mb, char *why, size_t n) {
  (void)cfg;
  if (mb % 2) { snprintf(why, n, "micro-batch must be even"); return -1; }
  return 0;
}

static void *small_cfg(const mf_workload *w) {
  char err[256];
  void *cfg = w->cfg_new();
  CHECK(w->cfg_set(cfg, "preset", "small", err, sizeof err) == 0, "%s", err);
  CHECK(w->cfg_set(cfg, "size", "16", err, sizeof err) == 0, "%s", err);
  CHECK(w->cfg_set(cfg, "batch", "8", err, sizeof err) == 0, "%s", err);
  CHECK(w->cfg_set(cfg, "size", "15", err, sizeof err) < 0 && strstr(err, "--size"), "odd size accepted: %s", err);
  return cfg;
}

/* ZeRO-1 as a search knob (2 ranks): a sharded candidate is its unsharded twin (same variant, micro-batch, precision,
 * recompute) with the gradient arena padded to a multiple of 2 x 64 bytes and at least half, at most all of the
 * optimizer state; every other arena the same. So whether ZeRO-1 applies is probed once per variant, not once
 * per graph: the search plans each sharded candidate plus one probe per variant more than the unsharded search. */
static void shard_check(const mf_workload *w, void *cfg) {
  char err[512];
  mf_search_opts o = mf_search_opts_default();
  o.threads = 1;
  o.ranks = 2;
  mf_search_result u, r;
  CHECK(mf_workload_search(w, cfg, &o, &u, err, sizeof err) == 0, "unsharded 2-rank search: %s", err);
  o.shard = 1;
  CHECK(mf_workload_search(w, cfg, &o, &r, err, sizeof err) == 0, "ZeRO-1 2-rank search: %s", err);
  int n_sharded = 0, twins = 0, variants = 0, graphs = 0;
  unsigned seen_v = 0, seen_g[8] = {0};
  for (int i = 0; i < r.n_all; i++) {
    const mf_candidate *c = &r.all[i];
    if (c->variant < 8 && !(seen_v >> c->variant & 1u)) seen_v |= 1u << c->variant, variants++;
    unsigned gbit = 1u << ((c->micro_batch & 15) * 2 + (c->dtype == MF_F32));
    if (c->variant < 8 && !(seen_g[c->variant] & gbit)) seen_g[c->variant] |= gbit, graphs++;
    if (c->shard_ranks != 2) continue;
    n_sharded++;
    for (int j = 0; j < r.n_all; j++) {
      const mf_candidate *t = &r.all[j];
      if (t->shard_ranks || t->offload || t->variant != c->variant || t->micro_batch != c->micro_batch || t->dtype != c->dtype ||
          t->n_recomputed != c->n_recomputed || memcmp(t->mask, c->mask, sizeof t->mask))
        continue;
      int same = 1;
      for (int a = 0; a < MF_ARENA_COUNT; a++)
        if (a != MF_ARENA_GRAD && a != MF_ARENA_OPT) same &= t->arena[a] == c->arena[a];
      size_t gpad = (t->arena[MF_ARENA_GRAD] + 127) / 128 * 128;
      CHECK(same && c->arena[MF_ARENA_GRAD] == gpad && 2 * c->arena[MF_ARENA_OPT] >= t->arena[MF_ARENA_OPT] &&
                c->arena[MF_ARENA_OPT] <= t->arena[MF_ARENA_OPT],
            "sharded candidate %d (micro-batch %d, %s): other arenas %s, gradients %zu (unsharded %zu), optimizer %zu (unsharded %zu)", i,
            c->micro_batch, mf_dtype_name(c->dtype), same ? "equal" : "differ", c->arena[MF_ARENA_GRAD], t->arena[MF_ARENA_GRAD],
            c->arena[MF_ARENA_OPT], t->arena[MF_ARENA_OPT]);
      twins++;
      break;
    }
  }
  CHECK(n_sharded > 0 && twins == n_sharded, "every one of %d sharded candidates has its unsharded twin (%d found)", n_sharded, twins);
  CHECK(graphs > variants, "the search covers more graphs (%d) than variants (%d)", graphs, variants);
  CHECK(r.n_planned == u.n_planned + n_sharded + variants,
        "plans: %d with ZeRO-1, %d without, %d sharded candidates, %d variant probes (%d graphs)", r.n_planned, u.n_planned, n_sharded,
        variants, graphs);
  printf("  ZeRO-1 search over 2 ranks: %d graphs, %d sharded candidates, %d plans (%d unsharded + %d probe%s)\n", graphs, n_sharded,
         r.n_planned, u.n_planned + n_sharded, variants, variants == 1 ? "" : "s");
  mf_search_result_free(&u);
  mf_search_result_free(&r);
}

int main(void) {
  setenv("MEMFIT_CALIBRATION", "1e10,5e9,5e9,1e10", 1); /* a fixed cost model: reproducible choices */
  const mf_workload *w = mf_workload_find("steg");
  CHECK(w != NULL, "steg workload registered");
  void *cfg = small_cfg(w);
  char err[512];
  mf_search_opts o = mf_search_opts_default();
  o.threads = 1;
  mf_search_result free_r;
  CHECK(mf_workload_search(w, cfg, &o, &free_r, err, sizeof err) == 0, "unconstrained search: %s", err);
  size_t big = free_r.unconstrained.device_bytes, small = free_r.smallest.device_bytes;
  CHECK(small < big, "smallest %zu < unconstrained %zu", small, big);
  mf_search_result_free(&free_r);

  /* a budget between the two: the choice fits, and no fitting candidate is predicted cheaper */
  o.budget = (int64_t)(small + (big - small) / 3);
  mf_search_result r;
  CHECK(mf_workload_search(w, cfg, &o, &r, err, sizeof err) == 0, "search: %s", err);
  CHECK(r.found && r.best.fits && (int64_t)r.best.device_bytes <= o.budget, "choice %zu B does not fit %lld B", r.best.device_bytes, (long long)o.budget);
  for (int i = 0; i < r.n_all; i++)
    if (r.all[i].fits && r.all[i].dtype == r.best.dtype)
      CHECK(r.all[i].step_s >= r.best.step_s, "candidate %d is predicted faster (%g < %g) but was not chosen", i, r.all[i].step_s, r.best.step_s);
  CHECK(r.best.micro_batch * r.best.accum == 8, "effective batch kept: %d x %d", r.best.micro_batch, r.best.accum);
  CHECK(r.n_runners >= 1, "runners-up reported");

  /* the chosen settings, run for real: measured high-water == plan for every arena */
  mf_graph *g = mf_graph_init(r.best.dtype);
  void *state = NULL;
  mf_tensor loss;
  CHECK(w->build(g, cfg, r.best.variant, r.best.micro_batch, &loss, &state, err, sizeof err) == 0, "%s", err);
  mf_train_opts to = mf_train_opts_default();
  mf_candidate_apply(&r.best, &to.plan);
  to.threads = 1;
  to.debug_memory = 1;
  to.accum_steps = r.best.accum;
  mf_session *s = mf_session_init(g, loss, &to, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (s) {
    for (int i = 0; i < r.best.accum; i++) mf_session_micro_step(s);
    mf_session_update(s);
    const mf_plan *p = mf_session_plan(s);
    CHECK(mf_plan_total_bytes(p) == r.best.device_bytes, "replanned %zu vs searched %zu", mf_plan_total_bytes(p), r.best.device_bytes);
    for (int a = 0; a < MF_ARENA_COUNT; a++)
      CHECK(mf_session_measured_bytes(s, (mf_arena_kind)a) == mf_plan_arena_bytes(p, (mf_arena_kind)a), "arena %s measured %zu planned %zu",
            mf_arena_name((mf_arena_kind)a), mf_session_measured_bytes(s, (mf_arena_kind)a), mf_plan_arena_bytes(p, (mf_arena_kind)a));
    mf_session_free(s);
  }
  w->state_free(state);
  mf_graph_free(g);
  mf_search_result_free(&r);

  /* too small: nothing fits, and the answer is the smallest setting */
  o.budget = (int64_t)(small / 2);
  CHECK(mf_workload_search(w, cfg, &o, &r, err, sizeof err) == 0, "search: %s", err);
  CHECK(!r.found && r.smallest.device_bytes == small, "too small: found %d smallest %zu (expected %zu)", r.found, r.smallest.device_bytes, small);
  mf_search_result_free(&r);

  /* a constraint: only even micro-batches */
  mf_workload constrained = *w;
  constrained.batch_ok = even_only;
  o.budget = 0;
  CHECK(mf_workload_search(&constrained, cfg, &o, &r, err, sizeof err) == 0, "search: %s", err);
  int odd = 0;
  for (int i = 0; i < r.n_all; i++) odd += r.all[i].micro_batch % 2;
  CHECK(odd == 0 && r.n_all > 0, "%d candidates with an odd micro-batch", odd);
  mf_search_result_free(&r);
  shard_check(w, cfg);
  free(cfg);
  return check_finish("test_search");
}

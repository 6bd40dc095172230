/* test_search_api.c — the budget search as a library user sees it, through include/memfit.h only: a
 * small conv net of the user's own (two variants, recompute segments) asks what fits in a budget set
 * between two candidates' sizes; the best fits, planning it with mf_plan_init gives exactly its device
 * bytes (per arena too), a session trains it with measured == planned memory, a budget below the
 * smallest candidate gives found = 0 with a message, and bad builders are errors naming the model. */
#include "check.h"
#include "memfit.h"
#include <stdlib.h>
#include <string.h>

typedef struct net_ctx {
  int builds, releases;
  int fail;                /* build returns an error */
} net_ctx;

/* x [mb,3,32,32] -> 3 conv blocks (each a segment: conv 3x3 + relu, 16 channels) -> conv back to 3
 * channels; loss mse against x. Variant 1 puts two blocks in one segment. */
static int build_net(mf_graph *g, int variant, int mb, void *ctx, mf_tensor *loss, char *err, size_t n) {
  net_ctx *c = ctx;
  c->builds++;
  if (c->fail) {
    snprintf(err, n, "mynet: cannot build micro-batch %d", mb);
    return -1;
  }
  int64_t xs[4] = {mb, 3, 32, 32}, w0[4] = {16, 3, 3, 3}, w[4] = {16, 16, 3, 3}, wl[4] = {3, 16, 3, 3};
  mf_tensor x = mf_input(g, "x", 4, xs), h = x;
  for (int b = 0; b < 3; b++) {
    char nm[16];
    snprintf(nm, sizeof nm, "w%d", b);
    int open = variant == 0 || b != 2;
    if (open) mf_segment_begin(g, nm);
    mf_tensor in = h;
    h = mf_relu(g, mf_conv2d(g, h, mf_param(g, nm, 4, b ? w : w0, MF_INIT_KAIMING, 0), -1, 1, 1, 1));
    if (variant == 1 && b == 1) { /* blocks 1 and 2 together */
      snprintf(nm, sizeof nm, "w2");
      h = mf_relu(g, mf_conv2d(g, h, mf_param(g, nm, 4, w, MF_INIT_KAIMING, 0), -1, 1, 1, 1));
      b = 2;
    }
    if (open) mf_segment_end(g, 1, &in, 1, &h, NULL, NULL);
  }
  mf_tensor y = mf_conv2d(g, h, mf_param(g, "wl", 4, wl, MF_INIT_KAIMING, 0), -1, 1, 1, 1);
  *loss = mf_mse_loss(g, y, x);
  if (mf_graph_error(g)) {
    snprintf(err, n, "%s", mf_graph_error(g));
    return -1;
  }
  return 0;
}
static void release_net(void *ctx) { ((net_ctx *)ctx)->releases++; }

static const char *const variants[] = {"one segment per block", "blocks 1-2 together"};

int main(void) {
  setenv("MEMFIT_CALIBRATION", "1e10,5e9,5e9,1e10", 1); /* a fixed cost model: the ranking does not depend on the machine */
  net_ctx c = {0};
  mf_model_builder m = {.name = "mynet", .effective_batch = 8, .n_variants = 2, .variant_names = variants, .build = build_net,
                        .ctx = &c, .release = release_net};
  mf_search_opts o = mf_search_opts_default();
  o.threads = 2;
  char err[512], d[256], hb[32];

  /* no budget: every setting planned; take two candidates' sizes */
  mf_search_result all;
  CHECK(mf_search(&m, &o, &all, err, sizeof err) == 0, "search without a budget: %s", err);
  CHECK(c.builds > 0 && c.builds == c.releases, "release after every build: %d builds, %d releases", c.builds, c.releases);
  CHECK(all.found && all.n_all > 4, "candidates planned: %d", all.n_all);
  size_t lo = all.smallest.device_bytes, hi = all.smallest.device_bytes;
  for (int i = 0; i < all.n_all; i++) hi = all.all[i].device_bytes > hi ? all.all[i].device_bytes : hi;
  CHECK(lo < hi, "candidates differ in size: %zu .. %zu", lo, hi);
  int64_t budget = (int64_t)(lo + (hi - lo) / 2);
  mf_search_result_free(&all);

  /* a budget between them: the best fits; planning it gives exactly its bytes */
  o.budget = budget;
  mf_search_result r;
  CHECK(mf_search(&m, &o, &r, err, sizeof err) == 0, "search: %s", err);
  int over = 0;
  for (int i = 0; i < r.n_all; i++) over += !r.all[i].fits;
  mf_candidate_describe(&r.best, d, sizeof d);
  mf_format_bytes((size_t)budget, hb, sizeof hb);
  printf("budget %s (%lld bytes): best %s, %zu bytes; %d of %d candidates do not fit\n", hb, (long long)budget, d, r.best.device_bytes,
         over, r.n_all);
  CHECK(r.found && r.best.fits && r.best.device_bytes <= (size_t)budget, "the best fits: %zu <= %lld", r.best.device_bytes,
        (long long)budget);
  CHECK(over > 0, "some candidates do not fit the budget");
  CHECK(strstr(d, r.best.variant_name) && !strcmp(r.best.variant_name, variants[r.best.variant]), "description names the variant: %s", d);
  CHECK(r.best.micro_batch * r.best.accum == 8, "micro-batch %d x accumulation %d keeps the effective batch", r.best.micro_batch,
        r.best.accum);

  mf_graph *g = mf_graph_init(r.best.dtype);
  mf_tensor loss;
  CHECK(build_net(g, r.best.variant, r.best.micro_batch, &c, &loss, err, sizeof err) == 0, "rebuild: %s", err);
  mf_plan_opts po = mf_plan_opts_default();
  po.threads = 2;
  po.optim = o.optim;
  mf_candidate_apply(&r.best, &po);
  mf_plan *p = mf_plan_init(g, loss, &po, err, sizeof err);
  CHECK(p != NULL, "plan: %s", err);
  if (p) {
    CHECK(mf_plan_total_bytes(p) == r.best.device_bytes, "planned %zu bytes, the search said %zu", mf_plan_total_bytes(p),
          r.best.device_bytes);
    for (int a = 0; a < MF_ARENA_COUNT; a++)
      CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == r.best.arena[a], "arena %s: planned %zu, the search said %zu",
            mf_arena_name((mf_arena_kind)a), mf_plan_arena_bytes(p, (mf_arena_kind)a), r.best.arena[a]);
    mf_plan_free(p);
  }
  /* and it trains inside those bytes */
  mf_train_opts to = mf_train_opts_default();
  to.plan = po;
  to.threads = 2;
  to.accum_steps = r.best.accum;
  to.debug_memory = 1;
  mf_session *s = mf_session_init(g, loss, &to, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (s) {
    for (int i = 0; i < r.best.accum; i++) CHECK(isfinite(mf_session_micro_step(s)), "micro-step %d", i);
    CHECK(mf_session_update(s) == 1, "update");
    size_t total = 0;
    for (int a = 0; a < MF_ARENA_COUNT; a++) {
      size_t meas = mf_session_measured_bytes(s, (mf_arena_kind)a);
      CHECK(meas == r.best.arena[a], "arena %s: measured %zu, the search planned %zu", mf_arena_name((mf_arena_kind)a), meas,
            r.best.arena[a]);
      total += meas;
    }
    printf("trained one step of the best setting: measured %zu bytes in all\n", total);
    mf_session_free(s);
  }
  mf_graph_free(g);
  size_t smallest = r.smallest.device_bytes;
  mf_search_result_free(&r);

  /* below the smallest candidate: nothing fits, and the message says what the least is */
  o.budget = (int64_t)smallest - 1;
  CHECK(mf_search(&m, &o, &r, err, sizeof err) == 0, "search under the smallest: %s", err);
  char need[32];
  mf_format_bytes(smallest, need, sizeof need);
  CHECK(!r.found && r.smallest.device_bytes == smallest, "found = %d, smallest %zu", r.found, r.smallest.device_bytes);
  CHECK(strstr(r.message, "mynet") && strstr(r.message, "nothing fits") && strstr(r.message, need),
        "message names the model and what the smallest needs (%s): '%s'", need, r.message);
  printf("budget one byte under the smallest: %s\n", r.message);
  mf_search_result_free(&r);
  o.budget = 0;

  /* bad builders */
  mf_model_builder none = {.name = "nobuild", .effective_batch = 4};
  CHECK(mf_search(&none, &o, &r, err, sizeof err) < 0 && strstr(err, "nobuild") && strstr(err, "no build function"), "no build: %s", err);
  mf_model_builder zero = m;
  zero.effective_batch = 0;
  CHECK(mf_search(&zero, &o, &r, err, sizeof err) < 0 && strstr(err, "effective_batch"), "effective batch 0: %s", err);
  c.fail = 1;
  c.builds = c.releases = 0;
  CHECK(mf_search(&m, &o, &r, err, sizeof err) < 0 && strstr(err, "mynet: cannot build"), "a failing build stops the search: %s", err);
  CHECK(c.builds == c.releases, "release after a failed build too: %d builds, %d releases", c.builds, c.releases);
  return check_finish("test_search_api");
}

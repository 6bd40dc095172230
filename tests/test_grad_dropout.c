/* test_grad_dropout.c — dropout: its gradient against finite differences (the mask fixed by the graph's seed), the
 * keep rate within a binomial bound, fresh masks per micro-step, the identity at evaluation, measured == planned and
 * the same masks after resuming from a checkpoint. */
#include "gradcheck.h"
#include <math.h>

typedef struct { double ratio; int twice; } dctx;

/* dropout(tanh(a)) * b: the mask must be the same in forward and backward for the gradient to match */
static mf_tensor build_drop(mf_graph *g, const mf_tensor *in, void *c) {
  dctx *o = c;
  mf_tensor h = mf_dropout(g, mf_tanh(g, in[0]), o->ratio);
  if (o->twice) h = mf_add(g, h, mf_dropout(g, in[0], o->ratio)); /* a second dropout of a: its own mask */
  return mf_mul(g, h, in[1]);
}

/* values of y = dropout(ones [n], ratio) in a reference training step of seed `seed` */
static float *drop_ones(int64_t n, double ratio, uint64_t seed, int two) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_graph_set_seed(g, seed);
  mf_tensor x = mf_input(g, "x", 1, (int64_t[]){n});
  mf_tensor y = mf_dropout(g, x, ratio);
  if (two) y = mf_dropout(g, x, ratio); /* the second dropout node of x */
  float *ones = malloc((size_t)n * sizeof *ones), *out = malloc((size_t)n * sizeof *out);
  for (int64_t i = 0; i < n; i++) ones[i] = 1;
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[x] = ones;
  mf_ref r;
  char err[256];
  if (y < 0 || mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) {
    CHECK(0, "dropout of ones: %s", y < 0 ? mf_graph_error(g) : err);
    free(out);
    out = NULL;
  } else {
    memcpy(out, r.data[y], (size_t)n * sizeof *out);
    mf_ref_free(&r);
  }
  free(leaf);
  free(ones);
  mf_graph_free(g);
  return out;
}

/* The number kept K of n independent Bernoulli(q) draws has mean nq and sd sqrt(nq(1-q)); |K - nq| > 6 sd has
 * probability below 2e-9 (Chernoff), so a failure here is a biased or correlated mask, not bad luck. The threshold
 * makes q = 1 - ratio to within 2^-32: at most n 2^-32 < 1 more. */
static void test_keep_rate(void) {
  const int64_t n = 1 << 20;
  const double ratios[] = {0.1, 0.5, 0.9};
  for (int k = 0; k < 3; k++) {
    double r = ratios[k], q = 1 - r, sd = sqrt((double)n * q * (1 - q)), bound = 6 * sd + 1;
    float *a = drop_ones(n, r, 42 + (uint64_t)k, 0), *b = drop_ones(n, r, 42 + (uint64_t)k, 1), *c = drop_ones(n, r, 1042, 0);
    if (!a || !b || !c) { free(a), free(b), free(c); continue; }
    float scale = (float)(1.0 / (1.0 - r));
    int64_t kept = 0, both = 0, same_ab = 0, bad = 0, same_ac = 0;
    for (int64_t i = 0; i < n; i++) {
      if (a[i] != 0 && a[i] != scale) bad++;
      kept += a[i] != 0;
      both += a[i] != 0 && b[i] != 0;
      same_ab += (a[i] != 0) == (b[i] != 0);
      same_ac += (a[i] != 0) == (c[i] != 0);
    }
    CHECK(bad == 0, "ratio %g: %lld values are neither 0 nor 1/(1-ratio) = %.9g", r, (long long)bad, scale);
    CHECK(fabs((double)kept - n * q) <= bound, "ratio %g: kept %lld of %lld, expected %.1f +- %.1f", r, (long long)kept, (long long)n,
          n * q, bound);
    /* two dropout nodes of one tensor: independent masks, both kept with probability q^2 */
    double sd2 = sqrt((double)n * q * q * (1 - q * q));
    CHECK(fabs((double)both - n * q * q) <= 6 * sd2 + 1, "ratio %g: two nodes' masks both keep %lld, expected %.1f +- %.1f", r,
          (long long)both, n * q * q, 6 * sd2 + 1);
    /* another step's seed: a fresh mask (masks agree on a fraction q^2 + (1-q)^2 < 1, not everywhere) */
    double pa = q * q + (1 - q) * (1 - q), sda = sqrt((double)n * pa * (1 - pa));
    CHECK(fabs((double)same_ac - n * pa) <= 6 * sda + 1, "ratio %g: another seed's mask agrees on %lld, expected %.1f +- %.1f", r,
          (long long)same_ac, n * pa, 6 * sda + 1);
    CHECK(same_ab < n, "ratio %g: the second node drew the first one's mask", r);
    printf("dropout ratio %.1f: kept %lld of %lld (expected %.0f, bound +-%.0f)\n", r, (long long)kept, (long long)n, n * q, bound);
    free(a), free(b), free(c);
  }
  /* ratio 0 keeps everything unscaled, ratio 1 drops everything */
  float *z = drop_ones(4096, 0, 7, 0), *o = drop_ones(4096, 1, 7, 0);
  int64_t bad0 = 0, bad1 = 0;
  for (int64_t i = 0; z && o && i < 4096; i++) bad0 += z[i] != 1, bad1 += o[i] != 0;
  CHECK(z && o && bad0 == 0 && bad1 == 0, "ratio 0: %lld values changed; ratio 1: %lld values kept", (long long)bad0, (long long)bad1);
  free(z), free(o);
}

/* x [B,D] -> x w -> dropout -> (. - t)^2 summed; nodrop builds the same without the dropout */
typedef struct net { mf_graph *g; mf_tensor x, t, loss, h, y; } net;
static void net_build(net *n, int nodrop, double ratio) {
  n->g = mf_graph_init(MF_F32);
  n->x = mf_input(n->g, "x", 2, (int64_t[]){8, 64});
  n->t = mf_input(n->g, "t", 2, (int64_t[]){8, 64});
  mf_tensor w = mf_param(n->g, "w", 2, (int64_t[]){64, 64}, MF_INIT_KAIMING, 0);
  n->h = mf_matmul(n->g, n->x, w, 0, 0);           /* [8,64] */
  n->y = nodrop ? n->h : mf_dropout(n->g, n->h, ratio); /* [8,64] */
  n->loss = mf_mse_loss_sum(n->g, n->y, n->t);
}
static mf_session *net_session(net *n, int accum, mf_tensor keep) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.debug_memory = 1;
  o.accum_steps = accum;
  o.seed = 99;
  o.plan.n_keep = keep >= 0;
  o.plan.keep = &keep;
  char err[512] = "";
  mf_session *s = mf_session_init(n->g, n->loss, &o, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (!s) return NULL;
  float x[8 * 64], t[8 * 64];
  for (int i = 0; i < 8 * 64; i++) x[i] = (float)sin(0.37 * i), t[i] = (float)cos(0.11 * i);
  mf_session_write_input(s, n->x, x, 8 * 64);
  mf_session_write_input(s, n->t, t, 8 * 64);
  return s;
}

static void test_session(void) {
  net a, b;
  net_build(&a, 0, 0.5);
  net_build(&b, 1, 0.5);
  mf_session *s = net_session(&a, 2, a.y), *s0 = net_session(&b, 2, -1);
  if (!s || !s0) goto done;
  /* evaluation: the identity, so the loss equals the graph's without dropout (same parameters: w is built first) */
  double e = mf_session_forward(s), e0 = mf_session_forward(s0);
  CHECK(e == e0, "evaluation loss %.9g with dropout, %.9g without (dropout must be the identity there)", e, e0);
  /* two micro-steps of one update on the same batch and weights draw two masks: different losses */
  double l1 = mf_session_micro_step(s), l2 = mf_session_micro_step(s);
  CHECK(isfinite(l1) && isfinite(l2) && l1 != l2, "two micro-steps drew the same mask (losses %.9g, %.9g)", l1, l2);
  float y[8 * 64], h[8 * 64];
  mf_session_read(s, a.y, y, 8 * 64);
  int64_t zeros = 0;
  for (int i = 0; i < 8 * 64; i++) zeros += y[i] == 0;
  CHECK(zeros > 0 && zeros < 8 * 64, "a training step's dropout output has %lld zeros of %d", (long long)zeros, 8 * 64);
  mf_session_update(s);
  for (int i = 0; i < 2; i++) mf_session_micro_step(s), mf_session_micro_step(s), mf_session_update(s);
  for (int k = 0; k < MF_ARENA_COUNT; k++) {
    size_t planned = mf_plan_arena_bytes(mf_session_plan(s), (mf_arena_kind)k), measured = mf_session_measured_bytes(s, (mf_arena_kind)k);
    CHECK(planned == measured, "arena %s: planned %zu, measured %zu", mf_arena_name((mf_arena_kind)k), planned, measured);
  }
  /* no mask is stored: the plan's persistent arenas equal the graph's without dropout */
  for (int k = 0; k < MF_ARENA_COUNT; k++)
    if (k != MF_ARENA_ACT)
      CHECK(mf_plan_arena_bytes(mf_session_plan(s), (mf_arena_kind)k) == mf_plan_arena_bytes(mf_session_plan(s0), (mf_arena_kind)k),
            "arena %s differs with dropout", mf_arena_name((mf_arena_kind)k));
  /* resume: a checkpoint after an update, then two more updates here and in a fresh session loaded from it */
  char ck[] = "/tmp/memfit_dropout_XXXXXX";
  int fd = mkstemp(ck);
  if (fd >= 0) close(fd);
  char err[512] = "";
  CHECK(fd >= 0 && mf_session_save(s, ck, err, sizeof err) == 0, "save: %s", err);
  double want[4];
  for (int i = 0; i < 4; i += 2) want[i] = mf_session_micro_step(s), want[i + 1] = mf_session_micro_step(s), mf_session_update(s);
  mf_session_read(s, a.y, y, 8 * 64);
  mf_session *r = net_session(&a, 2, a.y);
  if (r) {
    CHECK(mf_session_load(r, ck, err, sizeof err) == 0, "load: %s", err);
    double got[4];
    for (int i = 0; i < 4; i += 2) got[i] = mf_session_micro_step(r), got[i + 1] = mf_session_micro_step(r), mf_session_update(r);
    mf_session_read(r, a.y, h, 8 * 64);
    for (int i = 0; i < 4; i++) CHECK(got[i] == want[i], "resumed micro-step %d: loss %.9g, the run's %.9g", i, got[i], want[i]);
    CHECK(!memcmp(y, h, sizeof y), "the resumed run's last dropout output differs");
    mf_session_free(r);
  }
  unlink(ck);
done:
  mf_session_free(s);
  mf_session_free(s0);
  mf_graph_free(a.g);
  mf_graph_free(b.g);
}

int main(void) {
  for (int twice = 0; twice < 2; twice++)
    for (int k = 0; k < 2; k++) {
      dctx c = {k ? 0.5 : 0.2, twice};
      gc_input in[2] = {{3, {3, 4, 5}, GC_NORMAL}, {3, {3, 4, 5}, GC_NORMAL}};
      char nm[64];
      snprintf(nm, sizeof nm, "dropout %.1f%s", c.ratio, twice ? ", two nodes" : "");
      gc_check(nm, 2, in, build_drop, &c, 0, 1e-6);
    }
  test_keep_rate();
  test_session();
  /* bad input names the op and the setting */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 1, (int64_t[]){4});
  CHECK(mf_dropout(g, x, 1.5) < 0 && mf_graph_error(g) && strstr(mf_graph_error(g), "dropout: ratio 1.5"), "error was: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  x = mf_input_typed(g, "ids", MF_I32, 1, (int64_t[]){4});
  CHECK(mf_dropout(g, x, 0.5) < 0 && mf_graph_error(g) && strstr(mf_graph_error(g), "floating point"), "error was: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(none)");
  mf_graph_free(g);
  return check_finish("test_grad_dropout");
}

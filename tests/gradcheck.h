/* gradcheck.h — checks an op's gradient against central finite differences in f64: the op's
 * inputs become f64 parameters with fresh random values; loss = sum(out * R) for random R. */
#ifndef MF_GRADCHECK_H
#define MF_GRADCHECK_H

#include "check.h"
#include "ops/autodiff.h"
#include "backend/reference.h"
#include "ops/ops.h"
#include "memfit.h"
#include <stdint.h>
#include <time.h>
#include <unistd.h>

enum { GC_NORMAL = 0, GC_POSITIVE, GC_AWAY_FROM_ZERO };

typedef struct gc_input {
  int ndim;
  int64_t shape[MF_MAX_DIMS];
  int fill;  /* GC_* */
} gc_input;

/* Builds the op under test from the parameter tensors `in`; returns its output. Extra leaves it
 * creates (integer labels...) are filled with uniform integers in [0, label_range). */
typedef mf_tensor (*gc_build_fn)(mf_graph *g, const mf_tensor *in, void *ctx);

static uint64_t gc_rng_state;
static inline double gc_uniform(void) {
  gc_rng_state = gc_rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(gc_rng_state >> 11) / 9007199254740992.0;
}
static inline double gc_normal(void) {
  double u = gc_uniform() + 1e-12, v = gc_uniform();
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
static inline void gc_seed_fresh(void) {
  static uint64_t counter;
  if (!gc_rng_state) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    gc_rng_state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
  }
  gc_rng_state += ++counter * 0x9e3779b97f4a7c15ULL;
}

static inline double gc_loss(const mf_graph *g, void **leaf, int loss) {
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return NAN; }
  double v = ((double *)r.data[loss])[0];
  mf_ref_free(&r);
  return v;
}

/* The analytic gradients r.data[grad] of in[0..nin) (leaf values in leaf) against central finite differences of the loss,
 * at up to ~48 elements of each input from a random start: |fd - analytic| <= tol (1 + |fd|). Returns how many differ
 * (the first 5 printed, named by `name`, with the rng seed that drew the values). */
static inline int gc_compare_fd(const mf_graph *g, void **leaf, const mf_ref *r, int loss, const mf_tensor *in, int nin, double tol,
                                const char *name, uint64_t seed) {
  int bad = 0;
  for (int i = 0; i < nin; i++) {
    const mf_node *pn = &g->nodes[in[i]];
    if (pn->grad < 0) { CHECK(0, "%s: input %d got no gradient", name, i); bad++; continue; }
    const double *ana = r->data[pn->grad];
    double *x = leaf[in[i]];
    int64_t cnt = mf_node_numel(pn);
    int64_t stride = cnt > 48 ? cnt / 48 : 1; /* check up to ~48 elements per input */
    for (int64_t j = (int64_t)(gc_uniform() * (double)stride); j < cnt; j += stride) {
      double x0 = x[j], h = 1e-6 * (1 + fabs(x0));
      x[j] = x0 + h;
      double lp = gc_loss(g, leaf, loss);
      x[j] = x0 - h;
      double lm = gc_loss(g, leaf, loss);
      x[j] = x0;
      double fd = (lp - lm) / (2 * h);
      if (!(fabs(fd - ana[j]) <= tol * (1 + fabs(fd)))) {
        if (bad < 5) fprintf(stderr, "  %s input %d elem %lld: analytic %.10g finite-diff %.10g (seed %llu)\n", name, i, (long long)j, ana[j], fd, (unsigned long long)seed);
        bad++;
      }
    }
  }
  return bad;
}

/* The analytic gradients of an already differentiated (and possibly fused) f64 graph against central finite differences
 * (gc_compare_fd) at elements of each of in[0..nin): every leaf (input, parameter) random normal, then
 * |fd - analytic| <= 1e-6 (1 + |fd|). Returns how many elements differ (the first 5 printed, named by `what`). */
static inline int gc_graph_fd(mf_graph *g, mf_tensor loss, const mf_tensor *in, int nin, const char *what) {
  uint64_t seed = gc_rng_state; /* what the leaves are drawn from, for the report */
  void **leaf = calloc((size_t)g->n, sizeof *leaf); /* [g->n] each leaf's values, f64 */
  for (int id = 0; id < g->n && leaf; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_INPUT && n->op != MF_OP_PARAM) continue;
    int64_t cnt = mf_node_numel(n);
    double *v = leaf[id] = calloc((size_t)cnt, sizeof(double));
    for (int64_t j = 0; j < cnt && v; j++) v[j] = gc_normal();
  }
  mf_ref r = {0};
  char err[256];
  int bad = 0;
  if (!leaf || mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { fprintf(stderr, "  %s: eval: %s\n", what, leaf ? err : "no memory"); bad = 1; }
  if (!bad) bad = gc_compare_fd(g, leaf, &r, loss, in, nin, 1e-6, what, seed);
  if (r.data) mf_ref_free(&r);
  for (int id = 0; id < g->n && leaf; id++) free(leaf[id]);
  free(leaf);
  return bad;
}

/* Optional: overwrites leaf values after the random fill (leaf[id] holds node id's data; in[i] are the
 * inputs under test), for checks that need particular values (a constant matrix, inputs kept away
 * from a kink). */
typedef void (*gc_fill_fn)(const mf_graph *g, const mf_tensor *in, void **leaf, void *fill_ctx);

/* gc_check with values set by `fill` (may be NULL) before the gradients are taken. */
static inline int gc_check_fill(const char *name, int nin, const gc_input *ins, gc_build_fn build, void *ctx,
                                int label_range, double tol, gc_fill_fn fill, void *fill_ctx) {
  gc_seed_fresh();
  uint64_t seed = gc_rng_state;
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor p[8];
  for (int i = 0; i < nin; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "in%d", i);
    p[i] = mf_param(g, nm, ins[i].ndim, ins[i].shape, MF_INIT_ZERO, 0);
  }
  mf_tensor y = build(g, p, ctx);
  int64_t ys[MF_MAX_DIMS];
  int yd = mf_tensor_ndim(g, y);
  for (int i = 0; i < yd; i++) ys[i] = mf_tensor_dim(g, y, i);
  mf_tensor R = y >= 0 ? mf_input(g, "R", yd, ys) : -1;
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  if (mf_graph_error(g) || mf_autodiff(g, loss) < 0) {
    CHECK(0, "%s: building failed: %s", name, mf_graph_error(g));
    mf_graph_free(g);
    return 1;
  }
  /* fill leaves */
  int nn = g->n;
  void **leaf = calloc((size_t)nn, sizeof *leaf);
  for (int id = 0; id < nn; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_INPUT && n->op != MF_OP_PARAM && n->op != MF_OP_BUFFER) continue;
    int64_t cnt = mf_node_numel(n);
    leaf[id] = calloc((size_t)cnt, mf_dtype_size(n->dtype));
    int fill = GC_NORMAL;
    for (int i = 0; i < nin; i++) if (p[i] == id) fill = ins[i].fill;
    for (int64_t j = 0; j < cnt; j++) {
      if (n->dtype == MF_I32) ((int32_t *)leaf[id])[j] = (int32_t)(gc_uniform() * label_range);
      else if (n->op == MF_OP_BUFFER) ((double *)leaf[id])[j] = 0.5 + gc_uniform(); /* running stats */
      else {
        double v = gc_normal();
        if (fill == GC_POSITIVE) v = 0.2 + fabs(v);
        if (fill == GC_AWAY_FROM_ZERO) v = (v < 0 ? -0.1 : 0.1) + v;
        ((double *)leaf[id])[j] = v;
      }
    }
  }
  if (fill) fill(g, p, leaf, fill_ctx);
  mf_ref r;
  char err[256];
  int bad = 0;
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { CHECK(0, "%s: %s", name, err); bad = 1; }
  if (!bad) bad = gc_compare_fd(g, leaf, &r, loss, p, nin, tol, name, seed);
  CHECK(bad == 0, "%s: %d gradient elements differ from finite differences", name, bad);
  mf_ref_free(&r);
  for (int id = 0; id < nn; id++) free(leaf[id]);
  free(leaf);
  mf_graph_free(g);
  return bad;
}

/* Returns the number of mismatching gradient elements (0 = pass); counts CHECKs. */
static inline int gc_check(const char *name, int nin, const gc_input *ins, gc_build_fn build, void *ctx,
                           int label_range, double tol) {
  return gc_check_fill(name, nin, ins, build, ctx, label_range, tol, NULL, NULL);
}

#endif

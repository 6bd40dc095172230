/* test_grad_norm.c — batch norm (train and eval) and group norm: gradient checks for x, gamma
 * and beta, the running-statistics update against a hand computation (and no update on a
 * recompute clone), values against naive loops, the f32 and bf16 fast paths against f64, the same bits with 1 and 4
 * threads, shape errors. */
#include "gradcheck.h"
#include "graph/dtype.h"
#include <omp.h>

typedef struct { int bn, training, groups, stats; } op_ctx;

static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  if (!o->bn) return mf_groupnorm(g, in[0], in[1], in[2], o->groups, 1e-5);
  int64_t C = mf_tensor_dim(g, in[0], 1);
  mf_tensor rm = -1, rv = -1;
  if (o->stats) {
    rm = mf_buffer(g, "rmean", 1, &C, MF_INIT_ZERO, 0);
    rv = mf_buffer(g, "rvar", 1, &C, MF_INIT_ONE, 0);
  }
  return mf_batchnorm(g, in[0], in[1], in[2], rm, rv, o->training, 0.1, 1e-5);
}

static void grads(void) {
  int64_t shapes[3][5] = {{4, 3, 2, 3}, {6, 4}, {2, 3, 2, 2, 2}};
  int nd[3] = {4, 2, 5};
  for (int si = 0; si < 3; si++) {
    int64_t C = shapes[si][1];
    gc_input ins[3] = {{nd[si], {0}, GC_NORMAL}, {1, {C}, GC_NORMAL}, {1, {C}, GC_NORMAL}};
    memcpy(ins[0].shape, shapes[si], sizeof shapes[si]);
    char nm[96];
    for (int tr = 0; tr < 2; tr++)
      for (int st = tr ? 0 : 1; st < 2; st++) {
        op_ctx c = {1, tr, 1, st};
        snprintf(nm, sizeof nm, "batchnorm %s%s, %d dims", tr ? "train" : "eval", tr && !st ? " (no running stats)" : "", nd[si]);
        gc_check(nm, 3, ins, build, &c, 0, 1e-6);
      }
  }
  /* 128 channels: batch norm's blocks hold several channels each (norm.c: bn_block, at up to 16 threads) */
  {
    gc_input ins[3] = {{4, {2, 128, 1, 2}, GC_NORMAL}, {1, {128}, GC_NORMAL}, {1, {128}, GC_NORMAL}};
    for (int st = 0; st < 2; st++) {
      op_ctx c = {1, 1, 1, st};
      gc_check(st ? "batchnorm train, 128 channels" : "batchnorm train, 128 channels (no running stats)", 3, ins, build, &c, 0, 1e-6);
    }
  }
  /* group norm: C = 6 with 1, 2, 3 and 6 groups; [N,C] input */
  int gs[4] = {1, 2, 3, 6};
  for (int i = 0; i < 4; i++) {
    gc_input ins[3] = {{4, {3, 6, 2, 3}, GC_NORMAL}, {1, {6}, GC_NORMAL}, {1, {6}, GC_NORMAL}};
    op_ctx c = {0, 1, gs[i], 0};
    char nm[64];
    snprintf(nm, sizeof nm, "groupnorm %d groups", gs[i]);
    gc_check(nm, 3, ins, build, &c, 0, 1e-6);
  }
  gc_input ins2[3] = {{2, {3, 8}, GC_NORMAL}, {1, {8}, GC_NORMAL}, {1, {8}, GC_NORMAL}};
  op_ctx c = {0, 1, 2, 0};
  gc_check("groupnorm [N,C] 2 groups", 3, ins2, build, &c, 0, 1e-6);
}

/* evaluates g with leaf data; returns the reference result (caller frees) */
static int run(mf_graph *g, void **leaf, mf_ref *r) {
  char err[256];
  int rc = mf_ref_eval(g, leaf, 1.0, r, err, sizeof err);
  CHECK(rc == 0, "eval: %s", err);
  return rc;
}

/* channel 0: x = {1,2 | 3,6} -> mean 3, biased var 3.5, unbiased 14/3;
 * channel 1: x = {0,0 | 0,4} -> mean 1, biased var 3, unbiased 4 */
static void running_stats(void) {
  for (int clone = 0; clone < 2; clone++) {
    mf_graph *g = mf_graph_init(MF_F32);
    int64_t C = 2;
    mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 2, 1, 2});
    mf_tensor ga = mf_input(g, "gamma", 1, &C), be = mf_input(g, "beta", 1, &C);
    mf_tensor rm = mf_buffer(g, "rmean", 1, &C, MF_INIT_ZERO, 0), rv = mf_buffer(g, "rvar", 1, &C, MF_INIT_ONE, 0);
    mf_tensor y = mf_batchnorm(g, x, ga, be, rm, rv, 1, 0.1, 1e-5);
    mf_tensor ye = mf_batchnorm(g, x, ga, be, rm, rv, 0, 0.1, 1e-5); /* eval reads the buffers after the update */
    CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
    if (clone) g->nodes[y].ip[3] = 1;
    float xv[8] = {1, 2, 0, 0, 3, 6, 0, 4}, gv[2] = {2, 0.5f}, bv[2] = {1, -1}, rmv[2] = {0, 0.5f}, rvv[2] = {1, 2};
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[x] = xv; leaf[ga] = gv; leaf[be] = bv; leaf[rm] = rmv; leaf[rv] = rvv;
    mf_ref r;
    if (run(g, leaf, &r) == 0) {
      const float *m = r.data[rm], *v = r.data[rv], *yo = r.data[y], *yev = r.data[ye];
      double em0 = clone ? 0 : 0.3, em1 = clone ? 0.5 : 0.9 * 0.5 + 0.1 * 1;
      double ev0 = clone ? 1 : 0.9 + 0.1 * 14.0 / 3.0, ev1 = clone ? 2 : 0.9 * 2 + 0.1 * 4;
      CHECK_NEAR(m[0], em0, 1e-6, clone ? "clone leaves running mean 0" : "running mean 0");
      CHECK_NEAR(m[1], em1, 1e-6, clone ? "clone leaves running mean 1" : "running mean 1");
      CHECK_NEAR(v[0], ev0, 1e-6, clone ? "clone leaves running var 0" : "running var 0 (unbiased)");
      CHECK_NEAR(v[1], ev1, 1e-6, clone ? "clone leaves running var 1" : "running var 1 (unbiased)");
      /* train output normalises with the biased batch variance: x[1,0,0,1] = 6 */
      CHECK_NEAR(yo[5], (6 - 3) / sqrt(3.5 + 1e-5) * 2 + 1, 1e-5, "train output");
      CHECK_NEAR(yo[7], (4 - 1) / sqrt(3 + 1e-5) * 0.5 - 1, 1e-5, "train output channel 1");
      /* eval output uses the (updated) running stats */
      CHECK_NEAR(yev[5], (6 - em0) / sqrt(ev0 + 1e-5) * 2 + 1, 1e-5, "eval output");
      CHECK_NEAR(yev[2], (0 - em1) / sqrt(ev1 + 1e-5) * 0.5 - 1, 1e-5, "eval output channel 1");
      mf_ref_free(&r);
    }
    free(leaf);
    mf_graph_free(g);
  }
}

/* group norm forward against a naive loop (f64) */
static void groupnorm_values(void) {
  mf_graph *g = mf_graph_init(MF_F64);
  int64_t C = 6;
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 6, 2, 2});
  mf_tensor ga = mf_input(g, "gamma", 1, &C), be = mf_input(g, "beta", 1, &C);
  mf_tensor y = mf_groupnorm(g, x, ga, be, 3, 1e-5);
  double xv[48], gv[6], bv[6];
  for (int i = 0; i < 48; i++) xv[i] = gc_normal() * 3 + 1;
  for (int i = 0; i < 6; i++) { gv[i] = gc_normal(); bv[i] = gc_normal(); }
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[x] = xv; leaf[ga] = gv; leaf[be] = bv;
  mf_ref r;
  if (run(g, leaf, &r) == 0) {
    const double *yo = r.data[y];
    int bad = 0;
    for (int n = 0; n < 2; n++)
      for (int gi = 0; gi < 3; gi++) {
        const double *p = xv + n * 24 + gi * 8;
        double m = 0, v = 0;
        for (int i = 0; i < 8; i++) m += p[i] / 8;
        for (int i = 0; i < 8; i++) v += (p[i] - m) * (p[i] - m) / 8;
        for (int i = 0; i < 8; i++) {
          int c = gi * 2 + i / 4;
          double want = (p[i] - m) / sqrt(v + 1e-5) * gv[c] + bv[c];
          bad += fabs(yo[n * 24 + gi * 8 + i] - want) > 1e-12;
        }
      }
    CHECK(bad == 0, "groupnorm values: %d wrong", bad);
    mf_ref_free(&r);
  }
  free(leaf);
  mf_graph_free(g);
}

/* the node that holds parameter t's data and gradient: its f32 master in a bf16 graph (the ops read a copy) */
static int master_of(const mf_graph *g, mf_tensor t) { return g->nodes[t].op == MF_OP_PARAM_LP ? g->nodes[t].master : t; }

/* sum(norm(x) * R) in a graph of dtype dt on x [xs], R [xs] and gamma, beta[, rm, rv] [C] from vals (x, gamma, beta, R,
 * rm, rv; rm / rv only with stats), through the reference evaluator: res[k] (malloc'd, caller frees) gets the output,
 * dx and dgamma in double, st[k] the storage type each was rounded to (a parameter gradient's: the kernel output it
 * accumulates) */
static void norm_eval(mf_dtype dt, int bn, int training, int groups, int stats, const int64_t *xs, const double *const *vals,
                      double **res, mf_dtype *st) {
  int64_t C = xs[1];
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_param(g, "x", 4, xs, MF_INIT_ZERO, 0), ga = mf_param(g, "g", 1, &C, MF_INIT_ZERO, 0);
  mf_tensor be = mf_param(g, "b", 1, &C, MF_INIT_ZERO, 0), R = mf_input(g, "R", 4, xs), rm = -1, rv = -1;
  if (stats) {
    rm = mf_buffer(g, "rm", 1, &C, MF_INIT_ZERO, 0);
    rv = mf_buffer(g, "rv", 1, &C, MF_INIT_ONE, 0);
  }
  mf_tensor y = bn ? mf_batchnorm(g, x, ga, be, rm, rv, training, 0.1, 1e-5) : mf_groupnorm(g, x, ga, be, groups, 1e-5);
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  int ids[6] = {master_of(g, x), master_of(g, ga), master_of(g, be), R, rm, rv}, nl = stats ? 6 : 4;
  for (int i = 0; i < nl; i++) {
    const mf_node *nn = &g->nodes[ids[i]];
    leaf[ids[i]] = malloc(mf_node_bytes(nn));
    for (int64_t j = 0; j < mf_node_numel(nn); j++) mf_st(leaf[ids[i]], nn->dtype, j, vals[i][j]);
  }
  mf_ref r;
  if (run(g, leaf, &r) == 0) {
    int want[3] = {y, g->nodes[master_of(g, x)].grad, g->nodes[master_of(g, ga)].grad};
    for (int k = 0; k < 3; k++) {
      const mf_node *nn = &g->nodes[want[k]];
      st[k] = nn->op == MF_OP_ACC_GRAD ? g->nodes[nn->src[0]].dtype : nn->dtype;
      res[k] = malloc(sizeof(double) * (size_t)mf_node_numel(nn));
      for (int64_t j = 0; j < mf_node_numel(nn); j++) res[k][j] = mf_ld(r.data[want[k]], nn->dtype, j);
    }
    mf_ref_free(&r);
  }
  for (int i = 0; i < nl; i++) free(leaf[ids[i]]);
  free(leaf);
  mf_graph_free(g);
}

/* the same forward + backward in f32 (fast paths) and f64 agree */
static void f32_vs_f64(int bn, int training, int groups) {
  double *res[2][3] = {{0}};
  int64_t xs[4] = {3, 8, 5, 7}, C = 8, cnt = 3 * 8 * 5 * 7;
  double *xv = malloc(sizeof(double) * (size_t)cnt), *Rv = malloc(sizeof(double) * (size_t)cnt), gv[8], bv[8], rmv[8], rvv[8];
  for (int64_t i = 0; i < cnt; i++) { xv[i] = gc_normal() * 2 + 0.5; Rv[i] = gc_normal(); }
  for (int i = 0; i < 8; i++) { gv[i] = gc_normal(); bv[i] = gc_normal(); rmv[i] = gc_normal(); rvv[i] = 0.5 + gc_uniform(); }
  const double *vals[6] = {xv, gv, bv, Rv, rmv, rvv};
  mf_dtype st[3];
  for (int t = 0; t < 2; t++) norm_eval(t ? MF_F64 : MF_F32, bn, training, groups, 1, xs, vals, res[t], st);
  const char *what[3] = {"output", "dx", "dgamma"};
  int64_t cnts[3] = {cnt, cnt, C};
  for (int k = 0; k < 3; k++) {
    if (!res[0][k] || !res[1][k]) { CHECK(0, "missing results"); continue; }
    double worst = 0, scale = 0;
    for (int64_t j = 0; j < cnts[k]; j++) { worst = fmax(worst, fabs(res[0][k][j] - res[1][k][j])); scale = fmax(scale, fabs(res[1][k][j])); }
    CHECK(worst <= 1e-4 * (1 + scale), "%s %s f32 vs f64 %s: worst %g (scale %g)", bn ? "batchnorm" : "groupnorm",
          training ? "train" : "eval", what[k], worst, scale);
    free(res[0][k]);
    free(res[1][k]);
  }
  free(xv);
  free(Rv);
}

/* The bf16 kernels (norm.c: the f32 path's lanes on bf16 values, batch norm by blocks of channels) against the
 * generic path: the same graph in f64 on the same values (the inputs rounded to bf16 first, so that only the kernels differ). Every
 * sum runs in double over values exact in double, and each result is rounded once to its storage type (through
 * float: double rounding adds at most 2^-24 relative), so each element is within (u + 2^-20) |ref| of the f64
 * result, u = 2^-8 for a result stored in bf16 (a parameter gradient: the kernel output it accumulates exactly) and
 * 2^-24 for one in f32, plus 1e-12 of the largest |ref| for the double
 * arithmetic's own rounding where terms cancel. C = 80 at 16x16 makes several channel blocks. */
static void bf16_vs_f64(int bn, int groups) {
  int64_t xs[4] = {3, 80, 16, 16}, C = 80, cnt = 3 * 80 * 16 * 16;
  double *vals[4] = {malloc(sizeof(double) * (size_t)cnt), malloc(sizeof(double) * 80), malloc(sizeof(double) * 80),
                     malloc(sizeof(double) * (size_t)cnt)}; /* x, gamma, beta, R: bf16 values */
  for (int i = 0; i < 4; i++)
    for (int64_t j = 0; j < (i == 1 || i == 2 ? C : cnt); j++)
      vals[i][j] = mf_bf16_to_f32(mf_f32_to_bf16((float)(i == 0 ? gc_normal() * 2 + 0.5 : gc_normal())));
  double *res[2][3] = {{0}};
  mf_dtype rdt[3] = {MF_F64, MF_F64, MF_F64}, st64[3];
  for (int t = 0; t < 2; t++) norm_eval(t ? MF_F64 : MF_BF16, bn, 1, groups, 0, xs, (const double *const *)vals, res[t], t ? st64 : rdt);
  const char *what[3] = {"output", "dx", "dgamma"};
  int64_t cnts[3] = {cnt, cnt, C};
  for (int k = 0; k < 3; k++) {
    if (!res[0][k] || !res[1][k]) { CHECK(0, "missing results"); continue; }
    double u = rdt[k] == MF_BF16 ? 0x1p-8 : 0x1p-24, scale = 0, worst = 0;
    int64_t bad = -1;
    for (int64_t j = 0; j < cnts[k]; j++) scale = fmax(scale, fabs(res[1][k][j]));
    for (int64_t j = 0; j < cnts[k]; j++) {
      double d = fabs(res[0][k][j] - res[1][k][j]), tol = (u + 0x1p-20) * fabs(res[1][k][j]) + 1e-12 * scale;
      if (d > tol && bad < 0) bad = j;
      worst = fmax(worst, d / (fabs(res[1][k][j]) + 1e-300));
    }
    CHECK(bad < 0, "%s bf16 vs f64 %s (%s): element %lld is %.9g, want %.9g (relative bound %g)", bn ? "batchnorm" : "groupnorm",
          what[k], mf_dtype_name(rdt[k]), (long long)bad, bad < 0 ? 0 : res[0][k][bad], bad < 0 ? 0 : res[1][k][bad], u + 0x1p-20);
    free(res[0][k]);
    free(res[1][k]);
  }
  for (int i = 0; i < 4; i++) free(vals[i]);
}

/* large enough for the parallel paths: 1 and 4 threads give bit-identical outputs and gradients, in f32 and bf16;
 * with C = 80 batch norm's channel blocks differ between the two thread counts (norm.c: bn_block), so this also
 * says that the blocking does not change the bits */
static void thread_determinism(int bn, mf_dtype dt) {
  int64_t xs[4] = {4, 80, 32, 32}, C = 80;
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_param(g, "x", 4, xs, MF_INIT_ZERO, 0), ga = mf_param(g, "g", 1, &C, MF_INIT_ZERO, 0);
  mf_tensor be = mf_param(g, "b", 1, &C, MF_INIT_ZERO, 0), R = mf_input(g, "R", 4, xs);
  mf_tensor rm = mf_buffer(g, "rm", 1, &C, MF_INIT_ZERO, 0), rv = mf_buffer(g, "rv", 1, &C, MF_INIT_ONE, 0);
  mf_tensor y = bn ? mf_batchnorm(g, x, ga, be, rm, rv, 1, 0.1, 1e-5) : mf_groupnorm(g, x, ga, be, 4, 1e-5);
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  int ids[6] = {master_of(g, x), R, master_of(g, ga), master_of(g, be), rm, rv};
  for (int i = 0; i < 6; i++) {
    const mf_node *nn = &g->nodes[ids[i]];
    leaf[ids[i]] = malloc(mf_node_bytes(nn));
    for (int64_t j = 0; j < mf_node_numel(nn); j++)
      mf_st(leaf[ids[i]], nn->dtype, j, i == 0 ? gc_normal() * 3 + 2 : i < 4 ? gc_normal() : i == 4 ? 0.0 : 1.0);
  }
  int want[5] = {y, g->nodes[master_of(g, x)].grad, g->nodes[master_of(g, ga)].grad, g->nodes[master_of(g, be)].grad, rv};
  mf_ref r[2];
  int saved = omp_get_max_threads(), ok = 1;
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t ? 4 : 1);
    ok &= run(g, leaf, &r[t]) == 0;
  }
  omp_set_num_threads(saved);
  if (ok) {
    for (int k = 0; k < 5; k++)
      CHECK(memcmp(r[0].data[want[k]], r[1].data[want[k]], mf_node_bytes(&g->nodes[want[k]])) == 0,
            "%s %s: result %d differs between 1 and 4 threads", bn ? "batchnorm" : "groupnorm", mf_dtype_name(dt), k);
    mf_ref_free(&r[0]);
    mf_ref_free(&r[1]);
  }
  for (int i = 0; i < 6; i++) free(leaf[ids[i]]);
  free(leaf);
  mf_graph_free(g);
}

static void errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t C = 3, C4 = 4;
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 4, 5, 5});
  mf_batchnorm(g, x, mf_input(g, "g", 1, &C), mf_input(g, "b", 1, &C4), -1, -1, 1, 0.1, 1e-5);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "batchnorm") && strstr(e, "[3]") && strstr(e, "[2,4,5,5]"), "gamma shape: %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){2, 4, 5, 5});
  mf_groupnorm(g, x, mf_input(g, "g", 1, &C4), mf_input(g, "b", 1, &C4), 3, 1e-5);
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "groupnorm") && strstr(e, "3 groups") && strstr(e, "[2,4,5,5]"), "groups: %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 2, (int64_t[]){2, 4});
  mf_batchnorm(g, x, mf_input(g, "g", 1, &C4), mf_input(g, "b", 1, &C4), -1, -1, 0, 0.1, 1e-5);
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "batchnorm") && strstr(e, "running"), "eval without stats: %s", e ? e : "(none)");
  mf_graph_free(g);
}

int main(void) {
  grads();
  running_stats();
  groupnorm_values();
  f32_vs_f64(1, 1, 1);
  f32_vs_f64(1, 0, 1);
  f32_vs_f64(0, 1, 4);
  f32_vs_f64(0, 1, 1);
  bf16_vs_f64(1, 1);
  bf16_vs_f64(0, 4);
  for (int d = 0; d < 2; d++) {
    thread_determinism(1, d ? MF_BF16 : MF_F32);
    thread_determinism(0, d ? MF_BF16 : MF_F32);
  }
  errors();
  return check_finish("test_grad_norm");
}

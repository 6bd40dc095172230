/* test_grad_loss.c — MSE / L1 (mean and sum) and softmax cross-entropy: gradient checks (to the
 * prediction and the target), hand-computed values, output dtype, thread-count determinism and
 * shape errors. */
#include "gradcheck.h"
#include "graph/dtype.h"
#include <omp.h>

typedef struct { int kind, sum, nlab; } op_ctx;

/* MSE/L1 with either reduction through the internal node (there is no public l1-sum builder) */
static mf_tensor loss_node(mf_graph *g, int kind, int sum, mf_tensor p, mf_tensor t) {
  if (kind == MF_LOSS_MSE) return sum ? mf_mse_loss_sum(g, p, t) : mf_mse_loss(g, p, t);
  if (!sum) return mf_l1_loss(g, p, t);
  int id = mf_l1_loss(g, p, t);
  if (id >= 0) g->nodes[id].ip[1] = 1;
  return id;
}

static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  if (o->kind == 2) {
    mf_tensor lab = mf_input_typed(g, "labels", MF_I32, 1, (int64_t[]){mf_tensor_dim(g, in[0], 0)});
    return mf_softmax_ce(g, in[0], lab);
  }
  if (o->kind == 3) /* loss of a loss: the scalar is usable downstream */
    return mf_mul(g, mf_mse_loss(g, in[0], in[1]), mf_l1_loss(g, in[0], in[1]));
  return loss_node(g, o->kind, o->sum, in[0], in[1]);
}

/* evaluates `out` with the given data for inputs a and b (doubles converted to their dtypes) */
static double eval2(mf_graph *g, mf_tensor a, const void *av, mf_tensor b, const void *bv, mf_tensor out) {
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[a] = (void *)av;
  leaf[b] = (void *)bv;
  mf_ref r;
  char err[256];
  double v = NAN;
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
    v = mf_ld(r.data[out], g->nodes[out].dtype, 0);
    mf_ref_free(&r);
  } else CHECK(0, "eval: %s", err);
  free(leaf);
  return v;
}

static void values(void) {
  mf_dtype dts[3] = {MF_F64, MF_F32, MF_BF16};
  for (int t = 0; t < 3; t++) {
    mf_graph *g = mf_graph_init(dts[t]);
    mf_tensor p = mf_input(g, "p", 1, (int64_t[]){3}), y = mf_input(g, "y", 1, (int64_t[]){3});
    mf_tensor m = mf_mse_loss(g, p, y), ms = mf_mse_loss_sum(g, p, y), l1 = mf_l1_loss(g, p, y);
    CHECK(mf_tensor_dtype(g, m) == (dts[t] == MF_F64 ? MF_F64 : MF_F32) && mf_tensor_numel(g, m) == 1, "loss dtype/shape for %s",
          mf_dtype_name(dts[t]));
    char pv[24], yv[24];
    double pd[3] = {1, 2, 3}, yd[3] = {0, 2, 5};
    for (int i = 0; i < 3; i++) { mf_st(pv, dts[t], i, pd[i]); mf_st(yv, dts[t], i, yd[i]); }
    CHECK_NEAR(eval2(g, p, pv, y, yv, m), 5.0 / 3.0, 1e-6, "mse mean of (1,0,4)");
    CHECK_NEAR(eval2(g, p, pv, y, yv, ms), 5.0, 1e-6, "mse sum of (1,0,4)");
    CHECK_NEAR(eval2(g, p, pv, y, yv, l1), 1.0, 1e-6, "l1 mean of (1,0,2)");
    mf_graph_free(g);

    /* softmax CE: rows [1,2,3] label 2 -> log(1+e^-1+e^-2); [0,0,0] label 1 -> log 3 */
    g = mf_graph_init(dts[t]);
    mf_tensor lg = mf_input(g, "logits", 2, (int64_t[]){2, 3});
    mf_tensor lb = mf_input_typed(g, "labels", MF_I32, 1, (int64_t[]){2});
    mf_tensor ce = mf_softmax_ce(g, lg, lb);
    char lv[48];
    double ld[6] = {1, 2, 3, 0, 0, 0};
    for (int i = 0; i < 6; i++) mf_st(lv, dts[t], i, ld[i]);
    int32_t labs[2] = {2, 1};
    CHECK_NEAR(eval2(g, lg, lv, lb, labs, ce), 0.7531091265562451, dts[t] == MF_F64 ? 1e-14 : 1e-6, "softmax CE hand value");
    labs[1] = -1; /* ignored row: mean over the one valid row */
    CHECK_NEAR(eval2(g, lg, lv, lb, labs, ce), 0.4076059644443804, dts[t] == MF_F64 ? 1e-14 : 1e-6, "softmax CE with an ignored label");
    mf_graph_free(g);
  }
  /* huge logits stay finite (log-sum-exp) */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor lg = mf_input(g, "logits", 2, (int64_t[]){1, 2});
  mf_tensor lb = mf_input_typed(g, "labels", MF_I32, 1, (int64_t[]){1});
  mf_tensor ce = mf_softmax_ce(g, lg, lb);
  float big[2] = {1000.f, 0.f};
  int32_t lab1[1] = {1};
  CHECK_NEAR(eval2(g, lg, big, lb, lab1, ce), 1000.0, 1e-3, "softmax CE with logits 1000");
  mf_graph_free(g);
}

static void determinism(void) {
  int64_t n = 300001;
  float *p = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) { p[i] = (float)gc_normal(); y[i] = (float)gc_normal(); }
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor pt = mf_input(g, "p", 1, &n), yt = mf_input(g, "y", 1, &n);
  mf_tensor m = mf_mse_loss(g, pt, yt);
  double ref = 0;
  for (int64_t i = 0; i < n; i++) ref += ((double)p[i] - y[i]) * ((double)p[i] - y[i]);
  ref /= (double)n;
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  double v1 = eval2(g, pt, p, yt, y, m);
  omp_set_num_threads(4);
  double v4 = eval2(g, pt, p, yt, y, m);
  omp_set_num_threads(saved);
  CHECK(v1 == v4, "mse on 1 and 4 threads differ: %.9g vs %.9g", v1, v4);
  CHECK_NEAR(v1, ref, 1e-6 * ref, "mse of 300001 elements vs double loop");
  mf_graph_free(g);
  free(p);
  free(y);
}

static void errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_mse_loss(g, mf_input(g, "p", 2, (int64_t[]){4, 3}), mf_input(g, "y", 2, (int64_t[]){4, 2}));
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "mse_loss") && strstr(e, "[4,3]") && strstr(e, "[4,2]"), "mse error was %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_softmax_ce(g, mf_input(g, "l", 2, (int64_t[]){4, 3}), mf_input(g, "y", 1, (int64_t[]){4}));
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "softmax_ce") && strstr(e, "[4,3]") && strstr(e, "f32"), "labels must be i32: %s", e ? e : "(none)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_softmax_ce(g, mf_input(g, "l", 2, (int64_t[]){4, 3}), mf_input_typed(g, "y", MF_I32, 1, (int64_t[]){5}));
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "softmax_ce") && strstr(e, "[4,3]") && strstr(e, "[5]"), "label count: %s", e ? e : "(none)");
  mf_graph_free(g);
}

int main(void) {
  const char *kn[2] = {"mse", "l1"};
  for (int kind = 0; kind < 2; kind++)
    for (int sum = 0; sum < 2; sum++) {
      op_ctx c = {kind, sum, 0};
      gc_input ins[2] = {{4, {2, 3, 2, 2}, GC_NORMAL}, {4, {2, 3, 2, 2}, GC_NORMAL}};
      char nm[64];
      snprintf(nm, sizeof nm, "%s %s", kn[kind], sum ? "sum" : "mean");
      gc_check(nm, 2, ins, build, &c, 0, 1e-6);
    }
  {
    op_ctx c = {3, 0, 0};
    gc_input ins[2] = {{2, {5, 4}, GC_NORMAL}, {2, {5, 4}, GC_NORMAL}};
    gc_check("mse*l1", 2, ins, build, &c, 0, 1e-6);
    c.kind = 2;
    gc_input lg = {2, {6, 7}, GC_NORMAL};
    gc_check("softmax_ce", 1, &lg, build, &c, 7, 1e-6);
    gc_check("softmax_ce with ignored labels", 1, &lg, build, &c, 10, 1e-6);
    gc_input lg1 = {2, {1, 2}, GC_NORMAL};
    gc_check("softmax_ce 1x2", 1, &lg1, build, &c, 2, 1e-6);
  }
  values();
  determinism();
  errors();
  return check_finish("test_grad_loss");
}

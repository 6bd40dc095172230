/* test_grad_shape.c — concat (incl. chains past MF_MAX_SRC inputs), slice, reshape, permute,
 * sum/mean and expand: finite-difference gradient checks, forward values against naive loops in
 * f32/f64/bf16, and shape errors that name the op and the shapes. */
#include "gradcheck.h"
#include "graph/dtype.h"
#include <omp.h>

typedef struct { int kind, axis, a, b; unsigned mask; int keep; int perm[5]; } op_ctx;

static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  switch (o->kind) {
  case 0: return mf_concat(g, o->a, in, o->axis);
  case 1: { /* 10-way concat from 3 params (a chain of two nodes) */
    mf_tensor xs[10];
    for (int i = 0; i < 10; i++) xs[i] = in[i % 3];
    return mf_concat(g, 10, xs, o->axis);
  }
  case 2: return mf_slice(g, in[0], o->axis, o->a, o->b);
  case 3: return mf_reshape(g, in[0], 3, (int64_t[]){o->a, -1, o->b});
  case 4: return mf_permute(g, in[0], o->perm);
  case 5: return mf_transpose(g, in[0], o->a, o->b);
  case 6: return mf_sum(g, in[0], o->mask, o->keep);
  case 7: return mf_mean(g, in[0], o->mask, o->keep);
  case 8: { /* expand in[0] to the shape of an (unused) input of shape [2,3,4,5] */
    mf_tensor like = mf_input(g, "like", 4, (int64_t[]){2, 3, 4, 5});
    return mf_expand(g, in[0], like, 0.7);
  }
  case 9: { /* slice_bwd (its gradient is a slice) */
    mf_tensor like = mf_input(g, "like", 3, (int64_t[]){3, 7, 2});
    return mf_slice_bwd(g, in[0], like, 1, o->a);
  }
  default: return mf_sum(g, mf_slice(g, mf_concat(g, 2, in, 1), 1, 1, 6), 0x5, 1); /* composition */
  }
}

/* Evaluates the graph with `x` (f64 values, converted to the input's dtype) in input node `in`;
 * copies node `out` as doubles into y. */
static void eval1(mf_graph *g, mf_tensor in, const double *x, mf_tensor out, double *y) {
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  const mf_node *ni = &g->nodes[in];
  leaf[in] = malloc(mf_node_bytes(ni));
  for (int64_t i = 0; i < mf_node_numel(ni); i++) mf_st(leaf[in], ni->dtype, i, x[i]);
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { CHECK(0, "eval: %s", err); free(leaf[in]); free(leaf); return; }
  const mf_node *no = &g->nodes[out];
  for (int64_t i = 0; i < mf_node_numel(no); i++) y[i] = mf_ld(r.data[out], no->dtype, i);
  mf_ref_free(&r);
  free(leaf[in]);
  free(leaf);
}

/* naive reference: sum over mask of x [2,3,4,5], output in keepdim layout [o0..o3] */
static void naive_sum(const double *x, unsigned mask, double *y) {
  int64_t ne[4] = {2, 3, 4, 5}, oe[4];
  for (int i = 0; i < 4; i++) oe[i] = (mask & (1u << i)) ? 1 : ne[i];
  memset(y, 0, sizeof(double) * 120);
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 4; c++)
        for (int d = 0; d < 5; d++) {
          int64_t ia[4] = {a, b, c, d}, o = 0;
          for (int i = 0; i < 4; i++) o = o * oe[i] + ((mask & (1u << i)) ? 0 : ia[i]);
          y[o] += x[((a * 3 + b) * 4 + c) * 5 + d];
        }
}

static void check_forward_values(void) {
  double x[120], y[120], ref[120];
  for (int i = 0; i < 120; i++) x[i] = gc_normal();
  mf_dtype dts[3] = {MF_F64, MF_F32, MF_BF16};
  for (int t = 0; t < 3; t++) {
    double tol = dts[t] == MF_F64 ? 1e-12 : dts[t] == MF_F32 ? 1e-5 : 0.1;
    /* every mask, keepdim and not (the layout is the same) */
    for (unsigned mask = 0; mask < 16; mask++) {
      mf_graph *g = mf_graph_init(dts[t]);
      mf_tensor in = mf_input(g, "x", 4, (int64_t[]){2, 3, 4, 5});
      int keep = (int)(mask & 1) || mask == 15;
      mf_tensor s = mf_sum(g, in, mask, keep);
      mf_tensor m = mf_mean(g, in, mask, 0);
      eval1(g, in, x, s, y);
      naive_sum(x, mask ? mask : 15u, ref);
      int64_t cnt = mf_tensor_numel(g, s), bad = 0;
      double div = 120.0 / (double)cnt;
      for (int64_t i = 0; i < cnt; i++) bad += fabs(y[i] - ref[i]) > tol * (1 + fabs(ref[i]));
      CHECK(bad == 0, "sum mask 0x%x dtype %s: %lld wrong", mask, mf_dtype_name(dts[t]), (long long)bad);
      eval1(g, in, x, m, y);
      bad = 0;
      for (int64_t i = 0; i < cnt; i++) bad += fabs(y[i] - ref[i] / div) > tol * (1 + fabs(ref[i]));
      CHECK(bad == 0, "mean mask 0x%x dtype %s: %lld wrong", mask, mf_dtype_name(dts[t]), (long long)bad);
      if (mask == 0) CHECK(mf_tensor_ndim(g, s) == 1 && mf_tensor_ndim(g, m) == 1 && mf_tensor_dim(g, m, 0) == 1, "scalar shapes");
      if (mask == 15) CHECK(mf_tensor_ndim(g, s) == 4 && mf_tensor_numel(g, s) == 1, "keepdim over all axes");
      mf_graph_free(g);
    }
    /* permute (2,0,3,1) against index arithmetic */
    mf_graph *g = mf_graph_init(dts[t]);
    mf_tensor in = mf_input(g, "x", 4, (int64_t[]){2, 3, 4, 5});
    mf_tensor p = mf_permute(g, in, (int[]){2, 0, 3, 1});
    CHECK(mf_tensor_dim(g, p, 0) == 4 && mf_tensor_dim(g, p, 1) == 2 && mf_tensor_dim(g, p, 2) == 5 && mf_tensor_dim(g, p, 3) == 3, "permute shape");
    eval1(g, in, x, p, y);
    int bad = 0;
    for (int c = 0; c < 4; c++)
      for (int a = 0; a < 2; a++)
        for (int d = 0; d < 5; d++)
          for (int b = 0; b < 3; b++) {
            double want = x[((a * 3 + b) * 4 + c) * 5 + d];
            bad += fabs(y[((c * 2 + a) * 5 + d) * 3 + b] - want) > tol * (1 + fabs(want));
          }
    CHECK(bad == 0, "permute values %s: %d wrong", mf_dtype_name(dts[t]), bad);
    mf_graph_free(g);
  }
  /* a long concat chain keeps the inputs in order */
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor in = mf_input(g, "x", 2, (int64_t[]){1, 20});
  mf_tensor parts[20];
  for (int i = 0; i < 20; i++) parts[i] = mf_slice(g, in, 1, i, i + 1);
  mf_tensor rev[20];
  for (int i = 0; i < 20; i++) rev[i] = parts[19 - i];
  mf_tensor c = mf_concat(g, 20, rev, -1);
  CHECK(mf_tensor_dim(g, c, 1) == 20, "20-way concat width %lld", (long long)mf_tensor_dim(g, c, 1));
  eval1(g, in, x, c, y);
  int bad = 0;
  for (int i = 0; i < 20; i++) bad += y[i] != x[19 - i];
  CHECK(bad == 0, "20-way concat order: %d wrong", bad);
  /* slice_bwd zero-pads */
  mf_tensor like = mf_input(g, "like", 2, (int64_t[]){1, 30});
  mf_tensor sb = mf_slice_bwd(g, in, like, 1, 7);
  eval1(g, in, x, sb, y);
  bad = 0;
  for (int i = 0; i < 30; i++) bad += y[i] != (i >= 7 && i < 27 ? x[i - 7] : 0.0);
  CHECK(bad == 0, "slice_bwd padding: %d wrong", bad);
  mf_graph_free(g);
}

/* large reductions: 1 and 4 threads give identical bits, and f32 matches a double loop */
static void reduce_threads(void) {
  int64_t xs[4] = {8, 16, 40, 40}, cnt = 8 * 16 * 40 * 40;
  float *xv = malloc(4 * (size_t)cnt);
  for (int64_t i = 0; i < cnt; i++) xv[i] = (float)(gc_normal() + 0.5);
  unsigned masks[5] = {0, 0xd, 0x1, 0x3, 0xc};
  for (int mi = 0; mi < 5; mi++) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor x = mf_input(g, "x", 4, xs);
    mf_tensor s = mf_sum(g, x, masks[mi], 0);
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[x] = xv;
    mf_ref r[2];
    char err[256];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    int ok = mf_ref_eval(g, leaf, 1.0, &r[0], err, sizeof err) == 0;
    omp_set_num_threads(4);
    ok &= mf_ref_eval(g, leaf, 1.0, &r[1], err, sizeof err) == 0;
    omp_set_num_threads(saved);
    CHECK(ok, "eval: %s", err);
    if (ok) {
      CHECK(memcmp(r[0].data[s], r[1].data[s], mf_node_bytes(&g->nodes[s])) == 0, "sum mask 0x%x: 1 vs 4 threads differ", masks[mi]);
      if (masks[mi] == 0) {
        double ref = 0;
        for (int64_t i = 0; i < cnt; i++) ref += xv[i];
        CHECK_NEAR(((float *)r[0].data[s])[0], ref, 1e-5 * fabs(ref), "full f32 sum vs double loop");
      }
      mf_ref_free(&r[0]);
      mf_ref_free(&r[1]);
    }
    free(leaf);
    mf_graph_free(g);
  }
  free(xv);
}

static void expect_error(const char *what, mf_graph *g, const char *s1, const char *s2, const char *s3) {
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, s1) && (!s2 || strstr(e, s2)) && (!s3 || strstr(e, s3)), "%s: error was: %s", what, e ? e : "(none)");
  mf_graph_free(g);
}

static void check_errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4}), b = mf_input(g, "b", 3, (int64_t[]){2, 5, 5});
  mf_concat(g, 2, (mf_tensor[]){a, b}, 1);
  expect_error("concat", g, "concat", "[2,3,4]", "[2,5,5]");
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4});
  mf_slice(g, a, 2, 1, 6);
  expect_error("slice", g, "slice", "[2,3,4]", "[1,6)");
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4});
  mf_reshape(g, a, 2, (int64_t[]){5, 5});
  expect_error("reshape", g, "reshape", "[2,3,4]", "[5,5]");
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4});
  mf_permute(g, a, (int[]){0, 0, 1});
  expect_error("permute", g, "permute", "[2,3,4]", "(0,0,1)");
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4});
  mf_sum(g, a, 0x8, 0);
  expect_error("sum", g, "sum", "[2,3,4]", NULL);
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4});
  b = mf_input(g, "b", 2, (int64_t[]){2, 4});
  mf_expand(g, b, a, 1.0);
  expect_error("expand", g, "expand", "[2,4]", "[2,3,4]");
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4});
  mf_transpose(g, a, 0, 3);
  expect_error("transpose", g, "transpose", "[2,3,4]", NULL);
}

int main(void) {
  gc_input x4 = {4, {2, 3, 4, 5}, GC_NORMAL};
  /* concat along each axis, 2 and 3 inputs */
  for (int ax = 0; ax < 4; ax++) {
    gc_input ins[3] = {x4, x4, x4};
    ins[1].shape[ax] = 2;
    ins[2].shape[ax] = 1;
    op_ctx c = {.kind = 0, .axis = ax, .a = 3};
    char nm[64];
    snprintf(nm, sizeof nm, "concat3 axis %d", ax);
    gc_check(nm, 3, ins, build, &c, 0, 1e-6);
    c.a = 2;
    snprintf(nm, sizeof nm, "concat2 axis %d", ax);
    gc_check(nm, 2, ins, build, &c, 0, 1e-6);
  }
  {
    gc_input ins[3] = {{3, {2, 1, 3}, 0}, {3, {2, 2, 3}, 0}, {3, {2, 3, 3}, 0}};
    op_ctx c = {.kind = 1, .axis = 1};
    gc_check("concat 10 inputs (chain, repeated tensors)", 3, ins, build, &c, 0, 1e-6);
  }
  for (int ax = 0; ax < 4; ax++) {
    op_ctx c = {.kind = 2, .axis = ax, .a = 1, .b = ax == 0 ? 2 : 3};
    char nm[64];
    snprintf(nm, sizeof nm, "slice axis %d", ax);
    gc_check(nm, 1, &x4, build, &c, 0, 1e-6);
  }
  {
    op_ctx c = {.kind = 2, .axis = -1, .a = 0, .b = 2};
    gc_check("slice axis -1", 1, &x4, build, &c, 0, 1e-6);
    c = (op_ctx){.kind = 3, .a = 6, .b = 5};
    gc_check("reshape [2,3,4,5]->[6,-1,5]", 1, &x4, build, &c, 0, 1e-6);
    c = (op_ctx){.kind = 4, .perm = {2, 0, 3, 1}};
    gc_check("permute (2,0,3,1)", 1, &x4, build, &c, 0, 1e-6);
    c = (op_ctx){.kind = 4, .perm = {3, 2, 1, 0}};
    gc_check("permute (3,2,1,0)", 1, &x4, build, &c, 0, 1e-6);
    c = (op_ctx){.kind = 5, .a = 1, .b = -1};
    gc_check("transpose 1,-1", 1, &x4, build, &c, 0, 1e-6);
  }
  unsigned masks[] = {0, 1, 2, 4, 8, 0x5, 0xd, 0xe, 0xf, 0x3};
  for (int i = 0; i < 10; i++)
    for (int keep = 0; keep < 2; keep++)
      for (int mean = 0; mean < 2; mean++) {
        op_ctx c = {.kind = mean ? 7 : 6, .mask = masks[i], .keep = keep};
        char nm[64];
        snprintf(nm, sizeof nm, "%s mask 0x%x keepdim %d", mean ? "mean" : "sum", masks[i], keep);
        gc_check(nm, 1, &x4, build, &c, 0, 1e-6);
      }
  {
    gc_input shapes[5] = {{4, {1, 3, 1, 1}, 0}, {4, {2, 1, 4, 1}, 0}, {2, {4, 5}, 0}, {1, {1}, 0}, {3, {3, 1, 5}, 0}};
    for (int i = 0; i < 5; i++) {
      op_ctx c = {.kind = 8};
      char nm[64];
      snprintf(nm, sizeof nm, "expand case %d", i);
      gc_check(nm, 1, &shapes[i], build, &c, 0, 1e-6);
    }
    gc_input dy = {3, {3, 2, 2}, 0};
    op_ctx c = {.kind = 9, .a = 4};
    gc_check("slice_bwd", 1, &dy, build, &c, 0, 1e-6);
    gc_input two[2] = {{3, {2, 3, 4}, 0}, {3, {2, 4, 4}, 0}};
    c = (op_ctx){.kind = 10};
    gc_check("sum(slice(concat)))", 2, two, build, &c, 0, 1e-6);
  }
  check_forward_values();
  reduce_threads();
  check_errors();
  return check_finish("test_grad_shape");
}

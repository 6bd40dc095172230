/* test_grad_elementwise.c — finite-difference gradient checks of the binary (with broadcasting),
 * scalar and unary ops (pow with a constant or a tensor exponent too), each with fresh random inputs; pow's values
 * against C's pow (NaN for a negative base with a non-integer exponent); the f32 and bf16 add / sub / mul and ReLU
 * kernels against the generic rule's bits. */
#include "gradcheck.h"
#include "backend/backend.h"
#include "graph/dtype.h"

typedef struct { int kind; double p0, p1; } op_ctx;

static mf_tensor build_binary(mf_graph *g, const mf_tensor *in, void *c) {
  switch (((op_ctx *)c)->kind) {
  case 0: return mf_add(g, in[0], in[1]);
  case 1: return mf_sub(g, in[0], in[1]);
  case 2: return mf_mul(g, in[0], in[1]);
  default: return mf_div(g, in[0], in[1]);
  }
}
static mf_tensor build_unary(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  switch (o->kind) {
  case 0: return mf_exp(g, in[0]);
  case 1: return mf_log(g, in[0]);
  case 2: return mf_sigmoid(g, in[0]);
  case 3: return mf_tanh(g, in[0]);
  case 4: return mf_relu(g, in[0]);
  case 5: return mf_leaky_relu(g, in[0], o->p0);
  case 6: return mf_silu(g, in[0]);
  case 7: return mf_clamp(g, in[0], o->p0, o->p1);
  case 8: return mf_add_scalar(g, in[0], o->p0);
  default: return mf_mul_scalar(g, in[0], o->p0);
  }
}

static mf_tensor build_pow_scalar(mf_graph *g, const mf_tensor *in, void *c) { return mf_pow_scalar(g, in[0], ((op_ctx *)c)->p0); }
static mf_tensor build_pow(mf_graph *g, const mf_tensor *in, void *c) { (void)c; return mf_pow(g, in[0], in[1]); }

/* x^p against C's pow in f64 on chosen values: NaN for a negative base with a non-integer p (ONNX, NumPy), the sign kept
 * for odd integer p; the tensor exponent's gradient is 0 at a zero base with b >= 0 (PyTorch), not 0 * -inf */
static void pow_values(void) {
  const double xs[6] = {-2, -0.5, 0, 0.5, 2, 3};
  const double ps[4] = {3, 0.5, -2, 2.5};
  for (int k = 0; k < 4; k++) {
    mf_graph *g = mf_graph_init(MF_F64);
    mf_tensor x = mf_param(g, "x", 1, (int64_t[]){6}, MF_INIT_ZERO, 0);
    mf_tensor y = mf_pow_scalar(g, x, ps[k]);
    mf_tensor loss = mf_sum(g, y, 0, 0);
    if (mf_autodiff(g, loss) < 0) { CHECK(0, "pow: %s", mf_graph_error(g)); mf_graph_free(g); continue; }
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[x] = (void *)xs;
    mf_ref r;
    char err[256];
    if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
      const double *yv = r.data[y], *gv = r.data[g->nodes[x].grad];
      int bad = 0;
      for (int i = 0; i < 6; i++) {
        double want = pow(xs[i], ps[k]), dwant = ps[k] * pow(xs[i], ps[k] - 1);
        bad += !((isnan(want) && isnan(yv[i])) || want == yv[i]);
        bad += !((isnan(dwant) && isnan(gv[i])) || gv[i] == dwant || fabs(gv[i] - dwant) <= 4 * 0x1p-52 * fabs(dwant));
      }
      CHECK(bad == 0, "pow %g: %d values or gradients differ from C's pow (y[0] %g, y[1] %g)", ps[k], bad, yv[0], yv[1]);
      if (ps[k] == 0.5) CHECK(isnan(yv[0]) && isnan(yv[1]), "a negative base to 0.5 is NaN");
      if (ps[k] == 3) CHECK(yv[0] == -8, "(-2)^3 = %g", yv[0]);
      mf_ref_free(&r);
    } else CHECK(0, "pow: %s", err);
    free(leaf);
    mf_graph_free(g);
  }
  /* tensor exponent: d/db of a^b at a = 0, b = 2 is 0 (PyTorch's rule), and at a = 2 it is 4 ln 2 */
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor a = mf_param(g, "a", 1, (int64_t[]){2}, MF_INIT_ZERO, 0), b = mf_param(g, "b", 1, (int64_t[]){2}, MF_INIT_ZERO, 0);
  mf_tensor loss = mf_sum(g, mf_pow(g, a, b), 0, 0);
  if (mf_autodiff(g, loss) >= 0) {
    double av[2] = {0, 2}, bv[2] = {2, 2};
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[a] = av, leaf[b] = bv;
    mf_ref r;
    char err[256];
    if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0) {
      const double *gb = r.data[g->nodes[b].grad], *ga = r.data[g->nodes[a].grad];
      CHECK(gb[0] == 0 && fabs(gb[1] - 4 * log(2.0)) <= 8 * 0x1p-52 * 4 * log(2.0), "d(a^b)/db: %g at a=0, %g at a=2", gb[0], gb[1]);
      CHECK(ga[0] == 0 && ga[1] == 4, "d(a^b)/da: %g at a=0, %g at a=2", ga[0], ga[1]);
      mf_ref_free(&r);
    } else CHECK(0, "pow tensor: %s", err);
    free(leaf);
  } else CHECK(0, "pow tensor: %s", mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 1, (int64_t[]){2});
  CHECK(mf_pow_scalar(g, a, INFINITY) < 0 && strstr(mf_graph_error(g), "pow_scalar"), "a non-finite exponent is refused");
  mf_graph_free(g);
}

/* bf16 ReLU and its backward have their own CPU loops: on every bf16 value of x (and dy), the bits of the generic
 * rule (computed in f64, stored once: y = x > 0 ? x : 0, dx = dy * (y > 0 ? 1 : 0)) */
static void check_relu_bf16(void) {
  enum { N = 65536 };
  mf_graph *g = mf_graph_init(MF_BF16);
  int x = mf_input_typed(g, "x", MF_BF16, 1, (int64_t[]){N}), dy = mf_input_typed(g, "dy", MF_BF16, 1, (int64_t[]){N});
  int y = mf_relu(g, x), dx = mf_unary_bwd(g, MF_UN_RELU, y, dy, 0, 0);
  CHECK(!mf_graph_error(g), "relu bf16 graph: %s", mf_graph_error(g));
  uint16_t *xv = malloc(N * 2), *dyv = malloc(N * 2), *yv = malloc(N * 2), *dxv = malloc(N * 2);
  for (int i = 0; i < N; i++) { xv[i] = (uint16_t)i; dyv[i] = (uint16_t)(i * 40503u + 17); } /* every x, a spread of dy */
  mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = 1};
  void *s1[MF_MAX_SRC] = {xv}, *s2[MF_MAX_SRC] = {yv, dyv};
  mf_backend_cpu.kernels[g->nodes[y].op](&k, &g->nodes[y], yv, s1, NULL);
  mf_backend_cpu.kernels[g->nodes[dx].op](&k, &g->nodes[dx], dxv, s2, NULL);
  int bad_y = 0, bad_dx = 0;
  for (int i = 0; i < N; i++) {
    double xd = mf_bf16_to_f32(xv[i]), yd = xd > 0 ? xd : 0;
    uint16_t wy = mf_f32_to_bf16((float)yd);
    uint16_t wdx = mf_f32_to_bf16((float)(mf_bf16_to_f32(dyv[i]) * (mf_bf16_to_f32(wy) > 0 ? 1.0 : 0.0)));
    bad_y += yv[i] != wy;
    bad_dx += dxv[i] != wdx;
  }
  CHECK(!bad_y && !bad_dx, "bf16 relu: %d forward and %d backward values differ from the generic rule's bits", bad_y, bad_dx);
  free(xv); free(dyv); free(yv); free(dxv);
  mf_graph_free(g);
}

/* add / sub / mul kernels on f32 and bf16 (elementwise.c: one loop per kind and stride of b; b of a's shape in flat
 * rows of 4096, the last one partial here) against the generic rule's bits: computed in f64, stored once. b of a's
 * shape, per channel and trailing; 41,205 elements, enough for the parallel loop. */
static void check_binary_values(void) {
  const int64_t xs[4] = {3, 5, 67, 41}, bs[3][4] = {{3, 5, 67, 41}, {1, 5, 1, 1}, {41, 0, 0, 0}};
  const int bnd[3] = {4, 4, 1};
  const mf_dtype dts[2] = {MF_F32, MF_BF16};
  for (int d = 0; d < 2; d++)
    for (int bi = 0; bi < 3; bi++)
      for (int kind = 0; kind < 3; kind++) {
        mf_graph *g = mf_graph_init(dts[d]);
        int a = mf_input_typed(g, "a", dts[d], 4, xs), b = mf_input_typed(g, "b", dts[d], bnd[bi], bs[bi]);
        int y = kind == 0 ? mf_add(g, a, b) : kind == 1 ? mf_sub(g, a, b) : mf_mul(g, a, b);
        CHECK(!mf_graph_error(g), "binary graph: %s", mf_graph_error(g));
        int64_t na = mf_node_numel(&g->nodes[a]), nb = mf_node_numel(&g->nodes[b]);
        size_t es = mf_dtype_size(dts[d]);
        void *av = malloc((size_t)na * es), *bv = malloc((size_t)nb * es), *yv = malloc((size_t)na * es);
        for (int64_t i = 0; i < na; i++) mf_st(av, dts[d], i, gc_normal());
        for (int64_t i = 0; i < nb; i++) mf_st(bv, dts[d], i, gc_normal());
        mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = 2};
        void *src[MF_MAX_SRC] = {av, bv};
        mf_backend_cpu.kernels[g->nodes[y].op](&k, &g->nodes[y], yv, src, NULL);
        int64_t bad = -1;
        for (int64_t i = 0; i < na && bad < 0; i++) {
          /* b's element for output i: same shape i, per channel (i / (67*41)) % 5, trailing i % 41 */
          int64_t j = bi == 0 ? i : bi == 1 ? (i / (67 * 41)) % 5 : i % 41;
          double x = mf_ld(av, dts[d], i), z = mf_ld(bv, dts[d], j), want = kind == 0 ? x + z : kind == 1 ? x - z : x * z;
          uint8_t wb[8];
          mf_st(wb, dts[d], 0, want);
          if (memcmp((uint8_t *)yv + i * (int64_t)es, wb, es)) bad = i;
        }
        CHECK(bad < 0, "%s %s, b %s: element %lld is %.9g, want the generic rule's bits", mf_dtype_name(dts[d]),
              kind == 0 ? "add" : kind == 1 ? "sub" : "mul", bi == 0 ? "of a's shape" : bi == 1 ? "per channel" : "trailing",
              (long long)bad, bad < 0 ? 0 : mf_ld(yv, dts[d], bad));
        free(av); free(bv); free(yv);
        mf_graph_free(g);
      }
}

int main(void) {
  check_relu_bf16();
  check_binary_values();
  /* x^p for constant p: positive bases for non-integer p, any base for integer p (x kept off 0 for negative p) */
  const double pp[] = {0.5, 2.7, -1.5, 3, -2, 0, 1};
  for (size_t k = 0; k < sizeof pp / sizeof *pp; k++) {
    op_ctx c = {0, pp[k], 0};
    bool integer = pp[k] == floor(pp[k]);
    gc_input in = {3, {3, 4, 5}, !integer ? GC_POSITIVE : pp[k] < 0 ? GC_AWAY_FROM_ZERO : GC_NORMAL};
    char nm[64];
    snprintf(nm, sizeof nm, "pow_scalar %g", pp[k]);
    gc_check(nm, 1, &in, build_pow_scalar, &c, 0, 1e-6);
  }
  /* a^b with a tensor exponent, same shape and broadcast per channel */
  gc_input pw_same[2] = {{4, {2, 3, 4, 5}, GC_POSITIVE}, {4, {2, 3, 4, 5}, GC_NORMAL}};
  gc_input pw_chan[2] = {{4, {2, 3, 4, 5}, GC_POSITIVE}, {4, {1, 3, 1, 1}, GC_NORMAL}};
  gc_check("pow same shape", 2, pw_same, build_pow, NULL, 0, 1e-6);
  gc_check("pow per-channel exponent", 2, pw_chan, build_pow, NULL, 0, 1e-6);
  pow_values();
  const char *bn[] = {"add", "sub", "mul", "div"};
  for (int k = 0; k < 4; k++) {
    op_ctx c = {k, 0, 0};
    gc_input same[2] = {{4, {2, 3, 4, 5}, GC_NORMAL}, {4, {2, 3, 4, 5}, k == 3 ? GC_POSITIVE : GC_NORMAL}};
    gc_input chan[2] = {{4, {2, 3, 4, 5}, GC_NORMAL}, {4, {1, 3, 1, 1}, k == 3 ? GC_POSITIVE : GC_NORMAL}};
    gc_input tail[2] = {{3, {2, 3, 4}, GC_NORMAL}, {1, {4}, k == 3 ? GC_POSITIVE : GC_NORMAL}};
    char nm[64];
    snprintf(nm, sizeof nm, "%s same shape", bn[k]);
    gc_check(nm, 2, same, build_binary, &c, 0, 1e-6);
    snprintf(nm, sizeof nm, "%s per-channel broadcast", bn[k]);
    gc_check(nm, 2, chan, build_binary, &c, 0, 1e-6);
    snprintf(nm, sizeof nm, "%s trailing broadcast", bn[k]);
    gc_check(nm, 2, tail, build_binary, &c, 0, 1e-6);
  }
  const char *un[] = {"exp", "log", "sigmoid", "tanh", "relu", "leaky_relu", "silu", "clamp", "add_scalar", "mul_scalar"};
  for (int k = 0; k < 10; k++) {
    op_ctx c = {k, k == 5 ? 0.01 : k == 7 ? -0.5 : 1.7, 0.6};
    gc_input in = {3, {3, 4, 5}, k == 1 ? GC_POSITIVE : (k == 4 || k == 5 || k == 7) ? GC_AWAY_FROM_ZERO : GC_NORMAL};
    gc_check(un[k], 1, &in, build_unary, &c, 0, 1e-6);
  }
  /* a bad broadcast names the op and both shapes */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor a = mf_input(g, "a", 2, (int64_t[]){2, 3}), b = mf_input(g, "b", 2, (int64_t[]){3, 2});
  mf_add(g, a, b);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "add") && strstr(e, "[2,3]") && strstr(e, "[3,2]"), "error was: %s", e ? e : "(none)");
  mf_graph_free(g);
  return check_finish("test_grad_elementwise");
}

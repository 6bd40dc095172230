/* test_grad_index.c — argmin, gather, straight-through and round: gather's gradient against finite
 * differences (alone and behind an argmin, as in vector quantisation), straight-through's gradient
 * rule, values against host references (ties, the last index, NaN, f32/f64/bf16/f16), out-of-range
 * indices (NaN rows and a failed step, never an out-of-bounds read), the scatter-add's order-fixed
 * sums for any thread count, measured == planned memory, and shape errors naming the op. */
#include "gradcheck.h"
#include "graph/dtype.h"
#include "train/session.h"
#include <omp.h>

#define SH(...) ((const int64_t[]){__VA_ARGS__})

/* ------------------------------------------------------------------ gradients */

typedef struct { int kind; int64_t n, k; } op_ctx;

static mf_tensor build(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  if (o->kind == 0) { /* gather with repeated indices: idx i32 [n] in [0, k) */
    mf_tensor idx = mf_input_typed(g, "idx", MF_I32, 1, SH(o->n));
    return mf_gather(g, in[0], idx);
  }
  if (o->kind == 1) /* gather of a computed table */
    return mf_gather(g, mf_tanh(g, in[0]), mf_input_typed(g, "idx", MF_I32, 1, SH(o->n)));
  /* vector quantisation: nearest codebook row of each x (dist = |c|^2 - 2 x.c), looked up */
  int64_t D = mf_tensor_dim(g, in[0], 1);
  mf_tensor x = mf_input(g, "x", 2, SH(o->n, D));
  mf_tensor xc = mf_matmul(g, x, in[0], 0, 1);                        /* [n,k] */
  mf_tensor csq = mf_sum(g, mf_mul(g, in[0], in[0]), 1u << 1, 0);     /* [k] */
  mf_tensor dist = mf_add(g, mf_mul_scalar(g, xc, -2.0), csq);        /* [n,k] */
  mf_tensor idx = mf_argmin(g, dist, 1);                               /* i32 [n] */
  return mf_gather(g, in[0], idx);                                     /* [n,D] */
}

/* x rows near codebook rows (row n: codebook row n % k, plus 1% noise), so that no row is near a tie
 * and the finite differences never flip an argmin */
static void fill_near(const mf_graph *g, const mf_tensor *in, void **leaf, void *ctx) {
  (void)ctx;
  int64_t K = mf_tensor_dim(g, in[0], 0), D = mf_tensor_dim(g, in[0], 1);
  const double *cb = leaf[in[0]];
  for (mf_tensor t = 0; t < g->n; t++)
    if (!strcmp(g->nodes[t].name, "x") && g->nodes[t].op == MF_OP_INPUT) {
      double *x = leaf[t];
      for (int64_t r = 0; r < g->nodes[t].ne[0]; r++)
        for (int64_t d = 0; d < D; d++) x[r * D + d] = cb[(r % K) * D + d] + 0.01 * gc_normal();
    }
}

static void gradients(void) {
  gc_input t = {2, {5, 3}, GC_NORMAL};
  op_ctx c0 = {0, 17, 5};
  gc_check("gather [5,3] by 17 indices", 1, &t, build, &c0, 5, 1e-6);
  op_ctx c1 = {1, 9, 5};
  gc_check("gather of tanh(table)", 1, &t, build, &c1, 5, 1e-6);
  gc_input cb = {2, {6, 4}, GC_NORMAL};
  op_ctx c2 = {2, 11, 6};
  gc_check_fill("codebook look-up behind argmin", 1, &cb, build, &c2, 6, 1e-6, fill_near, NULL);
}

/* straight_through(hard, soft): forward is hard, d/dsoft = dy exactly, hard gets nothing */
static void straight_through_rule(void) {
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor soft = mf_param(g, "soft", 2, SH(3, 4), MF_INIT_ZERO, 0), hard = mf_param(g, "hard", 2, SH(3, 4), MF_INIT_ZERO, 0);
  mf_tensor R = mf_input(g, "R", 2, SH(3, 4));
  mf_tensor y = mf_straight_through(g, hard, soft);
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  CHECK(mf_autodiff(g, loss) >= 0, "autodiff: %s", mf_graph_error(g));
  double sv[12], hv[12], rv[12];
  for (int i = 0; i < 12; i++) { sv[i] = 0.1 * i - 0.4; hv[i] = 3.0 - 0.7 * i; rv[i] = 0.25 * (i % 5) - 0.3; }
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[soft] = sv;
  leaf[hard] = hv;
  leaf[R] = rv;
  mf_ref r;
  char err[256];
  CHECK(mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) == 0, "eval: %s", err);
  int same_fwd = 1, same_grad = 1;
  for (int i = 0; i < 12; i++) {
    same_fwd &= ((double *)r.data[y])[i] == hv[i];
    same_grad &= ((double *)r.data[g->nodes[soft].grad])[i] == rv[i];
  }
  CHECK(same_fwd, "straight_through's value is hard's");
  CHECK(same_grad, "straight_through passes dy unchanged to soft");
  CHECK(g->nodes[hard].grad < 0, "hard gets no gradient (grad node %d)", g->nodes[hard].grad);
  mf_ref_free(&r);
  free(leaf);
  mf_graph_free(g);

  /* quantisation: round has no gradient of its own; through straight_through it is the identity */
  g = mf_graph_init(MF_F64);
  mf_tensor x = mf_param(g, "x", 1, SH(4), MF_INIT_ZERO, 0);
  mf_tensor bad = mf_sum(g, mf_round(g, x), 0, 0);
  CHECK(mf_autodiff(g, bad) < 0 && strstr(mf_graph_error(g), "round"), "a loss through round alone is refused naming it: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(no error)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F64);
  x = mf_param(g, "x", 1, SH(4), MF_INIT_ZERO, 0);
  mf_tensor q = mf_straight_through(g, mf_round(g, x), x);
  CHECK(mf_autodiff(g, mf_sum(g, q, 0, 0)) >= 0, "round inside straight_through: %s", mf_graph_error(g));
  mf_graph_free(g);
}

/* ------------------------------------------------------------------ values */

/* evaluates the graph with leaf data and returns node out's values as doubles (n of them) */
static int eval_node(mf_graph *g, void **leaf, mf_tensor out, double *vals, char *err, size_t errlen) {
  mf_ref r;
  if (mf_ref_eval(g, leaf, 1.0, &r, err, errlen) < 0) return -1;
  int64_t n = mf_tensor_numel(g, out);
  for (int64_t i = 0; i < n; i++) vals[i] = mf_ld(r.data[out], g->nodes[out].dtype, i);
  mf_ref_free(&r);
  return 0;
}

/* host argmin of x[outer, K, inner] (values already in storage precision): first smallest, NaN first */
static void ref_argmin(const double *x, int64_t outer, int64_t K, int64_t inner, double *out) {
  for (int64_t a = 0; a < outer; a++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t bi = -1;
      for (int64_t c = 0; c < K; c++) {
        double v = x[(a * K + c) * inner + i];
        if (isnan(v)) { bi = c; break; }
        if (bi < 0 || v < x[(a * K + bi) * inner + i]) bi = c;
      }
      out[a * inner + i] = (double)bi;
    }
}

static void argmin_values(void) {
  const mf_dtype dts[4] = {MF_F32, MF_F64, MF_BF16, MF_F16};
  const int64_t shp[3] = {3, 5, 4};
  for (int t = 0; t < 4; t++)
    for (int axis = -1; axis < 3; axis++) {
      int ax = axis < 0 ? 2 : axis;
      mf_graph *g = mf_graph_init(dts[t]);
      mf_tensor x = mf_input(g, "x", 3, shp);
      mf_tensor y = mf_argmin(g, x, axis);
      CHECK(y >= 0 && mf_tensor_dtype(g, y) == MF_I32 && mf_tensor_ndim(g, y) == 2, "argmin axis %d: i32, one axis fewer (%s)", axis,
            mf_graph_error(g) ? mf_graph_error(g) : "ok");
      if (y < 0) { mf_graph_free(g); continue; }
      int64_t outer = 1, inner = 1, K = shp[ax];
      for (int i = 0; i < ax; i++) outer *= shp[i];
      for (int i = ax + 1; i < 3; i++) inner *= shp[i];
      /* per output: a tie of the minimum at two places, the minimum at the last index, and in bf16
       * values that differ in f32 but round to the same stored value (a tie after storage) */
      double xv[60], stored[60], got[60], want[60];
      char buf[60 * 8];
      uint64_t s = 12345 + (uint64_t)t * 7 + (uint64_t)axis;
      for (int i = 0; i < 60; i++) { s = s * 6364136223846793005ULL + 1442695040888963407ULL; xv[i] = (double)(s >> 40) / 16777216.0; }
      for (int64_t a = 0; a < outer; a++)
        for (int64_t i = 0; i < inner; i++) {
          int64_t j = a * inner + i, at = (a * K) * inner + i;
          switch (j % 4) {
          case 0: xv[at + 1 * inner] = xv[at + (K - 1) * inner] = -1.0; break;         /* tie: index 1 */
          case 1: xv[at + (K - 1) * inner] = -2.0; break;                               /* last index */
          case 2: xv[at + 2 * inner] = -1.0; xv[at + 0 * inner] = -1.0 + 1.0 / 1024; break; /* bf16: tie at 0 */
          default: if (j == 3) xv[at + 2 * inner] = NAN; break;                         /* NaN wins */
          }
        }
      for (int i = 0; i < 60; i++) { mf_st(buf, dts[t], i, xv[i]); stored[i] = mf_ld(buf, dts[t], i); }
      ref_argmin(stored, outer, K, inner, want);
      void **leaf = calloc((size_t)g->n, sizeof *leaf);
      leaf[x] = buf;
      char err[256];
      CHECK(eval_node(g, leaf, y, got, err, sizeof err) == 0, "argmin eval: %s", err);
      int bad = 0;
      for (int64_t j = 0; j < outer * inner; j++) bad += got[j] != want[j];
      CHECK(bad == 0, "argmin %s axis %d: %d of %lld indices differ from the host reference", mf_dtype_name(dts[t]), axis, bad,
            (long long)(outer * inner));
      if (dts[t] == MF_BF16 && ax == 1) /* output (0, 2) of this case: -1 + 2^-10 stores as -1, a tie won by index 0 */
        CHECK(got[2] == 0, "bf16 tie after storage: index %g, want 0", got[2]);
      free(leaf);
      mf_graph_free(g);
    }
  /* a 1-D x gives [1] */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor y = mf_argmin(g, mf_input(g, "v", 1, SH(7)), 0);
  CHECK(mf_tensor_ndim(g, y) == 1 && mf_tensor_dim(g, y, 0) == 1, "argmin of [7] is [1]");
  mf_graph_free(g);
}

static void round_values(void) {
  const double in[] = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.7, -3.2, 0.49, 7.0, -0.0, 100.5};
  const double want[] = {0, 2, 2, -0.0, -2, -2, 4, -3, 0, 7, -0.0, 100};
  const mf_dtype dts[4] = {MF_F32, MF_F64, MF_BF16, MF_F16};
  for (int t = 0; t < 4; t++) {
    mf_graph *g = mf_graph_init(dts[t]);
    mf_tensor x = mf_input(g, "x", 1, SH(12));
    mf_tensor y = mf_round(g, x);
    CHECK(mf_tensor_dtype(g, y) == dts[t], "round keeps the dtype");
    char buf[12 * 8];
    for (int i = 0; i < 12; i++) mf_st(buf, dts[t], i, in[i]);
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[x] = buf;
    double got[12];
    char err[256];
    CHECK(eval_node(g, leaf, y, got, err, sizeof err) == 0, "round eval: %s", err);
    for (int i = 0; i < 12; i++) {
      double stored = mf_ld(buf, dts[t], i), w = want[i]; /* every input is stored exactly, 3.7 and -3.2 near enough */
      CHECK(got[i] == w && signbit(got[i]) == signbit(w), "round %s of %g: %g, want %g", mf_dtype_name(dts[t]), stored, got[i], w);
    }
    free(leaf);
    mf_graph_free(g);
  }
}

/* gather copies rows exactly in every dtype; bad indices give NaN rows and an error, never a read */
static void gather_values(void) {
  const mf_dtype dts[3] = {MF_F32, MF_BF16, MF_F64};
  for (int t = 0; t < 3; t++) {
    mf_graph *g = mf_graph_init(dts[t]);
    mf_tensor tab = mf_input(g, "table", 2, SH(4, 3));
    mf_tensor idx = mf_input_typed(g, "idx", MF_I32, 1, SH(6));
    mf_tensor y = mf_gather(g, tab, idx);
    CHECK(y >= 0 && mf_tensor_dim(g, y, 0) == 6 && mf_tensor_dim(g, y, 1) == 3 && mf_tensor_dtype(g, y) == dts[t], "gather shape");
    char tb[12 * 8];
    for (int i = 0; i < 12; i++) mf_st(tb, dts[t], i, 0.37 * i - 1.1);
    int32_t iv[6] = {3, 0, 3, 1, 2, 3};
    void **leaf = calloc((size_t)g->n, sizeof *leaf);
    leaf[tab] = tb;
    leaf[idx] = iv;
    double got[18];
    char err[256];
    CHECK(eval_node(g, leaf, y, got, err, sizeof err) == 0, "gather eval: %s", err);
    int bad = 0;
    for (int r = 0; r < 6; r++)
      for (int d = 0; d < 3; d++) bad += got[r * 3 + d] != mf_ld(tb, dts[t], iv[r] * 3 + d);
    CHECK(bad == 0, "gather %s: %d values are not the table's", mf_dtype_name(dts[t]), bad);
    /* out of range: the last valid row + 1, and -1 */
    int32_t ov[6] = {0, 4, 1, -1, 2, 7};
    leaf[idx] = ov;
    int rc = eval_node(g, leaf, y, got, err, sizeof err);
    CHECK(rc < 0 && strstr(err, "gather") && strstr(err, "3 of 6 indices") && strstr(err, "first: 4 at row 1"),
          "out-of-range indices fail the evaluation with a message: %s", rc < 0 ? err : "(no error)");
    free(leaf);
    mf_graph_free(g);
  }
}

/* ------------------------------------------------------------------ scatter-add through a session */

/* table param [K,D], idx [N] -> loss = sum(gather * R): the table's gradient is the scatter-add of R.
 * Checks it against an f64 host reference within gamma_n * sum|terms| (n: the most rows summed into
 * one element), the same bits with 1 and 4 threads, measured == planned per arena (bf16: the f32
 * workspace), and that an out-of-range index fails the step. */
static void scatter_session(mf_dtype act, int threads, float *grad_out) {
  enum { K = 7, D = 150, N = 900 };
  mf_graph *g = mf_graph_init(act);
  mf_tensor tab = mf_param(g, "table", 2, SH(K, D), MF_INIT_ZERO, 0);
  mf_tensor idx = mf_input_typed(g, "idx", MF_I32, 1, SH(N));
  mf_tensor R = mf_input(g, "R", 2, SH(N, D));
  mf_tensor loss = mf_sum(g, mf_mul(g, mf_gather(g, tab, idx), R), 0, 0);
  mf_train_opts o = mf_train_opts_default();
  o.threads = threads;
  o.debug_memory = 1;
  o.loss_scaling = 0;
  char err[512];
  mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
  CHECK(s != NULL, "session (%s): %s", mf_dtype_name(act), err);
  if (!s) { mf_graph_free(g); return; }
  float *iv = malloc(N * sizeof *iv), *rv = malloc((size_t)N * D * sizeof *rv);
  double *ref = calloc((size_t)K * D, sizeof *ref), *mag = calloc((size_t)K * D, sizeof *mag);
  int count[K] = {0};
  uint64_t r = 99;
  for (int i = 0; i < N; i++) {
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    iv[i] = (float)((r >> 33) % K);
    count[(int)iv[i]]++;
  }
  for (int i = 0; i < N * D; i++) {
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    rv[i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5);
  }
  mf_session_write_input(s, idx, iv, N);
  mf_session_write_input(s, R, rv, (size_t)N * D);
  /* R as the step stores it (bf16 graphs store it rounded) */
  float *rs = malloc((size_t)N * D * sizeof *rs);
  mf_session_read(s, R, rs, (size_t)N * D);
  for (int i = 0; i < N; i++)
    for (int d = 0; d < D; d++) {
      ref[(int)iv[i] * D + d] += rs[i * D + d];
      mag[(int)iv[i] * D + d] += fabs(rs[i * D + d]);
    }
  double loss0 = mf_session_micro_step(s);
  CHECK(isfinite(loss0), "scatter step (%s): loss %g", mf_dtype_name(act), loss0);
  mf_session_read_grad(s, tab, grad_out, (size_t)K * D);
  int nmax = 0;
  for (int k = 0; k < K; k++) nmax = count[k] > nmax ? count[k] : nmax;
  /* f32 accumulation of nmax terms; bf16 storage of the result adds one rounding of 2^-8 */
  double u = 0x1p-24, gam = nmax * u / (1 - nmax * u), store = act == MF_BF16 ? 0x1p-8 : 0;
  int bad = 0;
  for (int i = 0; i < K * D; i++) {
    double e = fabs(grad_out[i] - ref[i]), bound = gam * mag[i] + store * (fabs(ref[i]) + gam * mag[i]);
    if (!(e <= bound)) bad++;
  }
  CHECK(bad == 0, "scatter-add %s (%d threads): %d of %d gradient elements are off the f64 reference beyond gamma_%d bounds",
        mf_dtype_name(act), threads, bad, K * D, nmax);
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    CHECK(mf_session_measured_bytes(s, (mf_arena_kind)a) == mf_plan_arena_bytes(p, (mf_arena_kind)a), "%s arena %s: measured %zu planned %zu",
          mf_dtype_name(act), mf_arena_name((mf_arena_kind)a), mf_session_measured_bytes(s, (mf_arena_kind)a),
          mf_plan_arena_bytes(p, (mf_arena_kind)a));
  /* an index past the table fails the step */
  mf_session_update(s);
  iv[N - 3] = (float)K;
  mf_session_write_input(s, idx, iv, N);
  fprintf(stderr, "(an error message about a gather index is expected next)\n");
  double loss1 = mf_session_micro_step(s);
  CHECK(isnan(loss1), "a step with an index outside the table fails (NaN), got %g", loss1);
  iv[N - 3] = 0;
  mf_session_write_input(s, idx, iv, N);
  mf_session_update(s);
  CHECK(isfinite(mf_session_micro_step(s)), "the next step with good indices runs again");
  free(iv); free(rv); free(rs); free(ref); free(mag);
  mf_session_free(s);
  mf_graph_free(g);
}

static void scatter(void) {
  enum { KD = 7 * 150 };
  const mf_dtype acts[2] = {MF_F32, MF_BF16};
  for (int t = 0; t < 2; t++) {
    float *g1 = malloc(KD * sizeof *g1), *g4 = malloc(KD * sizeof *g4);
    scatter_session(acts[t], 1, g1);
    scatter_session(acts[t], 4, g4);
    CHECK(memcmp(g1, g4, KD * sizeof *g1) == 0, "scatter-add %s: the same bits with 1 and 4 threads", mf_dtype_name(acts[t]));
    free(g1);
    free(g4);
  }
}

/* ------------------------------------------------------------------ errors */

static void errors(void) {
  struct { const char *want; int kind; } cases[] = {
    {"gather: table [2,3,4] (f32) must be float [K,D] and indices [5] (i32) i32 [N]", 0},
    {"gather: table [4,3] (f32) must be float [K,D] and indices [5] (f32) i32 [N]", 1},
    {"argmin: axis 3 is out of range for shape [4,3]", 2},
    {"argmin: input [5] is i32; it must be floating point", 3},
    {"straight_through: hard [4,3] (f32) and soft [3,4] (f32) must be float tensors of the same shape and dtype", 4},
    {"round: input [5] is i32; it must be floating point", 5},
  };
  for (int c = 0; c < 6; c++) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_tensor a = mf_input(g, "a", 2, SH(4, 3)), b = mf_input(g, "b", 2, SH(3, 4)), i5 = mf_input_typed(g, "i", MF_I32, 1, SH(5));
    mf_tensor y = -1;
    switch (cases[c].kind) {
    case 0: y = mf_gather(g, mf_input(g, "t3", 3, SH(2, 3, 4)), i5); break;
    case 1: y = mf_gather(g, a, mf_input(g, "f", 1, SH(5))); break;
    case 2: y = mf_argmin(g, a, 3); break;
    case 3: y = mf_argmin(g, i5, 0); break;
    case 4: y = mf_straight_through(g, a, b); break;
    default: y = mf_round(g, i5); break;
    }
    CHECK(y < 0 && mf_graph_error(g) && !strcmp(mf_graph_error(g), cases[c].want), "error case %d: got '%s', want '%s'", c,
          mf_graph_error(g) ? mf_graph_error(g) : "(none)", cases[c].want);
    mf_graph_free(g);
  }
}

int main(void) {
  gradients();
  straight_through_rule();
  argmin_values();
  round_values();
  gather_values();
  scatter();
  errors();
  return check_finish("test_grad_index");
}

/* test_cuda_ops.c — the CUDA backend against the CPU backend: every op's output and gradients on
 * small graphs (f32, bf16 and f16 storage, per-dtype tolerances), a full training step of the
 * steganography model (loss and every gradient), run-to-run bit identity, and measured == planned
 * memory per arena. Planning with the CUDA backend needs no device and is checked everywhere; the
 * rest prints "SKIP: no CUDA device" and passes when there is no GPU (or no CUDA in the build). */
#include "check.h"
#include "memfit.h"
#include "models/steg.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef MEMFIT_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

/* ------------------------------------------------------------------ deterministic fills */

static uint64_t rng;
static double uniform(void) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static double normal(void) {
  double u = uniform() + 1e-12, v = uniform();
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Leaf names pick the fill: "pos*" positive, "nz*" away from zero, "lab*" labels in [-1, 4),
 * "buf*" running statistics in [0.5, 1.5); everything else N(0, 1) (parameters scaled by 0.5). */
static double fill_value(const char *name, int is_param) {
  if (!strncmp(name, "pos", 3)) return 0.2 + fabs(normal());
  if (!strncmp(name, "nz", 2)) { double v = normal(); return (v < 0 ? -0.15 : 0.15) + v; }
  if (!strncmp(name, "lab", 3)) return floor(uniform() * 5) - 1;
  if (!strncmp(name, "buf", 3)) return 0.5 + uniform();
  return normal() * (is_param ? 0.5 : 1.0);
}

/* ------------------------------------------------------------------ one graph on one backend */

/* 0 input, 1 parameter (f32 master), 2 buffer, -1 anything else */
static int leaf_kind(const mf_graph *g, mf_tensor t) {
  switch (g->nodes[t].op) {
  case MF_OP_INPUT: return 0;
  case MF_OP_PARAM: return 1;
  case MF_OP_BUFFER: return 2;
  default: return -1;
  }
}
static mf_tensor nth_param(const mf_graph *g, int i) {
  for (mf_tensor t = 0; t < g->n; t++)
    if (leaf_kind(g, t) == 1 && i-- == 0) return t;
  return -1;
}

typedef mf_tensor (*build_fn)(mf_graph *g, mf_dtype act, int variant);

typedef struct result {
  double loss;
  float *y;            /* the op's output (f32) */
  int64_t ny;
  int nparams;
  float *grad[16];     /* gradient of each parameter, in node order */
  int64_t ngrad[16];
  float *buf[4];       /* buffers after the step (batch-norm running statistics) */
  int64_t nbuf[4];
  int nbufs;
  int ok;
} result;

static void result_free(result *r) {
  free(r->y);
  for (int i = 0; i < r->nparams; i++) free(r->grad[i]);
  for (int i = 0; i < r->nbufs; i++) free(r->buf[i]);
  memset(r, 0, sizeof *r);
}

static mf_train_opts test_opts(const char *backend) {
  mf_train_opts o = mf_train_opts_default();
  o.plan.backend = backend;
  o.plan.optim = MF_SGD;
  o.lr = 0; /* updates keep the weights: repeated steps see the same graph values */
  o.momentum = 0;
  o.weight_decay = 0;
  o.loss_scaling = 0;
  o.threads = 2;
  o.debug_memory = 1;
  return o;
}

/* Builds case `build` with loss = sum(y * R), runs one micro-step on `backend`, collects results.
 * With `twice`, runs a second identical step and checks the gradients are bit-identical. */
static void run_graph(const char *name, build_fn build, int variant, mf_dtype act, const char *backend, result *r, int twice) {
  memset(r, 0, sizeof *r);
  mf_graph *g = mf_graph_init(act);
  mf_tensor y = build(g, act, variant);
  int yd = y >= 0 ? mf_tensor_ndim(g, y) : 0;
  int64_t ys[MF_MAX_DIMS];
  for (int i = 0; i < yd; i++) ys[i] = mf_tensor_dim(g, y, i);
  mf_tensor R = y >= 0 ? mf_input(g, "R", yd, ys) : -1;
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  if (mf_graph_error(g)) {
    CHECK(0, "%s: build: %s", name, mf_graph_error(g));
    mf_graph_free(g);
    return;
  }
  mf_train_opts o = test_opts(backend);
  o.plan.keep = &y;
  o.plan.n_keep = 1;
  char err[512];
  mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
  if (!s) {
    CHECK(0, "%s (%s, %s): session: %s", name, backend, mf_dtype_name(act), err);
    mf_graph_free(g);
    return;
  }
  /* fill every leaf in id order (the same values on both backends) */
  rng = 0x5eed0000u + (uint64_t)variant;
  for (mf_tensor t = 0; t < g->n; t++) {
    int kind = leaf_kind(g, t);
    if (kind < 0) continue;
    const char *nm = g->nodes[t].name;
    int64_t n = mf_tensor_numel(g, t);
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)fill_value(nm, kind == 1);
    int rc = kind == 0 ? mf_session_write_input(s, t, v, (size_t)n) : mf_session_write_param(s, t, v, (size_t)n);
    CHECK(rc == 0, "%s: writing leaf '%s'", name, nm);
    if (kind == 1 && r->nparams < 16) {
      r->ngrad[r->nparams] = n;
      r->grad[r->nparams++] = calloc((size_t)n, sizeof(float));
    }
    if (kind == 2 && r->nbufs < 4) {
      r->nbuf[r->nbufs] = n;
      r->buf[r->nbufs++] = calloc((size_t)n, sizeof(float));
    }
    free(v);
  }
  r->loss = mf_session_micro_step(s);
  r->ny = mf_tensor_numel(g, y);
  r->y = calloc((size_t)r->ny, sizeof(float));
  CHECK(mf_session_read(s, y, r->y, (size_t)r->ny) == 0, "%s: read output", name);
  int pi = 0, bi = 0;
  for (mf_tensor t = 0; t < g->n; t++) {
    int kind = leaf_kind(g, t);
    if (kind == 1 && pi < r->nparams) {
      CHECK(mf_session_read_grad(s, t, r->grad[pi], (size_t)r->ngrad[pi]) == 0, "%s: grad of %s", name, g->nodes[t].name);
      pi++;
    }
    if (kind == 2 && bi < r->nbufs) {
      CHECK(mf_session_read(s, t, r->buf[bi], (size_t)r->nbuf[bi]) == 0, "%s: buffer %s", name, g->nodes[t].name);
      bi++;
    }
  }
  if (twice) {
    mf_session_update(s); /* lr 0: weights unchanged, gradients cleared at the next micro-step */
    double l2 = mf_session_micro_step(s);
    CHECK(l2 == r->loss, "%s (%s): second run's loss %.17g differs from the first %.17g", name, mf_dtype_name(act), l2, r->loss);
    int same = 1;
    for (int i = 0; i < r->nparams; i++) {
      float *g2 = malloc((size_t)r->ngrad[i] * sizeof *g2);
      mf_session_read_grad(s, nth_param(g, i), g2, (size_t)r->ngrad[i]);
      same &= memcmp(g2, r->grad[i], (size_t)r->ngrad[i] * sizeof *g2) == 0;
      free(g2);
    }
    CHECK(same, "%s (%s): gradients of two identical steps differ (kernels must be deterministic)", name, mf_dtype_name(act));
  }
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    CHECK(mf_session_measured_bytes(s, (mf_arena_kind)a) == mf_plan_arena_bytes(p, (mf_arena_kind)a),
          "%s (%s, %s): arena %s measured %zu planned %zu", name, backend, mf_dtype_name(act), mf_arena_name((mf_arena_kind)a),
          mf_session_measured_bytes(s, (mf_arena_kind)a), mf_plan_arena_bytes(p, (mf_arena_kind)a));
  r->ok = 1;
  mf_session_free(s);
  mf_graph_free(g);
}

/* ------------------------------------------------------------------ comparison */

/* max |a - b| relative to max |b| (b: the CPU reference) */
static double rel_err(const float *a, const float *b, int64_t n) {
  double e = 0, m = 1e-6;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= e)) e = d; /* NaN counts as the largest error */
    if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
  }
  return e / m;
}
static double tol_for(mf_dtype act) { return act == MF_F32 ? 2e-4 : act == MF_F16 ? 1e-2 : 4e-2; }

static void compare(const char *name, mf_dtype act, const result *c, const result *g) {
  if (!c->ok || !g->ok) return;
  double tol = tol_for(act);
  const char *dt = mf_dtype_name(act);
  CHECK(fabs(c->loss - g->loss) <= tol * (1 + fabs(c->loss)), "%s (%s): loss cuda %.9g cpu %.9g", name, dt, g->loss, c->loss);
  double e = rel_err(g->y, c->y, c->ny);
  CHECK(e <= tol, "%s (%s): output differs by %.3g of its largest value (tol %g)", name, dt, e, tol);
  for (int i = 0; i < c->nparams && i < g->nparams; i++) {
    e = rel_err(g->grad[i], c->grad[i], c->ngrad[i]);
    CHECK(e <= tol, "%s (%s): gradient of input %d differs by %.3g (tol %g)", name, dt, i, e, tol);
  }
  for (int i = 0; i < c->nbufs && i < g->nbufs; i++) {
    e = rel_err(g->buf[i], c->buf[i], c->nbuf[i]);
    CHECK(e <= tol, "%s (%s): buffer %d after the step differs by %.3g (tol %g)", name, dt, i, e, tol);
  }
}

/* The backend compared with the CPU: "cuda", or (MEMFIT_CUDA_TEST_BACKEND=cpu) the CPU itself, which
 * checks this harness on a machine without a GPU. */
static const char *test_backend = "cuda";

static void op_case(const char *name, build_fn build, int variant) {
  const mf_dtype acts[3] = {MF_F32, MF_BF16, MF_F16};
  for (int d = 0; d < 3; d++) {
    result c, g;
    run_graph(name, build, variant, acts[d], "cpu", &c, 0);
    run_graph(name, build, variant, acts[d], test_backend, &g, d == 0);
    compare(name, acts[d], &c, &g);
    result_free(&c);
    result_free(&g);
  }
}

/* ------------------------------------------------------------------ op cases (shapes in comments) */

#define SH(...) ((const int64_t[]){__VA_ARGS__})
static mf_tensor P(mf_graph *g, const char *nm, int nd, const int64_t *sh) { return mf_param(g, nm, nd, sh, MF_INIT_ZERO, 0); }

/* a [2,3,4,5] (op) b: same shape, per-channel [1,3,1,1], trailing [5] */
static mf_tensor c_binary(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  int kind = v % 4, shape = v / 4;
  mf_tensor a = P(g, "a", 4, SH(2, 3, 4, 5));
  mf_tensor b = shape == 0 ? P(g, kind == 3 ? "posb" : "b", 4, SH(2, 3, 4, 5))
              : shape == 1 ? P(g, kind == 3 ? "posb" : "b", 4, SH(1, 3, 1, 1))
                           : P(g, kind == 3 ? "posb" : "b", 1, SH(5));
  switch (kind) {
  case 0: return mf_add(g, a, b);
  case 1: return mf_sub(g, a, b);
  case 2: return mf_mul(g, a, b);
  default: return mf_div(g, a, b);
  }
}
/* unary / scalar ops on [3,4,33] */
static mf_tensor c_unary(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  mf_tensor x = P(g, v == 1 ? "posx" : (v == 4 || v == 5 || v == 7) ? "nzx" : "x", 3, SH(3, 4, 33));
  switch (v) {
  case 0: return mf_exp(g, x);
  case 1: return mf_log(g, x);
  case 2: return mf_sigmoid(g, x);
  case 3: return mf_tanh(g, x);
  case 4: return mf_relu(g, x);
  case 5: return mf_leaky_relu(g, x, 0.01);
  case 6: return mf_silu(g, x);
  case 7: return mf_clamp(g, x, -0.5, 0.6);
  case 8: return mf_add_scalar(g, x, 1.7);
  default: return mf_mul_scalar(g, x, -1.3);
  }
}
/* concat / slice / reshape / permute / sum / mean on [2,3,4,6]-ish tensors */
static mf_tensor c_shape(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 10) { /* a reduction with many terms per output (block per output path) */
    mf_tensor big = P(g, "big", 3, SH(3, 40, 70));
    return mf_mean(g, big, (1u << 0) | (1u << 2), 0); /* [40] */
  }
  mf_tensor a = P(g, "a", 4, SH(2, 3, 4, 6));
  switch (v) {
  case 0: { mf_tensor b = P(g, "b", 4, SH(2, 5, 4, 6)), c = P(g, "c", 4, SH(2, 1, 4, 6)); return mf_concat(g, 3, (mf_tensor[]){a, b, c}, 1); }
  case 1: { mf_tensor b = P(g, "b", 4, SH(2, 3, 4, 2)); return mf_concat(g, 2, (mf_tensor[]){a, b}, 3); }
  case 2: return mf_slice(g, a, 2, 1, 3);
  case 3: return mf_slice(g, a, 3, 2, 6);
  case 4: return mf_reshape(g, mf_mul_scalar(g, a, 2.0), 3, SH(6, 4, 6));
  case 5: return mf_permute(g, a, (const int[]){0, 2, 3, 1});
  case 6: return mf_transpose(g, a, 1, 3);
  case 7: return mf_sum(g, a, (1u << 0) | (1u << 2) | (1u << 3), 0); /* [3] */
  case 8: return mf_mean(g, a, 1u << 1, 1);                            /* [2,1,4,6] */
  default: return mf_sum(g, a, 1u << 3, 0);                            /* [2,3,4] */
  }
}
/* matmul variants and linear */
static mf_tensor c_matmul(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  switch (v) {
  case 0: return mf_matmul(g, P(g, "a", 2, SH(7, 5)), P(g, "b", 2, SH(5, 9)), 0, 0);
  case 1: return mf_matmul(g, P(g, "a", 2, SH(5, 7)), P(g, "b", 2, SH(9, 5)), 1, 1);
  case 2: return mf_matmul(g, P(g, "a", 3, SH(3, 7, 5)), P(g, "b", 2, SH(5, 9)), 0, 0);  /* shared 2-D b */
  case 3: return mf_matmul(g, P(g, "a", 3, SH(3, 7, 5)), P(g, "b", 3, SH(3, 5, 9)), 0, 0);
  case 4: return mf_matmul(g, P(g, "a", 3, SH(3, 5, 7)), P(g, "b", 3, SH(3, 9, 5)), 1, 1);
  default: return mf_linear(g, P(g, "x", 2, SH(6, 40)), P(g, "w", 2, SH(24, 40)), P(g, "bias", 1, SH(24)));
  }
}
/* conv2d: 3x3 p1 with bias, stride 2, 1x1 direct, groups 2, 5x5 p2, 3x3 no padding */
static mf_tensor c_conv(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  mf_tensor x = P(g, "x", 4, SH(2, 4, 9, 10));
  switch (v) {
  case 0: return mf_conv2d(g, x, P(g, "w", 4, SH(6, 4, 3, 3)), P(g, "bias", 1, SH(6)), 1, 1, 1);
  case 1: return mf_conv2d(g, x, P(g, "w", 4, SH(5, 4, 3, 3)), -1, 2, 1, 1);
  case 2: return mf_conv2d(g, x, P(g, "w", 4, SH(7, 4, 1, 1)), P(g, "bias", 1, SH(7)), 1, 0, 1);
  case 3: return mf_conv2d(g, x, P(g, "w", 4, SH(6, 2, 3, 3)), P(g, "bias", 1, SH(6)), 1, 1, 2);
  case 4: return mf_conv2d(g, x, P(g, "w", 4, SH(3, 4, 5, 5)), -1, 1, 2, 1);
  default: return mf_conv2d(g, x, P(g, "w", 4, SH(4, 4, 3, 3)), -1, 1, 0, 1);
  }
}
/* losses (scalar outputs) */
static mf_tensor c_loss(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 3) {
    mf_tensor logits = P(g, "logits", 2, SH(9, 6));
    mf_tensor lab = mf_input_typed(g, "labels", MF_I32, 1, SH(9)); /* some -1: ignored rows */
    return mf_softmax_ce(g, logits, lab);
  }
  mf_tensor p = P(g, "p", 3, SH(3, 4, 5)), t = P(g, "t", 3, SH(3, 4, 5));
  return v == 0 ? mf_mse_loss(g, p, t) : v == 1 ? mf_mse_loss_sum(g, p, t) : mf_l1_loss(g, p, t);
}
/* batch norm (training with running buffers, eval) and group norm on [3,6,5,4] */
static mf_tensor c_norm(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  mf_tensor x = P(g, "x", 4, SH(3, 6, 5, 4)), ga = P(g, "gamma", 1, SH(6)), be = P(g, "beta", 1, SH(6));
  if (v == 2) return mf_groupnorm(g, x, ga, be, 3, 1e-5);
  mf_tensor rm = mf_buffer(g, "buf_mean", 1, SH(6), MF_INIT_ZERO, 0), rv = mf_buffer(g, "buf_var", 1, SH(6), MF_INIT_ONE, 0);
  return mf_batchnorm(g, x, ga, be, rm, rv, v == 0, 0.1, 1e-5);
}
/* pooling and upsampling on [2,3,9,8] */
static mf_tensor c_pool(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  mf_tensor x = P(g, "x", 4, SH(2, 3, 9, 8));
  switch (v) {
  case 0: return mf_avgpool2d(g, x, 3, 2, 1);
  case 1: return mf_maxpool2d(g, x, 2, 2, 0);
  case 2: return mf_maxpool2d(g, x, 3, 1, 1);
  case 3: return mf_global_avgpool(g, x);
  default: return mf_upsample_nearest(g, x, 2);
  }
}
/* Haar wavelet and inverse on [2,3,6,8] / [2,12,3,4] */
static mf_tensor c_wave(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 0) return mf_dwt_haar(g, P(g, "x", 4, SH(2, 3, 6, 8)));
  return mf_idwt_haar(g, P(g, "y", 4, SH(2, 12, 3, 4)));
}

static void test_ops(void) {
  char nm[64];
  const char *bn[] = {"add", "sub", "mul", "div"}, *sn[] = {"same shape", "per-channel", "trailing"};
  for (int v = 0; v < 12; v++) {
    snprintf(nm, sizeof nm, "%s %s", bn[v % 4], sn[v / 4]);
    op_case(nm, c_binary, v);
  }
  const char *un[] = {"exp", "log", "sigmoid", "tanh", "relu", "leaky_relu", "silu", "clamp", "add_scalar", "mul_scalar"};
  for (int v = 0; v < 10; v++) op_case(un[v], c_unary, v);
  const char *shn[] = {"concat axis 1", "concat axis 3", "slice axis 2", "slice axis 3", "reshape", "permute", "transpose",
                       "sum N,H,W", "mean C keepdim", "sum W", "mean of 3x70 per output"};
  for (int v = 0; v < 11; v++) op_case(shn[v], c_shape, v);
  const char *mn[] = {"matmul", "matmul a^T b^T", "matmul batched a, 2-D b", "matmul batched", "matmul batched a^T b^T", "linear"};
  for (int v = 0; v < 6; v++) op_case(mn[v], c_matmul, v);
  const char *cn[] = {"conv 3x3 p1 bias", "conv 3x3 s2", "conv 1x1 bias", "conv groups 2", "conv 5x5 p2", "conv 3x3 p0"};
  for (int v = 0; v < 6; v++) op_case(cn[v], c_conv, v);
  const char *ln[] = {"mse", "mse sum", "l1", "softmax cross-entropy"};
  for (int v = 0; v < 4; v++) op_case(ln[v], c_loss, v);
  const char *nn[] = {"batchnorm train", "batchnorm eval", "groupnorm"};
  for (int v = 0; v < 3; v++) op_case(nn[v], c_norm, v);
  const char *pn[] = {"avgpool 3 s2 p1", "maxpool 2 s2", "maxpool 3 s1 p1", "global avgpool", "upsample 2"};
  for (int v = 0; v < 5; v++) op_case(pn[v], c_pool, v);
  op_case("dwt", c_wave, 0);
  op_case("idwt", c_wave, 1);
}

/* ------------------------------------------------------------------ steganography training step */

static mf_steg_config steg_small(void) {
  mf_steg_config c = mf_steg_config_default();
  c.name = "custom";
  c.blocks = 2;
  c.growth = 8;
  c.height = c.width = 16;
  c.batch = 2;
  return c;
}

typedef struct steg_run {
  double loss[2];
  float *grad;   /* all gradients after the first micro-step, concatenated */
  int64_t ngrad;
  size_t measured[MF_ARENA_COUNT], planned[MF_ARENA_COUNT];
  int ok;
} steg_run;

/* variant 0: everything stored; 1: memory-free blocks (inverse recompute). Two AdamW steps. */
static void steg_step(const char *backend, mf_dtype act, int variant, steg_run *r) {
  memset(r, 0, sizeof *r);
  mf_steg_config c = steg_small();
  mf_graph *g = mf_graph_init(act);
  mf_steg_model *m = calloc(1, sizeof *m);
  if (mf_steg_build(g, &c, m) != 0) { CHECK(0, "steg build: %s", mf_graph_error(g)); free(m); mf_graph_free(g); return; }
  mf_train_opts o = mf_train_opts_default();
  o.plan.backend = backend;
  o.plan.optim = MF_ADAMW;
  o.plan.recompute = variant ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
  o.plan.invertible = variant;
  o.loss_scaling = 0;
  o.threads = 2;
  o.debug_memory = 1;
  char err[512];
  mf_session *s = mf_session_init(g, m->loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "steg session (%s): %s", backend, err); free(m); mf_graph_free(g); return; }
  /* non-zero weights everywhere, so no block is the identity */
  rng = 77;
  for (mf_tensor t = 0; t < g->n; t++) {
    if (g->nodes[t].op != MF_OP_PARAM) continue;
    int64_t n = mf_tensor_numel(g, t), fan = mf_tensor_ndim(g, t) == 4 ? mf_tensor_dim(g, t, 1) * 9 : 16;
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(normal() * 0.5 * sqrt(2.0 / (double)fan));
    mf_session_write_param(s, t, v, (size_t)n);
    free(v);
    r->ngrad += n;
  }
  int64_t n = mf_tensor_numel(g, m->cover), nz = mf_tensor_numel(g, m->z);
  float *buf = malloc((size_t)(n > nz ? n : nz) * sizeof *buf);
  for (int64_t i = 0; i < n; i++) buf[i] = (float)uniform();
  mf_session_write_input(s, m->cover, buf, (size_t)n);
  for (int64_t i = 0; i < n; i++) buf[i] = (float)uniform();
  mf_session_write_input(s, m->secret, buf, (size_t)n);
  memset(buf, 0, (size_t)nz * sizeof *buf);
  mf_session_write_input(s, m->z, buf, (size_t)nz);
  free(buf);
  r->loss[0] = mf_session_micro_step(s);
  r->grad = malloc((size_t)r->ngrad * sizeof(float));
  int64_t off = 0;
  for (mf_tensor t = 0; t < g->n; t++) {
    if (g->nodes[t].op != MF_OP_PARAM) continue;
    int64_t k = mf_tensor_numel(g, t);
    mf_session_read_grad(s, t, r->grad + off, (size_t)k);
    off += k;
  }
  mf_session_update(s);
  r->loss[1] = mf_session_micro_step(s);
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    r->measured[a] = mf_session_measured_bytes(s, (mf_arena_kind)a);
    r->planned[a] = mf_plan_arena_bytes(p, (mf_arena_kind)a);
  }
  r->ok = 1;
  mf_session_free(s);
  free(m);
  mf_graph_free(g);
}

static void test_steg(void) {
  const mf_dtype acts[2] = {MF_F32, MF_BF16};
  const char *vn[2] = {"stored", "memory-free"};
  for (int d = 0; d < 2; d++)
    for (int v = 0; v < 2; v++) {
      steg_run c, g;
      steg_step("cpu", acts[d], v, &c);
      steg_step(test_backend, acts[d], v, &g);
      if (c.ok && g.ok) {
        double tol = acts[d] == MF_F32 ? 1e-4 : 5e-2;
        const char *dt = mf_dtype_name(acts[d]);
        for (int i = 0; i < 2; i++)
          CHECK(fabs(c.loss[i] - g.loss[i]) <= tol * fabs(c.loss[i]), "steg %s %s: loss of step %d cuda %.9g cpu %.9g", dt, vn[v], i + 1,
                g.loss[i], c.loss[i]);
        double e = rel_err(g.grad, c.grad, c.ngrad);
        CHECK(e <= tol, "steg %s %s: gradients differ by %.3g of the largest (tol %g)", dt, vn[v], e, tol);
        for (int a = 0; a < MF_ARENA_COUNT; a++)
          CHECK(g.measured[a] == g.planned[a], "steg %s %s (cuda): arena %s measured %zu planned %zu", dt, vn[v],
                mf_arena_name((mf_arena_kind)a), g.measured[a], g.planned[a]);
        printf("steg %s %s: loss cpu %.6g cuda %.6g; gradients within %.2g; activations %zu bytes planned\n", dt, vn[v], c.loss[0],
               g.loss[0], e, g.planned[MF_ARENA_ACT]);
      }
      free(c.grad);
      free(g.grad);
    }
}

/* ------------------------------------------------------------------ planning (no device needed) */

static void test_plans(void) {
  const char *presets[] = {"small", "seed-16gb"};
  for (int i = 0; i < 2; i++) {
    mf_steg_config c;
    char err[512];
    mf_steg_config_preset(presets[i], &c, err, sizeof err);
    c.segments = MF_STEG_SEG_SUBNETS;
    mf_graph *g = mf_graph_init(MF_BF16);
    mf_steg_model *m = calloc(1, sizeof *m);
    CHECK(mf_steg_build(g, &c, m) == 0, "build %s: %s", presets[i], mf_graph_error(g));
    mf_plan_opts po = mf_plan_opts_default();
    po.backend = "cuda";
    po.recompute = MF_RECOMPUTE_ALL;
    po.invertible = 1;
    mf_plan *p = mf_plan_init(g, m->loss, &po, err, sizeof err);
#ifdef MEMFIT_HAVE_CUDA
    CHECK(p != NULL, "plan %s on cuda: %s", presets[i], err);
    if (p) {
      printf("cuda plan of %s (bf16, subnet checkpoints), planned without a device:\n", presets[i]);
      mf_plan_print(p, stdout);
      po.backend = "cpu";
      mf_plan *pc = mf_plan_init(g, m->loss, &po, err, sizeof err);
      /* persistent arenas do not depend on the backend; only workspaces do */
      for (int a = 0; pc && a < MF_ARENA_COUNT; a++)
        if (a != MF_ARENA_ACT)
          CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_plan_arena_bytes(pc, (mf_arena_kind)a), "%s: arena %s differs cpu/cuda",
                presets[i], mf_arena_name((mf_arena_kind)a));
      mf_plan_free(pc);
    }
#else
    CHECK(p == NULL && strstr(err, "not built in"), "without CUDA, backend cuda is refused: %s", err);
#endif
    mf_plan_free(p);
    free(m);
    mf_graph_free(g);
  }
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  test_plans();
  const char *tb = getenv("MEMFIT_CUDA_TEST_BACKEND");
  if (tb && !strcmp(tb, "cpu")) { /* harness self-check: CPU against CPU */
    test_backend = "cpu";
    test_ops();
    test_steg();
    return check_finish("test_cuda_ops (cpu vs cpu)");
  }
#ifndef MEMFIT_HAVE_CUDA
  (void)test_ops; /* compiled everywhere, run only with a device */
  (void)test_steg;
  printf("SKIP: no CUDA device (this build has no CUDA backend)\n");
  return check_finish("test_cuda_ops");
#else
  if (mf_cuda_device_count() == 0) {
    printf("SKIP: no CUDA device\n");
    return check_finish("test_cuda_ops");
  }
  char err[256];
  mf_cuda_info info;
  CHECK(mf_cuda_get_info(&info, err, sizeof err) == 0, "CUDA start-up: %s", err);
  size_t free_start = info.free_bytes;
  printf("device %d: %s (sm_%d%d, %d SMs), %.2f GiB; fixed overhead %.1f MiB (context %.1f MiB, cuBLAS and buffers %.1f MiB)\n",
         info.device, info.name, info.cc_major, info.cc_minor, info.sm_count, (double)info.total_bytes / (1 << 30),
         (double)info.overhead_bytes / (1 << 20), (double)info.context_bytes / (1 << 20), (double)info.library_bytes / (1 << 20));
  test_ops();
  test_steg();
  /* everything freed: device memory back where it was after start-up (lazily loaded kernels aside) */
  mf_cuda_get_info(&info, err, sizeof err);
  printf("free device memory: %.1f MiB after start-up, %.1f MiB at the end (difference: lazily loaded kernels)\n",
         (double)free_start / (1 << 20), (double)info.free_bytes / (1 << 20));
  CHECK(info.free_bytes + ((size_t)64 << 20) >= free_start, "device memory leaked: %zu -> %zu free", free_start, info.free_bytes);
  return check_finish("test_cuda_ops");
#endif
}

/* test_cuda_ops.c — the CUDA backend against the CPU backend: every op's output and gradients on
 * small graphs (f32, bf16 and f16 storage, per-dtype tolerances), a full training step of the
 * steganography model (loss and every gradient), run-to-run bit identity, and measured == planned
 * memory per arena, every op of MF_OP_LIST exercised, and each kernel run alone on fresh buffers
 * with guard bytes (it may write only its output and the workspace the backend asked for, and must
 * leave no launch or library error); the Gaussian rasteriser too. Planning with the CUDA backend needs no device and is checked
 * everywhere; the rest prints "SKIP: no CUDA device" and passes when there is no GPU (or no CUDA in
 * the build). MEMFIT_CUDA_TEST_BACKEND=cpu runs the whole harness CPU against CPU. MEMFIT_CUDA_TEST_ONLY=TEXT runs
 * only the op cases whose name contains TEXT and the steganography step (all convolutions), e.g. "conv" to compare
 * the conv implementations (MEMFIT_CUDNN=0: im2col + cuBLAS; else cuDNN where the planner chose it), which the
 * closing lines count. */
#include "check.h"
#include "memfit.h"
#include "models/steg.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "plan/plan.h"
#include "train/session.h"
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

/* The backend compared with the CPU: "cuda", or (MEMFIT_CUDA_TEST_BACKEND=cpu) the CPU itself, which
 * checks this harness on a machine without a GPU. */
static const char *test_backend = "cuda";

/* ------------------------------------------------------------------ each kernel alone, with guards */

#define GUARD ((size_t)16 << 10) /* sentinel bytes after every buffer handed to a kernel */
#define SENT 0xA5

static int op_ran[MF_OP_COUNT]; /* nodes of each op the compared backend ran in the op cases */
static int conv_steps, conv_special; /* conv steps the compared backend ran, and those on another implementation
                                        than the default (CUDA: cuDNN; n->impl >= 16, src/backend/cuda/cuda.h) */
static const char *only;             /* MEMFIT_CUDA_TEST_ONLY */

static bool is_leaf(int op) { return op == MF_OP_INPUT || op == MF_OP_PARAM || op == MF_OP_BUFFER; }

/* Backend memory (host memory for the CPU backend, which has no allocator). */
static void *bmem_alloc(const mf_backend *be, size_t n) {
  char e[256];
  if (be->alloc) return be->alloc(n, e, sizeof e);
  return aligned_alloc(256, (n + 255) / 256 * 256);
}
static void bmem_free(const mf_backend *be, void *p) {
  if (be->free) be->free(p);
  else free(p);
}
static void bmem_fill(const mf_backend *be, void *p, int byte, size_t n) {
  if (be->fill) be->fill(p, byte, n);
  else memset(p, byte, n);
}
static void bmem_read(const mf_backend *be, void *host, const void *p, size_t n) {
  if (be->copy_out) be->copy_out(host, p, n);
  else memcpy(host, p, n);
}
/* index of the first byte of h[0..n) that is not `byte`, or -1 */
static int64_t first_not(const uint8_t *h, size_t n, int byte) {
  for (size_t i = 0; i < n; i++)
    if (h[i] != (uint8_t)byte) return (int64_t)i;
  return -1;
}

/* Runs the kernel of node `id` of plan p alone: every source a fresh zero-filled buffer, the output
 * and the workspace (exactly the bytes the backend's workspace function gives) sentinel-filled, each
 * followed by GUARD sentinel bytes. Checks the kernel reports no error, writes no guard byte and
 * leaves its sources unchanged (batch norm's running statistics, sources 3 and 4, are updated in
 * place by design). Returns 0 when everything held. */
static int kernel_alone(const char *name, const mf_plan *p, int id) {
  const mf_graph *g = p->g;
  const mf_backend *be = p->be;
  const mf_node *n = &g->nodes[id];
  size_t ob = mf_node_bytes(n), wb = be->workspace(g, n), sb[MF_MAX_SRC];
  void *src[MF_MAX_SRC] = {0}, *out = bmem_alloc(be, ob + GUARD), *ws = wb ? bmem_alloc(be, wb + GUARD) : NULL;
  int bad = 0, ok = out && (ws || !wb);
  for (int j = 0; j < n->nsrc; j++) {
    sb[j] = mf_node_bytes(&g->nodes[n->src[j]]);
    src[j] = bmem_alloc(be, sb[j] + GUARD);
    if (!src[j]) { ok = 0; continue; }
    bmem_fill(be, src[j], 0, sb[j]); /* zero bytes: 0.0 in every float dtype, label 0 */
    bmem_fill(be, (char *)src[j] + sb[j], SENT, GUARD);
  }
  size_t big = ob > wb ? ob : wb;
  for (int j = 0; j < n->nsrc; j++) big = sb[j] > big ? sb[j] : big;
  uint8_t *h = malloc(big + GUARD); /* host copy of one buffer */
  ok = ok && h;
  CHECK(ok, "%s: node %d (%s): could not allocate its buffers", name, id, mf_op_name(n->op));
  if (ok) {
    bmem_fill(be, out, SENT, ob + GUARD);
    if (ws) bmem_fill(be, ws, SENT, wb + GUARD);
    mf_kctx k = {.g = g, .grad_seed = 1.0, .nthreads = 2, .stream = NULL};
    be->kernels[n->op](&k, n, out, src, ws);
    int rc = be->sync ? be->sync(NULL) : 0;
    CHECK(rc == 0, "%s: kernel %s (node %d '%s') reported an error (launch, cuBLAS or execution)", name, mf_op_name(n->op), id, n->name);
    bad |= rc != 0;
    bmem_read(be, h, (char *)out + ob, GUARD);
    int64_t at = first_not(h, GUARD, SENT);
    CHECK(at < 0, "%s: kernel %s (node %d '%s') wrote past its %zu-byte output (first changed guard byte: +%lld)", name,
          mf_op_name(n->op), id, n->name, ob, (long long)at);
    bad |= at >= 0;
    if (ws) {
      bmem_read(be, h, ws, wb + GUARD);
      at = first_not(h + wb, GUARD, SENT);
      CHECK(at < 0, "%s: kernel %s (node %d '%s') wrote past its %zu-byte workspace (the planner reserves exactly that)", name,
            mf_op_name(n->op), id, n->name, wb);
      bad |= at >= 0;
    }
    for (int j = 0; j < n->nsrc; j++) {
      bool in_place = n->op == MF_OP_NORM && j >= 3;
      bmem_read(be, h, src[j], sb[j] + GUARD);
      int64_t body = in_place ? -1 : first_not(h, sb[j], 0), guard = first_not(h + sb[j], GUARD, SENT);
      CHECK(body < 0 && guard < 0, "%s: kernel %s (node %d '%s') wrote into source %d (%s)", name, mf_op_name(n->op), id, n->name, j,
            body >= 0 ? "its data" : "past its end");
      bad |= body >= 0 || guard >= 0;
    }
  }
  free(h);
  for (int j = 0; j < n->nsrc; j++)
    if (src[j]) bmem_free(be, src[j]);
  if (ws) bmem_free(be, ws);
  if (out) bmem_free(be, out);
  return bad;
}

/* Every kernel of the training program alone (kernel_alone), after checking the plan reserved for
 * each step exactly the workspace the backend asks for. Counts the ops seen for the coverage check. */
static void kernels_alone(const char *name, const mf_plan *p, int count_ops) {
  const mf_program *pr = &p->train;
  int failed = 0;
  for (int i = 0; i < pr->n_steps && failed < 3; i++) {
    int id = pr->steps[i];
    const mf_node *n = &p->g->nodes[id];
    if (count_ops) op_ran[n->op]++;
    if (n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT) {
      conv_steps++;
      conv_special += !strcmp(p->be->name, "cuda") && n->impl >= 16;
    }
    CHECK(pr->ws_size[i] == p->be->workspace(p->g, n), "%s: step %d (%s): planned workspace %zu, backend asks for %zu", name, i,
          mf_op_name(n->op), pr->ws_size[i], p->be->workspace(p->g, n));
    if (!is_leaf(n->op)) failed += kernel_alone(name, p, id);
  }
  if (count_ops)
    for (int id = 0; id < p->g->n; id++) /* leaves and low-precision copies run outside the program */
      if (is_leaf(p->g->nodes[id].op) || p->g->nodes[id].op == MF_OP_PARAM_LP) op_ran[p->g->nodes[id].op]++;
}

/* Persistent arenas: the debug scan found no byte changed in the guard after the planned bytes (the
 * measured-bytes figure of these arenas is the planned size by construction, so look at the scan). */
static void check_guards(const char *name, const mf_session *s) {
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    if (a != MF_ARENA_ACT && s->arena[a])
      CHECK(s->scanned[a] <= s->plan->arena[a], "%s: arena %s: a kernel wrote %zu bytes past its %zu planned bytes", name,
            mf_arena_name((mf_arena_kind)a), s->scanned[a] - s->plan->arena[a], s->plan->arena[a]);
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
  if (!strcmp(backend, test_backend)) {
    char what[128];
    snprintf(what, sizeof what, "%s (%s, %s)", name, backend, mf_dtype_name(act));
    check_guards(what, s);
    kernels_alone(what, p, 1);
  }
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
/* f64 graphs still hold f32 scalars (losses) and f32 inputs, so not much tighter than f32 */
static double tol_for(mf_dtype act) { return act == MF_F64 ? 1e-5 : act == MF_F32 ? 2e-4 : act == MF_F16 ? 1e-2 : 4e-2; }

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

static void op_case(const char *name, build_fn build, int variant) {
  if (only && !strstr(name, only)) return;
  const mf_dtype acts[4] = {MF_F32, MF_BF16, MF_F16, MF_F64};
  for (int d = 0; d < 4; d++) {
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
  mf_tensor x = P(g, v == 1 || v == 10 ? "posx" : (v == 4 || v == 5 || v == 7) ? "nzx" : "x", 3, SH(3, 4, 33));
  switch (v) {
  case 10: return mf_sqrt(g, x);
  case 11: return mf_erf(g, x);
  case 12: return mf_gelu(g, x);
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
  if (v == 10) { /* >= 256 terms per output, innermost axis kept (one block per output) */
    mf_tensor big = P(g, "big", 3, SH(4, 40, 70));
    return mf_mean(g, big, (1u << 0) | (1u << 2), 0); /* [40] */
  }
  if (v == 11) return mf_sum(g, P(g, "big", 3, SH(5, 2, 300)), 1u << 2, 0);  /* [5,2]: innermost reduced, block per output */
  if (v == 12) return mf_sum(g, P(g, "big", 2, SH(300, 4100)), 1u << 0, 1); /* [1,4100]: many outputs, thread per output */
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
/* conv2d: 3x3 p1 with bias, stride 2, 1x1 direct, groups 2, 5x5 p2, 3x3 no padding, 1x3 and 3x1
 * kernels, depthwise; then images big enough that the CUDA backend splits the batch (its column
 * buffer holds at most 32 MiB: 3 + 2 images in f32) with backward data as a transposed convolution
 * (OC <= C) and as w^T dy + col2im (OC > C) */
static mf_tensor c_conv(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v >= 11) { /* dilated, pads per side, transposed */
    mf_tensor x = P(g, "x", 4, SH(2, 4, 9, 10));
    mf_conv_cfg d2 = {1, 2, 1, 2, 2, 2, 2, 0, 0}, as = {2, 1, 1, 0, 1, 1, 0, 0, 0}, tg = {2, 2, 2, 1, 0, 1, 2, 0, 0};
    mf_conv_cfg hw = {2, 1, 1, 1, 2, 0, 1, 1, 2}, thw = {3, 1, 1, 1, 1, 1, 1, 2, 1};
    if (v == 15) return mf_conv2d_cfg(g, x, P(g, "w", 4, SH(6, 4, 3, 3)), P(g, "bias", 1, SH(6)), &hw);
    if (v == 16) return mf_conv_transpose2d_cfg(g, x, P(g, "w", 4, SH(4, 3, 3, 3)), &thw, 1, 1);
    if (v == 11) return mf_conv2d_cfg(g, x, P(g, "w", 4, SH(6, 4, 3, 3)), P(g, "bias", 1, SH(6)), &d2);
    if (v == 12) return mf_conv2d_cfg(g, x, P(g, "w", 4, SH(5, 4, 3, 3)), -1, &as);
    if (v == 13) return mf_conv_transpose2d(g, x, P(g, "w", 4, SH(4, 3, 3, 3)), P(g, "bias", 1, SH(3)), 2, 1, 1, 1);
    return mf_conv_transpose2d_cfg(g, x, P(g, "w", 4, SH(4, 3, 3, 2)), &tg, 1, 0);
  }
  if (v >= 9) {
    mf_tensor x = P(g, "x", 4, SH(5, 8, 128, 256));
    return mf_conv2d(g, x, P(g, "w", 4, SH(v == 9 ? 8 : 12, 8, 3, 3)), P(g, "bias", 1, SH(v == 9 ? 8 : 12)), 1, 1, 1);
  }
  mf_tensor x = P(g, "x", 4, SH(2, 4, 9, 10));
  switch (v) {
  case 6: return mf_conv2d(g, x, P(g, "w", 4, SH(4, 4, 1, 3)), -1, 1, 0, 1);
  case 7: return mf_conv2d(g, x, P(g, "w", 4, SH(6, 4, 3, 1)), P(g, "bias", 1, SH(6)), 2, 0, 1);
  case 8: return mf_conv2d(g, x, P(g, "w", 4, SH(4, 1, 3, 3)), P(g, "bias", 1, SH(4)), 1, 1, 4);
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
  if (v >= 3) { /* v 4: rows longer than a block */
    int64_t N = v == 3 ? 9 : 70, K = v == 3 ? 6 : 600;
    mf_tensor logits = P(g, "logits", 2, SH(N, K));
    mf_tensor lab = mf_input_typed(g, "labels", MF_I32, 1, SH(N)); /* some -1: ignored rows */
    return mf_softmax_ce(g, logits, lab);
  }
  mf_tensor p = P(g, "p", 3, SH(3, 4, 5)), t = P(g, "t", 3, SH(3, 4, 5));
  return v == 0 ? mf_mse_loss(g, p, t) : v == 1 ? mf_mse_loss_sum(g, p, t) : mf_l1_loss(g, p, t);
}
/* batch norm (training with running buffers, eval) and group norm on [3,6,5,4] */
static mf_tensor c_norm(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 3) return mf_l2_normalize(g, P(g, "z", 2, SH(7, 300)), 1e-12);       /* rows longer than a block */
  if (v == 4) return mf_l2_normalize(g, P(g, "x", 4, SH(3, 6, 5, 4)), 1e-12);   /* rows of 4 */
  if (v == 5) return mf_softmax(g, P(g, "z", 2, SH(7, 300)), -1);               /* rows longer than a block */
  if (v == 6) return mf_log_softmax(g, P(g, "x", 4, SH(3, 6, 5, 4)), 1);        /* along an inner axis */
  mf_tensor x = P(g, "x", 4, SH(3, 6, 5, 4)), ga = P(g, "gamma", 1, SH(6)), be = P(g, "beta", 1, SH(6));
  if (v == 2) return mf_groupnorm(g, x, ga, be, 3, 1e-5);
  mf_tensor rm = mf_buffer(g, "buf_mean", 1, SH(6), MF_INIT_ZERO, 0), rv = mf_buffer(g, "buf_var", 1, SH(6), MF_INIT_ONE, 0);
  return mf_batchnorm(g, x, ga, be, rm, rv, v == 0, 0.1, 1e-5);
}
/* pooling, upsampling, nearest, bilinear and bicubic resize and padding on [2,3,9,8] */
static mf_tensor c_pool(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  mf_tensor x = P(g, "x", 4, SH(2, 3, 9, 8));
  switch (v) {
  case 0: return mf_avgpool2d(g, x, 3, 2, 1);
  case 1: return mf_maxpool2d(g, x, 2, 2, 0);
  case 2: return mf_maxpool2d(g, x, 3, 1, 1);
  case 3: return mf_global_avgpool(g, x);
  case 4: return mf_upsample_nearest(g, x, 2);
  case 6: return mf_resize_linear(g, x, 18, 16, MF_RESIZE_HALF_PIXEL, 2, 2);
  case 7: return mf_resize_linear(g, x, 5, 7, MF_RESIZE_ALIGN_CORNERS, 0, 0);
  case 8: return mf_pad2d(g, x, MF_PAD_REFLECT, 2, 1, 1, 3, 0);
  case 9: return mf_pad2d(g, x, MF_PAD_EDGE, 0, 2, 3, 1, 0);
  case 10: return mf_pad2d(g, x, MF_PAD_CONSTANT, 1, 0, 2, 2, 1.5);
  case 11: { /* max 3x2, strides 2,1, dilations 2,1, pads t1 r1, ceil */
    mf_pool_cfg c = {3, 2, 2, 1, 2, 1, 1, 0, 0, 1, 0, 1};
    return mf_pool2d_cfg(g, MF_POOL_MAX, x, &c);
  }
  case 12: { /* average 2x3, strides 1,2, pads l2 b1, padding not counted */
    mf_pool_cfg c = {2, 3, 1, 2, 1, 1, 0, 2, 1, 0, 1, 0};
    return mf_pool2d_cfg(g, MF_POOL_AVG, x, &c);
  }
  case 13: return mf_resize_nearest(g, x, 13, 5, MF_RESIZE_HALF_PIXEL, MF_NEAREST_ROUND_PREFER_FLOOR, 0, 0);
  case 14: return mf_resize_nearest(g, x, 4, 20, MF_RESIZE_ASYMMETRIC, MF_NEAREST_FLOOR, 0.5, 2.5);
  case 15: return mf_resize_nearest(g, x, 27, 12, MF_RESIZE_ALIGN_CORNERS, MF_NEAREST_CEIL, 3, 1.5);
  case 16: return mf_resize_cubic(g, x, 13, 5, MF_RESIZE_PYTORCH_HALF_PIXEL, -0.75, 0, 0, 0);
  case 17: return mf_resize_cubic(g, x, 4, 20, MF_RESIZE_ASYMMETRIC, -0.5, 1, 0.5, 2.5);
  default: { /* global max pooling has kernels but no builder: a global pool node switched to max */
    mf_tensor y = mf_global_avgpool(g, x);
    if (y >= 0) g->nodes[y].ip[0] = MF_POOL_MAX;
    return y;
  }
  }
}
/* dropout (the same masks on both backends: a hash of the session's step seed) and pow with constant and tensor
 * exponents on positive bases */
static mf_tensor c_random(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  mf_tensor x = P(g, "x", 4, SH(2, 3, 9, 8));
  if (v == 0) return mf_dropout(g, x, 0.3);
  if (v == 1) return mf_pow_scalar(g, mf_exp(g, x), 2.5);
  return mf_pow(g, mf_exp(g, x), P(g, "e", 4, SH(1, 3, 1, 1)));
}
/* Haar wavelet and inverse on [2,3,6,8] / [2,12,3,4] */
static mf_tensor c_wave(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 0) return mf_dwt_haar(g, P(g, "x", 4, SH(2, 3, 6, 8)));
  return mf_idwt_haar(g, P(g, "y", 4, SH(2, 12, 3, 4)));
}
/* the fused SSIM map: v0 k3 on [2,3,9,8] (both gradients), v1 k7 on [1,2,12,20] with y an input (x's gradient alone) */
static mf_tensor c_ssim(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 0) return mf_ssim_map(g, P(g, "x", 4, SH(2, 3, 9, 8)), P(g, "y", 4, SH(2, 3, 9, 8)), 3);
  return mf_ssim_map(g, P(g, "x", 4, SH(1, 2, 12, 20)), mf_input(g, "y", 4, SH(1, 2, 12, 20)), 7);
}

/* codebook look-up and quantisation: v0 the nearest-row index of scores s [6,5] (an input: argmin has
 * no gradient) looks up rows of a codebook [5,7], passed straight through to x [6,7] and added to
 * itself (the codebook's gradient is gather's scatter-add); v1 round(4x) straight through to 4x;
 * v2 argmin along the middle axis of [2,3,4] flattened into indices of a [3,9] table; v3 an all-gather of 1 rank */
static mf_tensor c_index(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 1) {
    mf_tensor x4 = mf_mul_scalar(g, P(g, "x", 3, SH(3, 4, 33)), 4.0);
    return mf_straight_through(g, mf_round(g, x4), x4);
  }
  if (v == 3) /* the all-gather of one rank (a copy; forward only, so of an input) plus a parameter */
    return mf_add(g, mf_allgather(g, mf_input(g, "s", 2, SH(6, 5)), 1), P(g, "x", 2, SH(6, 5)));
  if (v == 2) {
    mf_tensor idx = mf_reshape(g, mf_argmin(g, mf_input(g, "s", 3, SH(2, 3, 4)), 1), 1, SH(8));
    return mf_gather(g, P(g, "table", 2, SH(3, 9)), idx);
  }
  mf_tensor zq = mf_gather(g, P(g, "codebook", 2, SH(5, 7)), mf_argmin(g, mf_input(g, "s", 2, SH(6, 5)), -1));
  return mf_add(g, mf_straight_through(g, zq, P(g, "x", 2, SH(6, 7))), zq);
}

/* Operands of different dtypes (GEMMs convert into f32 workspace first): an f32 input through two
 * convolutions (3x3, then 1x1 direct ones) and a matmul, against weights in the activation dtype */
static mf_tensor c_mixed(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 2) return mf_matmul(g, mf_input_typed(g, "x", MF_F32, 2, SH(6, 40)), P(g, "w", 2, SH(40, 24)), 0, 0);
  mf_tensor x = mf_input_typed(g, "x", MF_F32, 4, SH(2, 4, 9, 10));
  int k = v == 0 ? 3 : 1, p = v == 0 ? 1 : 0;
  mf_tensor y1 = mf_conv2d(g, x, P(g, "w1", 4, SH(6, 4, k, k)), P(g, "b1", 1, SH(6)), 1, p, 1);
  return mf_conv2d(g, y1, P(g, "w2", 4, SH(5, 6, k, k)), -1, 1, p, 1);
}

/* Image-GS rasteriser on a 40x32 image (3x2 tiles), 12 Gaussians, C = 3: v0 top-K 4 selected again in
 * backward; v1 top-K 10 kept for backward; v2 its stats (i32 [5] counts, looked up in a [512,2] table) */
static mf_tensor c_raster(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  /* the stats have no gradient: their Gaussians are inputs there */
  mf_tensor (*leaf)(mf_graph *, const char *, int, const int64_t *) = v == 2 ? mf_input : P;
  mf_tensor pos = mf_mul_scalar(g, leaf(g, "pos_xy", 2, SH(12, 2)), 0.3); /* 0.06 .. about 1 */
  mf_tensor isc = leaf(g, "pos_isc", 2, SH(12, 2));                      /* 0.2 .. about 3 per pixel */
  mf_tensor rot = leaf(g, "rot", 2, SH(12, 1));
  mf_raster_opts o;
  memset(&o, 0, sizeof o);
  o.width = 40;
  o.height = 32;
  o.top_k = v ? 10 : 4;
  o.keep_topk = v == 1;
  if (v == 2) return mf_gather(g, P(g, "table", 2, SH(512, 2)), mf_gauss_raster_stats(g, pos, isc, rot, -1, &o));
  return mf_gauss_raster(g, pos, isc, rot, P(g, "feat", 2, SH(12, 3)), -1, &o);
}

/* fused attention: v0 [2,2,9,5] heads, scores recomputed; v1 probabilities kept; v2 q [1,1100,4] against
 * 1000 keys (two score tiles); v3 the VQ nearest code of z [40,6] in a codebook [33,6], looked up and
 * passed straight through to z (the codebook's gradient is gather's scatter-add) */
static mf_tensor c_attention(mf_graph *g, mf_dtype act, int v) {
  (void)act;
  if (v == 4) { /* VQGAN's adaptive-weight taps on a conv's output (ops/adaptive.c): GAN t squared, reconstruction r cubed */
    mf_tensor h = P(g, "h", 4, SH(2, 4, 6, 6)), w = P(g, "w", 4, SH(3, 4, 3, 3));
    mf_tensor x = mf_conv2d(g, h, w, -1, 1, 1, 1);
    mf_tensor f = mf_input(g, "pos_factor", 1, SH(1));
    mf_tensor lam = mf_state(g, "lambda", MF_F32, 1, SH(1), MF_INIT_ZERO, 0);
    mf_tensor t = mf_adaptive_tap(g, x, h, w, f, lam, 1, 1, 0.8, 1e4);
    mf_tensor r = mf_adaptive_rec_tap(g, x, h, w, 1, 1);
    return mf_add(g, mf_mul(g, t, t), mf_mul(g, r, mf_mul(g, r, r)));
  }
  if (v == 3) {
    mf_tensor z = P(g, "z", 2, SH(40, 6)), cb = P(g, "codebook", 2, SH(33, 6));
    mf_tensor zq = mf_gather(g, cb, mf_vq_nearest(g, z, cb));
    return mf_add(g, mf_straight_through(g, zq, z), zq);
  }
  if (v == 2)
    return mf_attention(g, P(g, "q", 3, SH(1, 1100, 4)), P(g, "k", 3, SH(1, 1000, 4)), P(g, "v", 3, SH(1, 1000, 4)), 0, 0);
  return mf_attention(g, P(g, "q", 4, SH(2, 2, 9, 5)), P(g, "k", 4, SH(2, 2, 7, 5)), P(g, "v", 4, SH(2, 2, 7, 5)), 0, v == 1);
}

static void test_ops(void) {
  char nm[64];
  const char *bn[] = {"add", "sub", "mul", "div"}, *sn[] = {"same shape", "per-channel", "trailing"};
  for (int v = 0; v < 12; v++) {
    snprintf(nm, sizeof nm, "%s %s", bn[v % 4], sn[v / 4]);
    op_case(nm, c_binary, v);
  }
  const char *un[] = {"exp", "log", "sigmoid", "tanh", "relu", "leaky_relu", "silu", "clamp", "add_scalar", "mul_scalar",
                      "sqrt", "erf", "gelu"};
  for (int v = 0; v < 13; v++) op_case(un[v], c_unary, v);
  const char *shn[] = {"concat axis 1", "concat axis 3", "slice axis 2", "slice axis 3", "reshape", "permute", "transpose",
                       "sum N,H,W", "mean C keepdim", "sum W", "mean of 4x70 per output", "sum of 300 contiguous",
                       "sum of 300 rows, 4100 outputs"};
  for (int v = 0; v < 13; v++) op_case(shn[v], c_shape, v);
  const char *mn[] = {"matmul", "matmul a^T b^T", "matmul batched a, 2-D b", "matmul batched", "matmul batched a^T b^T", "linear"};
  for (int v = 0; v < 6; v++) op_case(mn[v], c_matmul, v);
  const char *cn[] = {"conv 3x3 p1 bias", "conv 3x3 s2",   "conv 1x1 bias",    "conv groups 2",
                      "conv 5x5 p2",      "conv 3x3 p0",   "conv 1x3",         "conv 3x1 s2 bias",
                      "conv depthwise",   "conv 128x256 OC=C", "conv 128x256 OC>C", "conv dilation 2",
                      "conv pads 0,1,1,0 s2", "conv transpose s2 p1 out_pad 1 bias", "conv transpose groups 2 dilation 2",
                      "conv strides 2,1 dilations 1,2 pads 1,2,0,1", "conv transpose strides 3,2 out_pad 1,1"};
  for (int v = 0; v < 17; v++) op_case(cn[v], c_conv, v);
  const char *mx[] = {"mixed dtypes conv 3x3", "mixed dtypes conv 1x1", "mixed dtypes matmul"};
  for (int v = 0; v < 3; v++) op_case(mx[v], c_mixed, v);
  const char *ln[] = {"mse", "mse sum", "l1", "softmax cross-entropy", "softmax cross-entropy 600 classes"};
  for (int v = 0; v < 5; v++) op_case(ln[v], c_loss, v);
  const char *nn[] = {"batchnorm train", "batchnorm eval", "groupnorm", "l2_normalize [7,300]", "l2_normalize [3,6,5,4]",
                      "softmax [7,300]", "log_softmax [3,6,5,4] axis 1"};
  for (int v = 0; v < 7; v++) op_case(nn[v], c_norm, v);
  const char *pn[] = {"avgpool 3 s2 p1", "maxpool 2 s2", "maxpool 3 s1 p1", "global avgpool", "upsample 2", "global maxpool",
                      "resize bilinear 2x", "resize align_corners down", "pad reflect", "pad edge", "pad constant 1.5",
                      "maxpool 3x2 s2,1 d2,1 pads 1,0,0,1 ceil", "avgpool 2x3 s1,2 pads 0,2,1,0 exclude pad",
                      "resize nearest sizes 13x5", "resize nearest asymmetric floor 0.5 x 2.5", "resize nearest align_corners ceil 3 x 1.5",
                      "resize cubic sizes 13x5", "resize cubic a -0.5 exclude_outside 0.5 x 2.5"};
  for (int v = 0; v < 18; v++) op_case(pn[v], c_pool, v);
  const char *dn[] = {"dropout 0.3", "pow_scalar 2.5", "pow per-channel exponent"};
  for (int v = 0; v < 3; v++) op_case(dn[v], c_random, v);
  op_case("ssim map k3", c_ssim, 0);
  op_case("ssim map k7, y an input", c_ssim, 1);
  op_case("dwt", c_wave, 0);
  op_case("idwt", c_wave, 1);
  const char *xn[] = {"codebook look-up (argmin, gather, straight-through)", "round straight through", "argmin axis 1 + gather",
                      "all-gather of 1 rank"};
  for (int v = 0; v < 4; v++) op_case(xn[v], c_index, v);
  const char *rn[] = {"gauss raster top-K 4 recomputed", "gauss raster top-K 10 kept", "gauss raster stats"};
  for (int v = 0; v < 3; v++) op_case(rn[v], c_raster, v);
  const char *an[] = {"attention recomputed", "attention kept", "attention over two tiles", "vq nearest code", "adaptive GAN tap"};
  for (int v = 0; v < 5; v++) op_case(an[v], c_attention, v);
  printf("conv steps run alone: %d, on cuDNN: %d\n", conv_steps, conv_special);
  /* every op of the registry ran on the compared backend in some case above */
  for (int op = 0; op < MF_OP_COUNT && !only; op++) CHECK(op_ran[op] > 0, "op %s is not exercised by any case of this test", mf_op_name(op));
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
  if (!strcmp(backend, test_backend)) { /* the model's own shapes, each kernel alone */
    char what[96];
    snprintf(what, sizeof what, "steg %s %s (%s)", mf_dtype_name(act), variant ? "memory-free" : "stored", backend);
    check_guards(what, s);
    kernels_alone(what, p, 0);
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
      /* persistent arenas do not depend on the backend, except that a device backend keeps a second
       * copy of the inputs (the next batch lands during the step); only workspaces differ */
      for (int a = 0; pc && a < MF_ARENA_COUNT; a++)
        if (a != MF_ARENA_ACT && a != MF_ARENA_DATA)
          CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_plan_arena_bytes(pc, (mf_arena_kind)a), "%s: arena %s differs cpu/cuda",
                presets[i], mf_arena_name((mf_arena_kind)a));
      if (pc)
        CHECK(p->input_slot_bytes == pc->input_slot_bytes &&
                  mf_plan_arena_bytes(p, MF_ARENA_DATA) == (size_t)p->input_slots * p->input_slot_bytes &&
                  mf_plan_arena_bytes(pc, MF_ARENA_DATA) == (size_t)pc->input_slots * pc->input_slot_bytes,
              "%s: data staging: cuda %zu bytes (%d slots of %zu), cpu %zu (%d of %zu)", presets[i], mf_plan_arena_bytes(p, MF_ARENA_DATA),
              p->input_slots, p->input_slot_bytes, mf_plan_arena_bytes(pc, MF_ARENA_DATA), pc->input_slots, pc->input_slot_bytes);
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

/* Persistent state on the compared backend (its ema_update and copy_dd): the EMA after each update
 * against k = m k + (1-m) q in f64 from the parameter it produced (each step rounds m, 1-m, two
 * products and a sum in f32: gamma_3 of the terms, carried over the steps), and both rings against
 * the keys it computed, exactly, over several wrap-arounds (3 keys per step into 7 rows and into 2). */
static void test_state(void) {
  mf_dtype acts[2] = {MF_F32, MF_BF16};
  for (int ai = 0; ai < 2; ai++) {
    mf_dtype act = acts[ai];
    char name[64];
    snprintf(name, sizeof name, "state/%s", mf_dtype_name(act));
    mf_graph *g = mf_graph_init(act);
    mf_tensor x = mf_input(g, "x", 2, (int64_t[]){3, 4}), y = mf_input(g, "y", 2, (int64_t[]){3, 5});
    mf_tensor w = mf_param(g, "w", 2, (int64_t[]){4, 5}, MF_INIT_NORMAL, 0.5);
    mf_tensor pw = mf_param(g, "p", 2, (int64_t[]){7, 5}, MF_INIT_NORMAL, 0.3);
    mf_tensor wk = mf_ema(g, "wk", w, 0.9);
    mf_tensor k = mf_matmul(g, x, wk, 0, 0);                                   /* [3,5] */
    mf_tensor q1 = mf_ring(g, "queue", 7, 5), q2 = mf_ring(g, "small", 2, 5);
    mf_ring_push(g, q1, k);
    mf_ring_push(g, q2, k);
    mf_tensor q = mf_matmul(g, x, w, 0, 0);                                    /* [3,5] */
    mf_tensor pred = mf_add(g, mf_add(g, q, mf_mul_scalar(g, k, 0.5)), mf_matmul(g, mf_matmul(g, q, q1, 0, 1), pw, 0, 0));
    mf_tensor loss = mf_mse_loss(g, pred, y);
    mf_train_opts o = test_opts(test_backend);
    o.plan.optim = MF_ADAMW;
    o.lr = 0.05;
    char err[512];
    mf_session *s = mf_graph_error(g) ? NULL : mf_session_init(g, loss, &o, err, sizeof err);
    if (!s) {
      CHECK(0, "%s: %s", name, mf_graph_error(g) ? mf_graph_error(g) : err);
      mf_graph_free(g);
      continue;
    }
    float r1[35] = {0}, r2[10] = {0}, kv[15], wv[20], ev[20], got1[35], got2[10];
    double ref[20], bound[20] = {0};
    int64_t p1 = 0, p2 = 0;
    int ring_bad = 0, ema_bad = 0;
    mf_session_read(s, w, wv, 20);
    for (int i = 0; i < 20; i++) ref[i] = wv[i];
    for (int t = 0; t < 8; t++) {
      float xv[12], yv[15];
      for (int i = 0; i < 12; i++) xv[i] = (float)(((i * 7 + t * 3) % 11) - 5) / 8.0f;
      for (int i = 0; i < 15; i++) yv[i] = (float)(((i * 5 + t) % 9) - 4) / 8.0f;
      mf_session_write_input(s, x, xv, 12);
      mf_session_write_input(s, y, yv, 15);
      mf_session_micro_step(s);
      mf_session_read(s, k, kv, 15);
      for (int i = 0; i < 3; i++) {
        memcpy(r1 + p1 * 5, kv + i * 5, 5 * sizeof(float));
        memcpy(r2 + p2 * 5, kv + i * 5, 5 * sizeof(float));
        p1 = (p1 + 1) % 7;
        p2 = (p2 + 1) % 2;
      }
      mf_session_read(s, q1, got1, 35);
      mf_session_read(s, q2, got2, 10);
      ring_bad += memcmp(got1, r1, sizeof r1) || memcmp(got2, r2, sizeof r2) || mf_session_ring_pos(s, q1) != p1 ||
                  mf_session_ring_pos(s, q2) != p2;
      mf_session_update(s);
      mf_session_read(s, w, wv, 20);
      mf_session_read(s, wk, ev, 20);
      for (int i = 0; i < 20; i++) {
        double prev = ref[i], u = 0x1p-24, g3 = 3 * u / (1 - 3 * u);
        ref[i] = 0.9 * prev + 0.1 * wv[i];
        bound[i] = 0.9 * bound[i] + g3 * (0.9 * (fabs(prev) + bound[i]) + 0.1 * fabs(wv[i]));
        ema_bad += fabs(ev[i] - ref[i]) > bound[i];
      }
    }
    CHECK(!ring_bad, "%s: rings differ from the keys the backend computed at %d steps", name, ring_bad);
    CHECK(!ema_bad, "%s: %d EMA values outside their bound", name, ema_bad);
    check_guards(name, s);
    for (int a = 0; a < MF_ARENA_COUNT; a++)
      CHECK(mf_plan_arena_bytes(s->plan, (mf_arena_kind)a) == mf_session_measured_bytes(s, (mf_arena_kind)a),
            "%s: arena %s planned %zu measured %zu", name, mf_arena_name((mf_arena_kind)a), mf_plan_arena_bytes(s->plan, (mf_arena_kind)a),
            mf_session_measured_bytes(s, (mf_arena_kind)a));
    printf("  %s on %s: EMA within its bound, rings exact over 8 steps (queue at %lld)\n", name, test_backend, (long long)p1);
    mf_session_free(s);
    mf_graph_free(g);
  }
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  test_plans();
  const char *tb = getenv("MEMFIT_CUDA_TEST_BACKEND");
  only = getenv("MEMFIT_CUDA_TEST_ONLY");
  if (only && !*only) only = NULL;
  if (tb && !strcmp(tb, "cpu")) { /* harness self-check: CPU against CPU */
    test_backend = "cpu";
    test_ops();
    test_steg();
    if (!only) test_state();
    return check_finish("test_cuda_ops (cpu vs cpu)");
  }
#ifndef MEMFIT_HAVE_CUDA
  (void)test_ops; /* compiled everywhere, run only with a device */
  (void)test_steg;
  (void)test_state;
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
  if (!only) test_state();
  /* everything freed: device memory back where it was after start-up (lazily loaded kernels aside) */
  mf_cuda_get_info(&info, err, sizeof err);
  printf("free device memory: %.1f MiB after start-up, %.1f MiB at the end (difference: lazily loaded kernels)\n",
         (double)free_start / (1 << 20), (double)info.free_bytes / (1 << 20));
  CHECK(info.free_bytes + ((size_t)64 << 20) >= free_start, "device memory leaked: %zu -> %zu free", free_start, info.free_bytes);
  return check_finish("test_cuda_ops");
#endif
}

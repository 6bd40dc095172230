/* test_conv_bf16.c — convolutions stored in bf16 on oneDNN (src/backend/cpu/conv_dnnl.c): forward, backward-data and
 * backward-weights against f64 direct convolutions of the stored operands, within a derived bound; where this CPU's
 * oneDNN has no bf16 kernel (no AVX-512) the planner keeps memfit's own algorithms, and the test says so; then a
 * bf16 training session with its convs where the planner put them and measured == planned for every arena.
 *
 * The bound: bf16 x bf16 products are exact in f32, so whatever order and blocking oneDNN sums them in, the f32
 * accumulator is within gamma_n = n u / (1 - n u) (u = 2^-24, n the terms summed plus the bias and the post-op) times
 * S = sum of |x| |w| (+ |b|) of the exact value; a bf16 output then rounds once more, within 2^-8 of its magnitude. */
#include "check.h"
#include "conv_session.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "ops/ops.h"
#include "plan/plan.h"
#include <omp.h>
#include <stdint.h>

typedef struct shape { int N, C, H, W, OC, K, stride, pad, bias; } shape;

/* runs node id on oneDNN with `threads` threads into out; 0 when oneDNN does not take it */
static int run_dnnl(const mf_graph *g, int id, void **data, void *out, int threads) {
  mf_node n = g->nodes[id];
  size_t wsb = 0;
  int t = mf_cpu_dnnl_conv_prepare(g, &n, threads, &wsb);
  if (!t) return 0;
  n.impl = MF_CPU_CONV_DNNL;
  n.impl_threads = (int16_t)t;
  void *ws = wsb ? aligned_alloc(64, (wsb + 63) / 64 * 64) : NULL;
  void *src[MF_MAX_SRC] = {0};
  for (int i = 0; i < n.nsrc; i++) src[i] = data[n.src[i]];
  char fault[256] = "";
  mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = threads, .fault = fault, .fault_len = sizeof fault};
  mf_backend_cpu.kernels[n.op](&k, &n, out, src, ws);
  CHECK(!fault[0], "%s: %s", n.name, fault);
  free(ws);
  return 1;
}

/* one shape, the three passes stored in bf16 (the weight gradient in wdt); returns the passes oneDNN took */
static int check_shape(const shape *s, mf_dtype wdt) {
  char what[160];
  snprintf(what, sizeof what, "N%d C%d %dx%d -> %d k%d s%d p%d%s dw %s", s->N, s->C, s->H, s->W, s->OC, s->K, s->stride, s->pad,
           s->bias ? " bias" : "", mf_dtype_name(wdt));
  mf_graph *g = mf_graph_init(MF_BF16);
  int x = mf_input_typed(g, "x", MF_BF16, 4, (int64_t[]){s->N, s->C, s->H, s->W});
  int w = mf_input_typed(g, "w", MF_BF16, 4, (int64_t[]){s->OC, s->C, s->K, s->K});
  int b = s->bias ? mf_input_typed(g, "b", MF_F32, 1, (int64_t[]){s->OC}) : -1;
  int wref = mf_input_typed(g, "wref", wdt, 4, (int64_t[]){s->OC, s->C, s->K, s->K}); /* the weight gradient's type */
  int y = mf_conv2d(g, x, w, b, s->stride, s->pad, 1); /* y [N, OC, OH, OW] */
  int dy = mf_input_typed(g, "dy", MF_BF16, 4, g->nodes[y].ne);
  int dx = mf_conv2d_bwd_data(g, dy, w, x, s->stride, s->pad, 1);
  int dw = mf_conv2d_bwd_weight(g, x, dy, wref, s->stride, s->pad, 1);
  CHECK(!mf_graph_error(g), "%s: %s", what, mf_graph_error(g));
  if (mf_graph_error(g)) { mf_graph_free(g); return 0; }
  int OH = (int)g->nodes[y].ne[2], OW = (int)g->nodes[y].ne[3];
  void **data = calloc((size_t)g->n, sizeof *data);
  for (int i = 0; i < g->n; i++) data[i] = calloc(mf_node_bytes(&g->nodes[i]), 1);
  float *vals[4] = {0}; /* x, w, b, dy as stored */
  int ops[4] = {x, w, b, dy};
  for (int i = 0; i < 4; i++) {
    if (ops[i] < 0) continue;
    const mf_node *o = &g->nodes[ops[i]];
    int64_t cnt = mf_node_numel(o);
    vals[i] = malloc((size_t)cnt * sizeof(float));
    conv_fill(vals[i], cnt, 7 + (uint64_t)i, 0);
    for (int64_t j = 0; j < cnt; j++) mf_st(data[ops[i]], o->dtype, j, vals[i][j]);
    for (int64_t j = 0; j < cnt; j++) vals[i][j] = (float)mf_ld(data[ops[i]], o->dtype, j);
  }
  const float *X = vals[0], *Wt = vals[1], *B = vals[2], *DY = vals[3];
  int64_t ny = mf_node_numel(&g->nodes[y]), nx = mf_node_numel(&g->nodes[x]), nw = mf_node_numel(&g->nodes[w]);
  /* f64 references and the sums of absolute values */
  double *ry = calloc((size_t)ny, 8), *rx = calloc((size_t)nx, 8), *rw = calloc((size_t)nw, 8);
  double *sy = calloc((size_t)ny, 8), *sx = calloc((size_t)nx, 8), *sw = calloc((size_t)nw, 8);
  for (int n = 0; n < s->N; n++)
    for (int k = 0; k < s->OC; k++)
      for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++) {
          size_t yi = (((size_t)n * s->OC + k) * OH + i) * OW + j;
          double gy = DY[yi], acc = B ? B[k] : 0, abs_acc = B ? fabs(B[k]) : 0;
          for (int c = 0; c < s->C; c++)
            for (int u = 0; u < s->K; u++)
              for (int v = 0; v < s->K; v++) {
                int r = i * s->stride + u - s->pad, cc = j * s->stride + v - s->pad;
                if (r < 0 || r >= s->H || cc < 0 || cc >= s->W) continue;
                size_t xi = (((size_t)n * s->C + c) * s->H + r) * s->W + cc, wi = (((size_t)k * s->C + c) * s->K + u) * s->K + v;
                acc += (double)X[xi] * Wt[wi];
                abs_acc += fabs((double)X[xi] * Wt[wi]);
                rx[xi] += gy * Wt[wi];
                sx[xi] += fabs(gy * Wt[wi]);
                rw[wi] += gy * X[xi];
                sw[wi] += fabs(gy * X[xi]);
              }
          ry[yi] = acc;
          sy[yi] = abs_acc;
        }
  /* terms per sum (+2: the bias and the post-op), and the output's rounding: bf16 2^-8, f32 none beyond the chain */
  double u = ldexp(1.0, -24);
  int terms[3] = {s->C * s->K * s->K + 2, s->OC * s->K * s->K + 2, s->N * OH * OW + 2};
  mf_dtype odt[3] = {MF_BF16, MF_BF16, wdt};
  int ids[3] = {y, dx, dw};
  const double *ref[3] = {ry, rx, rw}, *bound[3] = {sy, sx, sw};
  int64_t cnt[3] = {ny, nx, nw};
  const char *pass[3] = {"forward", "bwd-data", "bwd-weight"};
  int taken = 0;
  for (int pi = 0; pi < 3; pi++) {
    void *r1 = calloc((size_t)cnt[pi], mf_dtype_size(odt[pi]));
    if (!run_dnnl(g, ids[pi], data, r1, 2)) { free(r1); continue; }
    taken++;
    double gam = terms[pi] * u / (1 - terms[pi] * u), ur = odt[pi] == MF_BF16 ? ldexp(1.0, -8) : 0, worst = 0;
    int64_t bad = 0, at = -1;
    for (int64_t i = 0; i < cnt[pi]; i++) {
      double o = mf_ld(r1, odt[pi], i), e = fabs(o - ref[pi][i]), tol = gam * bound[pi][i] + ur * (fabs(ref[pi][i]) + gam * bound[pi][i]);
      if (!(e <= tol) && !bad++) at = i;
      double r = tol > 0 ? e / tol : e > 0 ? INFINITY : 0;
      if (r > worst) worst = r;
    }
    CHECK(!bad, "%s %s: %lld of %lld values outside the bound (first: [%lld] %.9g vs %.9g, bound %.3g)", what, pass[pi],
          (long long)bad, (long long)cnt[pi], (long long)at, at >= 0 ? mf_ld(r1, odt[pi], at) : 0.0, at >= 0 ? ref[pi][at] : 0.0,
          at >= 0 ? gam * bound[pi][at] + ur * fabs(ref[pi][at]) : 0.0);
    if (getenv("MEMFIT_TEST_VERBOSE")) printf("  %s %s: worst error / bound %.3g\n", what, pass[pi], worst);
    free(r1);
  }
  for (int i = 0; i < 4; i++) free(vals[i]);
  free(ry); free(rx); free(rw); free(sy); free(sx); free(sw);
  for (int i = 0; i < g->n; i++) free(data[i]);
  free(data);
  mf_graph_free(g);
  return taken;
}

/* x [2,32,16,16] -conv (w1 [48,32,3,3]) + bias-> relu -conv (w2 [16,48,3,3], stride 2)-> mse, in a bf16 session:
 * every conv where the planner put it (oneDNN when it takes bf16 here, else memfit's own), two steps, each
 * finite, measured == planned; returns the convs on oneDNN */
static int check_session(void) {
  mf_graph *g = mf_graph_init(MF_BF16);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 32, 16, 16}), t = mf_input(g, "t", 4, (int64_t[]){2, 16, 8, 8});
  mf_tensor w1 = mf_param(g, "w1", 4, (int64_t[]){48, 32, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor b1 = mf_param(g, "b1", 1, (int64_t[]){48}, MF_INIT_ZERO, 0);
  mf_tensor w2 = mf_param(g, "w2", 4, (int64_t[]){16, 48, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor h = mf_relu(g, mf_conv2d(g, x, w1, b1, 1, 1, 1)); /* [2,48,16,16] */
  mf_tensor y = mf_conv2d(g, h, w2, -1, 2, 1, 1);             /* [2,16,8,8] */
  mf_tensor loss = mf_mse_loss(g, y, t);
  CHECK(!mf_graph_error(g), "session graph: %s", mf_graph_error(g));
  mf_tensor ins[2] = {x, t};
  mf_session *s = conv_session_init(g, loss, ins, 2, 20);
  if (!s) { mf_graph_free(g); return 0; }
  const mf_plan *pl = mf_session_plan(s);
  const mf_graph *sg = pl->g;
  int on_dnnl = 0, convs = 0;
  for (int i = 0; i < sg->n; i++) {
    const mf_node *n = &sg->nodes[i];
    if (!conv_node_is(n)) continue;
    convs++;
    char name[128];
    const char *why = "";
    CHECK(pl->be->impl_describe(sg, n, name, sizeof name, &why) == 1, "%s: no description", n->name);
    if (mf_cpu_conv_on_dnnl(n)) {
      on_dnnl++;
      size_t bytes = 0;
      const char *im = mf_cpu_dnnl_conv_impl(sg, n);
      CHECK(im && strncmp(im, "ref", 3) && mf_cpu_dnnl_conv_ws(sg, n, &bytes) && pl->be->workspace(sg, n) == bytes,
            "%s on oneDNN: implementation '%s', workspace %zu (oneDNN's %zu)", n->name, im ? im : "none", pl->be->workspace(sg, n), bytes);
    }
    printf("  session %-24s %-22s %s (%s)\n", n->name, mf_op_name(n->op), name, why);
  }
  CHECK(convs >= 5, "%d conv nodes in the session", convs);
  long r0 = mf_cpu_dnnl_conv_runs();
  for (int step = 0; step < 2; step++) {
    double l = mf_session_micro_step(s);
    CHECK(isfinite(l), "step %d: loss %g", step, l);
  }
  CHECK(mf_cpu_dnnl_conv_runs() - r0 == 2L * on_dnnl, "%ld convs ran on oneDNN in two steps, %d a step planned there",
        mf_cpu_dnnl_conv_runs() - r0, on_dnnl);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(pl, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "arena %s planned %zu measured %zu", mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  mf_session_free(s);
  mf_graph_free(g);
  return on_dnnl;
}

int main(void) {
  if (!mf_cpu_dnnl_version()) {
    printf("test_conv_bf16: skipped: built without oneDNN\n");
    return 0;
  }
  const shape shapes[] = {
      {2, 16, 9, 11, 24, 3, 1, 1, 1},  /* 3x3, bias */
      {3, 32, 12, 12, 16, 3, 2, 1, 0}, /* stride 2 */
      {2, 48, 8, 8, 64, 1, 1, 0, 0},   /* 1x1 */
      {1, 16, 7, 7, 32, 3, 1, 0, 1},   /* no padding */
  };
  int ns = (int)(sizeof shapes / sizeof *shapes), taken = 0, passes = 0;
  for (int i = 0; i < ns; i++) {
    taken += check_shape(&shapes[i], MF_BF16);
    taken += check_shape(&shapes[i], MF_F32);
    passes += 6;
  }
  const char *isa = mf_cpu_dnnl_isa();
  /* oneDNN's own bf16 kernels (jit_bf16, gemm:jit with bf16) need AVX-512; with native bf16 instructions every pass here
   * has one */
  int native = isa && (strstr(isa, "bf16") || strstr(isa, "amx"));
  if (native) CHECK(taken == passes, "oneDNN (%s) took %d of %d bf16 passes", isa, taken, passes);
  int on = check_session();
  if (native) CHECK(on > 0, "no conv of the bf16 session on oneDNN (%s)", isa);
  if (!taken) printf("test_conv_bf16: oneDNN %s (%s) took no bf16 conv here: memfit's own ran them\n", mf_cpu_dnnl_version(), isa);
  else printf("test_conv_bf16: oneDNN %s (%s) took %d of %d bf16 passes; %d convs of the session\n", mf_cpu_dnnl_version(), isa, taken,
              passes, on);
  return check_finish("test_conv_bf16");
}

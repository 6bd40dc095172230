/* test_cuda_conv_choice.c — the CUDA backend's per-node conv choice (cuDNN or im2col + cuBLAS) as far as it is host
 * code: cuDNN's description of each conv node (sizes, padding, strides, dilations, groups; the nodes it cannot take),
 * the workspace limit, and a plan's choice and workspaces: with no device (or MEMFIT_CUDNN=0) every conv stays on
 * im2col with exactly the bytes it had before the choice existed; with a device each conv is on cuDNN within its
 * limit or on im2col with a reason. Runs without a GPU; skips without the CUDA backend in the build. */
#include "check.h"
#include "memfit.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "plan/plan.h"
#include <stdlib.h>
#include <string.h>
#ifdef MEMFIT_HAVE_CUDA
#include "backend/cuda/cuda.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

static mf_tensor P(mf_graph *g, const char *name, int nd, const int64_t *sh) { return mf_param(g, name, nd, sh, MF_INIT_NORMAL, 0.1); }

static int is_conv(int op) { return op == MF_OP_CONV2D || op == MF_OP_CONV2D_BWD_DATA || op == MF_OP_CONV2D_BWD_WEIGHT; }

/* cuDNN's output size, recomputed here from the description */
static int out_of(int in, int pad, int k, int dil, int stride) { return (in + 2 * pad - (dil * (k - 1) + 1)) / stride + 1; }

/* The forward convs of the cases, one per entry, with what cuDNN's description must say (-1: refused). */
typedef struct fcase {
  const char *name;
  int ok;
  mf_cudnn_dims want; /* n c h w k cg r s p q pad_h pad_w u v dil_h dil_w groups dtype bias */
} fcase;

static const fcase cases[] = {
  {"3x3 p1 bias", 1, {2, 4, 9, 9, 6, 4, 3, 3, 9, 9, 1, 1, 1, 1, 1, 1, 1, MF_F32, 1}},
  {"3x3 s2 p1", 1, {2, 4, 9, 9, 5, 4, 3, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1, MF_F32, 0}},
  {"groups 2", 1, {2, 4, 9, 9, 6, 2, 3, 3, 9, 9, 1, 1, 1, 1, 1, 1, 2, MF_F32, 1}},
  {"strides 2,1 dilations 1,2 pads 1,2", 1, {2, 4, 9, 9, 6, 4, 3, 3, 5, 9, 1, 2, 2, 1, 1, 2, 1, MF_F32, 1}},
  {"pads 1,0,0,0 s2 on 8x8 (same size as symmetric)", 1, {2, 4, 8, 8, 5, 4, 3, 3, 4, 3, 1, 0, 2, 2, 1, 1, 1, MF_F32, 0}},
  {"pads 0,1,1,0 s2 on 8x8 (top / bottom differ)", 0, {0}},
  {"x in bf16, w in f32", 0, {0}},
  {"3x3 p1 bias, ReLU fused into it", 1, {2, 4, 9, 9, 6, 4, 3, 3, 9, 9, 1, 1, 1, 1, 1, 1, 1, MF_F32, 1}},
};

/* builds case i on g; returns y */
static mf_tensor build(mf_graph *g, int i) {
  char xn[16];
  snprintf(xn, sizeof xn, "x%d", i);
  /* x a parameter, so that the plan has each case's backward-data node too */
  mf_tensor x = i == 4 || i == 5 ? P(g, xn, 4, SH(2, 4, 8, 8)) : P(g, xn, 4, SH(2, 4, 9, 9));
  char wn[16], bn[16];
  snprintf(wn, sizeof wn, "w%d", i);
  snprintf(bn, sizeof bn, "b%d", i);
  /* mf_conv_cfg: stride, dil, groups, pt, pl, pb, pr, sw, dw */
  mf_conv_cfg hw = {2, 1, 1, 1, 2, 1, 2, 1, 2}, top = {2, 1, 1, 1, 0, 0, 0, 2, 1}, lr = {2, 1, 1, 0, 1, 1, 0, 0, 0};
  switch (i) {
  case 0: return mf_conv2d(g, x, P(g, wn, 4, SH(6, 4, 3, 3)), P(g, bn, 1, SH(6)), 1, 1, 1);
  case 1: return mf_conv2d(g, x, P(g, wn, 4, SH(5, 4, 3, 3)), -1, 2, 1, 1);
  case 2: return mf_conv2d(g, x, P(g, wn, 4, SH(6, 2, 3, 3)), P(g, bn, 1, SH(6)), 1, 1, 2);
  case 3: return mf_conv2d_cfg(g, x, P(g, wn, 4, SH(6, 4, 3, 3)), P(g, bn, 1, SH(6)), &hw);
  case 4: return mf_conv2d_cfg(g, x, P(g, wn, 4, SH(5, 4, 3, 3)), -1, &top);
  case 5: return mf_conv2d_cfg(g, x, P(g, wn, 4, SH(5, 4, 3, 3)), -1, &lr);
  case 7: return mf_relu(g, mf_conv2d(g, x, P(g, wn, 4, SH(6, 4, 3, 3)), P(g, bn, 1, SH(6)), 1, 1, 1));
  default: {
    mf_tensor xb = mf_input_typed(g, "xb", MF_BF16, 4, SH(2, 4, 9, 9));
    return mf_conv2d(g, xb, P(g, wn, 4, SH(6, 4, 3, 3)), -1, 1, 1, 1);
  }
  }
}

/* The description of every forward case, and of every conv node of g (the backward ones autodiff made included):
 * recomputed sizes agree with the tensors. */
static void test_dims(mf_graph *g, const int *ycase, int ny) {
  for (int i = 0; i < ny; i++) {
    const fcase *c = &cases[ycase[i * 2 + 1]];
    const mf_node *n = &g->nodes[ycase[i * 2]];
    mf_cudnn_dims d;
    const char *why = NULL;
    int rc = mf_cuda_conv_dims(g, n, &d, &why);
    CHECK((rc == 0) == c->ok, "%s: cuDNN %s it (%s)", c->name, rc == 0 ? "takes" : "refuses", why);
    if (rc == 0 && c->ok) CHECK(!memcmp(&d, &c->want, sizeof d), "%s: description differs from the expected one", c->name);
    if (rc < 0) CHECK(why && *why, "%s: refused without a reason", c->name);
    if (rc < 0) printf("  %-50s refused: %s\n", c->name, why);
  }
  int seen[3] = {0};
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (!is_conv(n->op)) continue;
    mf_cudnn_dims d;
    const char *why;
    if (mf_cuda_conv_dims(g, n, &d, &why) < 0) continue;
    seen[n->op == MF_OP_CONV2D ? 0 : n->op == MF_OP_CONV2D_BWD_DATA ? 1 : 2]++;
    const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
    const mf_node *x = n->op == MF_OP_CONV2D_BWD_DATA ? n : s0, *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : s1;
    const mf_node *y = n->op == MF_OP_CONV2D ? n : n->op == MF_OP_CONV2D_BWD_DATA ? s0 : s1;
    CHECK(d.n == x->ne[0] && d.c == x->ne[1] && d.h == x->ne[2] && d.w == x->ne[3], "node %d: x sizes", id);
    CHECK(d.k == w->ne[0] && d.cg == w->ne[1] && d.r == w->ne[2] && d.s == w->ne[3], "node %d: w sizes", id);
    CHECK(d.p == y->ne[2] && d.q == y->ne[3] && d.k == y->ne[1], "node %d: y sizes", id);
    CHECK(d.p == out_of(d.h, d.pad_h, d.r, d.dil_h, d.u) && d.q == out_of(d.w, d.pad_w, d.s, d.dil_w, d.v),
          "node %d (%s): cuDNN's output size %dx%d from the description, the node's %dx%d", id, mf_op_name(n->op),
          out_of(d.h, d.pad_h, d.r, d.dil_h, d.u), out_of(d.w, d.pad_w, d.s, d.dil_w, d.v), d.p, d.q);
    CHECK(d.c == d.cg * d.groups, "node %d: groups", id);
  }
  CHECK(seen[0] >= 5 && seen[1] >= 6 && seen[2] >= 6, "conv nodes cuDNN takes: %d forward, %d backward-data, %d backward-weights",
        seen[0], seen[1], seen[2]);
}

/* A plan of the cases with the CUDA backend: each conv node's choice and workspace (in the plan's copy of the graph,
 * which has the backward nodes too); without MEMFIT_CUDNN=0 also the description of every conv node. */
static void test_plan(mf_graph *g0, mf_tensor loss, int cudnn_off, const int *ycase, int ny) {
  mf_plan_opts po = mf_plan_opts_default();
  po.backend = "cuda";
  po.optim = MF_SGD;
  char err[512];
  if (cudnn_off) setenv("MEMFIT_CUDNN", "0", 1);
  mf_plan *p = mf_plan_init(g0, loss, &po, err, sizeof err);
  if (cudnn_off) unsetenv("MEMFIT_CUDNN");
  CHECK(p != NULL, "plan on cuda: %s", err);
  if (!p) return;
  mf_graph *g = p->g;
  if (!cudnn_off) test_dims(g, ycase, ny);
  int dev = mf_cuda_device_count() > 0, on_cudnn = 0, convs = 0, fused = 0;
  const mf_program *pr = &p->train;
  for (int i = 0; i < pr->n_steps; i++) {
    mf_node *n = &g->nodes[pr->steps[i]];
    if (!is_conv(n->op)) continue;
    convs++;
    fused += mf_conv_act(n) >= 0;
    char name[128] = "";
    const char *why = "";
    CHECK(p->be->impl_describe && p->be->impl_describe(g, n, name, sizeof name, &why) == 1, "node %d: no description", pr->steps[i]);
    size_t ws = p->be->workspace(g, n), im2col = mf_cuda_ws_conv_im2col(g, n);
    CHECK(pr->ws_size[i] == ws, "node %d: planned workspace %zu, the backend asks for %zu", pr->steps[i], pr->ws_size[i], ws);
    mf_cudnn_dims d;
    const char *sw;
    int takes = mf_cuda_conv_dims(g, n, &d, &sw) == 0;
    if (mf_cuda_conv_on_cudnn(n)) {
      on_cudnn++;
      CHECK(dev && !cudnn_off && takes, "node %d: on cuDNN with no device, with MEMFIT_CUDNN=0 or a shape it does not take", pr->steps[i]);
      CHECK(ws <= mf_cuda_conv_ws_limit(g, n), "node %d: cuDNN workspace %zu over the limit %zu", pr->steps[i], ws,
            mf_cuda_conv_ws_limit(g, n));
      CHECK(!strncmp(name, "cudnn ", 6) && !strchr(name, '?'), "node %d: named '%s'", pr->steps[i], name);
    } else {
      int want = cudnn_off ? MF_CUDA_CONV_IM2COL_OFF : !mf_cuda_cudnn_built() ? MF_CUDA_CONV_IM2COL_NOLIB
                 : !takes ? MF_CUDA_CONV_IM2COL_SHAPE : MF_CUDA_CONV_IM2COL_NODEV;
      if (dev && takes && !cudnn_off) CHECK(n->impl == MF_CUDA_CONV_IM2COL_NOALGO || n->impl == MF_CUDA_CONV_IM2COL_NOLIB,
                                            "node %d: im2col (%d) with a device and a shape cuDNN takes", pr->steps[i], n->impl);
      else CHECK(n->impl == want, "node %d (%s): impl %d, expected %d (%s)", pr->steps[i], mf_op_name(n->op), n->impl, want, why);
      CHECK(!strcmp(name, "im2col + cublas") && *why, "node %d: named '%s' (%s)", pr->steps[i], name, why);
      /* the fallback keeps today's bytes: the same as a node no choice was made for (impl 0) */
      uint8_t keep = n->impl;
      n->impl = 0;
      size_t before = p->be->workspace(g, n);
      n->impl = keep;
      CHECK(ws == im2col && ws == before, "node %d: im2col workspace %zu, %zu without a choice, %zu from gemm.cu", pr->steps[i], ws,
            before, im2col);
    }
  }
  CHECK(convs >= 12, "only %d conv steps in the plan", convs);
  CHECK(fused == 1, "%d conv steps with a fused activation (the CUDA backend fuses conv -> ReLU)", fused);
  printf("  %s%s: %d conv steps, %d on cuDNN\n", dev ? "with a device" : "no device", cudnn_off ? ", MEMFIT_CUDNN=0" : "", convs,
         on_cudnn);
  if (!dev || cudnn_off) CHECK(on_cudnn == 0, "%d conv steps on cuDNN", on_cudnn);
  mf_plan_free(p);
}

/* the workspace limit: the im2col bytes, at most MF_CUDA_CUDNN_WS_MAX */
static void test_limit(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor xs = mf_input(g, "xs", 4, SH(2, 4, 9, 9)), xl = mf_input(g, "xl", 4, SH(1, 64, 256, 256));
  mf_tensor ys = mf_conv2d(g, xs, P(g, "ws", 4, SH(6, 4, 3, 3)), -1, 1, 1, 1);
  mf_tensor yl = mf_conv2d(g, xl, P(g, "wl", 4, SH(64, 64, 3, 3)), -1, 1, 1, 1);
  CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
  const mf_node *ns = &g->nodes[ys], *nl = &g->nodes[yl];
  size_t bs = mf_cuda_ws_conv_im2col(g, ns), bl = mf_cuda_ws_conv_im2col(g, nl);
  /* im2col of the small one: both images at once, 4*9 rows of 81 f32 each, 256-byte aligned */
  CHECK(bs == (2 * 36 * 81 * 4 + 255) / 256 * 256, "small conv: im2col workspace %zu", bs);
  CHECK(mf_cuda_conv_ws_limit(g, ns) == bs, "small conv: limit %zu, im2col %zu", mf_cuda_conv_ws_limit(g, ns), bs);
  CHECK(bl == (size_t)64 * 9 * 65536 * 4, "large conv: im2col workspace %zu (one image's columns)", bl);
  CHECK(mf_cuda_conv_ws_limit(g, nl) == MF_CUDA_CUDNN_WS_MAX, "large conv: limit %zu", mf_cuda_conv_ws_limit(g, nl));
  mf_graph_free(g);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  test_limit();
  mf_graph *g = mf_graph_init(MF_F32);
  int ncases = (int)(sizeof cases / sizeof cases[0]), ycase[2 * 16];
  mf_tensor loss = -1;
  for (int i = 0; i < ncases; i++) {
    mf_tensor y = build(g, i);
    ycase[2 * i] = i == 7 ? g->nodes[y].src[0] : y; /* the conv under the ReLU */
    ycase[2 * i + 1] = i;
    mf_tensor s = mf_sum(g, y, 0, 0);
    loss = loss < 0 ? s : mf_add(g, loss, s);
  }
  /* a transposed convolution (a CONV2D_BWD_DATA node of its own): stride 2, pad 1, out_pad 1 */
  mf_tensor t = mf_conv_transpose2d(g, mf_input(g, "xt", 4, SH(2, 4, 9, 9)), P(g, "wt", 4, SH(4, 3, 3, 3)), -1, 2, 1, 1, 1);
  loss = mf_add(g, loss, mf_sum(g, t, 0, 0));
  CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
  if (mf_graph_error(g)) return check_finish("test_cuda_conv_choice");
  printf("cuDNN in this build: %s; devices: %d\n", mf_cuda_cudnn_built() ? "yes" : "no", mf_cuda_device_count());
  test_plan(g, loss, 0, ycase, ncases);
  mf_cudnn_dims d;
  const char *why;
  const mf_node *tn = &g->nodes[t];
  CHECK(tn->op == MF_OP_CONV2D_BWD_DATA && mf_cuda_conv_dims(g, tn, &d, &why) == 0 && d.h == 18 && d.p == 9 && d.c == 3 && d.k == 4 &&
            d.pad_h == 1 && d.u == 2,
        "transposed conv: x [2,3,18,18] from y [2,4,9,9], pad 1, stride 2");
  test_plan(g, loss, 1, ycase, ncases);
  mf_graph_free(g);
  return check_finish("test_cuda_conv_choice");
}

#else
int main(void) {
  printf("SKIP: this build has no CUDA backend\n");
  return check_finish("test_cuda_conv_choice");
}
#endif

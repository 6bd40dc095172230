/* test_grad_conv.c — conv2d (kernel/stride/padding/groups/bias combinations, both backward-data
 * routes, 1x1, dilation, pads that differ per side), the transposed conv2d, matmul (2-D, batched, all transpose flags) and linear: finite-difference gradient
 * checks in f64, f32 and bf16 values of all three conv ops against a naive direct convolution,
 * and shape errors that name the op and both shapes. */
#include "gradcheck.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "graph/dtype.h"

/* ------------------------------------------------------------------ gradient checks */

typedef struct { int stride, pad, groups, bias; int ta, tb; mf_conv_cfg cf; int oph, opw; } op_ctx;

static mf_tensor build_conv(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  return mf_conv2d_cfg(g, in[0], in[1], o->bias ? in[2] : -1, &o->cf);
}
/* transposed: in[0] x [N,IC,H,W], in[1] w [IC,OC/groups,KH,KW]; with a bias through the public builder */
static mf_tensor build_convt(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  if (o->bias) return mf_conv_transpose2d(g, in[0], in[1], in[2], o->stride, o->pad, o->oph, o->groups);
  return mf_conv_transpose2d_cfg(g, in[0], in[1], &o->cf, o->oph, o->opw);
}
static mf_tensor build_matmul(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  return mf_matmul(g, in[0], in[1], o->ta, o->tb);
}
static mf_tensor build_linear(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  return mf_linear(g, in[0], in[1], o->bias ? in[2] : -1);
}

typedef struct {
  int64_t N, C, H, W, OC, KH, KW;
  int s, p, gr, bias;
  int d;              /* dilation (0: 1) */
  int asym;           /* 1: pads pt, pl, pb, pr below instead of p on every side */
  int pt, pl, pb, pr;
  int sw, dw;         /* stride and dilation of W (0: those of H) */
} conv_case;

static mf_conv_cfg case_cfg(const conv_case *t) {
  mf_conv_cfg c = {t->s, t->d ? t->d : 1, t->gr, t->p, t->p, t->p, t->p, t->sw, t->dw};
  if (t->asym) c.pt = t->pt, c.pl = t->pl, c.pb = t->pb, c.pr = t->pr;
  return c;
}

static const conv_case conv_cases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* 3x3 pad 1 (bwd data: col2im, OC > C) */
    {2, 5, 6, 7, 3, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* 3x3 pad 1, OC <= C: bwd data as a transposed conv */
    {1, 4, 9, 8, 5, 3, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},  /* stride 2, no bias */
    {2, 3, 6, 6, 4, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* 1x1 direct */
    {2, 4, 7, 7, 2, 1, 1, 2, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* 1x1 stride 2 */
    {1, 3, 8, 8, 4, 2, 2, 2, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* 2x2 stride 2 (patchify) */
    {2, 4, 6, 5, 6, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* groups 2, OC > C */
    {1, 6, 5, 6, 3, 3, 3, 1, 2, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* groups 3, pad 2, OC <= C */
    {1, 4, 7, 6, 4, 3, 2, 1, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0},  /* depthwise, non-square kernel */
    {2, 5, 9, 9, 2, 5, 5, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* 5x5 stride 3 pad 2 */
    {1, 6, 6, 6, 2, 3, 3, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* no padding, OC <= C */
    /* >= 32 channels per group: the implicit-GEMM kernels (shifted views of a padded copy) */
    {1, 32, 5, 4, 8, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* few output channels: stacked taps; bwd data route B */
    {2, 64, 5, 5, 8, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* stacked taps with 2 groups */
    {1, 8, 5, 6, 32, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},  /* bwd data implicit */
    {2, 64, 4, 5, 64, 3, 3, 1, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0}, /* all implicit, 2 groups */
    {1, 40, 6, 5, 36, 3, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, /* implicit, non-square kernel, no padding */
    {1, 32, 6, 6, 32, 5, 5, 1, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, /* implicit 5x5 pad 2 */
    /* dilation and pads that differ per side (ONNX's Conv): im2col with the general geometry */
    {2, 3, 9, 8, 4, 3, 3, 1, 2, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0},                 /* dilation 2, pad 2 */
    {1, 4, 11, 10, 6, 3, 2, 2, 1, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0},               /* dilation 3, stride 2, groups 2 */
    {2, 3, 7, 6, 4, 3, 3, 2, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0},   /* pads t0 l1 b1 r0 (SAME_UPPER at stride 2) */
    {1, 4, 6, 7, 4, 2, 3, 1, 0, 4, 1, 2, 1, 1, 0, 2, 3, 0, 0},   /* depthwise, dilation 2, pads 1,0,2,3 */
    {1, 40, 6, 6, 36, 3, 3, 1, 1, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0},               /* would be implicit GEMM if not dilated */
    {2, 4, 5, 5, 3, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0},   /* 1x1 with padding on two sides only */
    /* strides and dilations that differ between H and W (ONNX's strides [3,2], dilations [2,1]) */
    {2, 3, 9, 8, 4, 3, 3, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0},          /* strides 2,1 */
    {1, 4, 10, 9, 6, 3, 2, 1, 0, 2, 0, 2, 1, 1, 0, 2, 1, 3, 1},         /* strides 1,3, dilations 2,1, groups 2, pads */
    {1, 40, 7, 9, 36, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 0},        /* would be implicit GEMM at strides 1,1 */
};

static void conv_gradchecks(void) {
  for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) {
    const conv_case *t = &conv_cases[i];
    op_ctx c = {t->s, t->p, t->gr, t->bias, 0, 0, case_cfg(t), 0, 0};
    gc_input in[3] = {{4, {t->N, t->C, t->H, t->W}, GC_NORMAL},
                      {4, {t->OC, t->C / t->gr, t->KH, t->KW}, GC_NORMAL},
                      {1, {t->OC}, GC_NORMAL}};
    char nm[128];
    snprintf(nm, sizeof nm, "conv2d x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] s%d p%d g%d d%d pads %d,%d,%d,%d%s", (long long)t->N,
             (long long)t->C, (long long)t->H, (long long)t->W, (long long)t->OC, (long long)(t->C / t->gr), (long long)t->KH,
             (long long)t->KW, t->s, t->p, t->gr, c.cf.dil, c.cf.pt, c.cf.pl, c.cf.pb, c.cf.pr, t->bias ? " +bias" : "");
    gc_check(nm, t->bias ? 3 : 2, in, build_conv, &c, 0, 1e-6);
  }
}

/* The transposed conv (conv2d_bwd_data as a forward op): its gradient rule (a conv2d for x, a weight gradient
 * for w) against finite differences, with strides, output padding, groups, dilation and pads per side. Its
 * values are conv2d_bwd_data's, which conv_values checks against naive loops. */
static void convt_gradchecks(void) {
  static const struct { int64_t N, IC, H, W, OC, KH, KW; int s, d, gr, pt, pl, pb, pr, oph, opw, bias, sw, dw; } cs[] = {
      {2, 3, 4, 5, 4, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},  /* torch's stride-2 upsampling: pad 1, output_padding 1 */
      {1, 4, 3, 3, 6, 4, 4, 2, 1, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0},  /* 4x4 stride 2 pad 1 (DCGAN), groups 2 */
      {2, 2, 4, 3, 3, 3, 2, 1, 2, 1, 0, 1, 2, 0, 0, 0, 0, 0, 0},  /* dilation 2, pads per side */
      {1, 3, 3, 4, 2, 3, 3, 3, 1, 1, 0, 0, 0, 0, 2, 1, 0, 0, 0},  /* stride 3, output padding 2 x 1 */
      {2, 3, 4, 4, 5, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},  /* + bias through mf_conv_transpose2d */
      {1, 2, 3, 3, 3, 3, 3, 3, 1, 1, 1, 2, 1, 2, 1, 1, 0, 2, 0},  /* strides 3,2 (ONNX's ConvTranspose tests), pads per side */
      {2, 2, 3, 4, 2, 2, 3, 1, 2, 1, 0, 1, 1, 0, 0, 0, 0, 2, 1},  /* strides 1,2, dilations 2,1 */
  };
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
    op_ctx c = {cs[i].s, cs[i].pt, cs[i].gr, cs[i].bias, 0, 0,
                {cs[i].s, cs[i].d, cs[i].gr, cs[i].pt, cs[i].pl, cs[i].pb, cs[i].pr, cs[i].sw, cs[i].dw}, cs[i].oph, cs[i].opw};
    gc_input in[3] = {{4, {cs[i].N, cs[i].IC, cs[i].H, cs[i].W}, GC_NORMAL},
                      {4, {cs[i].IC, cs[i].OC / cs[i].gr, cs[i].KH, cs[i].KW}, GC_NORMAL},
                      {1, {cs[i].OC}, GC_NORMAL}};
    char nm[128];
    snprintf(nm, sizeof nm, "conv_transpose2d case %zu (s%d d%d g%d pads %d,%d,%d,%d out_pad %d,%d%s)", i, cs[i].s, cs[i].d, cs[i].gr,
             cs[i].pt, cs[i].pl, cs[i].pb, cs[i].pr, cs[i].oph, cs[i].opw, cs[i].bias ? " +bias" : "");
    gc_check(nm, cs[i].bias ? 3 : 2, in, build_convt, &c, 0, 1e-6);
  }
  /* output size: (H-1)*s - pt - pb + d*(K-1) + 1 + output_padding */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 8, 7, 5}), w = mf_input(g, "w", 4, (int64_t[]){8, 3, 3, 3});
  mf_tensor y = mf_conv_transpose2d(g, x, w, -1, 2, 1, 1, 1);
  CHECK(y >= 0 && mf_tensor_dim(g, y, 1) == 3 && mf_tensor_dim(g, y, 2) == 14 && mf_tensor_dim(g, y, 3) == 10,
        "conv_transpose2d 7x5 stride 2 pad 1 out_pad 1 gives 14x10: %s", mf_graph_error(g) ? mf_graph_error(g) : "");
  mf_conv_transpose2d(g, x, w, -1, 2, 1, 2, 1);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "conv_transpose2d") && strstr(e, "output padding"), "output padding >= stride refused: %s", e ? e : "(none)");
  mf_graph_free(g);
}

static void matmul_gradchecks(void) {
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      op_ctx c = {0, 0, 0, 0, ta, tb, {0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, 0};
      int64_t M = 3, K = 4, N = 5;
      char nm[96];
      /* 2-D */
      gc_input in2[2] = {{2, {ta ? K : M, ta ? M : K}, GC_NORMAL}, {2, {tb ? N : K, tb ? K : N}, GC_NORMAL}};
      snprintf(nm, sizeof nm, "matmul 2-D ta%d tb%d", ta, tb);
      gc_check(nm, 2, in2, build_matmul, &c, 0, 1e-6);
      /* a batched [2,3,..], b 2-D */
      gc_input inb[2] = {{4, {2, 3, ta ? K : M, ta ? M : K}, GC_NORMAL}, {2, {tb ? N : K, tb ? K : N}, GC_NORMAL}};
      snprintf(nm, sizeof nm, "matmul batched a, 2-D b ta%d tb%d", ta, tb);
      gc_check(nm, 2, inb, build_matmul, &c, 0, 1e-6);
      /* both batched */
      gc_input inbb[2] = {{3, {2, ta ? K : M, ta ? M : K}, GC_NORMAL}, {3, {2, tb ? N : K, tb ? K : N}, GC_NORMAL}};
      snprintf(nm, sizeof nm, "matmul both batched ta%d tb%d", ta, tb);
      gc_check(nm, 2, inbb, build_matmul, &c, 0, 1e-6);
      /* a 2-D, b batched */
      gc_input in2b[2] = {{2, {ta ? K : M, ta ? M : K}, GC_NORMAL}, {3, {3, tb ? N : K, tb ? K : N}, GC_NORMAL}};
      snprintf(nm, sizeof nm, "matmul 2-D a, batched b ta%d tb%d", ta, tb);
      gc_check(nm, 2, in2b, build_matmul, &c, 0, 1e-6);
    }
  for (int bias = 0; bias < 2; bias++) {
    op_ctx c = {0, 0, 0, bias, 0, 0, {0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, 0};
    gc_input in[3] = {{2, {4, 6}, GC_NORMAL}, {2, {3, 6}, GC_NORMAL}, {1, {3}, GC_NORMAL}};
    gc_check(bias ? "linear +bias" : "linear", bias ? 3 : 2, in, build_linear, &c, 0, 1e-6);
  }
}

/* ------------------------------------------------------------------ values against naive loops */

static double urand(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Error bound of an output computed from the rounded inputs the kernel saw: any order of summing n
 * products in f32 (OpenBLAS's kernels, FMA or not, blocked or not) is off by at most
 * gamma_n * sum |products| with gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability
 * of Numerical Algorithms, 3.1); storing the result in dt rounds it once more, by u_dt |value| (RNE:
 * 2^-24 f32, 2^-8 bf16, 2^-11 f16, plus 2^-25 absolute for f16 subnormals). So the tolerance follows
 * from the data and the dtype, on any CPU, and is far below what a wrong index or tap would give. */
static double gamma_f32(int64_t n) { double nu = (double)n * ldexp(1, -24); return nu / (1 - nu); }
static double unit_roundoff(mf_dtype dt) { return dt == MF_BF16 ? ldexp(1, -8) : dt == MF_F16 ? ldexp(1, -11) : ldexp(1, -24); }
static double err_bound(mf_dtype dt, int64_t n, double abs_sum, double ref) {
  double u = unit_roundoff(dt);
  return gamma_f32(n) * abs_sum * (1 + u) + u * fabs(ref) + (dt == MF_F16 ? ldexp(1, -25) : 0);
}

/* naive direct convolution in double: y [N,OC,OH,OW]; ay (if not NULL) the same with |x|, |w|, |b| */
static void naive_conv(const conv_case *t, const double *x, const double *w, const double *b, double *y, double *ay, int64_t OH,
                       int64_t OW) {
  int64_t Cg = t->C / t->gr, OCg = t->OC / t->gr;
  mf_conv_cfg cf = case_cfg(t);
  for (int64_t n = 0; n < t->N; n++)
    for (int64_t oc = 0; oc < t->OC; oc++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double acc = b ? b[oc] : 0, aacc = b ? fabs(b[oc]) : 0;
          int64_t gi = oc / OCg;
          for (int64_t ci = 0; ci < Cg; ci++)
            for (int64_t kh = 0; kh < t->KH; kh++)
              for (int64_t kw = 0; kw < t->KW; kw++) {
                int64_t ih = oh * t->s - cf.pt + kh * cf.dil, iw = ow * mf_conv_sw(&cf) - cf.pl + kw * mf_conv_dw(&cf);
                if (ih < 0 || ih >= t->H || iw < 0 || iw >= t->W) continue;
                double pr = x[((n * t->C + gi * Cg + ci) * t->H + ih) * t->W + iw] * w[((oc * Cg + ci) * t->KH + kh) * t->KW + kw];
                acc += pr;
                aacc += fabs(pr);
              }
          y[((n * t->OC + oc) * OH + oh) * OW + ow] = acc;
          if (ay) ay[((n * t->OC + oc) * OH + oh) * OW + ow] = aacc;
        }
}

/* What runs node id, chosen as a plan (and the reference evaluator) would choose it */
static void impl_of(const mf_graph *g, int id, char *buf, size_t len) {
  mf_node c = g->nodes[id];
  const char *why = "";
  mf_backend_cpu.choose(g, &c, 0);
  if (!mf_backend_cpu.impl_describe(g, &c, buf, len, &why)) snprintf(buf, len, "?");
}

/* Runs conv2d, conv2d_bwd_data and conv2d_bwd_weight on random data with activations stored in
 * `dt` and compares each with naive loops on the same (rounded) values, element by element within
 * err_bound. */
static void conv_values(const conv_case *t, mf_dtype dt, uint64_t seed) {
  mf_graph *g = mf_graph_init(dt);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){t->N, t->C, t->H, t->W});
  mf_tensor w = mf_input(g, "w", 4, (int64_t[]){t->OC, t->C / t->gr, t->KH, t->KW});
  mf_tensor b = mf_input(g, "b", 1, (int64_t[]){t->OC});
  mf_conv_cfg cf = case_cfg(t);
  mf_tensor y = mf_conv2d_cfg(g, x, w, t->bias ? b : -1, &cf);
  int64_t OH = mf_tensor_dim(g, y, 2), OW = mf_tensor_dim(g, y, 3);
  mf_tensor dy = mf_input(g, "dy", 4, (int64_t[]){t->N, t->OC, OH, OW});
  mf_tensor dx = mf_conv2d_bwd_data_cfg(g, dy, w, x, &cf);
  mf_tensor dw = mf_conv2d_bwd_weight_cfg(g, x, dy, w, &cf);
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return; }
  if (dt == MF_F32) {
    char iy[96], ix[96], iw[96];
    impl_of(g, y, iy, sizeof iy);
    impl_of(g, dx, ix, sizeof ix);
    impl_of(g, dw, iw, sizeof iw);
    printf("conv x[%lld,%lld,%lld,%lld] k%lldx%lld s%d p%d g%d oc%lld: y %s, dx %s, dw %s\n", (long long)t->N, (long long)t->C,
           (long long)t->H, (long long)t->W, (long long)t->KH, (long long)t->KW, t->s, t->p, t->gr, (long long)t->OC, iy, ix, iw);
  }
  int leaves[4] = {x, w, b, dy};
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  double *vals[4];
  for (int i = 0; i < 4; i++) {
    const mf_node *nn = &g->nodes[leaves[i]];
    int64_t cnt = mf_node_numel(nn);
    leaf[leaves[i]] = malloc(mf_node_bytes(nn));
    vals[i] = malloc((size_t)cnt * sizeof(double));
    for (int64_t j = 0; j < cnt; j++) {
      mf_st(leaf[leaves[i]], nn->dtype, j, urand(&seed));
      vals[i][j] = mf_ld(leaf[leaves[i]], nn->dtype, j); /* the rounded value the kernel sees */
    }
  }
  mf_ref r;
  char err[256];
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    int64_t ny = t->N * t->OC * OH * OW, nx = t->N * t->C * t->H * t->W, nw = t->OC * (t->C / t->gr) * t->KH * t->KW;
    double *ry = malloc((size_t)ny * sizeof(double)), *rdx = calloc((size_t)nx, sizeof(double)), *rdw = calloc((size_t)nw, sizeof(double));
    double *ay = malloc((size_t)ny * sizeof(double)), *adx = calloc((size_t)nx, sizeof(double)), *adw = calloc((size_t)nw, sizeof(double));
    naive_conv(t, vals[0], vals[1], t->bias ? vals[2] : NULL, ry, ay, OH, OW);
    /* adjoints by the same loop: dx[..] += dy * w, dw[..] += dy * x */
    int64_t Cg = t->C / t->gr, OCg = t->OC / t->gr;
    for (int64_t n = 0; n < t->N; n++)
      for (int64_t oc = 0; oc < t->OC; oc++)
        for (int64_t oh = 0; oh < OH; oh++)
          for (int64_t ow = 0; ow < OW; ow++) {
            double d = vals[3][((n * t->OC + oc) * OH + oh) * OW + ow];
            int64_t gi = oc / OCg;
            for (int64_t ci = 0; ci < Cg; ci++)
              for (int64_t kh = 0; kh < t->KH; kh++)
                for (int64_t kw = 0; kw < t->KW; kw++) {
                  int64_t ih = oh * t->s - cf.pt + kh * cf.dil, iw = ow * mf_conv_sw(&cf) - cf.pl + kw * mf_conv_dw(&cf);
                  if (ih < 0 || ih >= t->H || iw < 0 || iw >= t->W) continue;
                  int64_t xi = ((n * t->C + gi * Cg + ci) * t->H + ih) * t->W + iw, wi = ((oc * Cg + ci) * t->KH + kh) * t->KW + kw;
                  rdx[xi] += d * vals[1][wi];
                  rdw[wi] += d * vals[0][xi];
                  adx[xi] += fabs(d * vals[1][wi]);
                  adw[wi] += fabs(d * vals[0][xi]);
                }
          }
    /* products summed per element: y Cg*KH*KW (+ the bias), dx at most OCg*KH*KW, dw N*OH*OW */
    struct { const char *nm; int id; const double *ref, *abs; int64_t cnt, terms; } outs[3] = {
        {"y", y, ry, ay, ny, Cg * t->KH * t->KW + 1}, {"dx", dx, rdx, adx, nx, OCg * t->KH * t->KW}, {"dw", dw, rdw, adw, nw, t->N * OH * OW}};
    for (int o = 0; o < 3; o++) {
      double scale = 0, worst_ratio = 0, max_bound = 0;
      int64_t worst = 0;
      for (int64_t j = 0; j < outs[o].cnt; j++) {
        scale = fmax(scale, fabs(outs[o].ref[j]));
        double bound = err_bound(dt, outs[o].terms, outs[o].abs[j], outs[o].ref[j]);
        double diff = fabs(mf_ld(r.data[outs[o].id], dt, j) - outs[o].ref[j]);
        /* an element no product reaches (1x1 stride 2: dx between the taps) has bound 0: exact zero only
         * (0/0 would be a NaN that a later element's ratio overwrites) */
        double ratio = bound > 0 ? diff / bound : diff == 0 ? 0 : INFINITY;
        max_bound = fmax(max_bound, bound);
        if (!(ratio <= worst_ratio)) { worst_ratio = ratio; worst = j; } /* NaN counts */
      }
      CHECK(worst_ratio <= 1, "%s %s of conv x[%lld,%lld,%lld,%lld] k%lldx%lld s%d p%d g%d: error %.3g times the rounding bound at %lld",
            mf_dtype_name(dt), outs[o].nm, (long long)t->N, (long long)t->C, (long long)t->H, (long long)t->W, (long long)t->KH,
            (long long)t->KW, t->s, t->p, t->gr, worst_ratio, (long long)worst);
      /* the bound must stay far below what a wrong tap or index would change (the values' own size) */
      CHECK(max_bound <= 0.05 * scale, "%s %s: rounding bound %.3g is not small against the values (%.3g)", mf_dtype_name(dt),
            outs[o].nm, max_bound, scale);
    }
    free(ay);
    free(adx);
    free(adw);
    free(ry);
    free(rdx);
    free(rdw);
    mf_ref_free(&r);
  }
  for (int i = 0; i < 4; i++) { free(leaf[leaves[i]]); free(vals[i]); }
  free(leaf);
  mf_graph_free(g);
}

/* matmul values (f32 and bf16) against naive loops for every flag and batch layout, within err_bound */
static void matmul_values(mf_dtype dt, uint64_t seed) {
  int64_t M = 7, K = 33, N = 5, B = 3;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int lay = 0; lay < 3; lay++) { /* 0: a batched b 2-D, 1: both batched, 2: a 2-D b batched */
        mf_graph *g = mf_graph_init(dt);
        int64_t as[3] = {B, ta ? K : M, ta ? M : K}, bs[3] = {B, tb ? N : K, tb ? K : N};
        mf_tensor a = lay == 2 ? mf_input(g, "a", 2, as + 1) : mf_input(g, "a", 3, as);
        mf_tensor b = lay == 0 ? mf_input(g, "b", 2, bs + 1) : mf_input(g, "b", 3, bs);
        mf_tensor y = mf_matmul(g, a, b, ta, tb);
        if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); continue; }
        void **leaf = calloc((size_t)g->n, sizeof *leaf);
        int ids[2] = {a, b};
        for (int i = 0; i < 2; i++) {
          const mf_node *nn = &g->nodes[ids[i]];
          leaf[ids[i]] = malloc(mf_node_bytes(nn));
          for (int64_t j = 0; j < mf_node_numel(nn); j++) mf_st(leaf[ids[i]], nn->dtype, j, urand(&seed));
        }
        mf_ref r;
        char err[256];
        if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
        else {
          double worst = 0, scale = 0, max_bound = 0;
          for (int64_t bi = 0; bi < B; bi++)
            for (int64_t i = 0; i < M; i++)
              for (int64_t j = 0; j < N; j++) {
                double acc = 0, aacc = 0;
                for (int64_t q = 0; q < K; q++) {
                  int64_t ai = (lay == 2 ? 0 : bi * M * K) + (ta ? q * M + i : i * K + q);
                  int64_t bidx = (lay == 0 ? 0 : bi * K * N) + (tb ? j * K + q : q * N + j);
                  double pr = mf_ld(leaf[a], dt, ai) * mf_ld(leaf[b], dt, bidx);
                  acc += pr;
                  aacc += fabs(pr);
                }
                double bound = err_bound(dt, K, aacc, acc), ratio = fabs(acc - mf_ld(r.data[y], dt, (bi * M + i) * N + j)) / bound;
                scale = fmax(scale, fabs(acc));
                max_bound = fmax(max_bound, bound);
                if (!(ratio <= worst)) worst = ratio;
              }
          CHECK(worst <= 1 && max_bound <= 0.05 * scale, "%s matmul ta%d tb%d layout %d: error %.3g times the rounding bound (bound %.3g, "
                "values up to %.3g)", mf_dtype_name(dt), ta, tb, lay, worst, max_bound, scale);
          mf_ref_free(&r);
        }
        free(leaf[a]);
        free(leaf[b]);
        free(leaf);
        mf_graph_free(g);
      }
}

/* ------------------------------------------------------------------ shape errors */

static void shape_errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 3, 8, 8}), w = mf_input(g, "w", 4, (int64_t[]){4, 5, 3, 3});
  mf_conv2d(g, x, w, -1, 1, 1, 1);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "conv2d") && strstr(e, "[2,3,8,8]") && strstr(e, "[4,5,3,3]"), "conv2d error was: %s", e ? e : "(none)");
  mf_graph_free(g);

  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){2, 6, 8, 8});
  w = mf_input(g, "w", 4, (int64_t[]){5, 3, 3, 3});
  mf_conv2d(g, x, w, -1, 1, 1, 2); /* 5 output channels do not split into 2 groups */
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "conv2d") && strstr(e, "groups") && strstr(e, "[5,3,3,3]"), "conv2d groups error was: %s", e ? e : "(none)");
  mf_graph_free(g);

  g = mf_graph_init(MF_F32);
  mf_tensor a = mf_input(g, "a", 3, (int64_t[]){2, 3, 4}), b = mf_input(g, "b", 2, (int64_t[]){5, 6});
  mf_matmul(g, a, b, 0, 0);
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "matmul") && strstr(e, "[2,3,4]") && strstr(e, "[5,6]"), "matmul error was: %s", e ? e : "(none)");
  mf_graph_free(g);

  g = mf_graph_init(MF_F32);
  a = mf_input(g, "a", 2, (int64_t[]){4, 6});
  b = mf_input(g, "w", 2, (int64_t[]){3, 5});
  mf_linear(g, a, b, -1);
  e = mf_graph_error(g);
  CHECK(e && strstr(e, "linear") && strstr(e, "[4,6]") && strstr(e, "[3,5]"), "linear error was: %s", e ? e : "(none)");
  mf_graph_free(g);

  /* output size, FLOPs and workspace of a 3x3 conv as the steganography net uses it */
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){2, 12, 32, 32});
  w = mf_input(g, "w", 4, (int64_t[]){80, 12, 3, 3});
  mf_tensor y = mf_conv2d(g, x, w, -1, 2, 1, 1);
  CHECK(y >= 0 && mf_tensor_dim(g, y, 1) == 80 && mf_tensor_dim(g, y, 2) == 16 && mf_tensor_dim(g, y, 3) == 16,
        "conv2d stride 2 output shape");
  if (y >= 0) {
    CHECK_NEAR(mf_node_flops(g, &g->nodes[y]), 2.0 * 2 * 80 * 16 * 16 * 12 * 9, 0.5, "conv2d flops");
    CHECK(mf_cpu_ws_conv(g, &g->nodes[y]) == (size_t)12 * 9 * 256 * 4, "conv2d f32 workspace is one image's im2col: %zu",
          mf_cpu_ws_conv(g, &g->nodes[y]));
  }
  mf_graph_free(g);

  /* implicit GEMM workspace: padded image + KW-1 slack, [9][OC][C] weight, padded-width output */
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){2, 92, 32, 32});
  w = mf_input(g, "w", 4, (int64_t[]){80, 92, 3, 3});
  y = mf_conv2d(g, x, w, -1, 1, 1, 1);
  if (y >= 0) {
    size_t want = ((size_t)(92 * 34 * 34 + 2) * 4 + 63) / 64 * 64 + (size_t)80 * 92 * 9 * 4 + (size_t)80 * 32 * 34 * 4;
    CHECK(mf_cpu_ws_conv(g, &g->nodes[y]) == want, "implicit conv2d workspace %zu, want %zu",
          mf_cpu_ws_conv(g, &g->nodes[y]), want);
  }
  mf_graph_free(g);

  /* stacked-taps workspace (332 -> 12 channels): padded image, [9][OC][C] weight, [9*OC, 34*34] products */
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 4, (int64_t[]){1, 332, 32, 32});
  w = mf_input(g, "w", 4, (int64_t[]){12, 332, 3, 3});
  y = mf_conv2d(g, x, w, -1, 1, 1, 1);
  if (y >= 0) {
    size_t want = (size_t)332 * 34 * 34 * 4 + (size_t)12 * 332 * 9 * 4 + (size_t)9 * 12 * 34 * 34 * 4;
    CHECK(mf_cpu_ws_conv(g, &g->nodes[y]) == want, "stacked conv2d workspace %zu, want %zu",
          mf_cpu_ws_conv(g, &g->nodes[y]), want);
  }
  mf_graph_free(g);
}

/* ResNet shapes as MoCo's backbones have them: 1-channel stem, 7x7 stride-2 stem, 1x1 stride-2
 * shortcut, 3x3 body convs and a stride-2 3x3 */
static const conv_case resnet_cases[] = {
    {4, 1, 28, 28, 16, 3, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {2, 3, 32, 32, 64, 7, 7, 2, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {4, 64, 8, 8, 128, 1, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {2, 128, 8, 8, 256, 3, 3, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
};

int main(void) {
  conv_gradchecks();
  convt_gradchecks();
  matmul_gradchecks();
  uint64_t seed = 0x1234567;
  /* f32 convs run on oneDNN when it is built in (its implementation is printed per case), then
   * every f32 case again on memfit's own GEMM algorithms */
  int dnnl = mf_cpu_dnnl_conv_enable(1);
  printf("oneDNN convolutions: %s\n", dnnl ? "on" : "not built in (or MEMFIT_CONV=gemm)");
  for (int pass = 0; pass < (dnnl ? 2 : 1); pass++) {
    mf_cpu_dnnl_conv_enable(pass == 0);
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) conv_values(&conv_cases[i], MF_F32, seed + i);
    for (size_t i = 0; i < sizeof resnet_cases / sizeof *resnet_cases; i++) conv_values(&resnet_cases[i], MF_F32, seed + 50 + i);
  }
  mf_cpu_dnnl_conv_enable(1);
  for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) conv_values(&conv_cases[i], MF_BF16, seed + 100 + i);
  /* a larger case that exercises OpenBLAS's blocking and the threaded im2col */
  conv_case big = {2, 40, 20, 20, 24, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}; /* stacked taps, bwd data route B */
  conv_values(&big, MF_F32, seed + 7);
  conv_values(&big, MF_BF16, seed + 8);
  conv_values(&big, MF_F16, seed + 9);
  conv_case big2 = {3, 36, 17, 19, 48, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}; /* all three ops implicit */
  conv_values(&big2, MF_F32, seed + 10);
  conv_values(&big2, MF_BF16, seed + 13);
  conv_values(&big2, MF_F16, seed + 14);
  matmul_values(MF_F32, seed + 11);
  matmul_values(MF_BF16, seed + 12);
  shape_errors();
  return check_finish("test_grad_conv");
}

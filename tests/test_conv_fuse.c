/* test_conv_fuse.c — the planner's conv -> ReLU / leaky ReLU fusion (plan/fuse.c): which pairs fuse and which
 * must not (a conv read twice, a kept pre-activation), gradients of the fused graph against f64 finite
 * differences, parity with the unfused plan (bit for bit on memfit's GEMM algorithms, within a derived bound
 * on oneDNN's post-op), and measured == planned for every arena. */
#include "gradcheck.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "plan/fuse.h"
#include "plan/plan.h"

enum { THREADS = 2 };
#define SLOPE 0.01

static int fused_count(const mf_graph *g) {
  int k = 0;
  for (int id = 0; id < g->n; id++) k += mf_conv_act(&g->nodes[id]) >= 0;
  return k;
}

static void randf(float *b, int64_t n, uint64_t *r) {
  for (int64_t i = 0; i < n; i++) {
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (float)((double)(*r >> 11) / 9007199254740992.0 * 2 - 1);
  }
}

static void write_rand(mf_session *s, const mf_graph *g, mf_tensor t, uint64_t seed, int param) {
  int64_t n = mf_tensor_numel(g, t);
  float *b = malloc((size_t)n * sizeof *b);
  randf(b, n, &seed);
  if (param) mf_session_write_param(s, t, b, (size_t)n);
  else mf_session_write_input(s, t, b, (size_t)n);
  free(b);
}

static void check_memory(mf_session *s, const char *what) {
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
}

/* ------------------------------------------------------------------ 1. what fuses, memory, GEMM parity */

typedef struct net {
  mf_graph *g;
  mf_tensor x, target, loss, c1, p[5];
} net;

/* x [2,12,10,10] -conv1 (w1 [16,12,3,3], b1)-> lrelu -conv2 (w2 [8,16,3,3], b2)-> relu -conv3 (w3 [8,8,1,1])-> c3;
 * out = relu(c3) + c3 (conv3 is read twice: not fused); mse against target */
static void net_build(net *m) {
  mf_graph *g = m->g = mf_graph_init(MF_F32);
  m->x = mf_input(g, "x", 4, (int64_t[]){2, 12, 10, 10});
  m->target = mf_input(g, "target", 4, (int64_t[]){2, 8, 10, 10});
  m->p[0] = mf_param(g, "w1", 4, (int64_t[]){16, 12, 3, 3}, MF_INIT_KAIMING, 0);
  m->p[1] = mf_param(g, "b1", 1, (int64_t[]){16}, MF_INIT_ZERO, 0);
  m->p[2] = mf_param(g, "w2", 4, (int64_t[]){8, 16, 3, 3}, MF_INIT_KAIMING, 0);
  m->p[3] = mf_param(g, "b2", 1, (int64_t[]){8}, MF_INIT_ZERO, 0);
  m->p[4] = mf_param(g, "w3", 4, (int64_t[]){8, 8, 1, 1}, MF_INIT_KAIMING, 0);
  m->c1 = mf_conv2d(g, m->x, m->p[0], m->p[1], 1, 1, 1);                      /* [2,16,10,10] */
  mf_tensor h = mf_leaky_relu(g, m->c1, SLOPE);
  h = mf_relu(g, mf_conv2d(g, h, m->p[2], m->p[3], 1, 1, 1));                 /* [2,8,10,10] */
  mf_tensor c3 = mf_conv2d(g, h, m->p[4], -1, 1, 0, 1);                       /* [2,8,10,10] */
  m->loss = mf_mse_loss(g, mf_add(g, mf_relu(g, c3), c3), m->target);
  CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
}

typedef struct run { double loss; float *grad[5]; int fused; size_t act; } run;

static mf_session *net_session(const net *m, int fuse, const mf_tensor *keep, int n_keep, run *r, const char *what) {
  setenv("MEMFIT_FUSE", fuse ? "1" : "0", 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = THREADS;
  o.debug_memory = 1;
  o.plan.keep = keep;
  o.plan.n_keep = n_keep;
  char err[512];
  mf_session *s = mf_session_init(m->g, m->loss, &o, err, sizeof err);
  CHECK(s != NULL, "%s: session: %s", what, err);
  if (!s) return NULL;
  for (int i = 0; i < 5; i++) write_rand(s, m->g, m->p[i], 100 + (uint64_t)i, 1);
  write_rand(s, m->g, m->x, 7, 0);
  write_rand(s, m->g, m->target, 8, 0);
  r->loss = mf_session_micro_step(s);
  for (int i = 0; i < 5; i++) {
    int64_t n = mf_tensor_numel(m->g, m->p[i]);
    r->grad[i] = malloc((size_t)n * sizeof(float));
    mf_session_read_grad(s, m->p[i], r->grad[i], (size_t)n);
  }
  r->fused = fused_count(mf_session_plan(s)->g);
  r->act = mf_plan_arena_bytes(mf_session_plan(s), MF_ARENA_ACT);
  check_memory(s, what);
  return s;
}

static void run_free(run *r) {
  for (int i = 0; i < 5; i++) free(r->grad[i]);
}

static void structure_and_gemm_parity(void) {
  net m;
  net_build(&m);
  if (mf_graph_error(m.g)) { mf_graph_free(m.g); return; }
  int dnnl = mf_cpu_dnnl_conv_enable(0); /* memfit's GEMM algorithms: fused and unfused run the same arithmetic */
  run f = {0}, u = {0}, k = {0};
  mf_session *s = net_session(&m, 1, NULL, 0, &f, "fused");
  mf_session_free(s);
  s = net_session(&m, 0, NULL, 0, &u, "unfused");
  mf_session_free(s);
  s = net_session(&m, 1, &m.c1, 1, &k, "fused, conv1 kept");
  mf_session_free(s);
  CHECK(f.fused == 2, "conv1 -> lrelu and conv2 -> relu fuse, conv3 (read twice) does not: %d fused", f.fused);
  CHECK(u.fused == 0, "MEMFIT_FUSE=0: %d fused", u.fused);
  CHECK(k.fused == 1, "a kept pre-activation is not fused away: %d fused", k.fused);
  printf("  activations + workspace: fused %zu B, unfused %zu B; loss %.9g / %.9g\n", f.act, u.act, f.loss, u.loss);
  CHECK(f.loss == u.loss, "memfit's algorithms: fused loss %.17g, unfused %.17g (the same arithmetic)", f.loss, u.loss);
  int same = 1;
  for (int i = 0; i < 5; i++) {
    int64_t n = mf_tensor_numel(m.g, m.p[i]);
    for (int64_t j = 0; j < n; j++) same &= f.grad[i][j] == u.grad[i][j];
  }
  CHECK(same, "memfit's algorithms: fused and unfused gradients differ");
  run_free(&f);
  run_free(&u);
  run_free(&k);
  mf_cpu_dnnl_conv_enable(dnnl);
  mf_graph_free(m.g);
}

/* ------------------------------------------------------------------ 2. oneDNN's post-op against the unfused conv */

/* y = lrelu(conv(x [2,12,9,9], w [16,12,3,3], b) p1), loss = sum(y * R); y kept */
static void onednn_parity(void) {
  if (!mf_cpu_dnnl_conv_enable(1)) { printf("  oneDNN not in use: its post-op parity is not checked\n"); return; }
  const int64_t N = 2, C = 12, H = 9, W = 9, OC = 16, KS = 3, K = C * KS * KS;
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){N, C, H, W}), R = mf_input(g, "R", 4, (int64_t[]){N, OC, H, W});
  mf_tensor w = mf_param(g, "w", 4, (int64_t[]){OC, C, KS, KS}, MF_INIT_ZERO, 0), b = mf_param(g, "b", 1, (int64_t[]){OC}, MF_INIT_ZERO, 0);
  mf_tensor y = mf_leaky_relu(g, mf_conv2d(g, x, w, b, 1, 1, 1), SLOPE);
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  int64_t ny = N * OC * H * W, nx = N * C * H * W, nw = OC * K;
  float *vy[2], *vdw[2], *vdb[2], *vx = malloc((size_t)nx * 4), *vw = malloc((size_t)nw * 4), vb[16], *vR = malloc((size_t)ny * 4);
  uint64_t r = 99;
  randf(vx, nx, &r);
  randf(vw, nw, &r);
  randf(vb, OC, &r);
  randf(vR, ny, &r);
  int ok = 1;
  for (int fz = 0; fz < 2; fz++) {
    setenv("MEMFIT_FUSE", fz ? "1" : "0", 1);
    mf_train_opts o = mf_train_opts_default();
    o.threads = THREADS;
    o.debug_memory = 1;
    o.plan.keep = &y;
    o.plan.n_keep = 1;
    char err[512];
    vy[fz] = malloc((size_t)ny * 4);
    vdw[fz] = malloc((size_t)nw * 4);
    vdb[fz] = malloc(16 * 4);
    mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
    CHECK(s != NULL, "session: %s", err);
    if (!s) { ok = 0; continue; }
    int nf = fused_count(mf_session_plan(s)->g), on = 0;
    for (int id = 0; id < mf_session_plan(s)->g->n; id++) on += mf_cpu_conv_on_dnnl(&mf_session_plan(s)->g->nodes[id]);
    CHECK(nf == fz && on == 2, "fusion %d: %d fused, %d conv nodes on oneDNN (expected %d, 2)", fz, nf, on, fz);
    mf_session_write_input(s, x, vx, (size_t)nx);
    mf_session_write_input(s, R, vR, (size_t)ny);
    mf_session_write_param(s, w, vw, (size_t)nw);
    mf_session_write_param(s, b, vb, 16);
    mf_session_micro_step(s);
    mf_session_read(s, y, vy[fz], (size_t)ny);
    mf_session_read_grad(s, w, vdw[fz], (size_t)nw);
    mf_session_read_grad(s, b, vdb[fz], 16);
    check_memory(s, fz ? "oneDNN fused" : "oneDNN unfused");
    mf_session_free(s);
  }
  if (ok) {
    /* y: each is within gamma_{K+1} (|b| + sum |w x|) of the exact conv (any summation order), and leaky ReLU
     * is 1-Lipschitz and exact up to one rounding of slope * v (below u |v| <= u (|b| + sum |w x|)) */
    const double u = ldexp(1.0, -24), gam = (K + 1) * u / (1 - (K + 1) * u);
    double *ab = calloc((size_t)ny, sizeof(double));
    for (int64_t n = 0; n < N; n++)
      for (int64_t oc = 0; oc < OC; oc++)
        for (int64_t oh = 0; oh < H; oh++)
          for (int64_t ow = 0; ow < W; ow++) {
            double a = fabs(vb[oc]);
            for (int64_t c = 0; c < C; c++)
              for (int64_t kh = 0; kh < KS; kh++)
                for (int64_t kw = 0; kw < KS; kw++) {
                  int64_t ih = oh + kh - 1, iw = ow + kw - 1;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  a += fabs((double)vw[((oc * C + c) * KS + kh) * KS + kw] * vx[((n * C + c) * H + ih) * W + iw]);
                }
            ab[((n * OC + oc) * H + oh) * W + ow] = a;
          }
    int bad = 0, flips = 0;
    double worst = 0;
    for (int64_t i = 0; i < ny; i++) {
      double bound = 2 * (gam + u) * ab[i], d = fabs((double)vy[0][i] - vy[1][i]);
      if (d > bound) bad++;
      if (bound > 0 && d / bound > worst) worst = d / bound;
      flips += (vy[0][i] > 0) != (vy[1][i] > 0);
    }
    CHECK(bad == 0, "oneDNN: %d of %lld fused outputs outside 2 (gamma_%lld + u) sum |b| + |w x| of the unfused", bad, (long long)ny,
          (long long)(K + 1));
    /* dw[oc,c,kh,kw] = sum over n, oh, ow of g x with g = R * (y > 0 ? 1 : slope) (rounded: within u |R|):
     * both sums within gamma_(M+1) sum |g x| of exact (M = N*H*W terms), |g| <= |R|; where the two y differ
     * in sign (a flip) their g differ by at most |R| */
    const int64_t M = N * H * W;
    const double gm = (M + 1) * u / (1 - (M + 1) * u);
    int badw = 0, badb = 0;
    for (int64_t oc = 0; oc < OC; oc++) {
      double sb = 0, fb = 0;
      for (int64_t n = 0; n < N; n++)
        for (int64_t q = 0; q < H * W; q++) {
          int64_t i = (n * OC + oc) * H * W + q;
          sb += fabs(vR[i]);
          if ((vy[0][i] > 0) != (vy[1][i] > 0)) fb += fabs(vR[i]);
        }
      if (fabs((double)vdb[0][oc] - vdb[1][oc]) > 2 * (gm + u) * sb + fb) badb++;
      for (int64_t c = 0; c < C; c++)
        for (int64_t kh = 0; kh < KS; kh++)
          for (int64_t kw = 0; kw < KS; kw++) {
            double s = 0, fl = 0;
            for (int64_t n = 0; n < N; n++)
              for (int64_t oh = 0; oh < H; oh++)
                for (int64_t ow = 0; ow < W; ow++) {
                  int64_t ih = oh + kh - 1, iw = ow + kw - 1;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  int64_t i = ((n * OC + oc) * H + oh) * W + ow;
                  double t = fabs((double)vR[i] * vx[((n * C + c) * H + ih) * W + iw]);
                  s += t;
                  if ((vy[0][i] > 0) != (vy[1][i] > 0)) fl += t;
                }
            int64_t wi = ((oc * C + c) * KS + kh) * KS + kw;
            if (fabs((double)vdw[0][wi] - vdw[1][wi]) > 2 * (gm + u) * s + fl) badw++;
          }
    }
    CHECK(badw == 0 && badb == 0, "oneDNN: %d weight and %d bias gradients of the fused plan outside the bound of the unfused", badw, badb);
    printf("  oneDNN post-op: outputs at most %.3g of the derived bound from the unfused conv, %d sign flips\n", worst, flips);
    free(ab);
  }
  for (int fz = 0; fz < 2; fz++) { free(vy[fz]); free(vdw[fz]); free(vdb[fz]); }
  free(vx);
  free(vw);
  free(vR);
  mf_graph_free(g);
}

/* ------------------------------------------------------------------ 3. gradients of the fused graph (f64) */

/* f64, x, w1, b1, w2 parameters: loss = sum(relu(conv(lrelu(conv(x, w1, b1)), w2)) * R); the fusion pass runs on
 * the differentiated graph and the reference evaluator runs it (fused kernels, the ReLUs as copies) */
static void fused_gradcheck(void) {
  gc_seed_fresh();
  mf_graph *g = mf_graph_init(MF_F64);
  mf_tensor p[4] = {mf_param(g, "x", 4, (int64_t[]){2, 5, 6, 6}, MF_INIT_ZERO, 0), mf_param(g, "w1", 4, (int64_t[]){7, 5, 3, 3}, MF_INIT_ZERO, 0),
                    mf_param(g, "b1", 1, (int64_t[]){7}, MF_INIT_ZERO, 0), mf_param(g, "w2", 4, (int64_t[]){4, 7, 3, 3}, MF_INIT_ZERO, 0)};
  mf_tensor h = mf_leaky_relu(g, mf_conv2d(g, p[0], p[1], p[2], 1, 1, 1), SLOPE);
  mf_tensor y = mf_relu(g, mf_conv2d(g, h, p[3], -1, 2, 1, 1)); /* [2,4,3,3] */
  mf_tensor R = mf_input(g, "R", 4, (int64_t[]){2, 4, 3, 3});
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  if (mf_graph_error(g) || mf_autodiff(g, loss) < 0) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return; }
  int nf = mf_fuse_conv_act(g, NULL, 0);
  CHECK(nf == 2, "both convs fused in the differentiated graph (%d)", nf);
  int bad = gc_graph_fd(g, loss, p, 4, "fused graph");
  CHECK(bad == 0, "fused graph: %d gradient elements differ from finite differences", bad);
  mf_graph_free(g);
}

int main(void) {
  unsetenv("MEMFIT_CONV");
  structure_and_gemm_parity();
  onednn_parity();
  fused_gradcheck();
  unsetenv("MEMFIT_FUSE");
  return check_finish("test_conv_fuse");
}

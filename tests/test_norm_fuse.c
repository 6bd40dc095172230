/* test_norm_fuse.c — the planner's norm -> ReLU / leaky ReLU fusion (plan/fuse.c, mf_norm_act on the CPU): which
 * pairs fuse and which must not (a norm read twice, a kept pre-activation), bit-for-bit parity of loss, gradients
 * and running statistics with the unfused plan, measured == planned, and gradients of the fused graph against f64
 * finite differences. */
#include "gradcheck.h"
#include "backend/cpu/cpu.h"
#include "plan/fuse.h"
#include "plan/plan.h"
#include <math.h>

enum { THREADS = 2, NP = 7 };
#define SLOPE 0.05

static int fused_count(const mf_graph *g) {
  int k = 0;
  for (int id = 0; id < g->n; id++) k += mf_norm_act(&g->nodes[id]) >= 0;
  return k;
}

static void write_rand(mf_session *s, const mf_graph *g, mf_tensor t, uint64_t seed, int param) {
  int64_t n = mf_tensor_numel(g, t);
  float *b = malloc((size_t)n * sizeof *b);
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 2 - 1);
  }
  if (param) mf_session_write_param(s, t, b, (size_t)n);
  else mf_session_write_input(s, t, b, (size_t)n);
  free(b);
}

typedef struct net {
  mf_graph *g;
  mf_tensor x, target, loss, n1, rm, rv, p[NP];
} net;

/* x [4,3,6,6] -conv (w [6,3,3,3], pad 1)-> batchnorm (g1, b1, running rm/rv) -> relu -> groupnorm (3 groups, g2, b2)
 * -> leaky relu -> batchnorm (g3, b3) = n3; out = relu(n3) + n3 (n3 is read twice: not fused); mse against target */
static void net_build(net *m) {
  mf_graph *g = m->g = mf_graph_init(MF_F32);
  m->x = mf_input(g, "x", 4, (int64_t[]){4, 3, 6, 6});
  m->target = mf_input(g, "target", 4, (int64_t[]){4, 6, 6, 6});
  m->p[0] = mf_param(g, "w", 4, (int64_t[]){6, 3, 3, 3}, MF_INIT_KAIMING, 0);
  for (int i = 1; i < NP; i++) {
    char nm[8];
    snprintf(nm, sizeof nm, "%c%d", i % 2 ? 'g' : 'b', (i + 1) / 2);
    m->p[i] = mf_param(g, nm, 1, (int64_t[]){6}, MF_INIT_ZERO, 0);
  }
  m->rm = mf_buffer(g, "rm", 1, (int64_t[]){6}, MF_INIT_ZERO, 0);
  m->rv = mf_buffer(g, "rv", 1, (int64_t[]){6}, MF_INIT_ONE, 0);
  mf_tensor c = mf_conv2d(g, m->x, m->p[0], -1, 1, 1, 1);                              /* [4,6,6,6] */
  m->n1 = mf_batchnorm(g, c, m->p[1], m->p[2], m->rm, m->rv, 1, 0.1, 1e-5);            /* [4,6,6,6] */
  mf_tensor h = mf_relu(g, m->n1);
  h = mf_leaky_relu(g, mf_groupnorm(g, h, m->p[3], m->p[4], 3, 1e-5), SLOPE);          /* [4,6,6,6] */
  mf_tensor n3 = mf_batchnorm(g, h, m->p[5], m->p[6], -1, -1, 1, 0.1, 1e-5);           /* [4,6,6,6] */
  m->loss = mf_mse_loss(g, mf_add(g, mf_relu(g, n3), n3), m->target);
  CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
}

typedef struct run { double loss; float *grad[NP]; float run_stats[12]; int fused; size_t act; } run;

static void run_net(const net *m, int fuse, const mf_tensor *keep, int n_keep, run *r, const char *what) {
  setenv("MEMFIT_FUSE", fuse ? "1" : "0", 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = THREADS;
  o.debug_memory = 1;
  o.plan.keep = keep;
  o.plan.n_keep = n_keep;
  char err[512];
  mf_session *s = mf_session_init(m->g, m->loss, &o, err, sizeof err);
  CHECK(s != NULL, "%s: session: %s", what, err);
  if (!s) return;
  for (int i = 0; i < NP; i++) write_rand(s, m->g, m->p[i], 100 + (uint64_t)i, 1);
  write_rand(s, m->g, m->x, 7, 0);
  write_rand(s, m->g, m->target, 8, 0);
  r->loss = mf_session_micro_step(s);
  for (int i = 0; i < NP; i++) {
    int64_t n = mf_tensor_numel(m->g, m->p[i]);
    r->grad[i] = malloc((size_t)n * sizeof(float));
    mf_session_read_grad(s, m->p[i], r->grad[i], (size_t)n);
  }
  CHECK(mf_session_read(s, m->rm, r->run_stats, 6) == 0 && mf_session_read(s, m->rv, r->run_stats + 6, 6) == 0,
        "%s: reading the running statistics", what);
  r->fused = fused_count(mf_session_plan(s)->g);
  const mf_plan *p = mf_session_plan(s);
  r->act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  mf_session_free(s);
}

static void run_free(run *r) {
  for (int i = 0; i < NP; i++) free(r->grad[i]);
}

static void structure_and_parity(void) {
  net m;
  net_build(&m);
  if (mf_graph_error(m.g)) { mf_graph_free(m.g); return; }
  int dnnl = mf_cpu_dnnl_conv_enable(0); /* the conv is not fused either way; memfit's GEMM keeps it simple */
  run f = {0}, u = {0}, k = {0};
  run_net(&m, 1, NULL, 0, &f, "fused");
  run_net(&m, 0, NULL, 0, &u, "unfused");
  run_net(&m, 1, &m.n1, 1, &k, "fused, batchnorm 1 kept");
  CHECK(f.fused == 2, "batchnorm -> relu and groupnorm -> leaky relu fuse, n3 (read twice) does not: %d fused", f.fused);
  CHECK(u.fused == 0, "MEMFIT_FUSE=0: %d fused", u.fused);
  CHECK(k.fused == 1, "a kept pre-activation is not fused away: %d fused", k.fused);
  printf("  activations + workspace: fused %zu B, unfused %zu B; loss %.9g / %.9g\n", f.act, u.act, f.loss, u.loss);
  /* the fused kernel runs the same float operations as the two unfused kernels: equal bits on any CPU */
  CHECK(f.loss == u.loss, "fused loss %.17g, unfused %.17g", f.loss, u.loss);
  int same = 1;
  for (int i = 0; i < NP; i++) {
    int64_t n = mf_tensor_numel(m.g, m.p[i]);
    for (int64_t j = 0; j < n; j++) same &= f.grad[i][j] == u.grad[i][j];
  }
  for (int j = 0; j < 12; j++) same &= f.run_stats[j] == u.run_stats[j];
  CHECK(same, "fused and unfused gradients or running statistics differ");
  run_free(&f);
  run_free(&u);
  run_free(&k);
  mf_cpu_dnnl_conv_enable(dnnl);
  mf_graph_free(m.g);
}

/* f64 parameters x [3,4,3,3], g1, b1, g2, b2 [4]: loss = sum(lrelu(groupnorm(relu(batchnorm(x)), 2 groups)) * R),
 * fused on the differentiated graph; the reference evaluator runs the fused kernels (the ReLUs as copies) */
static void fused_gradcheck(void) {
  gc_seed_fresh();
  mf_graph *g = mf_graph_init(MF_F64);
  int64_t four = 4;
  mf_tensor p[5] = {mf_param(g, "x", 4, (int64_t[]){3, 4, 3, 3}, MF_INIT_ZERO, 0), mf_param(g, "g1", 1, &four, MF_INIT_ZERO, 0),
                    mf_param(g, "b1", 1, &four, MF_INIT_ZERO, 0), mf_param(g, "g2", 1, &four, MF_INIT_ZERO, 0),
                    mf_param(g, "b2", 1, &four, MF_INIT_ZERO, 0)};
  mf_tensor h = mf_relu(g, mf_batchnorm(g, p[0], p[1], p[2], -1, -1, 1, 0.1, 1e-5));    /* [3,4,3,3] */
  mf_tensor y = mf_leaky_relu(g, mf_groupnorm(g, h, p[3], p[4], 2, 1e-5), SLOPE);      /* [3,4,3,3] */
  mf_tensor R = mf_input(g, "R", 4, (int64_t[]){3, 4, 3, 3});
  mf_tensor loss = mf_sum(g, mf_mul(g, y, R), 0, 0);
  if (mf_graph_error(g) || mf_autodiff(g, loss) < 0) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return; }
  g->fuse_norm_act = 1;
  int nf = mf_fuse_conv_act(g, NULL, 0);
  CHECK(nf == 2, "both norms fused in the differentiated graph (%d)", nf);
  int bad = gc_graph_fd(g, loss, p, 5, "fused graph");
  CHECK(bad == 0, "fused graph: %d gradient elements differ from finite differences", bad);
  mf_graph_free(g);
}

int main(void) {
  unsetenv("MEMFIT_CONV");
  structure_and_parity();
  fused_gradcheck();
  unsetenv("MEMFIT_FUSE");
  return check_finish("test_norm_fuse");
}

/* test_cpu_avx2.c — the CPU kernels' AVX2 and AVX-512 copies (cpu.h: MF_CPU_AVX2_TARGET, MF_CPU_AVX512_TARGET,
 * runtime dispatch) give the same bits as their SSE copies: one training micro-step of batch norm (train, running
 * statistics), group norm, a fused norm -> ReLU, SiLU, sigmoid and exp, in f32 and in bf16, each way; the loss, every
 * gradient and the running statistics compared bit for bit. Compares what the CPU has (nothing without AVX2). */
#include "check.h"
#include "backend/cpu/cpu.h"
#include "memfit.h"
#include <stdint.h>

enum { NP = 5 };

typedef struct net { mf_graph *g; mf_tensor x, target, loss, rm, rv, p[NP]; } net;

/* x [3,6,7,9] -> batchnorm (g1, b1, running rm/rv) -> relu -> groupnorm (3 groups, g2, b2) -> silu, + sigmoid, + exp
 * -> conv 1x1 to [3,6,7,9] (w) -> mse against target: spans of 63 (norms) and 1134 (elementwise), neither a multiple
 * of the vector width */
static void net_build(net *m, mf_dtype dt) {
  mf_graph *g = m->g = mf_graph_init(dt);
  m->x = mf_input(g, "x", 4, (int64_t[]){3, 6, 7, 9});
  m->target = mf_input(g, "target", 4, (int64_t[]){3, 6, 7, 9});
  const char *nm[NP] = {"g1", "b1", "g2", "b2", "w"};
  for (int i = 0; i < 4; i++) m->p[i] = mf_param(g, nm[i], 1, (int64_t[]){6}, i % 2 ? MF_INIT_ZERO : MF_INIT_ONE, 0);
  m->p[4] = mf_param(g, "w", 4, (int64_t[]){6, 6, 1, 1}, MF_INIT_KAIMING, 0);
  m->rm = mf_buffer(g, "rm", 1, (int64_t[]){6}, MF_INIT_ZERO, 0);
  m->rv = mf_buffer(g, "rv", 1, (int64_t[]){6}, MF_INIT_ONE, 0);
  mf_tensor h = mf_relu(g, mf_batchnorm(g, m->x, m->p[0], m->p[1], m->rm, m->rv, 1, 0.1, 1e-5)); /* [3,6,7,9] */
  h = mf_silu(g, mf_groupnorm(g, h, m->p[2], m->p[3], 3, 1e-5));                                 /* [3,6,7,9] */
  h = mf_add(g, mf_add(g, h, mf_sigmoid(g, h)), mf_exp(g, h));                                    /* [3,6,7,9] */
  h = mf_conv2d(g, h, m->p[4], -1, 1, 0, 1);                                                      /* [3,6,7,9] */
  m->loss = mf_mse_loss(g, h, m->target);
  CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
}

static void write_rand(mf_session *s, const mf_graph *g, mf_tensor t, uint64_t seed, int param) {
  int64_t n = mf_tensor_numel(g, t);
  float *b = malloc((size_t)n * sizeof *b);
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 6 - 2); /* [-2, 4): a mean away from 0 */
  }
  if (param) mf_session_write_param(s, t, b, (size_t)n);
  else mf_session_write_input(s, t, b, (size_t)n);
  free(b);
}

typedef struct run { double loss; float grad[NP][64]; float stats[16]; } run;

static void run_net(const net *m, int level, run *r) {
  mf_cpu_avx2_use(level);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  char err[512];
  mf_session *s = mf_session_init(m->g, m->loss, &o, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (!s) return;
  for (int i = 0; i < NP; i++) write_rand(s, m->g, m->p[i], 100 + (uint64_t)i, 1);
  write_rand(s, m->g, m->x, 7, 0);
  write_rand(s, m->g, m->target, 8, 0);
  r->loss = mf_session_micro_step(s);
  for (int i = 0; i < NP; i++) mf_session_read_grad(s, m->p[i], r->grad[i], (size_t)mf_tensor_numel(m->g, m->p[i]));
  CHECK(mf_session_read(s, m->rm, r->stats, 6) == 0 && mf_session_read(s, m->rv, r->stats + 6, 6) == 0, "running stats");
  mf_session_free(s);
  mf_cpu_avx2_use(-1);
}

int main(void) {
  mf_cpu_avx2_use(2);
  int have = mf_cpu_avx2();
  mf_cpu_avx2_use(-1);
  const char *names[3] = {"SSE", "AVX2", "AVX-512"};
  printf("test_cpu_avx2: %s\n", have == 2 ? "AVX2 and AVX-512 copies compared with the SSE copies"
                                 : have ? "AVX2 copies compared with the SSE copies (no AVX-512 here)"
                                        : "no AVX2 here: nothing to compare");
  for (int d = 0; d < 2; d++) {
    mf_dtype dt = d ? MF_BF16 : MF_F32;
    net m;
    net_build(&m, dt);
    run a, b;
    memset(&a, 0, sizeof a);
    run_net(&m, 0, &a);
    CHECK(isfinite(a.loss) && a.loss > 0, "%s loss %g", mf_dtype_name(dt), a.loss);
    for (int level = 1; level <= have; level++) {
      memset(&b, 0, sizeof b);
      run_net(&m, level, &b);
      CHECK(memcmp(&a.loss, &b.loss, sizeof a.loss) == 0, "%s loss %.17g (SSE) vs %.17g (%s)", mf_dtype_name(dt), a.loss, b.loss,
            names[level]);
      CHECK(memcmp(a.grad, b.grad, sizeof a.grad) == 0, "%s gradients differ between the SSE and %s copies", mf_dtype_name(dt),
            names[level]);
      CHECK(memcmp(a.stats, b.stats, sizeof a.stats) == 0, "%s running statistics differ between the SSE and %s copies",
            mf_dtype_name(dt), names[level]);
    }
    mf_graph_free(m.g);
  }
  return check_finish("test_cpu_avx2");
}

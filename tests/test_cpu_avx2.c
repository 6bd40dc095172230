/* test_cpu_avx2.c — the CPU kernels' AVX2 copies (cpu.h: MF_CPU_AVX2_TARGET, runtime dispatch) give the same bits
 * as their SSE copies: one training micro-step of batch norm (train, running statistics), group norm, a fused
 * norm -> ReLU, SiLU, sigmoid and exp, each way; the loss, every gradient and the running statistics compared bit for bit.
 * Passes trivially without AVX2. */
#include "check.h"
#include "backend/cpu/cpu.h"
#include "memfit.h"
#include <stdint.h>

enum { NP = 5 };

typedef struct net { mf_graph *g; mf_tensor x, target, loss, rm, rv, p[NP]; } net;

/* x [3,6,7,9] -> batchnorm (g1, b1, running rm/rv) -> relu -> groupnorm (3 groups, g2, b2) -> silu, + sigmoid, + exp
 * -> conv 1x1 to [3,6,7,9] (w) -> mse against target: spans of 63 (norms) and 1134 (elementwise), neither a multiple
 * of the vector width */
static void net_build(net *m) {
  mf_graph *g = m->g = mf_graph_init(MF_F32);
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

static void run_net(const net *m, int avx2, run *r) {
  mf_cpu_avx2_use(avx2);
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
  mf_cpu_avx2_use(1);
  int have = mf_cpu_avx2();
  printf("test_cpu_avx2: AVX2 copies %s\n", have ? "compared with the SSE copies" : "absent (no AVX2 here): nothing to compare");
  net m;
  net_build(&m);
  run a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  run_net(&m, 0, &a);
  run_net(&m, 1, &b);
  CHECK(isfinite(a.loss) && a.loss > 0, "loss %g", a.loss);
  CHECK(memcmp(&a.loss, &b.loss, sizeof a.loss) == 0, "loss %.17g (SSE) vs %.17g (AVX2)", a.loss, b.loss);
  CHECK(memcmp(a.grad, b.grad, sizeof a.grad) == 0, "gradients differ between the SSE and AVX2 copies");
  CHECK(memcmp(a.stats, b.stats, sizeof a.stats) == 0, "running statistics differ between the SSE and AVX2 copies");
  mf_graph_free(m.g);
  return check_finish("test_cpu_avx2");
}

/* conv_session.h — what the CPU convolution tests share: deterministic operands, a two-thread training session of a
 * small conv net with its inputs written, and which nodes are convolutions. Include after check.h. */
#ifndef MF_TEST_CONV_SESSION_H
#define MF_TEST_CONV_SESSION_H
#include "plan/plan.h"
#include <stdint.h>

/* deterministic operands: uniform in [-1, 1), or integers in [-3, 3] */
static inline void conv_fill(float *p, int64_t n, uint64_t seed, int integers) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = (double)(seed >> 11) / 9007199254740992.0;
    p[i] = integers ? (float)((int)(u * 7) - 3) : (float)(2 * u - 1);
  }
}

static inline int conv_node_is(const mf_node *n) {
  return n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT;
}

/* a session of loss on 2 threads measuring its arenas (debug_memory), inputs ins[0..nins) filled by conv_fill from
 * seed, seed + 1, ...; NULL (and a failed check) when it cannot be built */
static inline mf_session *conv_session_init(mf_graph *g, mf_tensor loss, const mf_tensor *ins, int nins, uint64_t seed) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.debug_memory = 1;
  char err[512];
  mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  for (int i = 0; s && i < nins; i++) {
    int64_t n = mf_tensor_numel(g, ins[i]);
    float *b = malloc((size_t)n * 4);
    conv_fill(b, n, seed + (uint64_t)i, 0);
    mf_session_write_input(s, ins[i], b, (size_t)n);
    free(b);
  }
  return s;
}
#endif

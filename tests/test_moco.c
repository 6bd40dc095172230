/* test_moco.c — MoCo v2/v3 on a tiny ResNet-18 (the tiny preset: width 1/16, 16 px): measured == planned
 * per arena in f32 and bf16 with accumulation; the key encoder equals a hand EMA of the query parameters
 * after two updates; the queue after two optimizer steps (a batch that does not divide it, wrapping
 * around) holds every key of each step, pushed once per step; bad settings are refused by name. */
#include "check.h"
#include "models/moco.h"
#include "graph/graph.h"
#include "plan/plan.h"
#include "train/safetensors.h"
#include <unistd.h>

static uint64_t rs = 12345;
static float urand(void) {
  rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
  return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

/* one v2 run: 2 optimizer steps of `accum` micro-steps; checks memory, EMA and queue */
static void run_v2(mf_dtype dt, int micro, int accum) {
  char what[64];
  snprintf(what, sizeof what, "v2 %s micro %d x %d", mf_dtype_name(dt), micro, accum);
  moco_cfg c;
  char err[512];
  CHECK(moco_cfg_preset("tiny", &c, err, sizeof err) == 0, "%s", err);
  c.batch = micro * accum;
  c.micro_batch = micro;
  c.queue = 20; /* the batch (8) does not divide it */
  c.momentum = 0.9;
  mf_graph *g = mf_graph_init(dt);
  mf_graph_set_seed(g, 3);
  moco_net net;
  if (moco_build(g, &c, micro, &net, err, sizeof err) < 0) { CHECK(0, "%s: build: %s", what, err); mf_graph_free(g); return; }
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.debug_memory = 1;
  o.accum_steps = accum;
  o.lr = 0.05;
  o.plan.optim = MF_SGD;
  o.momentum = 0.9;
  mf_tensor keep[1] = {net.k};
  o.plan.keep = keep;
  o.plan.n_keep = 1;
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "%s: session: %s", what, err); mf_graph_free(g); return; }
  CHECK(moco_session_ready(s, &net, err, sizeof err) == 0, "%s", err);
  const int K = c.queue, D = c.dim, B = micro;
  float *queue = malloc(sizeof(float) * K * D), *qread = malloc(sizeof(float) * K * D), *keys = malloc(sizeof(float) * B * D);
  CHECK(mf_session_read(s, net.queue, queue, (size_t)K * D) == 0, "read queue");
  /* query parameters and their EMA twins */
  mf_graph *gg = g;
  int np = 0, pid[512], eid[512];
  for (int id = 0; id < gg->n && np < 512; id++) {
    const mf_node *nd = &gg->nodes[id];
    if (nd->op != MF_OP_PARAM || strncmp(nd->name, "encoder_q.", 10)) continue;
    char kn[96];
    snprintf(kn, sizeof kn, "encoder_k.%s", nd->name + 10);
    int e = resnet_find(gg, kn);
    CHECK(e >= 0 && gg->nodes[e].role == MF_ROLE_BUFFER && gg->nodes[e].state_kind == MF_STATE_EMA, "%s: no EMA twin of %s", what,
          nd->name);
    pid[np] = id, eid[np++] = e;
  }
  CHECK(np == net.n_ema && np > 60, "%s: %d query parameters, %d EMA states", what, np, net.n_ema);
  int64_t total = 0;
  for (int i = 0; i < np; i++) total += mf_node_numel(&gg->nodes[pid[i]]);
  double *hand = malloc(sizeof(double) * total);
  float *tmp = malloc(sizeof(float) * total);
  for (int i = 0, off = 0; i < np; off += (int)mf_node_numel(&gg->nodes[pid[i]]), i++) {
    int64_t cnt = mf_node_numel(&gg->nodes[pid[i]]);
    mf_session_read(s, pid[i], tmp, (size_t)cnt);
    for (int64_t j = 0; j < cnt; j++) hand[off + j] = tmp[j]; /* the key encoder starts as the query */
  }
  size_t xn = (size_t)B * 3 * c.size * c.size;
  float *xq = malloc(sizeof(float) * xn), *xk = malloc(sizeof(float) * xn);
  int64_t pos = 0, bad_ema = 0;
  double worst = 0;
  for (int step = 0; step < 2; step++) {
    for (int m = 0; m < accum; m++) {
      for (size_t i = 0; i < xn; i++) xq[i] = urand(), xk[i] = urand();
      mf_session_write_input(s, net.xq, xq, xn);
      mf_session_write_input(s, net.xk, xk, xn);
      double l = mf_session_micro_step(s);
      CHECK(isfinite(l) && l > 0, "%s: loss %g", what, l);
      CHECK(mf_session_read(s, net.k, keys, (size_t)B * D) == 0, "read keys");
      for (int r = 0; r < B; r++) memcpy(queue + ((pos + r + (int64_t)m * B) % K) * D, keys + r * D, sizeof(float) * D);
      mf_session_read(s, net.queue, qread, (size_t)K * D);
      if (m + 1 < accum) { /* not yet: the queue is written once per optimizer step */
        int64_t diff = 0;
        for (int i = 0; i < K * D; i++) diff += qread[i] != queue[i];
        CHECK(diff > 0, "%s: step %d micro %d: the hand queue has not moved?", what, step, m);
      }
    }
    pos = (pos + (int64_t)accum * B) % K;
    CHECK(mf_session_update(s) == 1, "%s: update", what);
    mf_session_read(s, net.queue, qread, (size_t)K * D);
    int64_t diff = 0;
    for (int i = 0; i < K * D; i++) diff += qread[i] != queue[i];
    CHECK(diff == 0, "%s: step %d: %lld queue entries differ from the hand queue", what, step, (long long)diff);
    CHECK(mf_session_ring_pos(s, net.queue) == pos, "%s: position %lld, expected %lld", what,
          (long long)mf_session_ring_pos(s, net.queue), (long long)pos);
    /* EMA: k = m k + (1-m) q in f64 from the parameters read back; bound: f32 rounding of the two products and
     * the sum, 3 u (m|k| + (1-m)|q|), plus the hand value's drift from the session's after the first step */
    for (int i = 0, off = 0; i < np; off += (int)mf_node_numel(&gg->nodes[pid[i]]), i++) {
      int64_t cnt = mf_node_numel(&gg->nodes[pid[i]]);
      float *e = malloc(sizeof(float) * cnt);
      mf_session_read(s, pid[i], tmp, (size_t)cnt);
      mf_session_read(s, eid[i], e, (size_t)cnt);
      for (int64_t j = 0; j < cnt; j++) {
        double h = c.momentum * hand[off + j] + (1 - c.momentum) * tmp[j];
        double bound = 3 * 0x1p-24 * (c.momentum * fabs(hand[off + j]) + (1 - c.momentum) * fabs(tmp[j])) * (step + 1) + 1e-30;
        double d = fabs(e[j] - h);
        if (d > bound) bad_ema++;
        if (d / bound > worst) worst = d / bound;
        hand[off + j] = e[j]; /* continue from the session's value: each update is checked on its own */
      }
      free(e);
    }
  }
  CHECK(bad_ema == 0, "%s: %lld EMA values off the hand EMA (worst %.2f x the bound)", what, (long long)bad_ema, worst);
  mf_session_forward(s);
  const mf_plan *p = mf_session_plan(s);
  int exact = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), planned, measured);
    exact &= planned == measured;
  }
  printf("  %-22s measured == planned: %s (state %zu B, act %zu B, total %zu B); EMA worst %.2f x bound; queue exact\n", what,
         exact ? "yes" : "NO", mf_plan_arena_bytes(p, MF_ARENA_STATE), mf_plan_arena_bytes(p, MF_ARENA_ACT), mf_plan_total_bytes(p),
         worst);
  free(queue); free(qread); free(keys); free(hand); free(tmp); free(xq); free(xk);
  mf_session_free(s);
  mf_graph_free(g);
}

/* ---- parity with PyTorch (tests/moco_parity.py): two MoCo v2 steps of a ResNet-18 (width 1/16, 16 px, split
 * batch norm 2) from the same weights, inputs and queue; batch 8, queue 20 (8 does not divide it) ---- */
static int torch_available(void) {
  if (access("/usr/bin/python3", X_OK) != 0) {
    printf("SKIP parity: /usr/bin/python3 is missing (install python3 and python3-torch to run it)\n");
    return 0;
  }
  if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("SKIP parity: python3 cannot import torch and numpy (apt install python3-torch python3-numpy)\n");
    return 0;
  }
  return 1;
}

static void parity(void) {
  if (!torch_available()) return;
  moco_cfg c;
  char err[512];
  moco_cfg_preset("tiny", &c, err, sizeof err);
  c.queue = 20;
  c.momentum = 0.9;
  const int B = c.batch, K = c.queue, D = c.dim;
  mf_graph *g = mf_graph_init(MF_F32);
  mf_graph_set_seed(g, 11);
  moco_net net;
  if (moco_build(g, &c, B, &net, err, sizeof err) < 0) { CHECK(0, "parity build: %s", err); mf_graph_free(g); return; }
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.plan.optim = MF_SGD;
  o.lr = 0.5; /* large, so that the second step and the EMA see a clearly different query encoder */
  o.momentum = 0;
  o.weight_decay = 0;
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "parity session: %s", err); mf_graph_free(g); return; }
  CHECK(moco_session_ready(s, &net, err, sizeof err) == 0, "%s", err);
  mf_st_writer *w = mf_st_writer_init();
  enum { MAXT = 1024 };
  float *bufs[MAXT];
  int nb = 0;
#define KEEP(ptr) (bufs[nb++] = (ptr))
  /* initial parameters (query; the key encoder starts equal), the queue */
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_PARAM) continue;
    float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
    mf_session_read(s, id, v, (size_t)mf_node_numel(nd));
    char nm[96];
    snprintf(nm, sizeof nm, "param.%s", nd->name);
    mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
  }
  int64_t qs[2] = {K, D}, xs[4] = {B, c.channels, c.size, c.size}, one = 1;
  float *q0 = KEEP(malloc(sizeof(float) * K * D));
  mf_session_read(s, net.queue, q0, (size_t)K * D);
  mf_st_writer_add(w, "queue0", MF_F32, 2, qs, q0);
  size_t xn = (size_t)B * c.channels * c.size * c.size;
  float losses[2];
  for (int step = 0; step < 2; step++) {
    float *xq = KEEP(malloc(sizeof(float) * xn)), *xk = KEEP(malloc(sizeof(float) * xn));
    for (size_t i = 0; i < xn; i++) xq[i] = urand(), xk[i] = urand();
    char nm[96];
    snprintf(nm, sizeof nm, "xq%d", step);
    mf_st_writer_add(w, nm, MF_F32, 4, xs, xq);
    snprintf(nm, sizeof nm, "xk%d", step);
    mf_st_writer_add(w, nm, MF_F32, 4, xs, xk);
    mf_session_write_input(s, net.xq, xq, xn);
    mf_session_write_input(s, net.xk, xk, xn);
    losses[step] = (float)mf_session_micro_step(s);
    snprintf(nm, sizeof nm, "memfit.loss%d", step);
    mf_st_writer_add(w, nm, MF_F32, 1, &one, &losses[step]);
    for (int id = 0; id < g->n; id++) { /* every parameter's gradient of this step */
      const mf_node *nd = &g->nodes[id];
      if (nd->op != MF_OP_PARAM) continue;
      float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
      CHECK(mf_session_read_grad(s, id, v, (size_t)mf_node_numel(nd)) == 0, "grad %s", nd->name);
      snprintf(nm, sizeof nm, "memfit.grad%d.%s", step, nd->name);
      mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
    }
    CHECK(mf_session_update(s) == 1, "parity update %d", step);
  }
  for (int id = 0; id < g->n; id++) { /* the key encoder after two momentum updates */
    const mf_node *nd = &g->nodes[id];
    if (!(nd->role == MF_ROLE_BUFFER && nd->state_kind == MF_STATE_EMA)) continue;
    float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
    mf_session_read(s, id, v, (size_t)mf_node_numel(nd));
    char nm[96];
    snprintf(nm, sizeof nm, "memfit.ema.%s", nd->name);
    mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
  }
  float *qf = KEEP(malloc(sizeof(float) * K * D));
  mf_session_read(s, net.queue, qf, (size_t)K * D);
  mf_st_writer_add(w, "memfit.queue", MF_F32, 2, qs, qf);
  char meta[256];
  snprintf(meta, sizeof meta, "%d", (int)mf_session_ring_pos(s, net.queue));
  mf_st_writer_meta(w, "queue_pos", meta);
  snprintf(meta, sizeof meta, "%.17g", c.temperature); mf_st_writer_meta(w, "temperature", meta);
  snprintf(meta, sizeof meta, "%.17g", c.momentum); mf_st_writer_meta(w, "momentum", meta);
  snprintf(meta, sizeof meta, "%.17g", o.lr); mf_st_writer_meta(w, "lr", meta);
  snprintf(meta, sizeof meta, "%d", c.bn_splits); mf_st_writer_meta(w, "bn_splits", meta);
  char dir[] = "/tmp/memfit_moco_XXXXXX", path[600], cmd[1600];
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  snprintf(path, sizeof path, "%s/parity.safetensors", dir);
  CHECK(mf_st_writer_save(w, path, err, sizeof err) == 0, "save: %s", err);
  const char *root = getenv("MEMFIT_ROOT") ? getenv("MEMFIT_ROOT") : ".";
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/moco_parity.py %s --rtol 1e-4", root, path);
  printf("parity: losses %.9g %.9g\n", losses[0], losses[1]);
  fflush(stdout);
  CHECK(system(cmd) == 0, "parity with PyTorch failed: %s", cmd);
  unlink(path);
  rmdir(dir);
  mf_st_writer_free(w);
  for (int i = 0; i < nb; i++) free(bufs[i]);
  mf_session_free(s);
  mf_graph_free(g);
}

int main(void) {
  run_v2(MF_F32, 4, 2);
  run_v2(MF_BF16, 4, 2);
  run_v2(MF_F32, 8, 1);
  parity();
  return check_finish("test_moco");
}

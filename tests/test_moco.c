/* test_moco.c — MoCo v2/v3 on a tiny ResNet-18 (the tiny preset: width 1/16, 16 px): measured == planned
 * per arena in f32 and bf16 with accumulation; the key encoder equals a hand EMA of the query parameters
 * after two updates; the queue after two optimizer steps (a batch that does not divide it, wrapping
 * around) holds every key of each step, pushed once per step; bad settings are refused by name. */
#include "check.h"
#include "torch_ref.h"
#include "models/moco.h"
#include "models/moco_eval.h"
#include "models/workload.h"
#include "plan/search.h"
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
  /* the key branch needs no gradient: of its activations backward reads only k (the gradient of q.k) */
  CHECK(p->phase[0].nograd_kept == mf_node_bytes(&g->nodes[net.k]), "%s: %zu bytes of no-gradient activations kept for "
        "backward, expected k's %zu", what, p->phase[0].nograd_kept, mf_node_bytes(&g->nodes[net.k]));
  CHECK(p->phase[0].nograd_bytes > 10 * p->phase[0].nograd_kept, "%s: the key branch's activations (%zu B) need no gradient", what,
        p->phase[0].nograd_bytes);
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

/* MoCo v3 (in-batch negatives, symmetric loss, predictor): memory exact with accumulation, the momentum ramp
 * set before each update moves every EMA by the hand formula with that step's momentum */
static void run_v3(void) {
  moco_cfg c;
  char err[512];
  moco_cfg_preset("tiny", &c, err, sizeof err);
  c.version = 3, c.batch = 8, c.micro_batch = 4, c.momentum = 0.9, c.temperature = 0.5;
  mf_graph *g = mf_graph_init(MF_F32);
  moco_net net;
  if (moco_build(g, &c, 4, &net, err, sizeof err) < 0) { CHECK(0, "v3 build: %s", err); mf_graph_free(g); return; }
  CHECK(resnet_find(g, "predictor.0.weight") >= 0 && resnet_find(g, "encoder_k.predictor.0.weight") < 0 &&
        resnet_find(g, "encoder_k.fc.6.weight") >= 0 && net.queue < 0, "v3: predictor on the query side only, no queue");
  CHECK(mf_tensor_dim(g, net.logits, 0) == 4 && mf_tensor_dim(g, net.logits, 1) == 4, "v3 logits [B,B]");
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2, o.debug_memory = 1, o.accum_steps = 2, o.plan.optim = MF_ADAMW, o.lr = 1e-2;
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "v3 session: %s", err); mf_graph_free(g); return; }
  CHECK(moco_session_ready(s, &net, err, sizeof err) == 0, "%s", err);
  mf_tensor qp = resnet_find(g, "encoder_q.fc.6.weight"), kp = resnet_find(g, "encoder_k.fc.6.weight");
  int64_t cnt = mf_tensor_numel(g, qp);
  float *kv = malloc(sizeof(float) * cnt), *qv = malloc(sizeof(float) * cnt), *k0 = malloc(sizeof(float) * cnt);
  size_t xn = (size_t)4 * 3 * c.size * c.size;
  float *x1 = malloc(sizeof(float) * xn), *x2 = malloc(sizeof(float) * xn);
  int bad = 0;
  const int64_t total = 4;
  for (int step = 0; step < 2; step++) {
    for (int m = 0; m < 2; m++) {
      for (size_t i = 0; i < xn; i++) x1[i] = urand(), x2[i] = urand();
      mf_session_write_input(s, net.xq, x1, xn);
      mf_session_write_input(s, net.xk, x2, xn);
      double l = mf_session_micro_step(s);
      CHECK(isfinite(l), "v3 loss %g", l);
    }
    double mom = moco_momentum_at(&c, mf_session_step(s), total);
    CHECK(mom >= c.momentum && mom <= 1 && (step == 0 ? mom == c.momentum : mom > c.momentum), "v3 ramp: step %d m %g", step, mom);
    CHECK(mf_session_set_ema_momentum(s, -1, mom) == net.n_ema, "set_ema_momentum: every EMA");
    mf_session_read(s, kp, k0, (size_t)cnt);
    CHECK(mf_session_update(s) == 1, "v3 update");
    mf_session_read(s, qp, qv, (size_t)cnt);
    mf_session_read(s, kp, kv, (size_t)cnt);
    for (int64_t j = 0; j < cnt; j++) {
      double h = mom * k0[j] + (1 - mom) * qv[j];
      bad += fabs(kv[j] - h) > 3 * 0x1p-24 * (mom * fabs(k0[j]) + (1 - mom) * fabs(qv[j])) + 1e-30;
    }
  }
  CHECK(bad == 0, "v3: %d EMA values off the ramped hand EMA", bad);
  CHECK(moco_momentum_at(&c, total, total) == 1.0, "ramp ends at 1");
  CHECK(mf_session_set_ema_momentum(s, -1, 1.5) < 0 && mf_session_set_ema_momentum(s, net.loss, 0.5) < 0, "bad momentum refused");
  const mf_plan *p = mf_session_plan(s);
  int exact = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "v3: arena %s planned %zu measured %zu", mf_arena_name((mf_arena_kind)a), planned, measured);
    exact &= planned == measured;
  }
  printf("  v3 f32 micro 4 x 2     measured == planned: %s (total %zu B); ramped EMA exact within bound\n", exact ? "yes" : "NO",
         mf_plan_total_bytes(p));
  free(kv); free(qv); free(k0); free(x1); free(x2);
  mf_session_free(s);
  mf_graph_free(g);
}

/* the eval-mode feature graph takes the trained weights; split running statistics are averaged */
static void features(void) {
  moco_cfg c;
  char err[512];
  moco_cfg_preset("tiny", &c, err, sizeof err);
  mf_graph *g = mf_graph_init(MF_F32);
  moco_net net;
  CHECK(moco_build(g, &c, c.batch, &net, err, sizeof err) == 0, "%s", err);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  CHECK(s != NULL, "%s", err);
  if (!s) { mf_graph_free(g); return; }
  moco_session_ready(s, &net, err, sizeof err);
  size_t xn = (size_t)c.batch * 3 * c.size * c.size;
  float *x = malloc(sizeof(float) * xn);
  for (size_t i = 0; i < xn; i++) x[i] = urand();
  mf_session_write_input(s, net.xq, x, xn);
  mf_session_write_input(s, net.xk, x, xn);
  mf_session_micro_step(s);
  mf_session_update(s);
  mf_graph *gf = mf_graph_init(MF_F32);
  moco_features f;
  CHECK(moco_build_features(gf, &c, 6, &f, err, sizeof err) == 0, "features: %s", err);
  mf_train_opts fo = mf_train_opts_default();
  fo.threads = 2, fo.plan.training = 0, fo.plan.keep = &f.feat, fo.plan.n_keep = 1;
  mf_session *fs = mf_session_init(gf, f.feat, &fo, err, sizeof err);
  CHECK(fs != NULL, "features session: %s", err);
  if (fs) {
    CHECK(moco_features_copy(s, &net, fs, &f, err, sizeof err) == 0, "copy: %s", err);
    int C = net.bq.bn_ch[0], S = c.bn_splits;
    float *rt = malloc(sizeof(float) * C * S), *rf = malloc(sizeof(float) * C);
    mf_session_read(s, net.bq.bn_mean[0], rt, (size_t)C * S);
    mf_session_read(fs, f.b.bn_mean[0], rf, (size_t)C);
    int bad = 0, moved = 0;
    for (int ch = 0; ch < C; ch++) {
      double avg = 0;
      for (int sp = 0; sp < S; sp++) avg += rt[sp * C + ch];
      avg /= S;
      bad += fabs(rf[ch] - avg) > 0x1p-22 * (fabs(avg) + 1e-30);
      moved += rf[ch] != 0;
    }
    CHECK(bad == 0 && moved > 0, "running mean averaged over the %d splits (%d off, %d moved)", S, bad, moved);
    mf_tensor wt = resnet_find(g, "encoder_q.layer4.1.conv2.weight"), wf = resnet_find(gf, "encoder_q.layer4.1.conv2.weight");
    int64_t wn = mf_tensor_numel(g, wt);
    float *w1 = malloc(sizeof(float) * wn), *w2 = malloc(sizeof(float) * wn);
    mf_session_read(s, wt, w1, (size_t)wn);
    mf_session_read(fs, wf, w2, (size_t)wn);
    CHECK(wn == mf_tensor_numel(gf, wf) && !memcmp(w1, w2, sizeof(float) * wn), "weights copied by name");
    free(w1);
    free(w2);
    mf_session_write_input(fs, f.x, x, (size_t)6 * 3 * c.size * c.size);
    CHECK(isfinite(mf_session_forward(fs)), "features forward");
    int F = (int)mf_tensor_dim(gf, f.feat, 1);
    float *fv = malloc(sizeof(float) * 6 * F);
    CHECK(mf_session_read(fs, f.feat, fv, (size_t)6 * F) == 0 && F == 32, "features [6,%d]", F);
    int fin = 1;
    for (int i = 0; i < 6 * F; i++) fin &= isfinite(fv[i]);
    CHECK(fin, "features finite");
    free(fv); free(rt); free(rf);
    mf_session_free(fs);
  }
  mf_graph_free(gf);
  free(x);
  mf_session_free(s);
  mf_graph_free(g);
}

/* bad settings and a session whose accumulation differs from the graph's queue */
static void bad_input(void) {
  moco_cfg c = moco_cfg_default();
  char err[512];
  c.queue = 100;
  CHECK(moco_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--queue"), "queue < batch: %s", err);
  c = moco_cfg_default(), c.temperature = 0;
  CHECK(moco_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--temperature"), "T 0: %s", err);
  c = moco_cfg_default(), c.momentum = -0.5;
  CHECK(moco_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--momentum"), "m -0.5: %s", err);
  c = moco_cfg_default(), c.bn_splits = 3;
  CHECK(moco_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--bn-splits"), "splits 3: %s", err);
  c = moco_cfg_default(), c.depth = 101;
  CHECK(moco_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--arch"), "depth 101: %s", err);
  moco_cfg_preset("tiny", &c, err, sizeof err);
  c.micro_batch = 4;
  mf_graph *g = mf_graph_init(MF_F32);
  moco_net net;
  CHECK(moco_build(g, &c, 4, &net, err, sizeof err) == 0, "%s", err);
  mf_train_opts o = mf_train_opts_default(); /* accum_steps 1, the graph's queue takes 2 micro-steps */
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  CHECK(!s && strstr(err, "ring 'queue'") && strstr(err, "accum_steps is 1"), "accumulation mismatch: %s", s ? "(accepted)" : err);
  mf_session_free(s);
  mf_graph_free(g);
}

/* an update after fewer micro-steps than the queue stages pushes what waits; a checkpoint between two
 * micro-steps of a step keeps the staged keys, so the resumed run writes the same queue */
static void early_update_and_resume(void) {
  moco_cfg c;
  char err[512];
  moco_cfg_preset("tiny", &c, err, sizeof err);
  c.micro_batch = 4;
  const int K = c.queue, D = c.dim;
  size_t xn = (size_t)4 * 3 * c.size * c.size;
  float *x[4], *qa = malloc(sizeof(float) * K * D), *qb = malloc(sizeof(float) * K * D);
  for (int i = 0; i < 4; i++) {
    x[i] = malloc(sizeof(float) * xn);
    for (size_t j = 0; j < xn; j++) x[i][j] = urand();
  }
  char dir[] = "/tmp/memfit_moco_ck_XXXXXX", path[600];
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  snprintf(path, sizeof path, "%s/ck.safetensors", dir);
  for (int run = 0; run < 3; run++) { /* 0: straight; 1: save after micro-step 0; 2: load that, finish */
    mf_graph *g = mf_graph_init(MF_F32);
    mf_graph_set_seed(g, 5);
    moco_net net;
    CHECK(moco_build(g, &c, 4, &net, err, sizeof err) == 0, "%s", err);
    mf_train_opts o = mf_train_opts_default();
    o.threads = 1, o.accum_steps = 2;
    mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
    if (!s) { CHECK(0, "%s", err); mf_graph_free(g); continue; }
    moco_session_ready(s, &net, err, sizeof err);
    if (run == 2) CHECK(mf_session_load(s, path, err, sizeof err) == 0, "load: %s", err);
    for (int m = run == 2 ? 1 : 0; m < 2; m++) {
      mf_session_write_input(s, net.xq, x[2 * m], xn);
      mf_session_write_input(s, net.xk, x[2 * m + 1], xn);
      mf_session_micro_step(s);
      if (run == 1) {
        CHECK(mf_session_save(s, path, err, sizeof err) == 0, "save: %s", err);
        break;
      }
    }
    if (run == 1) {
      /* update after one of two micro-steps: its 4 keys go in */
      CHECK(mf_session_update(s) == 1, "early update");
      CHECK(mf_session_ring_pos(s, net.queue) == 4, "early update pushed %lld keys, expected 4", (long long)mf_session_ring_pos(s, net.queue));
    } else {
      CHECK(mf_session_update(s) == 1, "update");
      CHECK(mf_session_ring_pos(s, net.queue) == 8, "run %d: position %lld, expected 8", run, (long long)mf_session_ring_pos(s, net.queue));
      mf_session_read(s, net.queue, run == 0 ? qa : qb, (size_t)K * D);
    }
    mf_session_free(s);
    mf_graph_free(g);
  }
  CHECK(!memcmp(qa, qb, sizeof(float) * K * D), "queue after resuming between micro-steps differs from the straight run");
  unlink(path);
  rmdir(dir);
  for (int i = 0; i < 4; i++) free(x[i]);
  free(qa);
  free(qb);
}

/* checkpointed blocks (the planner's variant 1): recomputing every block in backward gives the stored run's loss,
 * gradients and batch-norm statistics exactly, with a smaller activation arena, planned exactly */
static void recompute(void) {
  moco_cfg c;
  char err[512];
  moco_cfg_preset("tiny", &c, err, sizeof err);
  size_t xn = (size_t)c.batch * 3 * c.size * c.size;
  float *x = malloc(sizeof(float) * xn), *res[2] = {NULL, NULL};
  for (size_t i = 0; i < xn; i++) x[i] = urand();
  size_t act[2] = {0, 0}, nres = 0;
  double loss[2] = {0, 0};
  for (int seg = 0; seg < 2; seg++) {
    c.segments = seg;
    mf_graph *g = mf_graph_init(MF_F32);
    mf_graph_set_seed(g, 9);
    moco_net net;
    CHECK(moco_build(g, &c, c.batch, &net, err, sizeof err) == 0, "%s", err);
    CHECK(mf_graph_segment_count(g) == (seg ? 8 : 0), "segments: %d", mf_graph_segment_count(g));
    mf_train_opts o = mf_train_opts_default();
    o.threads = 2, o.debug_memory = 1, o.plan.recompute = MF_RECOMPUTE_ALL;
    mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
    if (!s) { CHECK(0, "%s", err); mf_graph_free(g); continue; }
    moco_session_ready(s, &net, err, sizeof err);
    mf_session_write_input(s, net.xq, x, xn);
    mf_session_write_input(s, net.xk, x, xn);
    loss[seg] = mf_session_micro_step(s);
    size_t n = 0;
    for (int id = 0; id < g->n; id++)
      if (g->nodes[id].op == MF_OP_PARAM || (g->nodes[id].op == MF_OP_BUFFER && g->nodes[id].state_kind == MF_STATE_BUFFER))
        n += (size_t)mf_node_numel(&g->nodes[id]);
    res[seg] = malloc(sizeof(float) * n);
    nres = n;
    size_t off = 0;
    for (int id = 0; id < g->n; id++) {
      const mf_node *nd = &g->nodes[id];
      if (nd->op == MF_OP_PARAM) mf_session_read_grad(s, id, res[seg] + off, (size_t)mf_node_numel(nd));
      else if (nd->op == MF_OP_BUFFER && nd->state_kind == MF_STATE_BUFFER) mf_session_read(s, id, res[seg] + off, (size_t)mf_node_numel(nd));
      else continue;
      off += (size_t)mf_node_numel(nd);
    }
    const mf_plan *p = mf_session_plan(s);
    act[seg] = mf_plan_arena_bytes(p, MF_ARENA_ACT);
    for (int a = 0; a < MF_ARENA_COUNT; a++)
      CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_session_measured_bytes(s, (mf_arena_kind)a), "recompute %d: arena %s", seg,
            mf_arena_name((mf_arena_kind)a));
    mf_session_free(s);
    mf_graph_free(g);
  }
  CHECK(loss[0] == loss[1], "recompute: loss %.9g vs %.9g", loss[0], loss[1]);
  CHECK(res[0] && res[1] && !memcmp(res[0], res[1], sizeof(float) * nres), "recompute: gradients and bn statistics differ");
  CHECK(act[1] < act[0], "recompute: activations %zu vs stored %zu", act[1], act[0]);
  printf("  recomputed blocks: same loss, gradients and statistics; activations %zu B instead of %zu B\n", act[1], act[0]);
  free(res[0]);
  free(res[1]);
  free(x);
}

/* The budget counts the feature pass a training run holds beside its step (kNN monitor, model file): the bytes
 * the workload reports before any run are those of the extractor the run makes, and a budget search's candidates
 * carry them (device_bytes = the step's plan + them). */
static void side_bytes(void) {
  moco_cfg c;
  char err[512];
  moco_cfg_preset("tiny", &c, err, sizeof err);
  size_t planned = moco_extractor_plan_bytes(&c, 2);
  moco_extractor *x = moco_extractor_init(&c, 2, err, sizeof err);
  CHECK(x != NULL, "extractor: %s", err);
  if (x) CHECK(planned > 0 && planned == moco_extractor_bytes(x), "side bytes %zu, the extractor's session plans %zu", planned,
               moco_extractor_bytes(x));
  moco_extractor_free(x);
  const char *what = NULL;
  CHECK(mf_workload_moco.side_bytes(&c, 2, "cpu", &what) == planned && what && strstr(what, "kNN"),
        "the workload's side bytes are not the extractor's");
  CHECK(mf_workload_moco.side_bytes(&c, 2, "cuda", NULL) == 0, "on a device the feature pass is host memory, not the budget's");
  mf_search_opts so = mf_search_opts_default();
  so.threads = 2;
  so.dtypes = 1u << MF_F32;
  so.fixed_mode = 0;
  so.fixed_micro_batch = c.batch;
  mf_search_result r;
  mf_workload_adapter ad;
  mf_calibration cal;
  mf_calibration_nominal(&cal, "test");
  CHECK(mf_search_plans(mf_workload_builder(&ad, &mf_workload_moco, &c), &so, &cal, &r, err, sizeof err) == 0, "search: %s", err);
  size_t arenas = 0;
  for (int a = 0; a < MF_ARENA_COUNT; a++) arenas += r.best.arena[a];
  CHECK(r.best.side_bytes == planned && r.best.device_bytes == arenas + planned,
        "the candidate's device bytes %zu are not its arenas %zu + the side bytes %zu", r.best.device_bytes, arenas, planned);
  CHECK(r.best.side_what && strstr(r.best.side_what, "kNN"), "the candidate says what its side bytes are (%s)",
        r.best.side_what ? r.best.side_what : "NULL");
  printf("  side bytes: the feature pass %zu B beside a %zu B step, counted in the budget\n", planned, arenas);
  mf_search_result_free(&r);
}

int main(void) {
  side_bytes();
  run_v2(MF_F32, 4, 2);
  run_v2(MF_BF16, 4, 2);
  run_v2(MF_F32, 8, 1);
  run_v3();
  features();
  bad_input();
  early_update_and_resume();
  recompute();
  parity();
  return check_finish("test_moco");
}

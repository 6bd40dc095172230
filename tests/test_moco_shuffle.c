/* test_moco_shuffle.c — the all-gather op in one process (a copy; refused gradients, ranks and plans that differ) and
 * MoCo v2's shuffled batch norm on one process: the permutation's index maps, the key encoder's batch norm really
 * grouping other samples than without it, the keys coming back in their own samples' rows, measured == planned. */
#include "check.h"
#include "models/moco.h"
#include "graph/graph.h"
#include "plan/plan.h"
#include "train/session.h"
#include <math.h>

static uint64_t rs = 777;
static float urand(void) {
  rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
  return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

/* mf_allgather: with 1 rank a copy in its own planned bytes; refusals named */
static void allgather_op(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t xs[3] = {3, 2, 5}, ws[1] = {5};
  mf_tensor x = mf_input(g, "x", 3, xs);                       /* [3,2,5] */
  mf_tensor y = mf_allgather(g, x, 1);                         /* [3,2,5] with 1 rank */
  mf_tensor w = mf_param(g, "w", 1, ws, MF_INIT_ONE, 0);
  mf_tensor loss = mf_sum(g, mf_mul(g, y, w), 0, 0);           /* sum(y * w): w's gradient reads y */
  CHECK(y >= 0 && mf_graph_error(g) == NULL, "allgather build: %s", mf_graph_error(g) ? mf_graph_error(g) : "");
  CHECK(mf_tensor_dim(g, y, 0) == 3 && mf_tensor_dim(g, y, 2) == 5, "allgather of 1 rank keeps [3,2,5]");
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.debug_memory = 1;
  o.lr = 0;
  mf_tensor keep[1] = {y};
  o.plan.keep = keep;
  o.plan.n_keep = 1;
  char err[512];
  mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (s) {
    float xv[30], yv[30];
    for (int i = 0; i < 30; i++) xv[i] = urand();
    CHECK(mf_session_write_input(s, x, xv, 30) == 0, "write x");
    double l = mf_session_micro_step(s);
    CHECK(isfinite(l), "step with an all-gather of 1 rank");
    CHECK(mf_session_read(s, y, yv, 30) == 0, "read y");
    int same = 1;
    for (int i = 0; i < 30; i++) same &= yv[i] == xv[i];
    CHECK(same, "all-gather of 1 rank is a copy of x");
    const mf_plan *p = mf_session_plan(s);
    for (int a = 0; a < MF_ARENA_COUNT; a++)
      CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_session_measured_bytes(s, (mf_arena_kind)a), "all-gather: arena %s planned %zu measured %zu",
            mf_arena_name((mf_arena_kind)a), mf_plan_arena_bytes(p, (mf_arena_kind)a), mf_session_measured_bytes(s, (mf_arena_kind)a));
    mf_session_free(s);
  }
  mf_graph_free(g);

  /* a tensor that needs a gradient is refused, naming it */
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 3, xs);
  w = mf_param(g, "w", 1, ws, MF_INIT_ONE, 0);
  mf_tensor xw = mf_mul(g, x, w);
  mf_tensor_set_name(g, xw, "xw");
  CHECK(mf_allgather(g, xw, 2) < 0 && mf_graph_error(g) && strstr(mf_graph_error(g), "'xw' needs a gradient") &&
            strstr(mf_graph_error(g), "forward only"),
        "a gather of a tensor with gradient is refused: %s", mf_graph_error(g) ? mf_graph_error(g) : "(accepted)");
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 3, xs);
  CHECK(mf_allgather(g, x, 0) < 0 && mf_graph_error(g) && strstr(mf_graph_error(g), "ranks 0"), "ranks 0 is refused: %s",
        mf_graph_error(g) ? mf_graph_error(g) : "(accepted)");
  mf_graph_free(g);

  /* a graph built for 2 ranks does not plan for 1, and [3,2,5] gathers to [6,2,5] */
  g = mf_graph_init(MF_F32);
  x = mf_input(g, "x", 3, xs);
  y = mf_allgather(g, x, 2);
  CHECK(y >= 0 && mf_tensor_dim(g, y, 0) == 6, "2 ranks: [6,2,5]");
  w = mf_param(g, "w", 1, ws, MF_INIT_ONE, 0);
  loss = mf_sum(g, mf_mul(g, y, w), 0, 0);
  mf_plan_opts po = mf_plan_opts_default();
  mf_plan *p = mf_plan_init(g, loss, &po, err, sizeof err);
  CHECK(!p && strstr(err, "built for 2 rank(s) but the plan is for 1"), "plan of other ranks refused: %s", p ? "(planned)" : err);
  mf_plan_free(p);
  po.ranks = 2;
  p = mf_plan_init(g, loss, &po, err, sizeof err);
  CHECK(p != NULL, "plan for 2 ranks: %s", err);
  if (p) CHECK(mf_plan_arena_bytes(p, MF_ARENA_ACT) >= 6 * 10 * sizeof(float), "the gathered [6,2,5] is in the activation arena");
  mf_plan_free(p);
  mf_graph_free(g);
}

/* moco_shuffle_draw: rank r of R takes the global samples perm[r + R j], its keys come back to its own rows; the
 * same permutation for any R with the same global micro-batch, and another one at the next micro-step */
static void shuffle_maps(void) {
  enum { M = 8 };
  int perm1[M], perm2[M], perm3[M];
  float sh[M], un[M];
  CHECK(moco_shuffle_draw(5, 3, 1, 0, M, sh, un, perm1) == 0, "draw 1 rank");
  int ident = 1, valid = 1, seen[M] = {0};
  for (int j = 0; j < M; j++) {
    ident &= perm1[j] == j;
    valid &= perm1[j] >= 0 && perm1[j] < M && !seen[perm1[j]]++;
    valid &= sh[j] == (float)perm1[j] && perm1[(int)un[j]] == j; /* 1 rank: x[perm], then keys[inv] */
  }
  CHECK(valid, "1 rank: a permutation, shuffle = perm, unshuffle = its inverse");
  CHECK(!ident, "the drawn permutation is not the identity");
  for (int R = 2; R <= 4; R *= 2) {
    int B = M / R, ok = 1;
    for (int r = 0; r < R; r++) {
      CHECK(moco_shuffle_draw(5, 3, R, r, B, sh, un, perm2) == 0, "draw %d ranks", R);
      for (int j = 0; j < M; j++) ok &= perm2[j] == perm1[j];
      for (int j = 0; j < B; j++) {
        int row = (int)sh[j], gs = (row % B) * R + row / B; /* gathered row -> global sample */
        ok &= gs == perm1[r + R * j];
        int krow = (int)un[j], pos = (krow % B) * R + krow / B; /* gathered key row -> shuffled position */
        ok &= perm1[pos] == r + R * j; /* the key computed from this rank's own sample */
      }
    }
    CHECK(ok, "%d ranks: the same permutation; each rank's slice and its keys' rows", R);
  }
  moco_shuffle_draw(5, 4, 1, 0, M, sh, un, perm3);
  int same = 1;
  for (int j = 0; j < M; j++) same &= perm3[j] == perm1[j];
  CHECK(!same, "the next micro-step draws another permutation");
}

/* the key encoder with split batch norm (2 slices) on one process: shuffled, its keys are those of the batch permuted
 * (each sample's key back in its own row), and differ from the unshuffled keys (other samples share statistics) */
static void shuffled_keys(void) {
  moco_cfg c;
  char err[512];
  CHECK(moco_cfg_preset("tiny", &c, err, sizeof err) == 0, "%s", err);
  const int B = 8;
  c.batch = B;
  c.micro_batch = B;
  c.bn_splits = 2;
  c.shuffle_bn = 1;
  c.momentum = 1; /* the key encoder stays as it is across the updates below (lr 0 too) */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_graph_set_seed(g, 3);
  moco_net net;
  if (moco_build(g, &c, B, &net, err, sizeof err) < 0) { CHECK(0, "build: %s", err); mf_graph_free(g); return; }
  CHECK(net.shuffle >= 0 && net.unshuffle >= 0, "shuffled BN has its index inputs");
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.debug_memory = 1;
  o.lr = 0;
  o.plan.optim = MF_SGD;
  mf_tensor keep[1] = {net.k};
  o.plan.keep = keep;
  o.plan.n_keep = 1;
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "session: %s", err); mf_graph_free(g); return; }
  CHECK(moco_session_ready(s, &net, err, sizeof err) == 0, "%s", err);
  const int D = c.dim;
  size_t xn = (size_t)B * 3 * c.size * c.size, per = xn / B;
  float *xq = malloc(sizeof(float) * xn), *xk = malloc(sizeof(float) * xn), *xp = malloc(sizeof(float) * xn);
  float kA[8 * 64], kB[8 * 64], kC[8 * 64], sh[8], un[8], id[8];
  int perm[8];
  CHECK(D <= 64, "dim %d fits the test's buffers", D);
  for (size_t i = 0; i < xn; i++) xq[i] = urand(), xk[i] = urand();
  for (int j = 0; j < B; j++) id[j] = (float)j;
  CHECK(moco_shuffle_draw(11, 0, 1, 0, B, sh, un, perm) == 0, "draw");
  for (int j = 0; j < B; j++) memcpy(xp + (size_t)j * per, xk + (size_t)perm[j] * per, per * sizeof(float)); /* xk[perm] */
  float *runs[3] = {kA, kB, kC};
  for (int r = 0; r < 3; r++) {
    const float *in_k = r == 2 ? xp : xk, *in_s = r == 1 ? sh : id, *in_u = r == 1 ? un : id;
    mf_tensor ins[4] = {net.xq, net.xk, net.shuffle, net.unshuffle};
    const float *data[4] = {xq, in_k, in_s, in_u};
    CHECK(mf_session_stage_inputs(s, 4, ins, data) == 0, "stage");
    CHECK(isfinite(mf_session_micro_step(s)), "step %d", r);
    CHECK(mf_session_read(s, net.k, runs[r], (size_t)B * D) == 0, "read k");
    CHECK(mf_session_update(s) == 1, "update");
  }
  /* kB[j] is the key of xk[j] computed inside the permuted batch: run C's row inv[j] */
  int back = 1;
  double diff = 0, norm = 0;
  for (int j = 0; j < B; j++) {
    int pos = (int)un[j];
    for (int d = 0; d < D; d++) {
      back &= kB[j * D + d] == kC[pos * D + d];
      diff = fmax(diff, fabs((double)kB[j * D + d] - kA[j * D + d]));
      norm = fmax(norm, fabs((double)kA[j * D + d]));
    }
  }
  int moved = 0;
  for (int j = 0; j < B; j++) moved += perm[j] % 2 != j % 2;
  CHECK(back, "shuffled keys are the permuted batch's keys, each back in its own sample's row");
  /* unit keys; a different grouping of the batch-norm statistics moves them far beyond f32 rounding (~1e-7) */
  CHECK(moved > 0 && diff > 1e-3 * norm, "shuffling changes which samples share batch-norm statistics: %d of %d samples change slice, "
        "keys differ by %.3g (unshuffled max |k| %.3g)", moved, B, diff, norm);
  printf("  shuffled BN, 1 process, 2 slices: %d of %d samples change slice, keys move by up to %.3g; each key back in its row\n",
         moved, B, diff);
  const mf_plan *p = mf_session_plan(s);
  int exact = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(pl == me, "shuffled BN: arena %s planned %zu measured %zu", mf_arena_name((mf_arena_kind)a), pl, me);
    exact &= pl == me;
  }
  printf("  shuffled BN measured == planned: %s (total %zu B)\n", exact ? "yes" : "NO", mf_plan_total_bytes(p));
  free(xq), free(xk), free(xp);
  mf_session_free(s);
  mf_graph_free(g);

  /* v3 does not shuffle: refused by name */
  CHECK(moco_cfg_preset("tiny", &c, err, sizeof err) == 0, "%s", err);
  c.version = 3;
  c.shuffle_bn = 1;
  CHECK(moco_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--shuffle-bn"), "v3 with --shuffle-bn 1 is refused: %s", err);
}

int main(void) {
  allgather_op();
  shuffle_maps();
  shuffled_keys();
  return check_finish("test_moco_shuffle");
}

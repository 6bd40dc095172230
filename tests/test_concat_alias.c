/* test_concat_alias.c — the planner's in-place concatenation (plan/concat.c): which concats and sources share a
 * chain's buffer, and the steganography model's training step with it on and off (MEMFIT_CONCAT_ALIAS): the same
 * loss and gradients bit for bit (the same kernels on the same values), measured == planned for every arena, fewer
 * activation bytes where it applies (batch 1; a batch of 2 has strided channel slices and keeps its copies). */
#include "check.h"
#include "models/steg.h"
#include "ops/ops.h"
#include "plan/concat.h"
#include "plan/plan.h"

enum { THREADS = 2 };

/* ------------------------------------------------------------------ 1. the groups on a small graph */

/* a [1,4,4,4] (input: no activation), b = relu(a), c, d = relu(...) [1,k,4,4]:
 * cat1 = cat(b, c), cat2 = cat(b, c, d) (the chain: cat1 is its prefix), dup = cat(b, b) (a source twice),
 * odd = cat(e [1,1,1,3], f [1,1,1,3]) (f starts at 12 bytes: not aligned), wide = cat(p, q) on axis 1 of [2,..]
 * (batch 2: slices not contiguous); all read by one sum; d pinned. */
static void groups_small(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor a = mf_input(g, "a", 4, (int64_t[]){1, 4, 4, 4});
  mf_tensor b = mf_relu(g, a), c = mf_relu(g, mf_mul_scalar(g, a, 2)), d = mf_relu(g, mf_mul_scalar(g, a, 3));
  mf_tensor cat1 = mf_concat(g, 2, (mf_tensor[]){b, c}, 1);
  mf_tensor cat2 = mf_concat(g, 3, (mf_tensor[]){b, c, d}, 1);
  mf_tensor x = mf_mul_scalar(g, a, 4);
  mf_tensor dup = mf_concat(g, 2, (mf_tensor[]){x, x}, 1);
  mf_tensor e = mf_input(g, "e", 4, (int64_t[]){1, 1, 1, 3});
  mf_tensor e1 = mf_relu(g, e), e2 = mf_exp(g, e);
  mf_tensor odd = mf_concat(g, 2, (mf_tensor[]){e1, e2}, 3);
  mf_tensor w = mf_input(g, "w", 4, (int64_t[]){2, 4, 4, 4});
  mf_tensor p = mf_relu(g, w), q = mf_exp(g, w);
  mf_tensor wide = mf_concat(g, 2, (mf_tensor[]){p, q}, 1);
  mf_tensor read[5] = {cat1, cat2, dup, odd, wide}, sink = mf_sum(g, cat1, 0, 0); /* an unread concat is never a root */
  for (int i = 1; i < 5; i++) sink = mf_add(g, sink, mf_sum(g, read[i], 0, 0));
  CHECK(!mf_graph_error(g), "build: %s", mf_graph_error(g));
  uint8_t *pinned = calloc((size_t)g->n, 1);
  pinned[d] = 1; /* as the planner pins a kept tensor */
  int stored = mf_concat_alias(g, 0, pinned);
  free(pinned);
  const int *root = g->cat_root;
  const size_t *off = g->cat_off;
  CHECK(root[cat2] == cat2 && root[cat1] == cat2 && off[cat1] == 0, "cat1 is stored at the start of cat2: root %d off %zu", root[cat1], off[cat1]);
  CHECK(root[b] == cat2 && off[b] == 0 && root[c] == cat2 && off[c] == 256, "b, c in cat2's buffer at 0, 256: %d/%zu %d/%zu",
        root[b], off[b], root[c], off[c]);
  CHECK(root[d] < 0, "a pinned source keeps its storage: %d", root[d]);
  CHECK(root[x] < 0 && root[dup] < 0, "a source read twice by its concat keeps its storage: x %d, dup %d", root[x], root[dup]);
  CHECK(root[e1] == odd && root[e2] < 0, "a source at a byte offset that is not a multiple of %d keeps its storage: e1 %d e2 %d",
        MF_ALIGN, root[e1], root[e2]);
  CHECK(root[p] < 0 && root[q] < 0 && root[wide] < 0, "batch 2 along axis 1: no group (%d %d %d)", root[p], root[q], root[wide]);
  CHECK(root[a] < 0 && root[w] < 0, "inputs keep their arena");
  CHECK(stored == 4, "stored inside another's buffer: cat1, b, c, e1: %d", stored);
  mf_graph_free(g);
}

/* ------------------------------------------------------------------ 2. the steganography step, on and off */

typedef struct result {
  double loss[2];
  float *grad;  /* every parameter's gradient after the second micro-step, in node order */
  int64_t n_grad;
  size_t act;
  int stored, concats;
} result;

static void fill(float *b, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (float)((double)(seed >> 11) / 9007199254740992.0);
  }
}

static void write_input(mf_session *s, const mf_graph *g, mf_tensor t, uint64_t seed) {
  int64_t n = mf_tensor_numel(g, t);
  float *b = malloc((size_t)n * sizeof *b);
  if (seed) fill(b, n, seed);
  else memset(b, 0, (size_t)n * sizeof *b);
  mf_session_write_input(s, t, b, (size_t)n);
  free(b);
}

/* Two micro-steps with an update between (the first step starts at the identity, where the subnets' inner
 * gradients vanish); memfree: every block inverted in backward. */
static int steg_run(int batch, int memfree, int alias, result *r) {
  static mf_steg_model m; /* the inverse builders point into it */
  mf_steg_config c = mf_steg_config_default();
  c.name = "custom";
  c.blocks = 2;
  c.growth = 8;
  c.height = c.width = 16; /* wavelet halves: 8x8 = 64 floats = 256 bytes a channel */
  c.batch = batch;
  mf_graph *g = mf_graph_init(MF_F32);
  memset(r, 0, sizeof *r);
  if (mf_steg_build(g, &c, &m) != 0) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return -1; }
  setenv("MEMFIT_CONCAT_ALIAS", alias ? "1" : "0", 1);
  mf_train_opts o = mf_train_opts_default();
  o.threads = THREADS;
  o.debug_memory = 1;
  o.plan.recompute = memfree ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
  o.plan.invertible = 1;
  char err[512], what[96];
  snprintf(what, sizeof what, "batch %d, %s, in-place concat %s", batch, memfree ? "memory-free" : "stored", alias ? "on" : "off");
  mf_session *s = mf_session_init(g, m.loss, &o, err, sizeof err);
  CHECK(s != NULL, "%s: session: %s", what, err);
  if (!s) { mf_graph_free(g); return -1; }
  const mf_plan *p = mf_session_plan(s);
  for (int k = 0; k < 2; k++) {
    write_input(s, g, m.cover, 11 + 100 * (uint64_t)k);
    write_input(s, g, m.secret, 12 + 100 * (uint64_t)k);
    write_input(s, g, m.z, 0);
    r->loss[k] = mf_session_micro_step(s);
    if (k == 0) mf_session_update(s);
  }
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].role == MF_ROLE_PARAM) r->n_grad += mf_node_numel(&g->nodes[id]);
  r->grad = malloc((size_t)r->n_grad * sizeof *r->grad);
  int64_t at = 0;
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].role == MF_ROLE_PARAM) {
      int64_t n = mf_node_numel(&g->nodes[id]);
      mf_session_read_grad(s, id, r->grad + at, (size_t)n);
      at += n;
    }
  r->act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  r->stored = p->g->cat_stored;
  for (int id = 0; id < p->g->cat_n; id++) r->concats += p->g->cat_root[id] >= 0 && p->g->nodes[id].op == MF_OP_CONCAT;
  printf("  %-44s loss %.9g, %.9g; activations %zu B; %d tensors in place (%d concats share buffers)\n", what, r->loss[0],
         r->loss[1], r->act, r->stored, r->concats);
  mf_session_free(s);
  mf_graph_free(g);
  return 0;
}

static void steg_compare(int batch, int memfree) {
  result on, off;
  if (steg_run(batch, memfree, 1, &on) < 0 || steg_run(batch, memfree, 0, &off) < 0) return;
  const char *mode = memfree ? "memory-free" : "stored";
  CHECK(on.loss[0] == off.loss[0] && on.loss[1] == off.loss[1], "batch %d %s: losses %.17g %.17g (in place) vs %.17g %.17g",
        batch, mode, on.loss[0], on.loss[1], off.loss[0], off.loss[1]);
  int64_t diff = 0, nonzero = 0;
  for (int64_t i = 0; i < on.n_grad && on.n_grad == off.n_grad; i++) {
    diff += memcmp(&on.grad[i], &off.grad[i], sizeof(float)) != 0;
    nonzero += off.grad[i] != 0;
  }
  CHECK(on.n_grad == off.n_grad && diff == 0, "batch %d %s: %lld of %lld gradient values differ", batch, mode, (long long)diff,
        (long long)on.n_grad);
  CHECK(nonzero > on.n_grad / 2, "batch %d %s: only %lld of %lld gradient values are nonzero (a weak comparison)", batch, mode,
        (long long)nonzero, (long long)on.n_grad);
  CHECK(off.stored == 0, "batch %d %s: MEMFIT_CONCAT_ALIAS=0 stores %d tensors in place", batch, mode, off.stored);
  if (batch == 1) {
    /* every subnet: conv1..4 outputs and the 3 shorter concats in the 4-source concat's buffer */
    CHECK(on.stored > 0 && on.concats > 0, "batch 1 %s: nothing stored in place", mode);
    if (memfree) CHECK(on.act <= off.act, "batch 1 memory-free: activations %zu B in place, %zu B without", on.act, off.act);
    else CHECK(on.act < off.act, "batch 1 stored: activations %zu B in place, not fewer than %zu B without", on.act, off.act);
  } else {
    CHECK(on.stored == 0 && on.act == off.act, "batch %d %s: strided slices are not stored in place (%d tensors, %zu vs %zu B)",
          batch, mode, on.stored, on.act, off.act);
  }
  free(on.grad);
  free(off.grad);
}

int main(void) {
  groups_small();
  for (int batch = 1; batch <= 2; batch++)
    for (int memfree = 0; memfree <= 1; memfree++) steg_compare(batch, memfree);
  unsetenv("MEMFIT_CONCAT_ALIAS");
  return check_finish("test_concat_alias");
}

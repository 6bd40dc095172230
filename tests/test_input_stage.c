/* test_input_stage.c — staged batches (mf_session_stage_inputs): a loop that stages batch i+1 before
 * step i gives bit-identical losses to writing each batch just before its step, in f32 and bf16, with
 * one and two input slots; the plan's DATA arena holds exactly input_slots copies; misuse is refused.
 * With a CUDA device the same comparison runs on the CUDA backend (copy stream + events). */
#include "check.h"
#include "train/session.h"
#include <math.h>

#define NB 6   /* batches per run */
#define BS 8   /* batch size */

/* x [BS,16] -> tanh(linear 32) -> linear 4 -> mse against y [BS,4]; z [1,4] is added to the
 * prediction and never staged (written once), to check inputs that stay put across slots */
typedef struct net { mf_graph *g; mf_tensor x, y, z, loss; } net;
static void net_build(net *m, mf_dtype dt) {
  m->g = mf_graph_init(dt);
  mf_graph *g = m->g;
  m->x = mf_input(g, "x", 2, (int64_t[]){BS, 16});
  m->y = mf_input(g, "y", 2, (int64_t[]){BS, 4});
  m->z = mf_input(g, "z", 2, (int64_t[]){1, 4});
  mf_tensor w1 = mf_param(g, "fc1.w", 2, (int64_t[]){32, 16}, MF_INIT_KAIMING, 1);
  mf_tensor b1 = mf_param(g, "fc1.b", 1, (int64_t[]){32}, MF_INIT_ZERO, 0);
  mf_tensor w2 = mf_param(g, "fc2.w", 2, (int64_t[]){4, 32}, MF_INIT_KAIMING, 1);
  mf_tensor b2 = mf_param(g, "fc2.b", 1, (int64_t[]){4}, MF_INIT_ZERO, 0);
  mf_tensor h = mf_tanh(g, mf_linear(g, m->x, w1, b1));
  mf_tensor pred = mf_add(g, mf_linear(g, h, w2, b2), m->z); /* [BS,4] + [1,4] broadcast */
  m->loss = mf_mse_loss(g, pred, m->y);
}

static float xs[NB][BS * 16], ys[NB][BS * 4], zs[4] = {0.25f, -0.5f, 0.125f, 1.0f};
static void data_fill(void) {
  for (int b = 0; b < NB; b++) {
    for (int i = 0; i < BS * 16; i++) xs[b][i] = (float)sin(0.37 * i + 1.9 * b);
    for (int i = 0; i < BS * 4; i++) ys[b][i] = (float)cos(0.53 * i + 0.7 * b);
  }
}

static mf_session *session_make(net *m, const char *backend, int slots, int debug, char *err, size_t errlen) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.backend = backend;
  o.plan.input_slots = slots;
  o.plan.optim = MF_ADAM;
  o.debug_memory = debug;
  return mf_session_init(m->g, m->loss, &o, err, errlen);
}

/* losses of NB steps (each followed by an update): mode 0 writes every batch before its step; mode 1
 * stages batch i+1 before step i (the overlapped loop) */
static int run(net *m, const char *backend, int slots, int staged, double *loss, char *err, size_t errlen) {
  mf_session *s = session_make(m, backend, slots, 0, err, errlen);
  if (!s) return -1;
  mf_session_write_input(s, m->z, zs, 4);
  mf_tensor ins[2] = {m->x, m->y};
  if (staged) {
    const float *d0[2] = {xs[0], ys[0]};
    CHECK(mf_session_stage_inputs(s, 2, ins, d0) == 0, "stage batch 0");
  }
  for (int b = 0; b < NB; b++) {
    if (!staged) {
      mf_session_write_input(s, m->x, xs[b], BS * 16);
      mf_session_write_input(s, m->y, ys[b], BS * 4);
    } else if (b + 1 < NB) {
      const float *d[2] = {xs[b + 1], ys[b + 1]};
      CHECK(mf_session_stage_inputs(s, 2, ins, d) == 0, "stage batch %d during step %d", b + 1, b);
    }
    loss[b] = mf_session_micro_step(s);
    mf_session_update(s);
  }
  mf_session_free(s);
  return 0;
}

static void compare(const char *backend, mf_dtype dt, int slots) {
  net m;
  net_build(&m, dt);
  double a[NB], b[NB];
  char err[256] = "";
  if (run(&m, backend, slots, 0, a, err, sizeof err) < 0 || run(&m, backend, slots, 1, b, err, sizeof err) < 0) {
    CHECK(0, "%s session: %s", backend, err);
    mf_graph_free(m.g);
    return;
  }
  int same = 1;
  for (int i = 0; i < NB; i++) same &= a[i] == b[i] && isfinite(a[i]);
  CHECK(same, "%s %s slots=%d: staged losses equal written ones (step 0: %.9g vs %.9g, step %d: %.9g vs %.9g)", backend,
        mf_dtype_name(dt), slots, a[0], b[0], NB - 1, a[NB - 1], b[NB - 1]);
  CHECK(a[NB - 1] < a[0] || dt != MF_F32, "training lowers the loss (%.6g -> %.6g)", a[0], a[NB - 1]);
  mf_graph_free(m.g);
}

/* the DATA arena is input_slots copies of the inputs, each 64-byte aligned, to the byte */
static void test_plan_bytes(void) {
  net m;
  net_build(&m, MF_F32);
  char err[256];
  size_t one_copy = 0;
  mf_tensor ins[3] = {m.x, m.y, m.z};
  for (int i = 0; i < 3; i++) one_copy += ((size_t)mf_tensor_numel(m.g, ins[i]) * 4 + MF_ALIGN - 1) / MF_ALIGN * MF_ALIGN;
  for (int slots = 1; slots <= 2; slots++) {
    mf_session *s = session_make(&m, "cpu", slots, 1, err, sizeof err);
    CHECK(s != NULL, "session: %s", err);
    if (!s) continue;
    size_t planned = mf_plan_arena_bytes(mf_session_plan(s), MF_ARENA_DATA);
    /* slots back-to-back copies; the arena ends at the last input's last byte (z: 16 B, padded to 64) */
    size_t zb = (size_t)mf_tensor_numel(m.g, m.z) * 4, expect = (size_t)slots * one_copy - ((zb + MF_ALIGN - 1) / MF_ALIGN * MF_ALIGN - zb);
    CHECK(planned == expect, "slots=%d: DATA arena %zu B, expected %zu B (one copy %zu B)", slots, planned, expect, one_copy);
    /* debug memory: the guard after the DATA arena stays intact through staged steps */
    mf_session_write_input(s, m.z, zs, 4);
    mf_tensor in2[2] = {m.x, m.y};
    const float *d[2] = {xs[0], ys[0]};
    mf_session_stage_inputs(s, 2, in2, d);
    double l = mf_session_micro_step(s);
    CHECK(isfinite(l), "debug step runs");
    CHECK(mf_session_measured_bytes(s, MF_ARENA_DATA) == planned, "measured %zu == planned %zu", mf_session_measured_bytes(s, MF_ARENA_DATA),
          planned);
    mf_session_free(s);
  }
  mf_train_opts o = mf_train_opts_default();
  o.plan.input_slots = 3;
  mf_session *bad = mf_session_init(m.g, m.loss, &o, err, sizeof err);
  CHECK(!bad && strstr(err, "input_slots"), "input_slots=3 refused naming the setting: '%s'", err);
  mf_session_free(bad);
  mf_graph_free(m.g);
}

/* a third batch before a step, a non-input, a duplicate, and a step whose staged input is spent */
static void test_misuse(void) {
  net m;
  net_build(&m, MF_F32);
  char err[256];
  mf_session *s = session_make(&m, "cpu", 2, 0, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (!s) { mf_graph_free(m.g); return; }
  mf_tensor ins[2] = {m.x, m.y};
  const float *d[2] = {xs[0], ys[0]};
  CHECK(mf_session_stage_inputs(s, 2, ins, d) == 0, "first batch");
  CHECK(mf_session_stage_inputs(s, 2, ins, d) == 0, "second batch");
  CHECK(mf_session_stage_inputs(s, 2, ins, d) < 0, "a third batch before any step is refused");
  CHECK(mf_session_write_input(s, m.x, xs[0], BS * 16) < 0, "writing an input with a staged batch waiting is refused");
  CHECK(mf_session_write_input(s, m.z, zs, 4) == 0, "writing an input that is not staged is fine");
  CHECK(isfinite(mf_session_micro_step(s)), "step 1 takes batch 1");
  CHECK(isfinite(mf_session_micro_step(s)), "step 2 takes batch 2");
  CHECK(isnan(mf_session_micro_step(s)), "step 3 with x and y spent is refused (NaN, message)");
  mf_session_write_input(s, m.x, xs[1], BS * 16);
  CHECK(isnan(mf_session_micro_step(s)), "still refused while y is spent");
  mf_session_write_input(s, m.y, ys[1], BS * 4);
  CHECK(isfinite(mf_session_micro_step(s)), "written inputs are readable again");
  mf_tensor dup[2] = {m.x, m.x}, notin[1] = {m.loss};
  CHECK(mf_session_stage_inputs(s, 2, dup, d) < 0, "an input listed twice is refused");
  CHECK(mf_session_stage_inputs(s, 1, notin, d) < 0, "a tensor that is not an input is refused");
  mf_session_free(s);
  mf_graph_free(m.g);
}

int main(void) {
  data_fill();
  test_plan_bytes();
  test_misuse();
  for (int slots = 1; slots <= 2; slots++) {
    compare("cpu", MF_F32, slots);
    compare("cpu", MF_BF16, slots);
  }
  /* the CUDA backend: only where a device is usable */
  char err[256] = "";
  net probe;
  net_build(&probe, MF_F32);
  mf_session *s = session_make(&probe, "cuda", 0, 0, err, sizeof err);
  mf_session_free(s);
  mf_graph_free(probe.g);
  if (!s) printf("SKIP cuda part: %s\n", err);
  else {
    compare("cuda", MF_F32, 2);
    compare("cuda", MF_BF16, 2);
    compare("cuda", MF_F32, 1);
  }
  return check_finish("test_input_stage");
}

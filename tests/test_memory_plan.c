/* test_memory_plan.c — for every test model, in f32 and bf16, with and without recompute and
 * memory-free (invertible) backprop: the runtime's measured high-water of every arena equals the
 * plan to the byte, nothing is written past it, no allocation happens during a step, and
 * recomputed gradients equal stored-activation gradients. */
#include "check.h"
#include "models.h"
#include <malloc.h>

enum { MODE_STORE = 0, MODE_CHECKPOINT, MODE_INVERT, MODE_COUNT };
static const char *mode_names[MODE_COUNT] = {"store", "checkpoint", "invertible"};

typedef struct run_result { float *grads; int64_t ngrad; double loss; size_t act; } run_result;

static int run_one(int kind, mf_dtype dt, int mode, run_result *res) {
  char what[96];
  snprintf(what, sizeof what, "%s/%s/%s", tm_names[kind], mf_dtype_name(dt), mode_names[mode]);
  mf_graph *g = mf_graph_init(dt);
  tm_model m;
  if (tm_build(g, kind, 2, 8, &m) < 0) { CHECK(0, "%s: build: %s", what, mf_graph_error(g)); mf_graph_free(g); return -1; }
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.debug_memory = 1;
  o.plan.recompute = mode == MODE_STORE ? MF_RECOMPUTE_NONE : MF_RECOMPUTE_ALL;
  o.plan.invertible = mode == MODE_INVERT;
  char err[512];
  mf_session *s = mf_session_init(g, m.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "%s: session: %s", what, err); mf_graph_free(g); return -1; }
  const mf_plan *p = mf_session_plan(s);
  tm_fill_inputs(s, g, &m, 1);
  double l0 = mf_session_micro_step(s);
  /* no allocation during a step, once the libraries have warmed up: OpenMP and OpenBLAS in the first step, oneDNN's
   * bf16 kernels over their first three executions (384 then 96 bytes of their own state kept, on an AVX-512 EPYC);
   * up to 4 more warm-up steps, then the step checked must allocate nothing (a leak per step never settles) */
  struct mallinfo2 before = mallinfo2(), after;
  double l1 = mf_session_micro_step(s);
  int micro = 2; /* micro-steps whose gradients add up (the same input each time) */
  after = mallinfo2();
  for (int w = 0; w < 4 && (after.uordblks != before.uordblks || after.hblkhd != before.hblkhd); w++) {
    before = after;
    l1 = mf_session_micro_step(s);
    micro++;
    after = mallinfo2();
  }
  CHECK(after.uordblks == before.uordblks && after.hblkhd == before.hblkhd,
        "%s: the step allocated host memory (%zu -> %zu heap bytes in use)", what, before.uordblks, after.uordblks);
  CHECK(isfinite(l0) && fabs(l0 - l1) < 1e-6 * (1 + fabs(l0)), "%s: same input, different losses %g %g", what, l0, l1);
  res->loss = l0;
  /* gradients of two identical micro-steps (the sum of `micro` of them, scaled back) */
  res->ngrad = 0;
  for (int i = 0; i < m.nparams; i++) res->ngrad += mf_tensor_numel(g, m.params[i]);
  res->grads = malloc((size_t)res->ngrad * sizeof(float));
  int64_t o_ = 0;
  for (int i = 0; i < m.nparams; i++) {
    int64_t c = mf_tensor_numel(g, m.params[i]);
    CHECK(mf_session_read_grad(s, m.params[i], res->grads + o_, (size_t)c) == 0, "%s: read grad %d", what, i);
    for (int64_t j = 0; j < c; j++) res->grads[o_ + j] *= 2.0f / (float)micro;
    o_ += c;
  }
  CHECK(mf_session_update(s) == 1, "%s: update skipped", what);
  mf_session_micro_step(s);
  mf_session_forward(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  res->act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  printf("  %-28s act %8zu B  total %9zu B  loss %.6f  peak at %s\n", what, res->act, mf_plan_total_bytes(p), l0,
         mf_plan_peak_op(p, NULL));
  mf_session_free(s);
  mf_graph_free(g);
  return 0;
}

int main(void) {
  mf_dtype dts[2] = {MF_F32, MF_BF16};
  for (int kind = 0; kind < TM_COUNT; kind++)
    for (int d = 0; d < 2; d++) {
      run_result r[MODE_COUNT] = {0};
      int ok = 1;
      for (int mode = 0; mode < MODE_COUNT; mode++) ok &= run_one(kind, dts[d], mode, &r[mode]) == 0;
      if (ok) {
        double tol = dts[d] == MF_F32 ? 1e-4 : 3e-2;
        for (int mode = 1; mode < MODE_COUNT; mode++) {
          double num = 0, den = 0;
          for (int64_t i = 0; i < r[0].ngrad; i++) {
            double e = (double)r[mode].grads[i] - r[0].grads[i];
            num += e * e;
            den += (double)r[0].grads[i] * r[0].grads[i];
          }
          double rel = sqrt(num / (den + 1e-30));
          CHECK(rel <= tol, "%s/%s: %s gradients differ from stored ones by %.3g (relative)", tm_names[kind],
                mf_dtype_name(dts[d]), mode_names[mode], rel);
          CHECK(fabs(r[mode].loss - r[0].loss) <= tol * (1 + fabs(r[0].loss)), "%s: loss differs with %s", tm_names[kind], mode_names[mode]);
        }
        if (kind == TM_COUPLING)
          CHECK(r[MODE_INVERT].act < r[MODE_STORE].act, "coupling/%s: memory-free backprop plans %zu B, storing plans %zu B",
                mf_dtype_name(dts[d]), r[MODE_INVERT].act, r[MODE_STORE].act);
      }
      for (int mode = 0; mode < MODE_COUNT; mode++) free(r[mode].grads);
    }
  return check_finish("test_memory_plan");
}

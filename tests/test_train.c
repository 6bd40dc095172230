/* test_train.c — the training step's arithmetic: gradient accumulation equals one large batch,
 * SGD/Adam/AdamW updates equal a reference written here, learning-rate schedules, global-norm
 * clipping, and f16 dynamic loss scaling (halve and skip on overflow, double after 2000 clean). */
#include "check.h"
#include "train/session.h"
#include <math.h>

/* y = x w (+ nothing): x [n,4], w [4,2], mse against t [n,2] */
typedef struct lin { mf_graph *g; mf_tensor x, t, w, loss; } lin;
static void lin_build(lin *l, mf_dtype dt, int n) {
  l->g = mf_graph_init(dt);
  l->x = mf_input(l->g, "x", 2, (int64_t[]){n, 4});
  l->t = mf_input(l->g, "t", 2, (int64_t[]){n, 2});
  l->w = mf_param(l->g, "w", 2, (int64_t[]){4, 2}, MF_INIT_NORMAL, 0.5);
  l->loss = mf_mse_loss(l->g, mf_matmul(l->g, l->x, l->w, 0, 0), l->t);
}
static void fill(float *v, int n, int seed) {
  for (int i = 0; i < n; i++) v[i] = (float)sin(1.3 * i + 0.7 * seed);
}

static mf_session *lin_session(lin *l, mf_train_opts *o) {
  char err[256];
  mf_session *s = mf_session_init(l->g, l->loss, o, err, sizeof err);
  if (!s) fprintf(stderr, "session: %s\n", err);
  return s;
}

static void test_accumulation(void) {
  float x[32], t[16], w0[8];
  fill(x, 32, 1);
  fill(t, 16, 2);
  lin big, small;
  lin_build(&big, MF_F32, 8);
  lin_build(&small, MF_F32, 4);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  mf_session *sb = lin_session(&big, &o);
  o.accum_steps = 2;
  mf_session *ss = lin_session(&small, &o);
  mf_session_read(sb, big.w, w0, 8);
  mf_session_write_param(ss, small.w, w0, 8);
  mf_session_write_input(sb, big.x, x, 32);
  mf_session_write_input(sb, big.t, t, 16);
  mf_session_micro_step(sb);
  for (int k = 0; k < 2; k++) {
    mf_session_write_input(ss, small.x, x + 16 * k, 16);
    mf_session_write_input(ss, small.t, t + 8 * k, 8);
    mf_session_micro_step(ss);
  }
  float gb[8], gs[8];
  mf_session_read_grad(sb, big.w, gb, 8);
  mf_session_read_grad(ss, small.w, gs, 8);
  /* Both against the exact gradient of the mean squared error, dW[k][j] = sum_i x[i][k] c (y[i][j] - t[i][j]),
   * y = x w0, c = 2 / 16, in f64 from the same f32 inputs. Each product x c x w (or x c t) passes
   * through at most m = 8 + 4 + 2 roundings in f32 (the 4-term dot product, the difference, the scale,
   * the 8-term sum over the batch, the sum of the two micro-batches), so any order of summation, on
   * any CPU's kernels, is within gamma_m * sum |products| (Higham 3.1): a bound from the data. */
  const double u = ldexp(1, -24), gm = 14 * u / (1 - 14 * u), c = 2.0 / 16;
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < 2; j++) {
      double exact = 0, mag = 0;
      for (int i = 0; i < 8; i++) {
        double y = 0, ya = 0;
        for (int q = 0; q < 4; q++) { y += (double)x[i * 4 + q] * w0[q * 2 + j]; ya += fabs((double)x[i * 4 + q] * w0[q * 2 + j]); }
        exact += x[i * 4 + k] * c * (y - t[i * 2 + j]);
        mag += fabs(x[i * 4 + k] * c) * (ya + fabs(t[i * 2 + j]));
      }
      CHECK(fabs(gb[k * 2 + j] - exact) <= gm * mag, "large-batch grad %d,%d: %.9g, exact %.9g (rounding bound %.3g)", k, j,
            gb[k * 2 + j], exact, gm * mag);
      CHECK(fabs(gs[k * 2 + j] - exact) <= gm * mag, "accumulated grad %d,%d: %.9g, exact %.9g (rounding bound %.3g)", k, j,
            gs[k * 2 + j], exact, gm * mag);
    }
  mf_session_free(sb);
  mf_session_free(ss);
  mf_graph_free(big.g);
  mf_graph_free(small.g);
}

/* one update from a known state vs the textbook formulas */
static void test_optimizers(void) {
  const mf_optim_kind kinds[3] = {MF_SGD, MF_ADAM, MF_ADAMW};
  for (int k = 0; k < 3; k++) {
    lin l;
    lin_build(&l, MF_F32, 4);
    mf_train_opts o = mf_train_opts_default();
    o.threads = 1;
    o.plan.optim = kinds[k];
    o.lr = 0.1;
    o.weight_decay = 0.05;
    o.momentum = 0.9;
    mf_session *s = lin_session(&l, &o);
    float x[16], t[8], w[8], m[8] = {0}, v[8] = {0};
    fill(x, 16, 3);
    fill(t, 8, 4);
    mf_session_write_input(s, l.x, x, 16);
    mf_session_write_input(s, l.t, t, 8);
    mf_session_read(s, l.w, w, 8);
    for (int step = 1; step <= 3; step++) {
      float g[8];
      mf_session_micro_step(s);
      mf_session_read_grad(s, l.w, g, 8);
      mf_session_update(s);
      for (int i = 0; i < 8; i++) { /* reference */
        double gi = g[i];
        if (kinds[k] == MF_SGD) { gi += 0.05 * w[i]; m[i] = (float)(0.9 * m[i] + gi); w[i] = (float)(w[i] - 0.1 * m[i]); }
        else {
          if (kinds[k] == MF_ADAM) gi += 0.05 * w[i];
          m[i] = (float)(0.9 * m[i] + 0.1 * gi);
          v[i] = (float)(0.999 * v[i] + 0.001 * gi * gi);
          double mh = m[i] / (1 - pow(0.9, step)), vh = v[i] / (1 - pow(0.999, step));
          if (kinds[k] == MF_ADAMW) w[i] = (float)(w[i] - 0.1 * 0.05 * w[i]);
          w[i] = (float)(w[i] - 0.1 * mh / (sqrt(vh) + 1e-8));
        }
      }
    }
    float got[8];
    mf_session_read(s, l.w, got, 8);
    for (int i = 0; i < 8; i++) CHECK_NEAR(got[i], w[i], 1e-5, kinds[k] == MF_SGD ? "sgd" : kinds[k] == MF_ADAM ? "adam" : "adamw");
    mf_session_free(s);
    mf_graph_free(l.g);
  }
}

static void test_schedules_and_clipping(void) {
  lin l;
  lin_build(&l, MF_F32, 4);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.lr = 1.0;
  o.schedule = MF_SCHED_COSINE;
  o.warmup_steps = 4;
  o.total_steps = 12;
  o.clip_norm = 1e-3;
  mf_session *s = lin_session(&l, &o);
  float x[16], t[8];
  fill(x, 16, 5);
  fill(t, 8, 6);
  mf_session_write_input(s, l.x, x, 16);
  mf_session_write_input(s, l.t, t, 8);
  for (int step = 0; step < 12; step++) {
    mf_session_micro_step(s);
    float g[8];
    mf_session_read_grad(s, l.w, g, 8);
    double n2 = 0;
    for (int i = 0; i < 8; i++) n2 += (double)g[i] * g[i];
    mf_session_update(s);
    double want = step < 4 ? (step + 1) / 4.0 : 0.5 * (1 + cos(M_PI * (step - 4) / 8.0));
    CHECK_NEAR(s->last_lr, want, 1e-12, "warm-up + cosine learning rate");
    CHECK_NEAR(s->last_grad_norm, sqrt(n2), 1e-5 * sqrt(n2), "global gradient norm");
  }
  mf_session_free(s);
  mf_graph_free(l.g);
  /* step schedule */
  lin_build(&l, MF_F32, 4);
  o = mf_train_opts_default();
  o.threads = 1;
  o.lr = 0.8;
  o.schedule = MF_SCHED_STEP;
  o.step_every = 3;
  o.step_gamma = 0.5;
  s = lin_session(&l, &o);
  for (int step = 0; step < 7; step++) {
    mf_session_micro_step(s);
    mf_session_update(s);
    CHECK_NEAR(s->last_lr, 0.8 * pow(0.5, step / 3), 1e-12, "step schedule");
  }
  mf_session_free(s);
  mf_graph_free(l.g);
}

static void test_loss_scaling(void) {
  lin l;
  lin_build(&l, MF_F16, 4);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.lr = 1e-4;
  mf_session *s = lin_session(&l, &o);
  CHECK(mf_session_loss_scale(s) == 65536.0, "f16 starts at 2^16, got %g", mf_session_loss_scale(s));
  float x[16], t[8], w0[8], w1[8];
  fill(x, 16, 7);
  fill(t, 8, 8);
  for (int i = 0; i < 16; i++) x[i] *= 200.0f; /* gradients x 2^16 overflow f16 */
  mf_session_write_input(s, l.x, x, 16);
  mf_session_write_input(s, l.t, t, 8);
  mf_session_read(s, l.w, w0, 8);
  mf_session_micro_step(s);
  CHECK(mf_session_update(s) == 0, "an overflowing step must be skipped");
  mf_session_read(s, l.w, w1, 8);
  CHECK(!memcmp(w0, w1, sizeof w0), "skipped step changed the weights");
  CHECK(mf_session_loss_scale(s) == 32768.0, "scale halves on overflow, got %g", mf_session_loss_scale(s));
  /* small inputs: clean steps; after 2000 the scale doubles */
  for (int i = 0; i < 16; i++) x[i] /= 2000.0f;
  mf_session_write_input(s, l.x, x, 16);
  double before = -1;
  int applied = 0;
  for (int step = 0; step < 2100 && before < 0; step++) {
    double sc = mf_session_loss_scale(s);
    mf_session_micro_step(s);
    applied += mf_session_update(s);
    if (mf_session_loss_scale(s) > sc) before = sc;
  }
  CHECK(before > 0 && mf_session_loss_scale(s) == 2 * before && applied >= 2000,
        "scale did not double after 2000 clean steps (%d applied, scale %g)", applied, mf_session_loss_scale(s));
  mf_session_free(s);
  mf_graph_free(l.g);
}

/* an input bound to caller memory gives the same step as one copied into the session */
static void test_bind_input(void) {
  lin l;
  lin_build(&l, MF_F32, 4);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  mf_session *s = lin_session(&l, &o);
  float x[16], t[8], x2[16];
  fill(x, 16, 9);
  fill(t, 8, 10);
  fill(x2, 16, 11);
  mf_session_write_input(s, l.t, t, 8);
  mf_session_write_input(s, l.x, x, 16);
  double copied = mf_session_micro_step(s);
  mf_session_write_input(s, l.x, x2, 16); /* the session's own buffer now differs */
  CHECK(mf_session_bind_input(s, l.x, x) == 0, "bind");
  double bound = mf_session_micro_step(s);
  CHECK(copied == bound, "bound input: loss %.9g vs copied %.9g", bound, copied);
  CHECK(mf_session_bind_input(s, l.w, x) < 0, "binding a parameter must be refused");
  mf_session_bind_input(s, l.x, NULL);
  CHECK(mf_session_micro_step(s) != copied, "unbinding goes back to the session's buffer");
  mf_session_free(s);
  mf_graph_free(l.g);
}

int main(void) {
  test_bind_input();
  test_accumulation();
  test_optimizers();
  test_schedules_and_clipping();
  test_loss_scaling();
  return check_finish("test_train");
}

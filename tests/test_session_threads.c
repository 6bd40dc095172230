/* test_session_threads.c — a session's steps run with its own thread count (mf_train_opts.threads) on whatever
 * thread calls them: a step and an update called from a thread whose OpenMP default is larger start no extra
 * OpenMP threads, and that thread's own OpenMP setting is the same afterwards. */
#include "check.h"
#include "memfit.h"
#include <dirent.h>
#include <omp.h>
#include <pthread.h>

/* threads of this process now (/proc/self/task) */
static int task_count(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

typedef struct job {
  mf_session *s;
  mf_tensor x, y;
  int before, after, max_after; /* task counts around the steps; omp_get_max_threads after them */
  double loss;
} job;

enum { B = 4, C = 8, HW = 64 }; /* big enough that the kernels' OpenMP regions are not serial (if clauses) */
static float xs[B * C * HW * HW], ys[B * C * HW * HW];

static void *worker(void *arg) {
  job *j = arg;
  omp_set_num_threads(4); /* this thread's OpenMP default: more than the session's 1 */
  j->before = task_count();
  mf_session_write_input(j->s, j->x, xs, sizeof xs / sizeof *xs);
  mf_session_write_input(j->s, j->y, ys, sizeof ys / sizeof *ys);
  j->loss = 0;
  for (int i = 0; i < 2; i++) {
    j->loss = mf_session_micro_step(j->s);
    mf_session_update(j->s);
  }
  j->after = task_count();
  j->max_after = omp_get_max_threads();
  return NULL;
}

int main(void) {
  for (size_t i = 0; i < sizeof xs / sizeof *xs; i++) {
    xs[i] = (float)sin(0.013 * (double)i);
    ys[i] = (float)cos(0.007 * (double)i);
  }
  mf_graph *g = mf_graph_init(MF_F32);
  job j = {0};
  j.x = mf_input(g, "x", 4, (int64_t[]){B, C, HW, HW});
  j.y = mf_input(g, "y", 4, (int64_t[]){B, C, HW, HW});
  mf_tensor w = mf_param(g, "w", 4, (int64_t[]){C, C, 3, 3}, MF_INIT_KAIMING, 1);
  mf_tensor h = mf_tanh(g, mf_conv2d(g, j.x, w, -1, 1, 1, 1)); /* [B, C, HW, HW] */
  mf_tensor loss = mf_mse_loss(g, mf_add(g, h, j.x), j.y);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.optim = MF_ADAM;
  char err[256];
  j.s = mf_session_init(g, loss, &o, err, sizeof err);
  CHECK(j.s != NULL, "session: %s", err);
  if (j.s) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, &j) == 0, "pthread_create");
    pthread_join(t, NULL);
    CHECK(isfinite(j.loss), "loss %g", j.loss);
    /* with 4 OpenMP threads the step would have started 3 pool threads that stay alive until the thread ends */
    CHECK(j.before > 0 && j.after == j.before, "threads before the steps %d, after %d: the session (threads 1) started more",
          j.before, j.after);
    CHECK(j.max_after == 4, "the calling thread's OpenMP setting changed from 4 to %d", j.max_after);
    mf_session_free(j.s);
  }
  mf_graph_free(g);
  return check_finish("test_session_threads");
}

/* bench_moco.c — memfit's side of the MoCo step benchmark (issue 12): training steps of MoCo v2 (query
 * forward + backward, key forward, queue logits, InfoNCE, SGD momentum 0.9, key-encoder momentum update,
 * queue push) on fixed random views. Prints one JSON line like bench/moco_torch.py so bench/moco.sh can put
 * them side by side, with the step's conv/GEMM FLOPs and their rate; --peak R (R > 0) measures the machine's sgemm
 * peak after the steps (bench/common/peak.c, R calls per size) and adds it and the ratio. */
#include "base/omp_wait.h"
#include "common/peak.h"
#include "memfit.h"
#include "models/moco.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  mf_omp_wait_bounded(argv);
  int depth = 18, size = 32, batch = 64, queue = 4096, steps = 10, warmup = 1, threads = 2, channels = 3, peak_reps = 0;
  double width = 1;
  const char *dtype = "f32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--depth")) depth = atoi(v);
    else if (!strcmp(k, "--width")) width = atof(v);
    else if (!strcmp(k, "--size")) size = atoi(v);
    else if (!strcmp(k, "--channels")) channels = atoi(v);
    else if (!strcmp(k, "--batch")) batch = atoi(v);
    else if (!strcmp(k, "--queue")) queue = atoi(v);
    else if (!strcmp(k, "--steps")) steps = atoi(v);
    else if (!strcmp(k, "--warmup")) warmup = atoi(v);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else if (!strcmp(k, "--peak")) peak_reps = atoi(v);
    else if (!strcmp(k, "--dtype")) dtype = v;
    else { fprintf(stderr, "bench_moco: unknown option %s\n", k); return 2; }
  }
  int dt = mf_dtype_parse(dtype);
  if (dt < 0) { fprintf(stderr, "bench_moco: unknown dtype %s\n", dtype); return 2; }
  moco_cfg c = moco_cfg_default();
  c.depth = depth;
  c.width = width;
  c.size = size;
  c.small_stem = size <= 64;
  c.channels = channels;
  c.batch = c.micro_batch = batch;
  c.queue = queue;
  c.bn_splits = 1;
  c.momentum = 0.999;
  char err[512];
  if (moco_cfg_check(&c, err, sizeof err) < 0) { fprintf(stderr, "bench_moco: %s\n", err); return 2; }
  mf_graph *g = mf_graph_init((mf_dtype)dt);
  moco_net net;
  if (moco_build(g, &c, batch, &net, err, sizeof err) < 0) { fprintf(stderr, "bench_moco: %s\n", err); return 1; }
  mf_train_opts o = mf_train_opts_default();
  o.threads = o.plan.threads = threads;
  o.plan.optim = MF_SGD;
  o.lr = 0.06;
  o.momentum = 0.9;
  o.weight_decay = 5e-4;
  mf_session *s = mf_session_init(g, net.loss, &o, err, sizeof err);
  if (!s || moco_session_ready(s, &net, err, sizeof err) < 0) { fprintf(stderr, "bench_moco: %s\n", err); return 1; }
  size_t n = (size_t)mf_tensor_numel(g, net.xq);
  float *x = malloc(2 * n * sizeof *x);
  if (!x) return 1;
  uint64_t r = 1;
  for (size_t i = 0; i < 2 * n; i++) { r = r * 6364136223846793005ULL + 1442695040888963407ULL; x[i] = (float)((r >> 40) / 16777216.0); }
  mf_session_write_input(s, net.xq, x, n);
  mf_session_write_input(s, net.xk, x + n, n);
  double loss = 0, t0 = now_s();
  for (int i = 0; i < warmup + steps; i++) {
    if (i == warmup) t0 = now_s();
    loss = mf_session_micro_step(s);
    mf_session_update(s);
  }
  double el = now_s() - t0;
  size_t rss = mf_peak_rss_bytes(); /* before the peak's matrices */
  bench_peak pk;
  if (peak_reps > 0 && bench_peak_measure(threads, peak_reps, &pk) < 0) { fprintf(stderr, "bench_moco: out of host memory\n"); return 1; }
  char rates[512];
  const mf_plan *pl = mf_session_plan(s);
  bench_peak_json(peak_reps > 0 ? &pk : NULL, bench_plan_gemm_flops(pl), mf_plan_flops(pl), el / steps, rates, sizeof rates);
  printf("{\"impl\": \"memfit\", \"images_per_s\": %.4f, \"peak_rss_bytes\": %zu, \"step_s\": %.6f, \"planned_bytes\": %zu, "
         "\"depth\": %d, \"width\": %g, \"size\": %d, \"batch\": %d, \"queue\": %d, \"threads\": %d, \"dtype\": \"%s\", \"loss\": %.6f%s}\n",
         batch * steps / el, rss, el / steps, mf_plan_total_bytes(pl), depth, width, size, batch, queue, threads, dtype, loss,
         rates);
  free(x);
  mf_session_free(s);
  mf_graph_free(g);
  return 0;
}

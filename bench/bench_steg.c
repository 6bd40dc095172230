/* bench_steg.c — memfit's side of the engine benchmark (issue 2, item 7): training steps
 * (forward with the reveal pass, the three losses, backward, AdamW) of the steganography network.
 * Prints one JSON line like bench/steg_torch.py so bench/steg.sh can put them side by side.
 * --feed: none (inputs written once), write (each step's batch copied in before it) or stage (batch
 * i+1 staged before step i, so on a device its copy overlaps the step).
 * Also prints the step's conv/GEMM FLOPs and their rate; --peak R (R > 0) measures the machine's sgemm peak after
 * the steps (bench/common/peak.c, R calls per size) and adds it and the ratio. */
#include "base/omp_wait.h"
#include "common/peak.h"
#include "memfit.h"
#include "models/steg.h"
#include "plan/plan.h"
#include <math.h>
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
  int blocks = 6, growth = 80, size = 64, batch = 1, steps = 10, warmup = 2, threads = 1, invert = 0, peak_reps = 0;
  const char *dtype = "f32", *backend = "cpu", *segments = NULL, *feed = "none";
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--blocks")) blocks = atoi(v);
    else if (!strcmp(k, "--growth")) growth = atoi(v);
    else if (!strcmp(k, "--size")) size = atoi(v);
    else if (!strcmp(k, "--batch")) batch = atoi(v);
    else if (!strcmp(k, "--steps")) steps = atoi(v);
    else if (!strcmp(k, "--warmup")) warmup = atoi(v);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else if (!strcmp(k, "--peak")) peak_reps = atoi(v);
    else if (!strcmp(k, "--mode")) invert = !strcmp(v, "invert");
    else if (!strcmp(k, "--dtype")) dtype = v;
    else if (!strcmp(k, "--backend")) backend = v;   /* cpu or cuda */
    else if (!strcmp(k, "--segments")) segments = v; /* blocks (default), subnets or none */
    else if (!strcmp(k, "--feed")) feed = v;         /* none (default), write or stage */
    else { fprintf(stderr, "bench_steg: unknown option %s\n", k); return 2; }
  }
  int feed_mode = !strcmp(feed, "none") ? 0 : !strcmp(feed, "write") ? 1 : !strcmp(feed, "stage") ? 2 : -1;
  if (feed_mode < 0) { fprintf(stderr, "bench_steg: --feed must be none, write or stage (got '%s')\n", feed); return 2; }
  int dt = mf_dtype_parse(dtype);
  if (dt < 0) { fprintf(stderr, "bench_steg: unknown dtype %s\n", dtype); return 2; }
  mf_steg_config c = mf_steg_config_default();
  c.blocks = blocks;
  c.growth = growth;
  c.height = c.width = size;
  c.batch = batch;
  if (segments) c.segments = !strcmp(segments, "subnets") ? MF_STEG_SEG_SUBNETS : !strcmp(segments, "none") ? MF_STEG_SEG_NONE : MF_STEG_SEG_BLOCKS;
  char err[512];
  if (mf_steg_config_check(&c, err, sizeof err) < 0) { fprintf(stderr, "bench_steg: %s\n", err); return 2; }
  mf_graph *g = mf_graph_init((mf_dtype)dt);
  mf_steg_model *m = calloc(1, sizeof *m);
  if (mf_steg_build(g, &c, m) < 0) { fprintf(stderr, "bench_steg: %s\n", mf_graph_error(g)); return 1; }
  mf_train_opts o = mf_train_opts_default();
  o.threads = threads;
  o.plan.backend = backend;
  o.plan.optim = MF_ADAMW;
  o.lr = pow(10, -4.5);
  o.beta1 = 0.5;
  o.plan.recompute = invert ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
  o.plan.invertible = invert;
  mf_session *s = mf_session_init(g, m->loss, &o, err, sizeof err);
  if (!s) { fprintf(stderr, "bench_steg: %s\n", err); return 1; }
  int64_t n = mf_tensor_numel(g, m->cover), nz = mf_tensor_numel(g, m->z);
  const mf_plan *pl = mf_session_plan(s);
  /* two batches (cover then secret, n floats each) in host memory, page-locked on a device */
  size_t bbytes = 2 * (size_t)n * sizeof(float);
  float *batches[2];
  for (int b = 0; b < 2; b++) {
    batches[b] = pl->be->host_alloc ? pl->be->host_alloc(bbytes, NULL) : malloc(bbytes);
    if (!batches[b]) { fprintf(stderr, "bench_steg: out of host memory\n"); return 1; }
    uint64_t r = 1 + (uint64_t)b;
    for (int64_t i = 0; i < 2 * n; i++) { r = r * 6364136223846793005ULL + 1442695040888963407ULL; batches[b][i] = (float)((r >> 40) / 16777216.0); }
  }
  mf_session_write_input(s, m->cover, batches[0], (size_t)n);
  mf_session_write_input(s, m->secret, batches[0] + n, (size_t)n);
  float *zero = calloc((size_t)nz, sizeof *zero);
  mf_session_write_input(s, m->z, zero, (size_t)nz);
  free(zero);
  mf_tensor ins[2] = {m->cover, m->secret};
  if (feed_mode == 2) mf_session_stage_inputs(s, 2, ins, (const float *const[]){batches[0], batches[0] + n});
  double loss = 0, t0 = now_s();
  for (int i = 0; i < warmup + steps; i++) {
    if (i == warmup) t0 = now_s();
    const float *nb = batches[(i + 1) % 2];
    if (feed_mode == 1) {
      mf_session_write_input(s, m->cover, batches[i % 2], (size_t)n);
      mf_session_write_input(s, m->secret, batches[i % 2] + n, (size_t)n);
    } else if (feed_mode == 2 && mf_session_stage_inputs(s, 2, ins, (const float *const[]){nb, nb + n}) < 0)
      return 1;
    loss = mf_session_micro_step(s);
    mf_session_update(s);
  }
  double el = now_s() - t0;
  size_t rss = mf_peak_rss_bytes(); /* before the peak's matrices */
  bench_peak pk;
  if (peak_reps > 0 && strcmp(backend, "cpu") == 0 && bench_peak_measure(threads, peak_reps, &pk) < 0) {
    fprintf(stderr, "bench_steg: out of host memory for the sgemm peak\n");
    return 1;
  }
  char rates[512];
  bench_peak_json(peak_reps > 0 && strcmp(backend, "cpu") == 0 ? &pk : NULL, bench_plan_gemm_flops(pl), mf_plan_flops(pl), el / steps,
                  rates, sizeof rates);
  for (int b = 0; b < 2; b++) {
    if (pl->be->host_free) pl->be->host_free(batches[b], bbytes, NULL);
    else free(batches[b]);
  }
  /* a device backend adds its name and the fixed overhead it measured (context, handles) */
  char extra[128] = "";
  if (strcmp(backend, "cpu") != 0)
    snprintf(extra, sizeof extra, ", \"backend\": \"%s\", \"overhead_bytes\": %zu", backend,
             pl->be->fixed_overhead ? pl->be->fixed_overhead() : (size_t)0);
  printf("{\"impl\": \"memfit-%s%s%s\", \"images_per_s\": %.4f, \"peak_rss_bytes\": %zu, \"step_s\": %.6f, \"planned_bytes\": %zu, "
         "\"blocks\": %d, \"growth\": %d, \"size\": %d, \"batch\": %d, \"threads\": %d, \"loss\": %.6f, \"params\": %lld%s%s}\n",
         invert ? "invert" : "store", feed_mode ? "-feed-" : "", feed_mode ? feed : "", batch * steps / el, rss, el / steps, mf_plan_total_bytes(pl),
         blocks, growth, size, batch, threads, loss, (long long)mf_steg_param_count(&c), rates, extra);
  mf_session_free(s);
  free(m);
  mf_graph_free(g);
  return 0;
}

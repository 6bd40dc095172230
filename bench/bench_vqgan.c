/* bench_vqgan.c — memfit's side of the VQGAN step benchmark (issue 13): training steps of a VQGAN preset (the
 * generator phase with the adaptive GAN weight and its Adam update, then the discriminator phase and its update)
 * on fixed random images in [-1,1]. Prints one JSON line like bench/vqgan_torch.py, so bench/vqgan.sh can put
 * them side by side; --dump FILE writes the initial parameters for the PyTorch side to load. */
#include "base/omp_wait.h"
#include "memfit.h"
#include "models/vqgan.h"
#include "graph/graph.h"
#include "graph/oplist.h"
#include "train/safetensors.h"
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
  mf_omp_wait_passive(argv);
  int size = 64, batch = 4, steps = 5, warmup = 1, threads = 2;
  const char *preset = "low", *dtype = "f32", *dump = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--preset")) preset = v;
    else if (!strcmp(k, "--size")) size = atoi(v);
    else if (!strcmp(k, "--batch")) batch = atoi(v);
    else if (!strcmp(k, "--steps")) steps = atoi(v);
    else if (!strcmp(k, "--warmup")) warmup = atoi(v);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else if (!strcmp(k, "--dtype")) dtype = v;
    else if (!strcmp(k, "--dump")) dump = v;
    else { fprintf(stderr, "bench_vqgan: unknown option %s\n", k); return 2; }
  }
  int dt = mf_dtype_parse(dtype);
  if (dt < 0) { fprintf(stderr, "bench_vqgan: unknown dtype %s\n", dtype); return 2; }
  vqgan_cfg c;
  char err[512];
  if (vqgan_cfg_preset(preset, &c, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); return 2; }
  c.size = size;
  c.batch = c.micro_batch = batch;
  c.segments = 0;
  if (vqgan_cfg_check(&c, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); return 2; }
  mf_graph *g = mf_graph_init((mf_dtype)dt);
  mf_graph_set_seed(g, 3);
  vqgan_net net;
  if (vqgan_build(g, &c, batch, &net, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); return 1; }
  mf_phase_opts ph[2];
  vqgan_phases(&net, ph);
  mf_train_opts o = mf_train_opts_default();
  o.threads = o.plan.threads = threads;
  o.plan.optim = MF_ADAM;
  o.lr = 3.6e-5;
  o.beta1 = 0.5;
  o.beta2 = 0.9;
  o.weight_decay = 0;
  o.n_groups = 2;
  o.groups[1] = (mf_param_group_opts){NULL, o.lr, 0.5, 0.9, o.eps, 0, 0, 0};
  mf_session *s = mf_session_init_phases(g, 2, ph, &o, err, sizeof err);
  if (!s) { fprintf(stderr, "bench_vqgan: %s\n", err); return 1; }
  if (dump) { /* the initial parameters, for the PyTorch side */
    mf_st_writer *w = mf_st_writer_init();
    float *bufs[2048];
    int nb = 0;
    for (int id = 0; id < g->n && nb < 2048; id++) {
      const mf_node *nd = &g->nodes[id];
      if (nd->op != MF_OP_PARAM) continue;
      float *v = bufs[nb++] = malloc(sizeof(float) * (size_t)mf_node_numel(nd));
      mf_session_read(s, id, v, (size_t)mf_node_numel(nd));
      mf_st_writer_add(w, nd->name, MF_F32, nd->ndim, nd->ne, v);
    }
    int rc = mf_st_writer_save(w, dump, err, sizeof err);
    mf_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    if (rc) { fprintf(stderr, "bench_vqgan: %s\n", err); return 1; }
  }
  size_t n = (size_t)mf_tensor_numel(g, net.x);
  float *x = malloc(n * sizeof *x), one = 1;
  if (!x) return 1;
  uint64_t r = 1;
  for (size_t i = 0; i < n; i++) { r = r * 6364136223846793005ULL + 1442695040888963407ULL; x[i] = (float)((r >> 40) / 8388608.0 - 1); }
  mf_session_write_input(s, net.x, x, n);
  mf_session_write_input(s, net.factor, &one, 1);
  double lg = 0, ld = 0, t0 = now_s();
  for (int i = 0; i < warmup + steps; i++) {
    if (i == warmup) t0 = now_s();
    lg = mf_session_phase_step(s, 0);
    mf_session_phase_update(s, 0);
    ld = mf_session_phase_step(s, 1);
    mf_session_phase_update(s, 1);
  }
  double el = now_s() - t0;
  printf("{\"impl\": \"memfit\", \"images_per_s\": %.4f, \"peak_rss_bytes\": %zu, \"step_s\": %.6f, \"planned_bytes\": %zu, "
         "\"preset\": \"%s\", \"size\": %d, \"batch\": %d, \"threads\": %d, \"dtype\": \"%s\", \"g_loss\": %.6f, \"d_loss\": %.6f}\n",
         steps > 0 ? batch * steps / el : 0.0, mf_peak_rss_bytes(), steps > 0 ? el / steps : 0.0,
         mf_plan_total_bytes(mf_session_plan(s)), preset, size, batch, threads, dtype, lg, ld);
  free(x);
  mf_session_free(s);
  mf_graph_free(g);
  return 0;
}

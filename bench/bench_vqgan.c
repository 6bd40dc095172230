/* bench_vqgan.c — memfit's side of the VQGAN step benchmark (issue 13): training steps of a VQGAN preset (the
 * generator phase with the adaptive GAN weight and its Adam update, then the discriminator phase and its update)
 * on fixed random images in [-1,1]. Prints one JSON line like bench/vqgan_torch.py, so bench/vqgan.sh can put
 * them side by side; --dump FILE writes the initial parameters for the PyTorch side to load, --dump-model FILE
 * the same as a model file ("param.NAME") that `memfit train vqgan --init` and --eval read.
 * The quality benchmark (bench/vqgan_quality.sh) uses two more modes:
 *   --write-generated DIR --count N --size S [--seed K]: memfit's generated training images (the set `memfit train
 *     vqgan` trains on by default, seed K x 7919 + 1 as there) as N PNG files, so that both sides read the same;
 *   --eval MODEL --photos DIR [--crop 128] [--grid PNG]: reconstructs the centre crop of every photo with the
 *     model's weights (memfit's model or checkpoint, or PyTorch's saved in the same names) and prints per image and
 *     in the mean PSNR and SSIM (data/metrics.c: 11x11 Gaussian SSIM, after 8-bit rounding) and the codebook usage
 *     and perplexity over all the photos' codes; the last line is one JSON object.
 * The step line also has the step's conv/GEMM FLOPs and their rate; --peak R (R > 0) measures the machine's sgemm
 * peak after the steps (bench/common/peak.c, R calls per size) and adds it and the ratio. */
#include "base/omp_wait.h"
#include "common/peak.h"
#include "memfit.h"
#include "models/vqgan.h"
#include "graph/graph.h"
#include "graph/oplist.h"
#include "train/safetensors.h"
#include "data/grid.h"
#include "data/metrics.h"
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

/* --write-generated: images 0..count-1 of the generated set of `memfit train vqgan --seed seed`, as DIR/gen-NNNNNN.png */
static int write_generated(const char *dir, int count, int size, int seed) {
  char err[512], path[4096];
  mf_dataset *d = mf_dataset_generated((size_t)count, size, size, (uint64_t)seed * 7919u + 1, err, sizeof err);
  if (!d) { fprintf(stderr, "bench_vqgan: %s\n", err); return 1; }
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = t.out_h = size; /* the generated size: a centre crop of the whole image is the image */
  t.channels = 3;
  t.crop = MF_CROP_CENTER;
  float *pl = malloc(sizeof(float) * 3 * (size_t)size * size), *il = malloc(sizeof(float) * 3 * (size_t)size * size); /* [3,S,S], [S,S,3] */
  int rc = pl && il ? 0 : 1;
  for (int i = 0; i < count && rc == 0; i++) {
    if (mf_dataset_get(d, (size_t)i, &t, 0, pl, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); rc = 1; break; }
    for (int k = 0; k < 3; k++)
      for (int64_t q = 0; q < (int64_t)size * size; q++) il[q * 3 + k] = pl[k * (int64_t)size * size + q];
    snprintf(path, sizeof path, "%s/gen-%06d.png", dir, i);
    if (mf_image_save_png(path, il, size, size, 3, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); rc = 1; }
  }
  free(pl);
  free(il);
  mf_dataset_free(d);
  if (rc == 0) printf("wrote %d generated %dx%d images (seed %d) to %s\n", count, size, size, seed, dir);
  return rc;
}

/* --eval: the model file's reconstructions of the photos' centre crops, crop x crop; see the header */
static int eval_model(const char *model, const char *photos, int crop, const char *grid, const char *preset, int threads) {
  char err[1024];
  vqgan_cfg c;
  if (vqgan_cfg_preset(preset, &c, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); return 2; }
  c.size = crop;
  c.batch = c.micro_batch = 1;
  c.segments = 0;
  if (vqgan_cfg_check(&c, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); return 2; }
  mf_folder_opts fo = mf_folder_opts_default();
  fo.val_fraction = 0;
  fo.split = MF_SPLIT_ALL;
  mf_dataset *d = mf_dataset_open_path(photos, &fo, err, sizeof err);
  if (!d) { fprintf(stderr, "bench_vqgan: %s\n", err); return 1; }
  mf_graph *g = mf_graph_init(MF_F32);
  vqgan_net net;
  if (vqgan_build(g, &c, 1, &net, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); mf_dataset_free(d); return 1; }
  mf_phase_opts ph[2];
  vqgan_phases(&net, ph);
  mf_tensor keep[8];
  mf_train_opts o = mf_train_opts_default();
  o.threads = o.plan.threads = threads;
  o.plan.optim = MF_ADAM;
  o.n_groups = 2;
  o.groups[1] = (mf_param_group_opts){NULL, o.lr, 0.5, 0.9, o.eps, 0, 0, 0};
  o.plan.n_keep = vqgan_keep(&net, keep);
  o.plan.keep = keep;
  mf_session *s = mf_session_init_phases(g, 2, ph, &o, err, sizeof err);
  vq_stats st;
  int have_st = 0, rc = 1;
  size_t N = mf_dataset_size(d);
  int64_t per = 3 * (int64_t)crop * crop;
  float *x = malloc(sizeof(float) * (size_t)per), *r = malloc(sizeof(float) * (size_t)per);
  float *in_all = malloc(sizeof(float) * (size_t)per * N), *rec_all = malloc(sizeof(float) * (size_t)per * N);
  float zero = 0;
  if (!s) { fprintf(stderr, "bench_vqgan: %s\n", err); goto out; }
  if (!x || !r || !in_all || !rec_all) { fprintf(stderr, "bench_vqgan: out of host memory\n"); goto out; }
  if (mf_session_load_weights(s, model, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); goto out; }
  if (vq_session_ready(&net.vq, s) < 0 || vq_stats_init(&st, &net.vq, 1) < 0) { fprintf(stderr, "bench_vqgan: quantiser setup failed\n"); goto out; }
  have_st = 1;
  mf_session_write_input(s, net.factor, &zero, 1);
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = t.out_h = crop;
  t.channels = 3;
  t.crop = MF_CROP_CENTER; /* no resize: the crop x crop pixels at the photo's centre */
  t.normalize = 1;
  for (int k = 0; k < 3; k++) t.mean[k] = 0.5f, t.std[k] = 0.5f; /* [0,1] -> [-1,1] as in training */
  double sp = 0, ss = 0;
  int done = 0;
  for (size_t i = 0; i < N; i++) {
    int g_rc = mf_dataset_get(d, i, &t, 0, x, err, sizeof err);
    if (g_rc < 0) { printf("  skipped: %s\n", err); continue; }
    mf_session_write_input(s, net.x, x, (size_t)per);
    if (isnan(mf_session_forward(s)) || mf_session_read(s, net.xrec, r, (size_t)per) < 0) { fprintf(stderr, "bench_vqgan: forward failed\n"); goto out; }
    vq_observe(&st, &net.vq, s, 0);
    for (int64_t q = 0; q < per; q++) x[q] = 0.5f * (x[q] + 1), r[q] = quant8(0.5f * (r[q] + 1)); /* [0,1], 8-bit */
    double p1 = psnr_from_mse(img_mse(r, x, crop, crop, 0)), s1 = img_ssim(r, x, crop, crop, 0);
    printf("  %-28s PSNR %6.2f dB  SSIM %.4f\n", mf_dataset_file(d, i) ? mf_dataset_file(d, i) : "?", p1, s1);
    memcpy(in_all + done * per, x, sizeof(float) * (size_t)per);
    memcpy(rec_all + done * per, r, sizeof(float) * (size_t)per);
    sp += p1, ss += s1, done++;
  }
  if (!done) { fprintf(stderr, "bench_vqgan: no photo of %s could be measured\n", photos); goto out; }
  double usage, ppl;
  vq_stats_usage(&st, &usage, &ppl);
  printf("mean over %d photos (%dx%d centre crops, 8-bit): PSNR %.2f dB, SSIM %.4f; codebook usage %.1f%% (%lld of %lld codes), "
         "perplexity %.1f\n", done, crop, crop, sp / done, ss / done, 100 * usage, (long long)llround(usage * (double)st.K), (long long)st.K, ppl);
  printf("{\"model\": \"%s\", \"photos\": %d, \"crop\": %d, \"psnr\": %.4f, \"ssim\": %.5f, \"code_usage\": %.5f, \"codes_used\": %lld, "
         "\"codes\": %lld, \"perplexity\": %.3f}\n", model, done, crop, sp / done, ss / done, usage, (long long)llround(usage * (double)st.K),
         (long long)st.K, ppl);
  rc = 0;
  if (grid) {
    const float *a[256], *b[256];
    int rows = done < 256 ? done : 256;
    for (int i = 0; i < rows; i++) a[i] = in_all + i * per, b[i] = rec_all + i * per;
    grid_col cols[2] = {{"input", a, NULL, 0}, {"reconstruction", b, NULL, 0}};
    if (grid_write_png(grid, cols, 2, rows, crop, crop, err, sizeof err) < 0) { fprintf(stderr, "bench_vqgan: %s\n", err); rc = 1; }
  }
out:
  if (have_st) vq_stats_free(&st);
  free(x);
  free(r);
  free(in_all);
  free(rec_all);
  mf_session_free(s);
  vqgan_net_free(&net);
  mf_graph_free(g);
  mf_dataset_free(d);
  return rc;
}

int main(int argc, char **argv) {
  mf_omp_wait_bounded(argv);
  int size = 64, batch = 4, steps = 5, warmup = 1, threads = 2, count = 0, seed = 1, crop = 128, peak_reps = 0;
  const char *preset = "low", *dtype = "f32", *dump = NULL, *dump_model = NULL, *gen_dir = NULL, *eval = NULL, *photos = NULL, *grid = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--preset")) preset = v;
    else if (!strcmp(k, "--size")) size = atoi(v);
    else if (!strcmp(k, "--batch")) batch = atoi(v);
    else if (!strcmp(k, "--steps")) steps = atoi(v);
    else if (!strcmp(k, "--warmup")) warmup = atoi(v);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else if (!strcmp(k, "--peak")) peak_reps = atoi(v);
    else if (!strcmp(k, "--dtype")) dtype = v;
    else if (!strcmp(k, "--dump")) dump = v;
    else if (!strcmp(k, "--dump-model")) dump_model = v;
    else if (!strcmp(k, "--write-generated")) gen_dir = v;
    else if (!strcmp(k, "--count")) count = atoi(v);
    else if (!strcmp(k, "--seed")) seed = atoi(v);
    else if (!strcmp(k, "--eval")) eval = v;
    else if (!strcmp(k, "--photos")) photos = v;
    else if (!strcmp(k, "--crop")) crop = atoi(v);
    else if (!strcmp(k, "--grid")) grid = v;
    else { fprintf(stderr, "bench_vqgan: unknown option %s\n", k); return 2; }
  }
  if (gen_dir) {
    if (count < 1 || size < 8) { fprintf(stderr, "bench_vqgan: --write-generated needs --count N >= 1 and --size S >= 8\n"); return 2; }
    return write_generated(gen_dir, count, size, seed);
  }
  if (eval) {
    if (!photos) { fprintf(stderr, "bench_vqgan: --eval needs --photos DIR\n"); return 2; }
    return eval_model(eval, photos, crop, grid, preset, threads);
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
  for (int pass = 0; pass < 2; pass++) { /* the initial parameters: for the PyTorch side, and as a model file */
    const char *path = pass ? dump_model : dump;
    if (!path) continue;
    mf_st_writer *w = mf_st_writer_init();
    float *bufs[2048];
    int nb = 0;
    for (int id = 0; id < g->n && nb < 2048; id++) {
      const mf_node *nd = &g->nodes[id];
      if (nd->op != MF_OP_PARAM) continue;
      float *v = bufs[nb++] = malloc(sizeof(float) * (size_t)mf_node_numel(nd));
      mf_session_read(s, id, v, (size_t)mf_node_numel(nd));
      char key[MF_NAME_LEN + 8];
      snprintf(key, sizeof key, "%s%s", pass ? "param." : "", nd->name);
      mf_st_writer_add(w, key, MF_F32, nd->ndim, nd->ne, v);
    }
    int rc = mf_st_writer_save(w, path, err, sizeof err);
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
  size_t rss = mf_peak_rss_bytes(); /* before the peak's matrices */
  bench_peak pk;
  if (peak_reps > 0 && steps > 0 && bench_peak_measure(threads, peak_reps, &pk) < 0) { fprintf(stderr, "bench_vqgan: out of host memory\n"); return 1; }
  char rates[512];
  const mf_plan *pl = mf_session_plan(s);
  bench_peak_json(peak_reps > 0 && steps > 0 ? &pk : NULL, bench_plan_gemm_flops(pl), mf_plan_flops(pl), steps > 0 ? el / steps : 0,
                  rates, sizeof rates);
  printf("{\"impl\": \"memfit\", \"images_per_s\": %.4f, \"peak_rss_bytes\": %zu, \"step_s\": %.6f, \"planned_bytes\": %zu, "
         "\"preset\": \"%s\", \"size\": %d, \"batch\": %d, \"threads\": %d, \"dtype\": \"%s\", \"g_loss\": %.6f, \"d_loss\": %.6f%s}\n",
         steps > 0 ? batch * steps / el : 0.0, rss, steps > 0 ? el / steps : 0.0,
         mf_plan_total_bytes(pl), preset, size, batch, threads, dtype, lg, ld, rates);
  free(x);
  mf_session_free(s);
  mf_graph_free(g);
  return 0;
}

/* cmd_demo.c — memfit's main job on its embedded default: trains the small steganography model
 * on procedurally generated images inside its exact memory plan, then prints the plan next to the
 * memory the runtime measured and saves a checkpoint. No download, no user data. */
#include "cli/cli.h"
#include "models/steg.h"
#include "plan/plan.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double psnr_from_sum(double sum_sq, double count) {
  double mse = sum_sq / count;
  return mse > 0 ? 10 * log10(1.0 / mse) : 99.0;
}

/* the loader's next batch, starting the next epoch when one ends */
static const mf_batch *next_batch(mf_loader *L) {
  const mf_batch *b = mf_loader_next(L);
  return b ? b : mf_loader_next(L);
}
/* queues a batch of 2*B images for the next step: covers first, secrets after (img floats each) */
static int stage_batch(mf_session *s, const mf_steg_model *m, const mf_batch *b, size_t img) {
  mf_tensor ins[2] = {m->cover, m->secret};
  const float *data[2] = {b->images, b->images + img};
  return mf_session_stage_inputs(s, 2, ins, data);
}

int mf_cmd_demo(int argc, char **argv) {
  int steps = 150, size = 32, batch = 4, threads = 0, invert = 1;
  const char *out = "memfit-demo", *preset = "small", *backend = "cpu";
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help")) {
      printf("usage: memfit demo [--steps N] [--size PIXELS] [--batch B] [--preset NAME] [--threads T]\n"
             "                   [--store-activations] [--out DIR] [--backend cpu|cuda]\n"
             "Trains the '%s' steganography preset on generated images and prints the memory plan\n"
             "next to the measured high-water of every arena. Presets: %s.\n"
             "Defaults: --steps %d --size %d --batch %d --preset %s --out %s --backend %s --threads 0 (all cores);\n"
             "memory-free backprop through the coupling blocks unless --store-activations.\n",
             preset, mf_steg_preset_names(), steps, size, batch, preset, out, backend);
      return 0;
    } else if ((v = cli_opt(argc, argv, &i, "--steps"))) { if (cli_int("--steps", v, 1, 10000000, &steps)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--size"))) { if (cli_int("--size", v, 8, 4096, &size) || size % 2) { fprintf(stderr, "memfit: --size must be even\n"); return 2; } }
    else if ((v = cli_opt(argc, argv, &i, "--batch"))) { if (cli_int("--batch", v, 1, 4096, &batch)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--preset"))) preset = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) out = v;
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) backend = v;
    else if (!strcmp(argv[i], "--store-activations")) invert = 0;
    else return cli_unknown_option("demo", argv[i]);
  }
  char err[1024];
  mf_steg_config cfg;
  if (mf_steg_config_preset(preset, &cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit demo: %s\n", err); return 2; }
  cfg.height = cfg.width = size;
  cfg.batch = batch;
  if (mf_steg_config_check(&cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit demo: %s\n", err); return 2; }
  { /* the --out folder first: a run whose results cannot be written is refused before it trains */
    struct stat ost;
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
      fprintf(stderr, "memfit demo: cannot create --out %s: %s\n", out, strerror(errno));
      return 1;
    }
    if (stat(out, &ost) != 0 || !S_ISDIR(ost.st_mode)) { fprintf(stderr, "memfit demo: --out %s is not a folder\n", out); return 1; }
  }

  printf("memfit demo: steganography preset '%s' (%d coupling blocks, growth %d, %lld parameters),\n"
         "  %dx%d generated images, batch %d, %s, %d steps\n",
         preset, cfg.blocks, cfg.growth, (long long)mf_steg_param_count(&cfg), size, size, batch,
         invert ? "memory-free backprop through the invertible blocks" : "storing all activations", steps);
  mf_graph *g = mf_graph_init(MF_F32);
  mf_steg_model *m = calloc(1, sizeof *m);
  if (!m || mf_steg_build(g, &cfg, m) < 0) { fprintf(stderr, "memfit demo: %s\n", m ? mf_graph_error(g) : "out of memory"); free(m); mf_graph_free(g); return 1; }
  mf_train_opts o = mf_train_opts_default();
  o.threads = threads;
  o.plan.backend = backend;
  o.plan.optim = MF_ADAM;
  o.lr = pow(10, -3.5); /* faster than HiNet's 10^-4.5 for a short demo */
  o.beta1 = 0.5;
  o.beta2 = 0.999;
  o.weight_decay = 0;
  o.clip_norm = 10.0;
  o.plan.recompute = invert ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
  o.plan.invertible = invert;
  mf_tensor keep[3] = {m->loss_guide, m->loss_rec, m->loss_low};
  o.plan.keep = keep;
  o.plan.n_keep = 3;
  mf_session *s = mf_session_init(g, m->loss, &o, err, sizeof err);
  if (!s) { fprintf(stderr, "memfit demo: %s\n", err); free(m); mf_graph_free(g); return 1; }
  mf_plan_print(mf_session_plan(s), stdout);

  /* data: 2*batch generated images per step, first half covers, second half secrets */
  mf_dataset *ds = mf_dataset_generated(4096, size, size, 7, err, sizeof err);
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = ds;
  lo.batch_size = 2 * batch;
  lo.workers = 1;
  lo.seed = 11;
  lo.tf.out_w = lo.tf.out_h = size;
  lo.tf.crop = MF_CROP_NONE;
  lo.tf.hflip = 0.5f;
  const mf_backend *be = mf_session_plan(s)->be;
  if (be->host_alloc) { /* page-locked staging on a device backend: asynchronous copies */
    lo.alloc = be->host_alloc;
    lo.free = be->host_free;
  }
  mf_loader *L = ds ? mf_loader_init(&lo, err, sizeof err) : NULL;
  if (!L) { fprintf(stderr, "memfit demo: %s\n", err); mf_dataset_free(ds); mf_session_free(s); free(m); mf_graph_free(g); return 1; }
  size_t img = (size_t)batch * 3 * (size_t)size * (size_t)size;
  double count = (double)img, t0 = now_s(), guide = 0, rec = 0;
  float *tmp = calloc((size_t)mf_tensor_numel(g, m->z), sizeof(float));
  mf_session_write_input(s, m->z, tmp, (size_t)mf_tensor_numel(g, m->z));
  free(tmp);
  /* batch i+1 is staged before step i runs: on a device its copy overlaps the step (page-locked
   * loader buffers, a copy stream); on the CPU the step reads the loader's buffer in place */
  const mf_batch *b = next_batch(L);
  int staged = b && stage_batch(s, m, b, img) == 0, done = 0;
  for (int step = 0; step < steps && staged; step++) {
    const mf_batch *nb = step + 1 < steps ? next_batch(L) : NULL;
    if (nb && stage_batch(s, m, nb, img) < 0) break;
    double loss = mf_session_micro_step(s);
    mf_loader_release(L, b);
    b = nb;
    if (isnan(loss)) break;
    done++;
    float lg, lr;
    mf_session_read(s, m->loss_guide, &lg, 1);
    mf_session_read(s, m->loss_rec, &lr, 1);
    mf_session_update(s);
    guide = lg;
    rec = lr;
    if (step % 10 == 0 || step == steps - 1) {
      double el = now_s() - t0, eta = el / (step + 1) * (steps - step - 1);
      printf("  step %4d/%d  loss %10.4f  hide PSNR %6.2f dB  rec PSNR %6.2f dB  %5.1f img/s  ETA %4.0fs\n", step + 1, steps,
             loss, psnr_from_sum(guide, count), psnr_from_sum(rec, count), (step + 1) * batch / el, eta);
      fflush(stdout);
    }
  }
  if (done < steps) fprintf(stderr, "memfit demo: training stopped after %d of %d steps (see the message above)\n", done, steps);
  mf_loader_stats st = mf_loader_get_stats(L);
  double el = now_s() - t0;
  printf("trained %d steps in %.1fs (%.1f images/s); waiting for data: %.1f%% of the time\n", steps, el, steps * batch / el,
         100.0 * st.wait_s / el);
  if (st.wait_s > 0.05 * el)
    printf("data loading is the bottleneck (%.0f%% of the time waiting): use more loader workers or a smaller decode size\n",
           100.0 * st.wait_s / el);
  int exact = mf_report_memory(s, " (plan total + libraries, code and the data loader)");
  char path[4096];
  int saved = 1;
  /* two generated pictures (not from the training set's seed) for hide/reveal with a trained model */
  const char *names[2] = {"cover.png", "secret.png"};
  for (int k = 0; k < 2; k++) {
    mf_image im;
    if (mf_image_generate(99, (uint64_t)k, 128, 128, &im) == 0) {
      snprintf(path, sizeof path, "%s/%s", out, names[k]);
      if (mf_image_save_png(path, im.data, im.w, im.h, im.c, err, sizeof err) < 0) { fprintf(stderr, "memfit demo: %s\n", err); saved = 0; }
      mf_image_free(&im);
    }
  }
  snprintf(path, sizeof path, "%s/demo.safetensors", out);
  if (mf_session_save(s, path, err, sizeof err) < 0) { fprintf(stderr, "memfit demo: %s\n", err); saved = 0; }
  else printf("checkpoint: %s\n", path);
  mf_loader_free(L);
  mf_dataset_free(ds);
  mf_session_free(s);
  free(m);
  mf_graph_free(g);
  return exact && done == steps && saved ? 0 : 1;
}

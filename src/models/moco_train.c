/* moco_train.c — MoCo as a trainer client (`memfit train moco`): its settings, two augmented views per
 * image, the key encoder's momentum (v3's ramp), the kNN monitor at each validation on a labelled set, and
 * the model file (the eval-ready query backbone) that `memfit eval moco` reads (src/models/moco_eval.c). */
#include "models/moco.h"
#include "models/moco_eval.h"
#include "models/workload.h"
#include "train/probe.h"
#include "train/session.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODEL_SETTINGS 24

/* moco's own training settings: the model's (applied in order after the preset) and the data's */
typedef struct moco_tcfg {
  char preset[32];
  int n_model;                       /* model settings as given (--size, --queue, ...), applied after the preset */
  char model_key[MAX_MODEL_SETTINGS][24], model_val[MAX_MODEL_SETTINGS][64]; /* copies: the parser reuses its buffers */
  moco_cfg mc;                       /* after train_check: the model trained */
  int channels;                      /* 0: 1 for IDX data, else 3 */
  char aug[16];                      /* moco (v2's), satellite (+ rot90, vflip, noise), none */
  double crop_min, blur_p, noise;    /* < 0: the recipe's default */
  int gen_count, gen_size, labels;
  int knn_k, knn_bank, knn_test;     /* bank / test: samples used (0: all) */
  int probe_epochs;                  /* linear probe at each validation (0: none) */
  double knn_t;
} moco_tcfg;

static const char *const model_keys[] = {"version", "arch", "width", "size", "queue", "dim", "hidden", "temperature",
                                         "momentum", "bn-splits", "shuffle-bn", NULL};

/* ------------------------------------------------------------------ settings */

static void train_defaults(mf_train_args *a) {
  a->data = "generated";
  a->out = "moco-run";
  a->schedule = "cosine";
  a->batch = 0; /* the preset's (train_batch) */
  a->epochs = 20;
  a->lr = 0.06; /* the MoCo CIFAR demo: SGD lr 0.06, momentum 0.9, weight decay 5e-4 */
  a->beta1 = 0.9;
  a->beta2 = 0.999;
  a->weight_decay = 5e-4;
  a->seed = 1;
}

static void *train_cfg_new(void) {
  moco_tcfg *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  snprintf(c->preset, sizeof c->preset, "small");
  snprintf(c->aug, sizeof c->aug, "moco");
  c->crop_min = c->blur_p = c->noise = -1;
  c->gen_count = 4096;
  c->gen_size = 64;
  c->knn_k = 200;
  c->knn_t = 0.1;
  c->knn_bank = 10000;
  c->knn_test = 2000;
  c->probe_epochs = 20;
  return c;
}

static int train_cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  moco_tcfg *c = p;
  if (!strcmp(key, "preset")) {
    moco_cfg t;
    if (moco_cfg_preset(val, &t, err, n) < 0) return -1;
    snprintf(c->preset, sizeof c->preset, "%s", val);
    return 0;
  }
  for (int i = 0; model_keys[i]; i++)
    if (!strcmp(key, model_keys[i])) {
      moco_cfg t = moco_cfg_default(); /* checks the value now, so the message comes before anything runs */
      if (mf_workload_moco.cfg_set(&t, key, val, err, n) < 0) return -1;
      if (c->n_model == MAX_MODEL_SETTINGS) { snprintf(err, n, "--%s: too many model settings", key); return -1; }
      if (strlen(val) >= sizeof c->model_val[0]) { snprintf(err, n, "--%s: '%s' is too long", key, val); return -1; }
      snprintf(c->model_key[c->n_model], sizeof c->model_key[0], "%s", key);
      snprintf(c->model_val[c->n_model++], sizeof c->model_val[0], "%s", val);
      return 0;
    }
  if (!strcmp(key, "channels")) {
    if (mf_setting_int(key, val, 1, 3, &c->channels, err, n)) return -1;
    if (c->channels == 2) { snprintf(err, n, "--channels: 2 is neither 1 (gray) nor 3 (RGB)"); return -1; }
    return 0;
  }
  if (!strcmp(key, "aug")) {
    if (strcmp(val, "moco") && strcmp(val, "satellite") && strcmp(val, "none")) {
      snprintf(err, n, "--aug: '%s' is not one of moco, satellite, none", val);
      return -1;
    }
    snprintf(c->aug, sizeof c->aug, "%s", val);
    return 0;
  }
  if (!strcmp(key, "crop-min")) return mf_setting_double(key, val, 0.01, 1, &c->crop_min, err, n);
  if (!strcmp(key, "blur")) return mf_setting_double(key, val, 0, 1, &c->blur_p, err, n);
  if (!strcmp(key, "noise")) return mf_setting_double(key, val, 0, 1, &c->noise, err, n);
  if (!strcmp(key, "gen-count")) return mf_setting_int(key, val, 2, 1 << 30, &c->gen_count, err, n);
  if (!strcmp(key, "gen-size")) return mf_setting_int(key, val, 8, 4096, &c->gen_size, err, n);
  if (!strcmp(key, "labels")) return mf_setting_int(key, val, 0, 1, &c->labels, err, n);
  if (!strcmp(key, "knn-k")) return mf_setting_int(key, val, 1, 100000, &c->knn_k, err, n);
  if (!strcmp(key, "knn-t")) {
    if (mf_setting_double(key, val, 0, 1e6, &c->knn_t, err, n)) return -1;
    if (!(c->knn_t > 0)) { snprintf(err, n, "--knn-t: '%s' must be above 0", val); return -1; }
    return 0;
  }
  if (!strcmp(key, "knn-bank")) return mf_setting_int(key, val, 0, 1 << 30, &c->knn_bank, err, n);
  if (!strcmp(key, "knn-test")) return mf_setting_int(key, val, 0, 1 << 30, &c->knn_test, err, n);
  if (!strcmp(key, "probe-epochs")) return mf_setting_int(key, val, 0, 100000, &c->probe_epochs, err, n);
  return -2;
}

static void train_help(FILE *f) {
  fprintf(f, "  --preset P             %s (default small: v2, ResNet-18 small stem, 32 px, batch 256,\n"
             "                         queue 4096); the model settings below change it\n"
             "  --version 2|3 --arch resnet18|resnet34|resnet50 --width W --size PX --queue K --dim D --hidden H\n"
             "  --temperature T --momentum M --bn-splits N --shuffle-bn 0|1   as memfit plan moco takes them (memfit plan moco\n"
             "                         --help); --shuffle-bn: v2's shuffled batch norm, on by default over several ranks\n"
             "  --channels 1|3         input channels (default 1 for IDX data such as Fashion-MNIST, else 3)\n"
             "  --aug moco|satellite|none  augmentation of the two views (default moco: random resized crop,\n"
             "                         colour jitter 0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2, blur, horizontal flip;\n"
             "                         satellite adds 90-degree rotations, vertical flips and Gaussian noise)\n"
             "  --crop-min A           smallest crop area share of the random resized crop (default 0.2)\n"
             "  --blur P               Gaussian blur probability (default 0.5 at 96 px and more, else 0)\n"
             "  --noise S              satellite: noise standard deviation (default 0.02)\n"
             "  --labels 1             --data is a folder of class sub-folders (labelled: the kNN monitor uses it)\n"
             "  --gen-count N --gen-size S  generated images per pass (default 4096) and their size (64)\n"
             "  --knn-k K --knn-t T    kNN monitor at each validation (k 200, temperature 0.1, cosine) when the\n"
             "                         training data is labelled: its features are the bank, the validation set's\n"
             "                         (--val-data or a --val-split share) are classified\n"
             "  --knn-bank N --knn-test N  samples of the bank (default 10000) and of the validation set (2000);\n"
             "                         0: all\n"
             "  --probe-epochs N       also a linear probe at each validation: trained on the bank's features, tested\n"
             "                         on the validation images' (default 20 epochs; 0: none)\n"
             "  (--batch counts images, default the preset's; SGD with momentum 0.9: --lr 0.06, --weight-decay 5e-4,\n"
             "  cosine schedule, --epochs 20, --out moco-run; memfit eval moco MODEL: kNN and a linear probe)\n",
          moco_preset_names());
}

/* the model the settings describe, the batch and channels from the run's arguments */
static int moco_config(const moco_tcfg *c, const mf_train_args *a, int channels, moco_cfg *mc, char *err, size_t n) {
  if (moco_cfg_preset(c->preset, mc, err, n) < 0) return -1;
  for (int i = 0; i < c->n_model; i++)
    if (mf_workload_moco.cfg_set(mc, c->model_key[i], c->model_val[i], err, n) < 0) return -1;
  mc->channels = channels;
  mc->ranks = a->ranks > 1 ? a->ranks : 1;
  if (a->batch && !a->batch_default) { /* --batch given: the micro-batch is chosen (the preset's is for its batch) */
    mc->batch = a->batch;
    mc->micro_batch = 0;
  }
  return 0;
}

static int is_idx(const char *path) { /* an IDX file, not a folder (data/idx.c decides for real) */
  return strstr(path, "idx3-ubyte") != NULL;
}

static int moco_channels(const moco_tcfg *c, const mf_train_args *a) { return c->channels ? c->channels : is_idx(a->data) ? 1 : 3; }

/* without --batch: the preset's (with the model settings given) */
static int train_batch(const void *p, const mf_train_args *a, int *batch, char *err, size_t n) {
  moco_cfg mc;
  if (moco_config(p, a, moco_channels(p, a), &mc, err, n) < 0) return -1;
  *batch = mc.batch;
  return 0;
}

/* a->batch is one rank's share (mf_train_check) */
static int train_check(void *p, mf_train_args *a, char *err, size_t n) {
  moco_tcfg *c = p;
  moco_cfg mc;
  if (moco_config(c, a, moco_channels(c, a), &mc, err, n) < 0) return -1;
  mc.batch = a->batch;
  mc.micro_batch = a->micro_batch ? a->micro_batch : mc.micro_batch && a->batch % mc.micro_batch == 0 ? mc.micro_batch : 0;
  if (!a->micro_batch && mc.micro_batch && mc.micro_batch < a->batch && !a->budget) a->micro_batch = mc.micro_batch;
  if (moco_cfg_check(&mc, err, n) < 0) return -1;
  if (c->gen_size < mc.size && !strcmp(a->data, "generated")) c->gen_size = mc.size;
  c->mc = mc;
  return 0;
}

static int train_plan_cfg(const void *p, const mf_train_args *a, void *wc, char *err, size_t n) {
  const moco_tcfg *c = p;
  moco_cfg *mc = wc;
  *mc = c->mc;
  mc->batch = a->batch;
  mc->micro_batch = 0;
  (void)err, (void)n;
  return 0;
}

/* ------------------------------------------------------------------ hooks */

typedef struct moco_train_ctx {
  mf_graph *g;
  moco_net net;
  moco_cfg cfg;                /* as built */
  int64_t total_steps;         /* v3's momentum ramp */
  int micro;
  uint64_t seed;               /* --seed: the shuffled batch norm's permutations (moco_shuffle_draw) */
  float *shuf;                 /* shuffled BN: [2, micro] the indices staged with each batch */
  /* kNN monitor: the bank (labelled training samples) and the validation samples */
  mf_dataset *bank, *test;
  size_t n_bank, n_test;
  knn_opts ko;
  linprobe_opts po;            /* po.epochs 0: no probe */
  int threads;
  moco_extractor *fx;          /* the eval-mode feature session (made at the first validation) */
  char note[1024];
} moco_train_ctx;

static int moco_feed(void *ctx, mf_session *s, const mf_batch *b, char *err, size_t n) {
  moco_train_ctx *c = ctx;
  if (c->cfg.version == 3 && /* the key encoder's momentum for this step's update: the cosine ramp to 1 */
      mf_session_set_ema_momentum(s, -1, moco_momentum_at(&c->cfg, mf_session_step(s), c->total_steps)) < 0) {
    snprintf(err, n, "setting the key encoder's momentum failed (see above)");
    return -1;
  }
  mf_tensor ins[4] = {c->net.xq, c->net.xk, c->net.shuffle, c->net.unshuffle};
  const float *data[4] = {b->views[0], b->views[1], NULL, NULL};
  int nin = 2;
  if (c->net.shuffle >= 0) { /* shuffled BN: this micro-step's permutation of the global micro-batch, the same on every rank */
    /* the staged batches form a queue of two: this one's indices must outlive the one staged before it */
    float *sh = c->shuf + (size_t)(mf_session_next_micro(s) & 1) * 2 * (size_t)c->micro;
    if (moco_shuffle_draw(c->seed, mf_session_next_micro(s), c->cfg.ranks, mf_session_rank(s), c->micro, sh, sh + c->micro, NULL) < 0) {
      snprintf(err, n, "out of host memory");
      return -1;
    }
    data[2] = sh, data[3] = sh + c->micro;
    nin = 4;
  }
  if (mf_session_stage_inputs(s, nin, ins, data) < 0) { snprintf(err, n, "staging the batch failed (see above)"); return -1; }
  return 0;
}

/* the mean cosine similarity of the positive pairs q.k */
static void moco_read_terms(void *ctx, mf_session *s, double *v) {
  moco_train_ctx *c = ctx;
  size_t cnt = (size_t)c->micro * (size_t)c->cfg.dim;
  float *q = malloc(2 * cnt * sizeof *q);
  v[0] = NAN;
  if (!q) return;
  if (!mf_session_read(s, c->net.q, q, cnt) && !mf_session_read(s, c->net.k, q + cnt, cnt)) {
    double acc = 0;
    for (size_t i = 0; i < cnt; i++) acc += (double)q[i] * q[cnt + i];
    v[0] = acc / c->micro;
  }
  free(q);
}

static void moco_describe_terms(void *ctx, const double *mean, char *buf, size_t n) {
  (void)ctx;
  snprintf(buf, n, "q.k %.3f", mean[0]);
}

static int moco_validate(void *ctx, mf_session *s, const char *grid, int64_t *bad, const char **names, double *vals, char *line,
                         size_t n, int *grid_failed) {
  moco_train_ctx *c = ctx;
  (void)grid;
  *grid_failed = 0;
  if (!c->bank || !c->test) return 0;
  char err[1024];
  if (!c->fx && !(c->fx = moco_extractor_init(&c->cfg, c->threads, err, sizeof err))) {
    fprintf(stderr, "memfit train moco: kNN monitor: %s\n", err);
    return 0;
  }
  double acc, probe = 0;
  int64_t skipped = 0;
  if (moco_extractor_copy(c->fx, s, &c->net, err, sizeof err) < 0 ||
      moco_knn_eval(c->fx, c->bank, c->n_bank, c->test, c->n_test, &c->ko, c->po.epochs ? &c->po : NULL, &acc, &probe, &skipped,
                    err, sizeof err) < 0) {
    fprintf(stderr, "memfit train moco: kNN monitor: %s\n", err);
    return 0;
  }
  bad[0] += skipped;
  static const char *const nm[3] = {"knn_error", "knn_top1", "probe_top1"};
  names[0] = nm[0]; vals[0] = 1 - acc;
  names[1] = nm[1]; vals[1] = acc;
  names[2] = nm[2]; vals[2] = probe;
  size_t k = (size_t)snprintf(line, n, "kNN top-1 %.2f%% (k %d, T %g; %zu bank, %zu validation images)", 100 * acc, c->ko.k,
                              c->ko.temperature, c->n_bank, c->n_test);
  if (c->po.epochs && k < n) snprintf(line + k, n - k, ", linear probe %.2f%% (%d epochs)", 100 * probe, c->po.epochs);
  return c->po.epochs ? 3 : 2;
}

static int moco_save_model(void *ctx, mf_session *s, const char *path, char *err, size_t n) {
  moco_train_ctx *c = ctx;
  if (!c->fx && !(c->fx = moco_extractor_init(&c->cfg, c->threads, err, n))) return -1;
  if (moco_extractor_copy(c->fx, s, &c->net, err, n) < 0) return -1;
  return moco_extractor_save(c->fx, path, mf_session_step(s), c->note, err, n);
}

static int moco_session_ready_hook(void *ctx, mf_session *s, char *err, size_t n) {
  moco_train_ctx *c = ctx;
  return moco_session_ready(s, &c->net, err, n);
}

static int moco_resume_check(void *ctx, const char *path) {
  (void)ctx; /* the session refuses a checkpoint of another model, naming the tensor */
  char err[1024];
  mf_st_file *f = mf_st_open(path, err, sizeof err);
  if (!f) { fprintf(stderr, "memfit train moco: --resume: %s\n", err); return -1; }
  const char *fmt = mf_st_meta(f, "format");
  int bad = !fmt || strcmp(fmt, "memfit-checkpoint-1");
  if (bad)
    fprintf(stderr, "memfit train moco: --resume %s: %s, not a training checkpoint; --resume needs the checkpoint.safetensors "
                    "of a run's --out folder\n", path, fmt && !strcmp(fmt, MOCO_MODEL_FORMAT) ? "a model file (the backbone only)"
                                                                                           : "not a memfit checkpoint");
  mf_st_close(f);
  return bad ? -1 : 0;
}

static void moco_ctx_free(void *ctx) {
  moco_train_ctx *c = ctx;
  if (!c) return;
  moco_extractor_free(c->fx);
  free(c->shuf);
  if (c->g) mf_graph_free(c->g);
  free(c);
}

/* the two views' augmentation: MoCo v2's recipe (the satellite one adds rotations, vertical flips, noise) */
static mf_transform_opts moco_transform(const moco_tcfg *tc, const moco_cfg *mc) {
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = t.out_h = mc->size;
  t.channels = mc->channels;
  if (!strcmp(tc->aug, "none")) {
    t.crop = MF_CROP_NONE;
    return t;
  }
  t.crop = MF_CROP_RANDOM_RESIZED;
  t.scale[0] = (float)(tc->crop_min > 0 ? tc->crop_min : 0.2);
  t.scale[1] = 1;
  t.jitter_p = 0.8f;
  t.brightness = t.contrast = t.saturation = 0.4f;
  t.hue = 0.1f;
  t.gray_p = 0.2f;
  t.blur_p = (float)(tc->blur_p >= 0 ? tc->blur_p : mc->size >= 96 ? 0.5 : 0);
  t.blur_sigma[0] = 0.1f;
  t.blur_sigma[1] = 2.0f;
  t.hflip = 0.5f;
  if (!strcmp(tc->aug, "satellite")) {
    t.vflip = 0.5f;
    t.rot90 = 1;
    t.noise_std = (float)(tc->noise >= 0 ? tc->noise : 0.02);
  }
  return t;
}

static int train_setup(const void *p, const mf_train_args *a, const mf_train_choice *ch, mf_train_job *j, char *err, size_t n) {
  const moco_tcfg *tc = p;
  moco_cfg cfg = tc->mc;
  int micro = ch->micro_batch;
  cfg.batch = a->batch;
  cfg.micro_batch = micro;
  cfg.segments = ch->variant == 1; /* "checkpointed blocks": each residual block of the query backbone recomputed */
  if (moco_cfg_check(&cfg, err, n) < 0) return -1;
  moco_train_ctx *c = calloc(1, sizeof *c);
  if (!c) { snprintf(err, n, "out of host memory"); return -1; }
  j->hooks.ctx = c;
  j->ctx_free = moco_ctx_free;
  c->micro = micro;
  c->threads = a->threads;
  if (!(c->g = mf_graph_init(ch->dtype))) { snprintf(err, n, "out of host memory"); return -1; }
  mf_graph_set_seed(c->g, (uint64_t)a->seed);
  if (moco_build(c->g, &cfg, micro, &c->net, err, n) < 0) return -1;
  c->cfg = c->net.cfg;
  c->seed = (uint64_t)a->seed;
  if (c->net.shuffle >= 0 && !(c->shuf = malloc(4 * (size_t)micro * sizeof *c->shuf))) { snprintf(err, n, "out of host memory"); return -1; }
  j->g = c->g;
  j->loss = c->net.loss;
  j->keep[0] = c->net.q;
  j->keep[1] = c->net.k;
  j->n_keep = 2;
  j->optim = MF_SGD;
  j->sgd_momentum = 0.9;

  /* ---- data: the training set (two views of each image) and, when labelled, the kNN monitor's sets ---- */
  int generated = !strcmp(a->data, "generated");
  if (generated) j->train = mf_dataset_generated((size_t)tc->gen_count, tc->gen_size, tc->gen_size, (uint64_t)a->seed * 7919u + 1, err, n);
  else {
    mf_folder_opts fo = mf_folder_opts_default();
    fo.labels = tc->labels;
    fo.val_fraction = a->val_data ? 0 : a->val_split;
    fo.split = !a->val_data && a->val_split > 0 ? MF_SPLIT_TRAIN : MF_SPLIT_ALL;
    j->train = mf_dataset_open_path(a->data, &fo, err, n);
    if (j->train && (a->val_data || a->val_split > 0) && mf_dataset_num_classes(j->train) > 0) {
      fo.split = a->val_data ? MF_SPLIT_ALL : MF_SPLIT_VAL;
      char verr[1024];
      j->val = mf_dataset_open_path(a->val_data ? a->val_data : a->data, &fo, verr, sizeof verr);
      if (!j->val) fprintf(stderr, "memfit train moco: no validation images (%s); the kNN monitor is off\n", verr);
      else if (mf_dataset_num_classes(j->val) != mf_dataset_num_classes(j->train)) {
        fprintf(stderr, "memfit train moco: the validation set has %d classes, the training set %d; the kNN monitor is off\n",
                mf_dataset_num_classes(j->val), mf_dataset_num_classes(j->train));
        mf_dataset_free(j->val);
        j->val = NULL;
      }
    }
  }
  if (!j->train) return -1;
  if (j->val) {
    c->bank = j->train;
    c->test = j->val;
    size_t nb = mf_dataset_size(j->train), nt = mf_dataset_size(j->val);
    c->n_bank = tc->knn_bank && (size_t)tc->knn_bank < nb ? (size_t)tc->knn_bank : nb;
    c->n_test = tc->knn_test && (size_t)tc->knn_test < nt ? (size_t)tc->knn_test : nt;
    c->ko = knn_opts_default();
    c->ko.k = tc->knn_k;
    c->ko.temperature = tc->knn_t;
    c->ko.n_classes = mf_dataset_num_classes(j->train);
    c->ko.threads = a->threads;
    c->po = linprobe_opts_default();
    c->po.n_classes = c->ko.n_classes;
    c->po.epochs = tc->probe_epochs;
    c->po.seed = (uint64_t)a->seed;
  }
  mf_loader_opts *lo = &j->lo;
  *lo = mf_loader_opts_default();
  lo->dataset = j->train;
  lo->batch_size = micro;
  lo->views = 2;
  lo->workers = a->workers;
  lo->seed = (uint64_t)a->seed;
  lo->tf = moco_transform(tc, &cfg);
  size_t batches = mf_dataset_size(j->train) / (size_t)micro;
  int64_t per_epoch = a->epoch_steps ? a->epoch_steps : (int64_t)(batches / (size_t)ch->accum);
  c->total_steps = a->steps ? a->steps : (int64_t)a->epochs * (per_epoch > 0 ? per_epoch : 1);
  mf_train_job_data_setting(j, "moco.seed", "--seed", MF_DATA_DECISIVE, "%d", a->seed);
  mf_train_job_data_setting(j, "moco.size", "--size", MF_DATA_DECISIVE, "%d", cfg.size);
  mf_train_job_data_setting(j, "moco.micro_batch", "the micro-batch (--batch, or chosen for --budget)", MF_DATA_DECISIVE | MF_DATA_PER_RANK, "%d", micro);
  mf_train_job_data_setting(j, "moco.channels", "--channels", MF_DATA_DECISIVE, "%d", cfg.channels);
  if (generated) {
    mf_train_job_data_setting(j, "moco.gen_count", "--gen-count", MF_DATA_DECISIVE, "%d", tc->gen_count);
    mf_train_job_data_setting(j, "moco.gen_size", "--gen-size", MF_DATA_DECISIVE, "%d", tc->gen_size);
  } else mf_train_job_data_setting(j, "moco.val_fraction", "--val-split", MF_DATA_DECISIVE, "%.17g", a->val_data ? 0 : a->val_split);
  mf_train_job_data_setting(j, "moco.workers", "--workers", 0, "%d", a->workers);

  /* ---- hooks and what the trainer prints ---- */
  mf_train_args_command(a, "moco", c->note, sizeof c->note);
  j->hooks.feed = moco_feed;
  j->hooks.read_terms = moco_read_terms;
  j->hooks.describe_terms = moco_describe_terms;
  j->hooks.validate = c->bank ? moco_validate : NULL;
  j->hooks.save_model = moco_save_model;
  j->resume_check = moco_resume_check;
  j->session_ready = moco_session_ready_hook;
  static const char *const terms[1] = {"pos_sim"};
  j->n_terms = 1;
  j->term_names = terms;
  j->sample_unit = "images";
  j->loss_divisor = 1;
  j->values_per_sample = (double)cfg.channels * cfg.size * cfg.size;
  snprintf(j->crop_option, sizeof j->crop_option, "--size %d", cfg.size);
  snprintf(j->batch_note, sizeof j->batch_note, " (%d images, two views each)", micro);
  snprintf(j->more_data_hint, sizeof j->more_data_hint, "%s", generated ? " or raise --gen-count" : "");
  snprintf(j->model_use, sizeof j->model_use, " (the query backbone, for memfit eval moco)");
  char desc[256];
  mf_workload_moco.cfg_describe(&cfg, desc, sizeof desc);
  snprintf(j->timeline_title, sizeof j->timeline_title, "one training step: MoCo v%d, %dx%d, micro-batch %d, %s", cfg.version,
           cfg.size, cfg.size, micro, mf_dtype_name(ch->dtype));
  snprintf(j->settings, sizeof j->settings, "%s; micro-batch %d x %d, %s, SGD lr %g momentum 0.9 wd %g (%s schedule)", desc,
           micro, ch->accum, mf_dtype_name(ch->dtype), a->lr, a->weight_decay, a->schedule);
  snprintf(j->header, sizeof j->header,
           "memfit train moco: preset '%s': %s; micro-batch %d x %d, %s, %s\n"
           "data: %s (%zu training images, two views each, %s augmentation%s)",
           cfg.preset, desc, micro, ch->accum, mf_dtype_name(ch->dtype),
           a->budget ? "settings from the budget search" : "settings as given",
           generated ? "generated procedural images" : a->data, mf_dataset_size(j->train), tc->aug,
           c->bank ? "; kNN monitor on the validation set" : "; unlabelled: no kNN monitor");
  snprintf(j->losses, sizeof j->losses, "losses: %s", cfg.version == 2 ? "InfoNCE over the positive and the queue"
                                                                        : "symmetric in-batch InfoNCE");
  return 0;
}

const mf_workload_train mf_workload_moco_train = {
  .train_defaults = train_defaults,
  .train_cfg_new = train_cfg_new,
  .train_cfg_set = train_cfg_set,
  .train_help = train_help,
  .train_check = train_check,
  .train_batch = train_batch,
  .train_plan_cfg = train_plan_cfg,
  .train_setup = train_setup,
};

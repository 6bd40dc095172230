/* moco_workload.c — MoCo v2/v3 as a planner workload: settings by name (--preset, --version, --arch,
 * --width, --size, --queue, --dim, --hidden, --temperature, --momentum, --bn-splits, --batch) and the
 * training graph of one micro-batch (the queue stages the keys of the accumulated micro-steps). */
#include "models/moco.h"
#include "models/moco_eval.h"
#include "models/workload.h"
#include <stdlib.h>
#include <string.h>

static void *cfg_new(void) {
  moco_cfg *c = calloc(1, sizeof *c);
  if (c) *c = moco_cfg_default();
  return c;
}

static int cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  moco_cfg *c = p;
  if (!strcmp(key, "preset")) return moco_cfg_preset(val, c, err, n);
  if (!strcmp(key, "version")) {
    if (mf_setting_int(key, val, 2, 3, &c->version, err, n)) return -1;
    if (c->version == 3) c->dim = 256, c->hidden = 4096, c->temperature = 1.0, c->momentum = 0.99; /* moco-v3's */
    return 0;
  }
  if (!strcmp(key, "arch")) {
    int d = !strcmp(val, "resnet18") ? 18 : !strcmp(val, "resnet34") ? 34 : !strcmp(val, "resnet50") ? 50 : 0;
    if (!d) { snprintf(err, n, "--arch: '%s' is not one of resnet18, resnet34, resnet50", val); return -1; }
    c->depth = d;
    return 0;
  }
  if (!strcmp(key, "width")) return mf_setting_double(key, val, 1e-3, 16, &c->width, err, n);
  if (!strcmp(key, "size")) {
    if (mf_setting_int(key, val, 8, 4096, &c->size, err, n)) return -1;
    c->small_stem = c->size <= 64; /* the small-image stem for 28-64 px */
    return 0;
  }
  if (!strcmp(key, "queue")) return mf_setting_int(key, val, 1, 1 << 30, &c->queue, err, n);
  if (!strcmp(key, "dim")) return mf_setting_int(key, val, 1, 1 << 16, &c->dim, err, n);
  if (!strcmp(key, "hidden")) return mf_setting_int(key, val, 1, 1 << 20, &c->hidden, err, n);
  if (!strcmp(key, "temperature")) {
    char *end;
    double v = strtod(val, &end);
    if (!*val || *end || !(v > 0) || v > 1e6) { snprintf(err, n, "--temperature: '%s' must be a number above 0", val); return -1; }
    c->temperature = v;
    return 0;
  }
  if (!strcmp(key, "momentum")) {
    char *end;
    double v = strtod(val, &end);
    if (!*val || *end || !(v >= 0 && v <= 1)) { snprintf(err, n, "--momentum: '%s' is not a number in [0, 1]", val); return -1; }
    c->momentum = v;
    return 0;
  }
  if (!strcmp(key, "bn-splits")) return mf_setting_int(key, val, 1, 64, &c->bn_splits, err, n);
  if (!strcmp(key, "shuffle-bn")) return mf_setting_int(key, val, 0, 1, &c->shuffle_bn, err, n);
  if (!strcmp(key, "batch")) {
    if (mf_setting_int(key, val, 2, 1 << 20, &c->batch, err, n)) return -1;
    c->micro_batch = 0;
    return 0;
  }
  snprintf(err, n, "moco: unknown setting --%s (settings: --preset, --version, --arch, --width, --size, --queue, --dim, "
                   "--hidden, --temperature, --momentum, --bn-splits, --shuffle-bn, --batch)", key);
  return -1;
}

static void cfg_help(FILE *f) {
  fprintf(f, "  --preset NAME      one of the presets below (default small)\n"
             "  --version 2|3      MoCo v2 (queue of negatives) or v3 (predictor, in-batch negatives; sets dim 256,\n"
             "                     hidden 4096, temperature 1, momentum 0.99 ramped to 1)\n"
             "  --arch NAME        resnet18, resnet34 or resnet50\n"
             "  --width W          backbone width multiplier (1: torchvision's channels)\n"
             "  --size PIXELS      square crop (<= 64: the small-image stem, 3x3 stride 1, no max-pool)\n"
             "  --queue K          negatives (v2), any K >= the batch: written once per optimizer step\n"
             "  --dim D            embedding size (128)\n"
             "  --hidden H         MLP hidden width (2048)\n"
             "  --temperature T    InfoNCE temperature, > 0 (0.2)\n"
             "  --momentum M       key-encoder momentum in [0, 1]\n"
             "  --bn-splits N      split batch norm: statistics over N slices of each micro-batch (must divide it)\n"
             "  --shuffle-bn 0|1   v2: the key encoder's batch norm over a shuffled slice of the global micro-batch (the\n"
             "                     reference's shuffle BN; default 1 with several ranks, 0 in one process)\n"
             "  --batch B          effective batch; micro-batch x accumulation is kept equal to it\n"
             "presets of moco (--preset):\n");
  char names[128];
  snprintf(names, sizeof names, "%s", moco_preset_names());
  char *save = NULL;
  for (char *nm = strtok_r(names, ", ", &save); nm; nm = strtok_r(NULL, ", ", &save)) {
    moco_cfg c;
    char err[160];
    if (moco_cfg_preset(nm, &c, err, sizeof err) < 0) continue;
    fprintf(f, "  %-14s v%d ResNet-%d x%g, %d px, batch %d (micro %d), queue %d, m %g, T %g\n", nm, c.version, c.depth,
            c.width, c.size, c.batch, c.micro_batch ? c.micro_batch : c.batch, c.queue, c.momentum, c.temperature);
  }
}

static void cfg_describe(const void *p, char *buf, size_t n) {
  const moco_cfg *c = p;
  int k;
  if (c->version == 2)
    snprintf(buf, n, "MoCo v2: ResNet-%d x%g, %dx%d, effective batch %d, queue %d x %d, head %d-%d, T %g, m %g, bn-splits %d",
             c->depth, c->width, c->size, c->size, c->batch, c->queue, c->dim, c->hidden, c->dim, c->temperature, c->momentum,
             c->bn_splits);
  else
    snprintf(buf, n, "MoCo v3: ResNet-%d x%g, %dx%d, effective batch %d, projector/predictor %d-%d, T %g, m %g -> 1, bn-splits %d",
             c->depth, c->width, c->size, c->size, c->batch, c->hidden, c->dim, c->temperature, c->momentum, c->bn_splits);
  k = (int)strlen(buf);
  if (moco_shuffle_on(c) && (size_t)k < n) snprintf(buf + k, n - (size_t)k, ", shuffled BN");
  k = (int)strlen(buf);
  if (c->ranks > 1 && (size_t)k < n)
    snprintf(buf + k, n - (size_t)k, ", %s gathered over %d ranks", c->version == 2 ? "key views and keys" : "keys", c->ranks);
}

/* data parallel: the job's ranks (v3 gathers every rank's keys, v2's shuffled batch norm the key views and keys) */
static void cfg_ranks(void *p, int ranks) { ((moco_cfg *)p)->ranks = ranks > 1 ? ranks : 1; }

static int effective_batch(const void *p) { return ((const moco_cfg *)p)->batch; }

static int default_micro_batch(const void *p) {
  const moco_cfg *c = p;
  int mb = c->micro_batch > 0 && c->micro_batch < c->batch ? c->micro_batch : c->batch;
  while (mb > 1 && c->batch % mb) mb--;
  return mb;
}

static const char *const variants[] = {"plain", "checkpointed blocks"};

/* variant 0: no segments; 1: each residual block of the query backbone a checkpoint segment */
static int build(mf_graph *g, const void *p, int variant, int mb, mf_tensor *loss, void **state, char *err, size_t n) {
  moco_cfg c = *(const moco_cfg *)p;
  c.segments = variant == 1;
  moco_net *m = calloc(1, sizeof *m);
  if (!m) { snprintf(err, n, "out of host memory"); return -1; }
  if (moco_build(g, &c, mb, m, err, n) < 0) { free(m); return -1; }
  *loss = m->loss;
  *state = m;
  return 0;
}

/* any batch in one micro-step, the queue as set (memfit's queue takes any batch up to its length) */
static int build_batch(mf_graph *g, const void *p, int variant, int batch, mf_tensor *loss, void **state, char *err, size_t n) {
  moco_cfg c = *(const moco_cfg *)p;
  c.segments = variant == 1;
  c.batch = batch;
  c.micro_batch = batch;
  moco_net *m = calloc(1, sizeof *m);
  if (!m) { snprintf(err, n, "out of host memory"); return -1; }
  if (moco_build(g, &c, batch, m, err, n) < 0) { free(m); return -1; }
  *loss = m->loss;
  *state = m;
  return 0;
}

static int batch_ok(const void *p, int mb, char *why, size_t n) {
  const moco_cfg *c = p;
  if (mb % c->bn_splits || mb / c->bn_splits < 2) {
    snprintf(why, n, "--bn-splits %d needs a micro-batch that it divides into slices of at least 2", c->bn_splits);
    return -1;
  }
  return 0;
}

/* two views per sample, f32, in each of the loader's prefetch+1 staging buffers (prefetch 2) */
static size_t staging_bytes(const void *p, int mb) {
  const moco_cfg *c = p;
  return (size_t)3 * 2 * (size_t)mb * (size_t)c->channels * (size_t)c->size * (size_t)c->size * sizeof(float);
}

/* a training run also holds the eval-mode feature pass (kNN monitor, model file) beside its step; it runs on the
 * CPU, so on a device backend it is host memory, outside the device budget */
static size_t side_bytes(const void *p, int threads, const char *backend, const char **what) {
  if (what) *what = "the eval-mode feature pass of the kNN monitor and the model file";
  return backend && strcmp(backend, "cpu") ? 0 : moco_extractor_plan_bytes(p, threads);
}

const mf_workload mf_workload_moco = {
  .wider_option = "--width",
  .name = "moco",
  .summary = "MoCo v2/v3 self-supervised contrastive learning on ResNet backbones (docs/design.md 3.2)",
  .cfg_new = cfg_new,
  .cfg_set = cfg_set,
  .cfg_ranks = cfg_ranks,
  .cfg_help = cfg_help,
  .cfg_describe = cfg_describe,
  .effective_batch = effective_batch,
  .default_micro_batch = default_micro_batch,
  .n_variants = 2,
  .variant_names = variants,
  .build = build,
  .state_free = free,
  .batch_ok = batch_ok,
  .staging_bytes = staging_bytes,
  .build_batch = build_batch,
  .side_bytes = side_bytes,
  .batch_note = " in one micro-step, the queue unchanged (any batch up to the queue's length works)",
  .train = &mf_workload_moco_train, /* src/models/moco_train.c */
};

/* onnx_workload.c — a model the user brings as an ONNX file, as a workload: `memfit train onnx --model M.onnx
 * --data DIR|IDX` trains it through the common trainer (labels from class folders or IDX) and writes it back
 * as OUT/model.onnx (same graph, trained initializers and batch-norm statistics); `memfit plan onnx` plans it. */
#include "models/workload.h"
#include "onnx/onnx.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the settings: the model file, which input the images feed and at what size, the loss */
typedef struct onnx_wcfg {
  char model[1024];
  char input[64];         /* "" : the model's only data input */
  int channels;           /* 0: the model's (or 3) */
  int height, width;      /* 0: the model's (or 224) */
  int loss;               /* MF_ONNX_LOSS_CE, _MSE or _OWN (the model's first output is its loss) */
  int bn_eval;
  int batch;              /* effective batch */
  int micro_batch;        /* 0: the batch */
  int idx;                /* IDX data: 28 x 28 gray unless the model or --size, --channels say otherwise */
} onnx_wcfg;

static void *cfg_new(void) {
  onnx_wcfg *c = calloc(1, sizeof *c);
  if (c) c->batch = 32, c->loss = MF_ONNX_LOSS_CE;
  return c;
}

/* "S" or "HxW" */
static int parse_size(const char *val, int *h, int *w, char *err, size_t n) {
  char *end;
  long a = strtol(val, &end, 10), b = a;
  if (end != val && (*end == 'x' || *end == 'X')) {
    const char *p = end + 1;
    b = strtol(p, &end, 10);
    if (end == p) b = 0;
  }
  if (end == val || *end || a < 1 || b < 1 || a > 65536 || b > 65536) {
    snprintf(err, n, "--size: '%s' is not S or HxW with each from 1 to 65536 pixels (e.g. 224 or 32x64)", val);
    return -1;
  }
  *h = (int)a;
  *w = (int)b;
  return 0;
}

static int cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  onnx_wcfg *c = p;
  if (!strcmp(key, "model")) {
    if (!*val || strlen(val) >= sizeof c->model) { snprintf(err, n, "--model: '%s' is empty or too long a path", val); return -1; }
    snprintf(c->model, sizeof c->model, "%s", val);
    return 0;
  }
  if (!strcmp(key, "input")) {
    if (!*val || strlen(val) >= sizeof c->input) { snprintf(err, n, "--input: '%s' is empty or too long a name", val); return -1; }
    snprintf(c->input, sizeof c->input, "%s", val);
    return 0;
  }
  if (!strcmp(key, "size")) return parse_size(val, &c->height, &c->width, err, n);
  if (!strcmp(key, "channels")) return mf_setting_int(key, val, 1, 4096, &c->channels, err, n);
  if (!strcmp(key, "loss")) {
    int l = mf_onnx_loss_parse(val);
    if (l != MF_ONNX_LOSS_CE && l != MF_ONNX_LOSS_MSE && l != MF_ONNX_LOSS_OWN) {
      snprintf(err, n, "--loss: '%s' is not cross-entropy, mse or own (the model's own loss output)", val);
      return -1;
    }
    c->loss = l;
    return 0;
  }
  if (!strcmp(key, "bn-eval")) return mf_setting_int(key, val, 0, 1, &c->bn_eval, err, n);
  if (!strcmp(key, "batch")) return mf_setting_int(key, val, 1, 1 << 20, &c->batch, err, n);
  if (!strcmp(key, "micro-batch")) return mf_setting_int(key, val, 1, 1 << 20, &c->micro_batch, err, n);
  snprintf(err, n, "onnx: unknown setting --%s (settings: --model, --input, --size, --channels, --loss, --bn-eval, --batch, "
                   "--micro-batch)", key);
  return -1;
}

static void cfg_help(FILE *f) {
  fprintf(f, "  --model FILE.onnx  the model (torch.onnx.export, opsets 11-17; docs/onnx.md); required\n"
             "  --input NAME       the model input the images feed (default: its only data input)\n"
             "  --size S|HxW       image size (default: the model's fixed input size, else 224; IDX data: 28)\n"
             "  --channels C       image channels (default: the model's, else 3; IDX data: 1 unless the model fixes 3)\n"
             "  --loss L           cross-entropy (default: logits [N,K] against the data's class labels) or mse (against\n"
             "                     the one-hot labels when the output is [N,K], or the input images when the output has\n"
             "                     their shape: an autoencoder), or own (the model's first output is its loss, one number;\n"
             "                     a second, integer input [N] of the model takes the class labels)\n"
             "  --bn-eval 1        BatchNormalization frozen (running statistics, no update)\n"
             "  --batch B          effective batch (default 32)\n");
}

static int cfg_check(const void *p, char *err, size_t n) {
  const onnx_wcfg *c = p;
  if (!c->model[0]) { snprintf(err, n, "--model FILE.onnx is required (the model to plan or train)"); return -1; }
  return 0;
}

static void cfg_describe(const void *p, char *buf, size_t n) {
  const onnx_wcfg *c = p;
  snprintf(buf, n, "ONNX model %s, %s, effective batch %d", c->model,
           c->loss == MF_ONNX_LOSS_MSE ? "mse" : c->loss == MF_ONNX_LOSS_OWN ? "its own loss" : "cross-entropy", c->batch);
}

static int effective_batch(const void *p) { return ((const onnx_wcfg *)p)->batch; }
static int default_micro_batch(const void *p) {
  const onnx_wcfg *c = p;
  return c->micro_batch > 0 && c->batch % c->micro_batch == 0 ? c->micro_batch : c->batch;
}

/* The data input of m the images feed and its shape at micro-batch mb: [mb,C,H,W] for a rank-4 input, [mb,C*H*W]
 * for a rank-2 one (a network on flattened images); C, H, W from the settings, else the model's fixed sizes. Fills
 * sh (name pointing into m) and the resolved c/h/w; 0, or -1 with err. */
static int onnx_input_shape(const mf_onnx *m, const onnx_wcfg *c, int mb, mf_onnx_shape *sh, int *C, int *H, int *W, char *err,
                            size_t n) {
  int ni = mf_onnx_input_count(m), idx = -1, own = c->loss == MF_ONNX_LOSS_OWN;
  if (c->input[0]) {
    for (int i = 0; i < ni; i++)
      if (!strcmp(mf_onnx_input_name(m, i), c->input)) idx = i;
    if (idx < 0) { snprintf(err, n, "--input %s: %s has no data input of that name", c->input, c->model); return -1; }
  } else if (ni == 1) idx = 0;
  else {
    int cand = 0; /* with its own loss, the one input that is not integer labels */
    for (int i = 0; own && i < ni; i++)
      if (onnx_input_is_integer(m, i) == 0) idx = i, cand++;
    if (cand != 1) {
      snprintf(err, n, "%s has %d data inputs: name the one the images feed with --input NAME (memfit train onnx feeds images%s)",
               c->model, ni, own ? " and integer labels" : "");
      return -1;
    }
  }
  int nd;
  int64_t d[MF_MAX_DIMS];
  if (mf_onnx_input_shape(m, idx, &nd, d) < 0) { snprintf(err, n, "%s: input %d has no shape", c->model, idx); return -1; }
  const char *name = mf_onnx_input_name(m, idx);
  if (d[0] > 0 && d[0] != mb) {
    snprintf(err, n, "%s: input '%s' fixes the batch to %lld; a micro-batch of %d needs a model exported with a dynamic batch "
                     "axis (dynamic_axes)", c->model, name, (long long)d[0], mb);
    return -1;
  }
  sh->name = name;
  if (nd == 4) {
    int side = c->idx ? 28 : 224;
    *C = c->channels ? c->channels : d[1] > 0 ? (int)d[1] : c->idx ? 1 : 3;
    *H = c->height ? c->height : d[2] > 0 ? (int)d[2] : side;
    *W = c->width ? c->width : d[3] > 0 ? (int)d[3] : side;
    sh->ndim = 4;
    sh->dims[0] = mb, sh->dims[1] = *C, sh->dims[2] = *H, sh->dims[3] = *W; /* [N,C,H,W] */
  } else if (nd == 2) {
    *C = c->channels ? c->channels : 1;
    if (c->height) *H = c->height, *W = c->width;
    else if (d[1] > 0 && d[1] % *C == 0) { /* a square image of d[1] / C pixels */
      int s = (int)lround(sqrt((double)(d[1] / *C)));
      *H = *W = s;
    } else *H = *W = 0;
    if (*H <= 0 || (d[1] > 0 && (int64_t)*C * *H * *W != d[1])) {
      snprintf(err, n, "%s: input '%s' takes [N,%lld] values per sample: give --channels and --size so that C x H x W matches",
               c->model, name, (long long)d[1]);
      return -1;
    }
    sh->ndim = 2;
    sh->dims[0] = mb, sh->dims[1] = (int64_t)*C * *H * *W; /* [N,C*H*W]: the images flattened */
  } else {
    snprintf(err, n, "%s: input '%s' has rank %d; memfit train onnx feeds images to a [N,C,H,W] or [N,C*H*W] input", c->model,
             name, nd);
    return -1;
  }
  return 0;
}

/* With --loss own, the model's input that takes the class labels: every data input but the images' must be an integer
 * [N] and there is at most one; lsh gets its shape [mb]. Returns 1 (found), 0 (none: the model's loss needs only the
 * images, e.g. an autoencoder's), or -1 with err naming the input. */
static int onnx_label_input(const mf_onnx *m, const onnx_wcfg *c, int mb, const char *image_input, mf_onnx_shape *lsh, char *err,
                            size_t n) {
  int ni = mf_onnx_input_count(m), found = 0;
  for (int i = 0; i < ni; i++) {
    const char *nm = mf_onnx_input_name(m, i);
    if (!strcmp(nm, image_input)) continue;
    int nd = 0;
    int64_t d[MF_MAX_DIMS];
    if (c->loss != MF_ONNX_LOSS_OWN || onnx_input_is_integer(m, i) != 1 || mf_onnx_input_shape(m, i, &nd, d) < 0 || nd != 1 ||
        found) {
      snprintf(err, n, "%s: input '%s' is not the images' ('%s')%s; memfit train onnx feeds only the images%s", c->model, nm,
               image_input, c->loss == MF_ONNX_LOSS_OWN ? (found ? " and a second integer input" : " nor integer labels [N]") : "",
               c->loss == MF_ONNX_LOSS_OWN ? " and, with --loss own, one integer input [N] of class labels" : " (and, with --loss own, labels)");
      return -1;
    }
    if (d[0] > 0 && d[0] != mb) {
      snprintf(err, n, "%s: input '%s' fixes the batch to %lld; a micro-batch of %d needs a model exported with a dynamic batch "
                       "axis (dynamic_axes)", c->model, nm, (long long)d[0], mb);
      return -1;
    }
    lsh->name = nm;
    lsh->ndim = 1;
    lsh->dims[0] = mb; /* [N] class labels */
    found = 1;
  }
  return found;
}

static int build(mf_graph *g, const void *p, int variant, int mb, mf_tensor *loss, void **state, char *err, size_t n) {
  const onnx_wcfg *c = p;
  (void)variant;
  *state = NULL;
  mf_onnx *m = mf_onnx_open(c->model, err, n);
  if (!m) return -1;
  mf_onnx_shape sh[2];
  int C, H, W, rc = -1, nl = 0;
  if (onnx_input_shape(m, c, mb, &sh[0], &C, &H, &W, err, n) == 0 && (nl = onnx_label_input(m, c, mb, sh[0].name, &sh[1], err, n)) >= 0) {
    mf_onnx_build_opts bo = {.n_inputs = 1 + nl, .inputs = sh, .loss = (mf_onnx_loss)c->loss, .bn_eval = c->bn_eval};
    mf_onnx_built bt;
    if (mf_onnx_build(m, g, &bo, &bt, err, n) == 0) {
      *loss = bt.loss;
      mf_onnx_built_free(&bt);
      rc = 0;
    }
  }
  mf_onnx_close(m);
  return rc;
}

static int batch_ok(const void *p, int mb, char *why, size_t n) {
  const onnx_wcfg *c = p;
  mf_onnx *m = mf_onnx_open(c->model, why, n);
  if (!m) return -1;
  mf_onnx_shape sh, lsh;
  int C, H, W, rc = onnx_input_shape(m, c, mb, &sh, &C, &H, &W, why, n);
  if (rc == 0 && onnx_label_input(m, c, mb, sh.name, &lsh, why, n) < 0) rc = -1;
  mf_onnx_close(m);
  return rc;
}

/* the loader's staging: prefetch + 1 = 3 batches of f32 images and their labels in flight */
static size_t staging_bytes(const void *p, int mb) {
  const onnx_wcfg *c = p;
  char err[512];
  mf_onnx *m = mf_onnx_open(c->model, err, sizeof err);
  if (!m) return 0;
  mf_onnx_shape sh;
  int C = 0, H = 0, W = 0, rc = onnx_input_shape(m, c, mb, &sh, &C, &H, &W, err, sizeof err);
  mf_onnx_close(m);
  return rc < 0 ? 0 : (size_t)3 * (size_t)mb * ((size_t)C * (size_t)H * (size_t)W * sizeof(float) + sizeof(int32_t));
}

const mf_workload mf_workload_onnx = {
  .name = "onnx",
  .summary = "a model the user brings as an ONNX file (torch.onnx.export), trained on labelled images (docs/onnx.md)",
  .cfg_new = cfg_new,
  .cfg_set = cfg_set,
  .cfg_help = cfg_help,
  .cfg_check = cfg_check,
  .cfg_describe = cfg_describe,
  .effective_batch = effective_batch,
  .default_micro_batch = default_micro_batch,
  .n_variants = 1,
  .variant_names = (const char *const[]){"as exported"},
  .build = build,
  .state_free = free,
  .batch_ok = batch_ok,
  .staging_bytes = staging_bytes,
  .train = &mf_workload_onnx_train,
};

/* ------------------------------------------------------------------ training */

typedef struct onnx_tcfg {
  onnx_wcfg w;
  int aug;                /* 1: random resized crop and horizontal flips; 0: the whole image resized */
  int normalize;          /* 1: ImageNet's mean and std (torchvision's pretrained models expect them) */
  int val_count;          /* validation samples (0: all) */
} onnx_tcfg;

static const char no_data[] = "none: required";
static void train_defaults(mf_train_args *a) {
  a->data = no_data;
  a->out = "onnx-run";
  a->schedule = "cosine";
  a->batch = 32;
  a->epochs = 10;
  a->lr = 1e-3;
  a->beta1 = 0.9;
  a->beta2 = 0.999;
  a->weight_decay = 0;
  a->seed = 1;
}

static void *train_cfg_new(void) {
  onnx_tcfg *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->w.loss = MF_ONNX_LOSS_CE;
  c->w.batch = 32;
  c->val_count = 2000;
  return c;
}

static int train_cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  onnx_tcfg *c = p;
  if (!strcmp(key, "model") || !strcmp(key, "input") || !strcmp(key, "size") || !strcmp(key, "channels") ||
      !strcmp(key, "loss") || !strcmp(key, "bn-eval"))
    return cfg_set(&c->w, key, val, err, n);
  if (!strcmp(key, "aug")) {
    if (strcmp(val, "none") && strcmp(val, "flip-crop")) { snprintf(err, n, "--aug: '%s' is not none or flip-crop", val); return -1; }
    c->aug = !strcmp(val, "flip-crop");
    return 0;
  }
  if (!strcmp(key, "normalize")) {
    if (strcmp(val, "none") && strcmp(val, "imagenet")) { snprintf(err, n, "--normalize: '%s' is not none or imagenet", val); return -1; }
    c->normalize = !strcmp(val, "imagenet");
    return 0;
  }
  if (!strcmp(key, "val-count")) return mf_setting_int(key, val, 0, 1 << 30, &c->val_count, err, n);
  return -2;
}

static void train_help(FILE *f) {
  cfg_help(f);
  fprintf(f, "  --aug none|flip-crop   augmentation (default none: each image resized to --size; flip-crop: random\n"
             "                         resized crop (area 0.08-1) and horizontal flips)\n"
             "  --normalize none|imagenet  pixel values in [0,1] (default) or (x - mean) / std with ImageNet's mean and std\n"
             "  --val-count N          validation samples at each validation (default 2000; 0: all)\n"
             "  (--data: a folder of class sub-folders, or an IDX images file with its labels beside it; required. Adam,\n"
             "  --lr 1e-3, cosine schedule, --epochs 10, --out onnx-run; the trained model is OUT/model.onnx, the same\n"
             "  graph with the trained initializers and batch-norm statistics)\n");
}

static int is_idx(const char *path) { return path && strstr(path, "idx3-ubyte") != NULL; }

static int train_check(void *p, mf_train_args *a, char *err, size_t n) {
  onnx_tcfg *c = p;
  if (!c->w.model[0]) { snprintf(err, n, "--model FILE.onnx is required (the model to train)"); return -1; }
  if (!a->data || a->data == no_data || !strcmp(a->data, "generated")) {
    snprintf(err, n, "--data DIR|IDX is required: a folder of class sub-folders of images, or an IDX images file with its "
                     "labels (the onnx workload has no generated data)");
    return -1;
  }
  c->w.idx = is_idx(a->data); /* MNIST-like: 28 x 28 gray unless said otherwise */
  c->w.batch = a->batch;
  c->w.micro_batch = a->micro_batch;
  /* the model opens, its input takes the images: said now, before any data is read */
  mf_onnx *m = mf_onnx_open(c->w.model, err, n);
  if (!m) return -1;
  mf_onnx_shape sh;
  int C, H, W, mb = a->micro_batch ? a->micro_batch : a->batch;
  int nd = 0;
  int64_t d[MF_MAX_DIMS];
  if (mf_onnx_input_count(m) >= 1 && mf_onnx_input_shape(m, 0, &nd, d) == 0 && d[0] > 0 && !a->micro_batch && !a->budget)
    mb = (int)d[0]; /* a fixed batch axis: the micro-batch it fixes */
  mf_onnx_shape lsh;
  int rc = onnx_input_shape(m, &c->w, mb, &sh, &C, &H, &W, err, n);
  if (rc == 0 && onnx_label_input(m, &c->w, mb, sh.name, &lsh, err, n) < 0) rc = -1;
  mf_onnx_close(m);
  if (rc < 0) return -1;
  if (C != 1 && C != 3) { snprintf(err, n, "%s: the images have 1 or 3 channels; the model's input takes %d", c->w.model, C); return -1; }
  c->w.channels = C, c->w.height = H, c->w.width = W;
  if (mb != a->batch && a->batch % mb == 0 && !a->micro_batch && !a->budget) a->micro_batch = mb;
  return 0;
}

static int train_plan_cfg(const void *p, const mf_train_args *a, void *wc, char *err, size_t n) {
  const onnx_tcfg *c = p;
  onnx_wcfg *w = wc;
  *w = c->w;
  w->batch = a->batch;
  w->micro_batch = 0;
  (void)err, (void)n;
  return 0;
}

enum { TARGET_LABELS = 0, TARGET_ONEHOT, TARGET_IMAGE, TARGET_NONE /* --loss own without a labels input */ };
#define LAB_RING 3 /* batches fed but not yet stepped: at most two staged, plus the one being read */

typedef struct onnx_train_ctx {
  mf_onnx *m;
  mf_graph *g;
  mf_onnx_built bt;
  int have_bt;
  onnx_wcfg w;
  int micro, target, n_val;
  mf_tensor img_t;        /* the model's input the images feed */
  const char *img_name;   /* its name (in bt) */
  mf_tensor lab_t;        /* the tensor the targets feed: the appended loss's labels or target, the model's own labels
                             input (--loss own), or -1 */
  int64_t K;              /* classes of the output [N,K] (0: not a classifier) */
  size_t img;             /* values of one sample */
  float *tgt[LAB_RING];   /* per fed batch: labels as f32 [mb] or one-hot [mb,K] */
  int32_t *lab[LAB_RING]; /* per fed batch: its labels [mb] */
  int fed, read;
  float *out;             /* [mb,K] logits read after a step */
  mf_dataset *val;
  mf_transform_opts vtf;
} onnx_train_ctx;

static void onnx_ctx_free(void *p) {
  onnx_train_ctx *c = p;
  if (!c) return;
  if (c->have_bt) mf_onnx_built_free(&c->bt);
  if (c->g) mf_graph_free(c->g);
  mf_onnx_close(c->m);
  for (int i = 0; i < LAB_RING; i++) free(c->tgt[i]), free(c->lab[i]);
  free(c->out);
  free(c);
}

/* the target of one batch's labels into slot buffers; 0, or -1 when a sample has no label */
static int onnx_targets(onnx_train_ctx *c, const int32_t *labels, int slot, char *err, size_t n) {
  for (int b = 0; b < c->micro; b++) {
    int32_t y = labels ? labels[b] : -1;
    if (y < 0 || (c->K && y >= c->K)) {
      snprintf(err, n, "sample %d of the batch has label %d; the model's output has %lld classes", b, (int)y, (long long)c->K);
      return -1;
    }
    c->lab[slot][b] = y;
    if (c->target == TARGET_LABELS) c->tgt[slot][b] = (float)y;
    else if (c->target == TARGET_ONEHOT)
      for (int64_t k = 0; k < c->K; k++) c->tgt[slot][(size_t)b * (size_t)c->K + (size_t)k] = k == y ? 1.0f : 0.0f;
  }
  return 0;
}

static int onnx_feed(void *ctx, mf_session *s, const mf_batch *b, char *err, size_t n) {
  onnx_train_ctx *c = ctx;
  int slot = c->fed % LAB_RING;
  mf_tensor ins[2] = {c->img_t, c->lab_t};
  const float *data[2] = {b->images, b->images};
  if (c->target != TARGET_IMAGE && c->target != TARGET_NONE) {
    if (onnx_targets(c, b->labels, slot, err, n) < 0) return -1;
    data[1] = c->tgt[slot];
  }
  if (mf_session_stage_inputs(s, c->lab_t >= 0 ? 2 : 1, ins, data) < 0) { snprintf(err, n, "staging the batch failed (see above)"); return -1; }
  c->fed++;
  return 0;
}

/* accuracy of a classifier's logits [mb,K] against labels */
static double onnx_accuracy(const float *logits, const int32_t *lab, int mb, int64_t K) {
  int hit = 0;
  for (int b = 0; b < mb; b++) {
    const float *r = logits + (size_t)b * (size_t)K;
    int64_t best = 0;
    for (int64_t k = 1; k < K; k++)
      if (r[k] > r[best]) best = k;
    hit += best == lab[b];
  }
  return (double)hit / mb;
}

static void onnx_read_terms(void *ctx, mf_session *s, double *v) {
  onnx_train_ctx *c = ctx;
  int slot = c->read++ % LAB_RING;
  v[0] = NAN;
  if (!c->K || mf_session_read(s, c->bt.outputs[0], c->out, (size_t)c->micro * (size_t)c->K)) return;
  v[0] = onnx_accuracy(c->out, c->lab[slot], c->micro, c->K);
}

static void onnx_describe_terms(void *ctx, const double *mean, char *buf, size_t n) {
  onnx_train_ctx *c = ctx;
  if (c->K) snprintf(buf, n, "acc %.2f%%", 100 * mean[0]);
  else if (n) buf[0] = 0;
}

/* the validation set's loss (and accuracy for a classifier) with the evaluation program, in micro-batches */
static int onnx_validate(void *ctx, mf_session *s, const char *grid, int64_t *bad, const char **names, double *vals, char *line,
                         size_t n, int *grid_failed) {
  onnx_train_ctx *c = ctx;
  (void)grid;
  *grid_failed = 0;
  size_t nv = mf_dataset_size(c->val), want = c->n_val && (size_t)c->n_val < nv ? (size_t)c->n_val : nv;
  float *x = malloc((size_t)c->micro * c->img * sizeof *x);
  int32_t *labs = malloc((size_t)c->micro * sizeof *labs);
  if (!x || !labs) { free(x); free(labs); return 0; }
  char err[512];
  double loss = 0, acc = 0;
  int batches = 0;
  size_t idx = 0;
  while (idx < nv && (size_t)batches * (size_t)c->micro + (size_t)c->micro <= want) {
    int filled = 0;
    while (filled < c->micro && idx < nv) {
      size_t i = idx++;
      int rc = mf_dataset_get(c->val, i, &c->vtf, 0, x + (size_t)filled * c->img, err, sizeof err);
      if (rc) { bad[rc == -2]++; continue; }
      labs[filled++] = (int32_t)mf_dataset_label(c->val, i);
    }
    if (filled < c->micro) break;
    float *t = malloc((size_t)c->micro * (c->K ? (size_t)c->K : 1) * sizeof *t);
    if (!t) break;
    int ok = 1;
    if (c->target == TARGET_LABELS || c->target == TARGET_ONEHOT) {
      for (int b = 0; b < c->micro; b++) {
        if (labs[b] < 0 || (c->K && labs[b] >= c->K)) ok = 0;
        else if (c->target == TARGET_LABELS) t[b] = (float)labs[b];
        else for (int64_t k = 0; k < c->K; k++) t[(size_t)b * (size_t)c->K + (size_t)k] = k == labs[b] ? 1.0f : 0.0f;
      }
    }
    if (ok && mf_session_write_input(s, c->img_t, x, (size_t)c->micro * c->img) == 0 &&
        (c->lab_t < 0 || mf_session_write_input(s, c->lab_t, c->target == TARGET_IMAGE ? x : t,
                                                (size_t)mf_tensor_numel(c->g, c->lab_t)) == 0)) {
      loss += mf_session_forward(s);
      if (c->K && !mf_session_read(s, c->bt.outputs[0], c->out, (size_t)c->micro * (size_t)c->K))
        acc += onnx_accuracy(c->out, labs, c->micro, c->K);
      batches++;
    }
    free(t);
    if (!ok) break;
  }
  free(x);
  free(labs);
  if (!batches) return 0;
  static const char *const nm[2] = {"val_loss", "val_top1"};
  names[0] = nm[0];
  vals[0] = loss / batches;
  size_t k = (size_t)snprintf(line, n, "validation loss %.5g", vals[0]);
  if (!c->K) return 1;
  names[1] = nm[1];
  vals[1] = acc / batches;
  if (k < n) snprintf(line + k, n - k, ", top-1 %.2f%% (%d samples)", 100 * vals[1], batches * c->micro);
  return 2;
}

/* OUT/model.onnx (the job's model_file): the same graph with the trained initializers and batch-norm statistics */
static int onnx_save_model(void *ctx, mf_session *s, const char *path, char *err, size_t n) {
  onnx_train_ctx *c = ctx;
  return mf_onnx_save(c->m, &c->bt, s, path, err, n);
}

static int onnx_session_ready(void *ctx, mf_session *s, char *err, size_t n) {
  onnx_train_ctx *c = ctx;
  return mf_onnx_load_weights(c->m, &c->bt, s, err, n);
}

static int train_setup(const void *p, const mf_train_args *a, const mf_train_choice *ch, mf_train_job *j, char *err, size_t n) {
  const onnx_tcfg *tc = p;
  onnx_train_ctx *c = calloc(1, sizeof *c);
  if (!c) { snprintf(err, n, "out of host memory"); return -1; }
  j->hooks.ctx = c;
  j->ctx_free = onnx_ctx_free;
  c->w = tc->w;
  c->micro = ch->micro_batch;
  c->n_val = tc->val_count;
  if (!(c->m = mf_onnx_open(c->w.model, err, n))) return -1;
  mf_onnx_shape sh[2];
  int C, H, W, nl;
  if (onnx_input_shape(c->m, &c->w, c->micro, &sh[0], &C, &H, &W, err, n) < 0) return -1;
  if ((nl = onnx_label_input(c->m, &c->w, c->micro, sh[0].name, &sh[1], err, n)) < 0) return -1;
  if (!(c->g = mf_graph_init(ch->dtype))) { snprintf(err, n, "out of host memory"); return -1; }
  mf_graph_set_seed(c->g, (uint64_t)a->seed);
  mf_onnx_build_opts bo = {.n_inputs = 1 + nl, .inputs = sh, .loss = (mf_onnx_loss)c->w.loss, .bn_eval = c->w.bn_eval};
  if (mf_onnx_build(c->m, c->g, &bo, &c->bt, err, n) < 0) return -1;
  c->have_bt = 1;
  c->lab_t = c->bt.labels;
  for (int i = 0; nl && i < c->bt.n_inputs; i++)
    if (!strcmp(c->bt.input_names[i], sh[1].name)) c->lab_t = c->bt.inputs[i]; /* the model's own labels input */
  c->img_t = c->bt.inputs[0], c->img_name = c->bt.input_names[0];
  for (int i = 0; i < c->bt.n_inputs; i++)
    if (!strcmp(c->bt.input_names[i], sh[0].name)) c->img_t = c->bt.inputs[i], c->img_name = c->bt.input_names[i];
  c->img = (size_t)C * (size_t)H * (size_t)W;
  mf_tensor out = c->bt.outputs[0];
  int ond = mf_tensor_ndim(c->g, out);
  if (ond == 2 && c->w.loss != MF_ONNX_LOSS_OWN) c->K = mf_tensor_dim(c->g, out, 1);
  if (c->w.loss == MF_ONNX_LOSS_OWN) c->target = c->lab_t >= 0 ? TARGET_LABELS : TARGET_NONE;
  else if (c->w.loss == MF_ONNX_LOSS_CE) c->target = TARGET_LABELS;
  else if ((size_t)mf_tensor_numel(c->g, out) == (size_t)c->micro * c->img) c->target = TARGET_IMAGE, c->K = 0;
  else if (ond == 2) c->target = TARGET_ONEHOT;
  else {
    snprintf(err, n, "--loss mse: the model's first output (%lld values per sample) is neither [N,K] (one-hot labels) nor the "
                     "input images' shape (an autoencoder)", (long long)(mf_tensor_numel(c->g, out) / c->micro));
    return -1;
  }
  for (int i = 0; i < LAB_RING; i++) {
    c->tgt[i] = malloc((size_t)c->micro * (c->K ? (size_t)c->K : 1) * sizeof(float));
    c->lab[i] = malloc((size_t)c->micro * sizeof(int32_t));
    if (!c->tgt[i] || !c->lab[i]) { snprintf(err, n, "out of host memory"); return -1; }
  }
  if (c->K && !(c->out = malloc((size_t)c->micro * (size_t)c->K * sizeof *c->out))) { snprintf(err, n, "out of host memory"); return -1; }
  j->g = c->g;
  j->loss = c->bt.loss;
  if (c->K) j->keep[j->n_keep++] = out; /* the logits, for the accuracy after each step */
  j->optim = MF_ADAM;

  /* ---- data: labelled images (class sub-folders or IDX), a validation share ---- */
  mf_folder_opts fo = mf_folder_opts_default();
  fo.labels = !is_idx(a->data) && c->target != TARGET_IMAGE && c->target != TARGET_NONE;
  fo.val_fraction = a->val_data ? 0 : a->val_split;
  fo.split = !a->val_data && a->val_split > 0 ? MF_SPLIT_TRAIN : MF_SPLIT_ALL;
  if (!(j->train = mf_dataset_open_path(a->data, &fo, err, n))) return -1;
  int classes = mf_dataset_num_classes(j->train);
  if (c->target == TARGET_LABELS || c->target == TARGET_ONEHOT) {
    if (classes <= 0) {
      snprintf(err, n, "--data %s has no labels: give a folder of class sub-folders, or an IDX file with its labels beside it",
               a->data);
      return -1;
    }
    if (c->K && classes > c->K) {
      snprintf(err, n, "--data %s has %d classes; the model's output [N,%lld] has %lld", a->data, classes, (long long)c->K,
               (long long)c->K);
      return -1;
    }
  }
  if (a->val_data || a->val_split > 0) {
    fo.split = a->val_data ? MF_SPLIT_ALL : MF_SPLIT_VAL;
    char verr[1024];
    j->val = mf_dataset_open_path(a->val_data ? a->val_data : a->data, &fo, verr, sizeof verr);
    if (!j->val) fprintf(stderr, "memfit train onnx: no validation samples (%s); validation is off\n", verr);
  }
  c->val = j->val;
  mf_transform_opts tf = mf_transform_opts_default();
  tf.out_w = W;
  tf.out_h = H;
  tf.channels = C;
  tf.crop = MF_CROP_NONE;
  if (tc->normalize) {
    tf.normalize = 1;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int k = 0; k < 3; k++) tf.mean[k] = C == 1 ? 0.449f : mean[k], tf.std[k] = C == 1 ? 0.226f : std[k];
  }
  c->vtf = tf;
  if (tc->aug) {
    tf.crop = MF_CROP_RANDOM_RESIZED;
    tf.scale[0] = 0.08f, tf.scale[1] = 1;
    tf.hflip = 0.5f;
  }
  mf_loader_opts *lo = &j->lo;
  *lo = mf_loader_opts_default();
  lo->dataset = j->train;
  lo->batch_size = c->micro;
  lo->workers = a->workers;
  lo->seed = (uint64_t)a->seed;
  lo->tf = tf;
  mf_train_job_data_setting(j, "onnx.seed", "--seed", MF_DATA_DECISIVE, "%d", a->seed);
  mf_train_job_data_setting(j, "onnx.height", "--size", MF_DATA_DECISIVE, "%d", H);
  mf_train_job_data_setting(j, "onnx.width", "--size", MF_DATA_DECISIVE, "%d", W);
  mf_train_job_data_setting(j, "onnx.channels", "--channels", MF_DATA_DECISIVE, "%d", C);
  mf_train_job_data_setting(j, "onnx.micro_batch", "the micro-batch (--batch, or chosen for --budget)", MF_DATA_DECISIVE | MF_DATA_PER_RANK, "%d", c->micro);
  mf_train_job_data_setting(j, "onnx.aug", "--aug", MF_DATA_DECISIVE, "%d", tc->aug);
  mf_train_job_data_setting(j, "onnx.val_fraction", "--val-split", MF_DATA_DECISIVE, "%.17g", a->val_data ? 0 : a->val_split);
  mf_train_job_data_setting(j, "onnx.workers", "--workers", 0, "%d", a->workers);

  /* ---- hooks and what the trainer prints ---- */
  j->hooks.feed = onnx_feed;
  j->hooks.read_terms = onnx_read_terms;
  j->hooks.describe_terms = onnx_describe_terms;
  j->hooks.validate = c->val ? onnx_validate : NULL;
  j->hooks.save_model = onnx_save_model;
  j->session_ready = onnx_session_ready;
  static const char *const terms[1] = {"train_top1"};
  j->n_terms = c->K ? 1 : 0;
  j->term_names = terms;
  j->sample_unit = "images";
  j->loss_divisor = 1;
  j->values_per_sample = (double)c->img;
  snprintf(j->crop_option, sizeof j->crop_option, "--size %dx%d", H, W);
  snprintf(j->batch_note, sizeof j->batch_note, " (%d images)", c->micro);
  snprintf(j->model_file, sizeof j->model_file, "model.onnx");
  snprintf(j->model_use, sizeof j->model_use, " (the same graph with the trained weights)");
  const char *ln = c->w.loss == MF_ONNX_LOSS_OWN ? (c->lab_t >= 0 ? "the model's own loss output, its labels input fed the class labels"
                                                                    : "the model's own loss output (from the images alone)")
                   : c->w.loss == MF_ONNX_LOSS_CE ? "cross-entropy against the class labels"
                   : c->target == TARGET_IMAGE  ? "mean squared error against the input images"
                                                : "mean squared error against the one-hot labels";
  const char *base = strrchr(c->w.model, '/') ? strrchr(c->w.model, '/') + 1 : c->w.model;
  snprintf(j->timeline_title, sizeof j->timeline_title, "one training step: %.120s, micro-batch %d, %s", base, c->micro,
           mf_dtype_name(ch->dtype));
  snprintf(j->settings, sizeof j->settings, "%.120s: %lld parameters, input %.60s [%d,%d,%d,%d]; micro-batch %d x %d, %s, Adam lr %g (%.16s schedule)",
           base, (long long)c->bt.n_param_elems, c->img_name, c->micro, C, H, W, c->micro, ch->accum,
           mf_dtype_name(ch->dtype), a->lr, a->schedule);
  snprintf(j->header, sizeof j->header,
           "memfit train onnx: %s (ONNX opset %lld): %lld parameters in %lld tensors, input '%s' [%d,%d,%d,%d]; micro-batch %d x %d, "
           "%s, %s\ndata: %s (%zu training images, %d classes, %s%s)",
           c->w.model, (long long)mf_onnx_opset(c->m), (long long)c->bt.n_param_elems, (long long)c->bt.n_params,
           c->img_name, c->micro, C, H, W, c->micro, ch->accum, mf_dtype_name(ch->dtype),
           a->budget ? "settings from the budget search" : "settings as given", a->data, mf_dataset_size(j->train), classes,
           tc->aug ? "random resized crops and flips" : "resized", tc->normalize ? ", ImageNet normalisation" : "");
  snprintf(j->losses, sizeof j->losses, "losses: %s", ln);
  return 0;
}

const mf_workload_train mf_workload_onnx_train = {
  .train_defaults = train_defaults,
  .train_cfg_new = train_cfg_new,
  .train_cfg_set = train_cfg_set,
  .train_help = train_help,
  .train_check = train_check,
  .train_plan_cfg = train_plan_cfg,
  .train_setup = train_setup,
};

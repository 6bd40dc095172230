/* moco_eval.c — the eval-mode query backbone of MoCo as a feature extractor: its forward-only session, the
 * model file (save / open), features of a data set, and the kNN monitor (moco_eval.h). */
#include "models/moco_eval.h"
#include "graph/graph.h"
#include "graph/oplist.h"
#include "plan/plan.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moco_extractor {
  moco_cfg cfg;
  mf_graph *g;
  moco_features f;
  mf_session *s;
  int dim;
  float *in;                   /* [moco_extract_batch, C, H, W] */
};

int moco_extract_batch(const moco_cfg *c) {
  int64_t px = (int64_t)c->size * c->size, b = (int64_t)MOCO_EXTRACT_BATCH * 32 * 32 / (px > 0 ? px : 1);
  return b < 1 ? 1 : b > MOCO_EXTRACT_BATCH ? MOCO_EXTRACT_BATCH : (int)b;
}

moco_extractor *moco_extractor_init(const moco_cfg *c, int threads, char *err, size_t n) {
  moco_extractor *x = calloc(1, sizeof *x);
  if (!x) { snprintf(err, n, "out of host memory"); return NULL; }
  x->cfg = *c;
  x->g = mf_graph_init(MF_F32);
  if (!x->g) { snprintf(err, n, "out of host memory"); goto fail; }
  if (moco_build_features(x->g, c, moco_extract_batch(c), &x->f, err, n) < 0) goto fail;
  x->dim = (int)mf_tensor_dim(x->g, x->f.feat, 1);
  mf_train_opts o = mf_train_opts_default();
  o.plan.training = 0;
  o.threads = o.plan.threads = threads;
  o.plan.keep = &x->f.feat;
  o.plan.n_keep = 1;
  if (!(x->s = mf_session_init(x->g, x->f.feat, &o, err, n))) goto fail;
  x->in = malloc((size_t)mf_tensor_numel(x->g, x->f.x) * sizeof *x->in);
  if (!x->in) { snprintf(err, n, "out of host memory"); goto fail; }
  return x;
fail:
  moco_extractor_free(x);
  return NULL;
}

void moco_extractor_free(moco_extractor *x) {
  if (!x) return;
  if (x->s) mf_session_free(x->s);
  if (x->g) mf_graph_free(x->g);
  free(x->in);
  free(x);
}

size_t moco_extractor_bytes(const moco_extractor *x) { return mf_plan_total_bytes(mf_session_plan(x->s)); }

size_t moco_extractor_plan_bytes(const moco_cfg *c, int threads) {
  char err[256];
  moco_features f;
  size_t bytes = 0;
  mf_graph *g = mf_graph_init(MF_F32);
  if (g && moco_build_features(g, c, moco_extract_batch(c), &f, err, sizeof err) == 0) {
    mf_plan_opts po = mf_plan_opts_default(); /* as moco_extractor_init's session plans it */
    po.training = 0;
    po.threads = threads;
    po.keep = &f.feat;
    po.n_keep = 1;
    mf_plan *p = mf_plan_init(g, f.feat, &po, err, sizeof err);
    if (p) bytes = mf_plan_total_bytes(p);
    mf_plan_free(p);
  }
  mf_graph_free(g);
  return bytes;
}
int moco_extractor_dim(const moco_extractor *x) { return x->dim; }
const moco_cfg *moco_extractor_cfg(const moco_extractor *x) { return &x->cfg; }

int moco_extractor_copy(moco_extractor *x, mf_session *train, const moco_net *net, char *err, size_t n) {
  return moco_features_copy(train, net, x->s, &x->f, err, n);
}

/* ------------------------------------------------------------------ the model file */

int moco_extractor_save(moco_extractor *x, const char *path, int64_t steps, const char *note, char *err, size_t n) {
  const mf_graph *g = x->g;
  mf_st_writer *w = mf_st_writer_init();
  float **bufs = calloc((size_t)g->n, sizeof *bufs);
  int rc = -1;
  if (!w || !bufs) { snprintf(err, n, "%s: out of host memory", path); goto out; }
  const moco_cfg *c = &x->cfg;
  char v[64];
  mf_st_writer_meta(w, "format", MOCO_MODEL_FORMAT);
  mf_st_writer_meta(w, "moco.preset", c->preset);
#define META_INT(key, val) (snprintf(v, sizeof v, "%lld", (long long)(val)), mf_st_writer_meta(w, key, v))
  META_INT("moco.version", c->version);
  META_INT("moco.depth", c->depth);
  META_INT("moco.small_stem", c->small_stem);
  META_INT("moco.size", c->size);
  META_INT("moco.channels", c->channels);
  META_INT("moco.dim", c->dim);
  META_INT("moco.hidden", c->hidden);
  META_INT("moco.steps", steps);
#undef META_INT
  snprintf(v, sizeof v, "%.17g", c->width);
  mf_st_writer_meta(w, "moco.width", v);
  if (note) mf_st_writer_meta(w, "moco.trained", note);
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_PARAM && nd->op != MF_OP_BUFFER) continue;
    size_t cnt = (size_t)mf_node_numel(nd);
    if (!(bufs[id] = malloc(cnt * sizeof(float))) || mf_session_read(x->s, id, bufs[id], cnt) != 0) {
      snprintf(err, n, "%s: reading '%s' failed", path, nd->name);
      goto out;
    }
    mf_st_writer_add(w, nd->name, MF_F32, nd->ndim, nd->ne, bufs[id]);
  }
  rc = mf_st_writer_save(w, path, err, n);
out:
  for (int id = 0; bufs && id < g->n; id++) free(bufs[id]);
  free(bufs);
  mf_st_writer_free(w);
  return rc;
}

/* a whole-number metadata value of a model file */
static int meta_int(const mf_st_file *f, const char *path, const char *key, long lo, long hi, int *out, char *err, size_t n) {
  const char *s = mf_st_meta(f, key);
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || v < lo || v > hi) {
    snprintf(err, n, "%s: metadata '%s' is %s%s%s, not a whole number from %ld to %ld", path, key, s ? "'" : "missing",
             s ? s : "", s ? "'" : "", lo, hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

moco_extractor *moco_extractor_open(const char *path, int threads, char *err, size_t n) {
  mf_st_file *f = mf_st_open(path, err, n);
  if (!f) return NULL;
  moco_extractor *x = NULL;
  const char *fmt = mf_st_meta(f, "format");
  if (!fmt || strcmp(fmt, MOCO_MODEL_FORMAT)) {
    snprintf(err, n, "%s: not a MoCo model file (format '%s'; memfit train moco writes OUT/model.safetensors, format '%s')", path,
             fmt ? fmt : "none", MOCO_MODEL_FORMAT);
    goto fail;
  }
  moco_cfg c = moco_cfg_default();
  const char *preset = mf_st_meta(f, "moco.preset");
  if (preset) snprintf(c.preset, sizeof c.preset, "%s", preset);
  if (meta_int(f, path, "moco.version", 2, 3, &c.version, err, n) || meta_int(f, path, "moco.depth", 18, 50, &c.depth, err, n) ||
      meta_int(f, path, "moco.small_stem", 0, 1, &c.small_stem, err, n) || meta_int(f, path, "moco.size", 8, 4096, &c.size, err, n) ||
      meta_int(f, path, "moco.channels", 1, 3, &c.channels, err, n) || meta_int(f, path, "moco.dim", 1, 1 << 16, &c.dim, err, n) ||
      meta_int(f, path, "moco.hidden", 1, 1 << 20, &c.hidden, err, n))
    goto fail;
  const char *ws = mf_st_meta(f, "moco.width");
  char *end;
  c.width = ws ? strtod(ws, &end) : 0;
  if (!ws || *end || !(c.width > 0) || c.width > 16) {
    snprintf(err, n, "%s: metadata 'moco.width' is %s, not a width multiplier", path, ws ? ws : "missing");
    goto fail;
  }
  c.bn_splits = 1;
  char xerr[512];
  if (!(x = moco_extractor_init(&c, threads, xerr, sizeof xerr))) {
    snprintf(err, n, "%s: %s", path, xerr);
    goto fail;
  }
  for (int id = 0; id < x->g->n; id++) {
    const mf_node *nd = &x->g->nodes[id];
    if (nd->op != MF_OP_PARAM && nd->op != MF_OP_BUFFER) continue;
    char terr[512];
    const float *v = mf_st_get(f, nd->name, MF_F32, nd->ndim, nd->ne, terr, sizeof terr);
    if (!v) { snprintf(err, n, "%s: %s", path, terr); goto fail; }
    int64_t bad = mf_st_nonfinite(mf_st_find(f, nd->name));
    if (bad >= 0) { snprintf(err, n, "%s: tensor '%s' holds a non-finite value at element %lld", path, nd->name, (long long)bad); goto fail; }
    size_t cnt = (size_t)mf_node_numel(nd);
    int rc = nd->op == MF_OP_PARAM ? mf_session_write_param(x->s, id, v, cnt) : mf_session_write_state(x->s, id, v, cnt);
    if (rc < 0) { snprintf(err, n, "%s: loading '%s' failed", path, nd->name); goto fail; }
  }
  mf_st_close(f);
  return x;
fail:
  moco_extractor_free(x);
  mf_st_close(f);
  return NULL;
}

/* ------------------------------------------------------------------ features and kNN */

int moco_extract(moco_extractor *x, mf_dataset *d, size_t count, float *feats, int32_t *labels, size_t *got, int64_t *skipped,
                 char *err, size_t n) {
  const moco_cfg *c = &x->cfg;
  size_t img = (size_t)c->channels * c->size * c->size, B = (size_t)moco_extract_batch(c);
  mf_transform_opts tf = mf_transform_opts_default();
  tf.out_w = tf.out_h = c->size;
  tf.channels = c->channels;
  tf.crop = MF_CROP_NONE; /* the whole image, resized */
  size_t rows = 0, i = 0, nd = mf_dataset_size(d);
  if (count > nd) count = nd;
  float *fb = malloc(B * (size_t)x->dim * sizeof *fb);
  int32_t lab[MOCO_EXTRACT_BATCH];
  if (!fb) { snprintf(err, n, "out of host memory"); return -1; }
  while (i < count) {
    size_t filled = 0;
    for (; filled < B && i < count; i++) {
      char serr[512];
      if (mf_dataset_get(d, i, &tf, 0, x->in + filled * img, serr, sizeof serr) != 0) {
        (*skipped)++;
        continue;
      }
      lab[filled++] = mf_dataset_label(d, i);
    }
    if (!filled) break;
    if (filled < B) memset(x->in + filled * img, 0, (B - filled) * img * sizeof *x->in); /* rows are independent in eval mode */
    if (mf_session_write_input(x->s, x->f.x, x->in, B * img) < 0) { snprintf(err, n, "writing the extractor's input failed"); free(fb); return -1; }
    double r = mf_session_forward(x->s);
    if (isnan(r) || mf_session_read(x->s, x->f.feat, fb, B * (size_t)x->dim) != 0) {
      snprintf(err, n, "the feature pass failed (see above)");
      free(fb);
      return -1;
    }
    memcpy(feats + rows * (size_t)x->dim, fb, filled * (size_t)x->dim * sizeof *fb);
    if (labels) memcpy(labels + rows, lab, filled * sizeof *lab);
    rows += filled;
  }
  free(fb);
  *got = rows;
  return 0;
}

int moco_knn_eval(moco_extractor *x, mf_dataset *bank, size_t n_bank, mf_dataset *test, size_t n_test, const knn_opts *o,
                  const linprobe_opts *po, double *accuracy, double *probe_acc, int64_t *skipped, char *err, size_t n) {
  size_t D = (size_t)x->dim, gb = 0, gt = 0;
  float *fb = malloc(n_bank * D * sizeof *fb), *ft = malloc(n_test * D * sizeof *ft);
  int32_t *lb = malloc(n_bank * sizeof *lb), *lt = malloc(n_test * sizeof *lt), *pred = malloc(n_test * sizeof *pred);
  int rc = -1;
  if (!fb || !ft || !lb || !lt || !pred) { snprintf(err, n, "out of host memory for %zu + %zu features", n_bank, n_test); goto out; }
  if (moco_extract(x, bank, n_bank, fb, lb, &gb, skipped, err, n) < 0 || moco_extract(x, test, n_test, ft, lt, &gt, skipped, err, n) < 0)
    goto out;
  if (!gb || !gt) { snprintf(err, n, "no readable images in the %s", gb ? "validation set" : "bank"); goto out; }
  rc = knn_classify(fb, lb, (int64_t)gb, ft, lt, (int64_t)gt, (int)D, o, pred, accuracy, err, n);
  if (rc == 0 && po) {
    linprobe_result pr;
    rc = linprobe_train(fb, lb, (int64_t)gb, ft, lt, (int64_t)gt, (int)D, po, &pr, NULL, err, n);
    if (rc == 0) *probe_acc = pr.test_acc;
  }
out:
  free(fb); free(ft); free(lb); free(lt); free(pred);
  return rc;
}

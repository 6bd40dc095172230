/* steg_train.c — the steganography workload as a trainer client: its own training settings, the training
 * graph with the optional SSIM and DCT terms, data (generated or a folder with a validation split), the hooks
 * (staging cover/secret, loss terms, validation with PSNR/SSIM and sample grids, the model file). */
#include "models/steg.h"
#include "models/steg_infer.h"
#include "models/steg_loss.h"
#include "models/steg_train.h"
#include "models/workload.h"
#include "data/grid.h"
#include "data/metrics.h"
#include "train/safetensors.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* steg's own training settings (memfit train steg --help) */
typedef struct steg_tcfg {
  char preset[32];
  int size, gen_size, blocks, growth, gen_count, val_count, stego_bits;
  double w_guide, w_rec, w_low, w_ssim, w_dct;
} steg_tcfg;

/* ------------------------------------------------------------------ sample grid, model file */

/* Writes rows of [cover | stego | |stego-cover| x10 | secret | recovered | |recovered-secret| x10]
 * under column labels, each tile w x h (planar inputs, n rows), through grid_write_png. */
int mf_steg_grid_write(const char *path, int n, const float *const *cover, const float *const *stego,
                      const float *const *secret, const float *const *rec, int w, int h, char *err, size_t errlen) {
  const grid_col cols[6] = {{"cover", cover, NULL, 0},  {"stego", stego, NULL, 0},   {"diff x10", stego, cover, 10.0f},
                            {"secret", secret, NULL, 0}, {"recovered", rec, NULL, 0}, {"diff x10", rec, secret, 10.0f}};
  return grid_write_png(path, cols, 6, n, w, h, err, errlen);
}


/* Writes the parameters only (no optimizer state), with the settings in the metadata. */
int mf_steg_model_save(mf_session *s, mf_graph *g, const mf_steg_model *m, const char *path, const char *note, char *err,
                      size_t errlen) {
  int nt = m->cfg.blocks * MF_STEG_SUBNETS * MF_STEG_CONVS * 2, ti = 0;
  float **bufs = calloc((size_t)nt, sizeof *bufs);
  char(*names)[96] = calloc((size_t)nt, sizeof *names);
  mf_st_writer *w = mf_st_writer_init();
  int rc = -1;
  if (!bufs || !names || !w) { snprintf(err, errlen, "%s: out of memory", path); goto out; }
  char v[64], pn[64];
  mf_st_writer_meta(w, "format", MF_STEG_MODEL_FORMAT);
  mf_st_writer_meta(w, "steg.preset", m->cfg.name ? m->cfg.name : "custom");
  snprintf(v, sizeof v, "%d", m->cfg.blocks); mf_st_writer_meta(w, "steg.blocks", v);
  snprintf(v, sizeof v, "%d", m->cfg.growth); mf_st_writer_meta(w, "steg.growth", v);
  snprintf(v, sizeof v, "%lld", (long long)mf_session_step(s)); mf_st_writer_meta(w, "steg.steps", v);
  if (note) mf_st_writer_meta(w, "steg.trained", note);
  for (int i = 0; i < m->cfg.blocks; i++)
    for (int sn = 0; sn < MF_STEG_SUBNETS; sn++)
      for (int k = 0; k < MF_STEG_CONVS; k++)
        for (int bias = 0; bias < 2; bias++, ti++) {
          mf_tensor t = bias ? m->blk[i].net[sn].b[k] : m->blk[i].net[sn].w[k];
          int64_t shape[4];
          int nd = mf_tensor_ndim(g, t);
          for (int a = 0; a < nd; a++) shape[a] = mf_tensor_dim(g, t, a);
          size_t n = (size_t)mf_tensor_numel(g, t);
          bufs[ti] = malloc(n * sizeof(float));
          if (!bufs[ti] || mf_session_read(s, t, bufs[ti], n) != 0) { snprintf(err, errlen, "%s: could not read parameters", path); goto out; }
          snprintf(names[ti], sizeof names[ti], "param.%s", mf_steg_param_name(pn, sizeof pn, i, sn, k, bias));
          mf_st_writer_add(w, names[ti], MF_F32, nd, shape, bufs[ti]);
        }
  rc = mf_st_writer_save(w, path, err, errlen);
out:
  for (int i = 0; bufs && i < nt; i++) free(bufs[i]);
  free(bufs);
  free(names);
  mf_st_writer_free(w);
  return rc;
}


/* ------------------------------------------------------------------ training graph and validation */

/* the training graph with its extra loss terms */
typedef struct train_graph {
  mf_graph *g;
  mf_steg_model *m;
  mf_tensor loss, dct_mat, l_ssim, l_dct;
} train_graph;

static int train_graph_build(train_graph *t, const mf_steg_config *c, mf_dtype dt, const steg_tcfg *a, uint64_t seed, char *err,
                             size_t n) {
  t->g = mf_graph_init(dt);
  t->m = calloc(1, sizeof *t->m);
  t->dct_mat = t->l_ssim = t->l_dct = -1;
  if (!t->g || !t->m) { snprintf(err, n, "out of host memory"); return -1; }
  mf_graph_set_seed(t->g, seed);
  if (mf_steg_build(t->g, c, t->m) < 0) { snprintf(err, n, "%s", mf_graph_error(t->g)); return -1; }
  mf_graph *g = t->g;
  mf_steg_model *m = t->m;
  t->loss = m->loss;
  if (a->w_ssim > 0) {
    int k = mf_steg_ssim_window(a->size);
    t->l_ssim = mf_add(g, mf_steg_ssim_loss(g, m->stego, m->cover, k), mf_steg_ssim_loss(g, m->revealed, m->secret, k));
    t->loss = mf_add(g, t->loss, mf_mul_scalar(g, t->l_ssim, a->w_ssim));
  }
  if (a->w_dct > 0) {
    int64_t ds[2] = {8, 8};
    t->dct_mat = mf_input(g, "dct8", 2, ds);
    t->l_dct = mf_steg_dct_loss(g, m->stego, m->cover, t->dct_mat);
    t->loss = mf_add(g, t->loss, mf_mul_scalar(g, t->l_dct, a->w_dct));
  }
  if (mf_graph_error(g)) { snprintf(err, n, "%s", mf_graph_error(g)); return -1; }
  return 0;
}

static void train_graph_free(train_graph *t) {
  if (t->g) mf_graph_free(t->g);
  free(t->m);
}


/* Validation: n pairs (cover i, secret i+1 of the validation images), forward only through the
 * training graph (the stego as the graph makes it: 8-bit by default). Returns the number of pairs measured. */
typedef struct val_result { double loss, hide_psnr, rec_psnr, hide_ssim, rec_ssim; int pairs, grid_failed; } val_result;

/* bad[0] counts the validation images that could not be read, bad[1] those only smaller than --size */
static val_result validate(mf_session *s, train_graph *t, mf_dataset *vd, int npairs, int B, int size, const char *grid,
                           int64_t *bad) {
  val_result r = {0};
  mf_steg_model *m = t->m;
  size_t nv = mf_dataset_size(vd);
  if (!nv || npairs <= 0) return r;
  size_t img = (size_t)3 * size * size;
  float *cov = malloc((size_t)B * img * sizeof *cov), *sec = malloc((size_t)B * img * sizeof *sec);
  float *st = malloc((size_t)B * img * sizeof *st), *rv = malloc((size_t)B * img * sizeof *rv);
  if (!cov || !sec || !st || !rv) { free(cov); free(sec); free(st); free(rv); return r; }
  mf_transform_opts tf = mf_transform_opts_default();
  tf.out_w = tf.out_h = size;
  tf.crop = MF_CROP_CENTER;
  char err[512];
  double se_h = 0, se_r = 0, ss_h = 0, ss_r = 0, loss = 0;
  int batches = 0;
  size_t idx = 0;
  for (int done = 0; done < npairs && idx < 4 * nv + 8;) {
    int filled = 0;
    while (filled < B && idx < 4 * nv + 8) {
      size_t ci = idx % nv, si = (idx + 1) % nv;
      idx++;
      int rc = mf_dataset_get(vd, ci, &tf, 0, cov + (size_t)filled * img, err, sizeof err);
      if (!rc) rc = mf_dataset_get(vd, si, &tf, 0, sec + (size_t)filled * img, err, sizeof err);
      if (rc) {
        if (idx <= nv) { /* -2: readable, only smaller than the crop */
          fprintf(stderr, "memfit train steg: validation: skipping: %s\n", err);
          bad[rc == -2]++;
        }
        continue;
      }
      filled++;
    }
    if (filled < B) break;
    mf_session_write_input(s, m->cover, cov, (size_t)B * img);
    mf_session_write_input(s, m->secret, sec, (size_t)B * img);
    loss += mf_session_forward(s);
    mf_session_read(s, m->stego, st, (size_t)B * img);
    mf_session_read(s, m->revealed, rv, (size_t)B * img);
    for (int b = 0; b < B && done < npairs; b++, done++) {
      const float *c = cov + (size_t)b * img, *sc = sec + (size_t)b * img;
      float *sb = st + (size_t)b * img, *rb = rv + (size_t)b * img;
      img_quant8(sb, img); /* as the stego PNG would store it */
      se_h += psnr_from_mse(img_mse(sb, c, size, size, 0));
      se_r += psnr_from_mse(img_mse(rb, sc, size, size, 0));
      ss_h += img_ssim(sb, c, size, size, 0);
      ss_r += img_ssim(rb, sc, size, size, 0);
      r.pairs++;
    }
    if (grid && batches == 0) {
      const float *gc[4], *gs[4], *gx[4], *gr[4];
      int rows = B < 4 ? B : 4;
      for (int i = 0; i < rows; i++) {
        gc[i] = cov + (size_t)i * img; gs[i] = st + (size_t)i * img; gx[i] = sec + (size_t)i * img; gr[i] = rv + (size_t)i * img;
      }
      if (mf_steg_grid_write(grid, rows, gc, gs, gx, gr, size, size, err, sizeof err) != 0) {
        fprintf(stderr, "memfit train steg: %s\n", err);
        r.grid_failed = 1;
      }
    }
    batches++;
  }
  if (r.pairs) {
    r.hide_psnr = se_h / r.pairs; r.rec_psnr = se_r / r.pairs; r.hide_ssim = ss_h / r.pairs; r.rec_ssim = ss_r / r.pairs;
    r.loss = loss / batches; /* per micro-batch, summed over its pairs like the training loss in the log and report */
  }
  free(cov); free(sec); free(st); free(rv);
  return r;
}


/* ------------------------------------------------------------------ hooks */

typedef struct steg_train_ctx {
  train_graph *T;
  mf_dataset *vd;          /* validation images (the training images when there are none) */
  int val_count, micro, size;
  size_t img;              /* floats of one micro-batch's covers (= its secrets) */
  char note[1024];         /* the command line, in the model file */
  train_graph T_;          /* T points here */
  mf_dataset *vd_own;      /* the validation set when it is not the training set */
} steg_train_ctx;

/* first half of the loader's batch: covers; second half: secrets */
static int steg_feed(void *ctx, mf_session *s, const mf_batch *b, char *err, size_t n) {
  steg_train_ctx *c = ctx;
  mf_tensor ins[2] = {c->T->m->cover, c->T->m->secret};
  const float *data[2] = {b->images, b->images + c->img};
  if (mf_session_stage_inputs(s, 2, ins, data) < 0) { snprintf(err, n, "staging the batch failed (see above)"); return -1; }
  return 0;
}

static void steg_read_terms(void *ctx, mf_session *s, double *v) {
  steg_train_ctx *c = ctx;
  float lg, lr;
  mf_session_read(s, c->T->m->loss_guide, &lg, 1);
  mf_session_read(s, c->T->m->loss_rec, &lr, 1);
  v[0] = lg;
  v[1] = lr;
}

static void steg_describe_terms(void *ctx, const double *mean, char *buf, size_t n) {
  steg_train_ctx *c = ctx;
  double pix = (double)c->img;
  snprintf(buf, n, "hide %.2f dB  rec %.2f dB", psnr_from_mse(mean[0] / pix), psnr_from_mse(mean[1] / pix));
}

static int steg_validate(void *ctx, mf_session *s, const char *grid, int64_t *bad, const char **names, double *vals, char *line,
                         size_t n, int *grid_failed) {
  steg_train_ctx *c = ctx;
  val_result v = validate(s, c->T, c->vd, c->val_count, c->micro, c->size, grid, bad);
  *grid_failed = v.grid_failed;
  if (!v.pairs) return 0;
  static const char *const nm[6] = {"loss", "hide_psnr", "rec_psnr", "hide_ssim", "rec_ssim", "pairs"};
  const double vv[6] = {v.loss, v.hide_psnr, v.rec_psnr, v.hide_ssim, v.rec_ssim, v.pairs};
  for (int i = 0; i < 6; i++) { names[i] = nm[i]; vals[i] = vv[i]; }
  snprintf(line, n, "loss %.4g hide PSNR %.2f dB rec PSNR %.2f dB SSIM %.4f / %.4f (validation, %d pairs; SSIM hide / rec; "
           "hide on the 8-bit stego, rec from %s)", v.loss, v.hide_psnr, v.rec_psnr, v.hide_ssim, v.rec_ssim, v.pairs,
           c->T->m->cfg.stego_bits == 8 ? "the 8-bit stego" : "the float stego");
  return 6;
}

static int steg_save_model(void *ctx, mf_session *s, const char *path, char *err, size_t n) {
  steg_train_ctx *c = ctx;
  return mf_steg_model_save(s, c->T->g, c->T->m, path, c->note, err, n);
}


/* ------------------------------------------------------------------ settings */

static void train_defaults(mf_train_args *a) {
  a->data = "generated";
  a->out = "steg-run";
  a->schedule = "cosine";
  a->batch = 0; /* the preset's (train_batch) */
  a->epochs = 10;
  a->lr = pow(10, -4.5); /* HiNet */
  a->beta1 = 0.5;
  a->beta2 = 0.999;
  a->weight_decay = 0;
  a->seed = 1;
}

static void *train_cfg_new(void) {
  steg_tcfg *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  snprintf(c->preset, sizeof c->preset, "small");
  c->size = 0; /* the preset's (train_check) */
  c->gen_count = 2048;
  c->val_count = 16;
  c->w_guide = 1;
  c->w_rec = 5;
  c->w_low = 1;
  c->stego_bits = 8;
  return c;
}

static int train_cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  steg_tcfg *c = p;
  if (!strcmp(key, "preset")) {
    mf_steg_config sc;
    if (mf_steg_config_preset(val, &sc, err, n) < 0) return -1;
    snprintf(c->preset, sizeof c->preset, "%s", val);
    return 0;
  }
  if (!strcmp(key, "size")) return mf_setting_int(key, val, 2, 16384, &c->size, err, n);
  if (!strcmp(key, "gen-size")) return mf_setting_int(key, val, 8, 16384, &c->gen_size, err, n);
  if (!strcmp(key, "blocks")) return mf_setting_int(key, val, 1, MF_STEG_MAX_BLOCKS, &c->blocks, err, n);
  if (!strcmp(key, "growth")) return mf_setting_int(key, val, 1, 4096, &c->growth, err, n);
  if (!strcmp(key, "gen-count")) return mf_setting_int(key, val, 1, 1 << 30, &c->gen_count, err, n);
  if (!strcmp(key, "val-count")) return mf_setting_int(key, val, 0, 100000, &c->val_count, err, n);
  if (!strcmp(key, "w-guide")) return mf_setting_double(key, val, 0, 1e6, &c->w_guide, err, n);
  if (!strcmp(key, "w-rec")) return mf_setting_double(key, val, 0, 1e6, &c->w_rec, err, n);
  if (!strcmp(key, "w-low")) return mf_setting_double(key, val, 0, 1e6, &c->w_low, err, n);
  if (!strcmp(key, "ssim")) return mf_setting_double(key, val, 0, 1e6, &c->w_ssim, err, n);
  if (!strcmp(key, "dct")) return mf_setting_double(key, val, 0, 1e6, &c->w_dct, err, n);
  if (!strcmp(key, "stego-bits")) {
    if (strcmp(val, "8") && strcmp(val, "0")) {
      snprintf(err, n, "--stego-bits: '%s': use 8 (train through the 8-bit PNG) or 0 (float stego, as HiNet)", val);
      return -1;
    }
    c->stego_bits = atoi(val);
    return 0;
  }
  return -2;
}

static void train_help(FILE *f) {
  fprintf(f, "  --preset P             %s (default small, as memfit plan steg): coupling blocks,\n"
             "                         growth, crop size and effective batch (small: 4 blocks, growth 16, 64x64, batch 4)\n"
             "  --blocks N --growth G  override the preset's coupling blocks / dense-block growth\n"
             "  --size S               square random crop, even (default: the preset's); flips on\n"
             "  --gen-count N          generated images per pass (default 2048)\n"
             "  --gen-size N           generated images are rendered at N x N and randomly cropped (default 128)\n"
             "  --val-count N          validation pairs per validation (default 16)\n"
             "  --w-guide --w-rec --w-low  loss weights (HiNet: 1 5 1; sums over pixels)\n"
             "  --ssim W               add W * sum(1 - SSIM map) for stego/cover and recovered/secret (7x7 window)\n"
             "  --dct W                add W * sum |DCT8x8(stego) - DCT8x8(cover)| (size a multiple of 8)\n"
             "  --stego-bits B         8 (default): the step clips and rounds the stego to 8 bits, as a saved PNG, before\n"
             "                         the reveal pass and the hiding losses (straight-through gradient); 0: float stego\n"
             "  (--batch counts cover/secret pairs, default the preset's; --lr 10^-4.5 = 3.16e-5 and --beta1 0.5 as\n"
             "  HiNet, --epochs 10, --out steg-run)\n", mf_steg_preset_names());
}

/* without --batch: the preset's effective batch */
static int train_batch(const void *p, const mf_train_args *a, int *batch, char *err, size_t n) {
  (void)a;
  mf_steg_config pc;
  if (mf_steg_config_preset(((const steg_tcfg *)p)->preset, &pc, err, n) < 0) return -1;
  *batch = pc.batch * pc.accum_steps;
  return 0;
}

static int train_check(void *p, mf_train_args *a, char *err, size_t n) {
  steg_tcfg *c = p;
  (void)a;
  mf_steg_config pc; /* the preset decides the crop unless --size was given (and the batch: train_batch) */
  if (mf_steg_config_preset(c->preset, &pc, err, n) < 0) return -1;
  if (!c->size) c->size = pc.height;
  int gen_size = c->gen_size ? c->gen_size : c->size > 128 ? c->size : 128;
  if (gen_size < c->size) { snprintf(err, n, "--gen-size %d is smaller than --size %d", gen_size, c->size); return -1; }
  if (c->size % 2) { snprintf(err, n, "--size %d is odd; the Haar wavelet needs an even size", c->size); return -1; }
  if (c->w_dct > 0 && c->size % 8) { snprintf(err, n, "--dct needs --size a multiple of 8 (8x8 blocks); %d is not", c->size); return -1; }
  if (c->w_ssim > 0 && c->size < 8) { snprintf(err, n, "--ssim needs --size 8 or more"); return -1; }
  return 0;
}

/* the model the settings describe (micro-batch not yet chosen) */
static int steg_config(const steg_tcfg *c, const mf_train_args *a, mf_steg_config *cfg, char *err, size_t n) {
  if (mf_steg_config_preset(c->preset, cfg, err, n) < 0) return -1;
  if (c->blocks) { cfg->blocks = c->blocks; cfg->name = "custom"; }
  if (c->growth) { cfg->growth = c->growth; cfg->name = "custom"; }
  cfg->height = cfg->width = c->size;
  cfg->w_guide = c->w_guide; cfg->w_rec = c->w_rec; cfg->w_low = c->w_low;
  cfg->stego_bits = c->stego_bits;
  cfg->batch = a->batch;
  return mf_steg_config_check(cfg, err, n);
}

static int train_plan_cfg(const void *p, const mf_train_args *a, void *wc, char *err, size_t n) {
  mf_steg_config cfg;
  if (steg_config(p, a, &cfg, err, n) < 0) return -1;
  const mf_workload *w = &mf_workload_steg;
  char v[32];
  snprintf(v, sizeof v, "%d", cfg.blocks);
  if (w->cfg_set(wc, "blocks", v, err, n)) return -1;
  snprintf(v, sizeof v, "%d", cfg.growth);
  if (w->cfg_set(wc, "growth", v, err, n)) return -1;
  snprintf(v, sizeof v, "%d", cfg.height);
  if (w->cfg_set(wc, "size", v, err, n)) return -1;
  snprintf(v, sizeof v, "%d", cfg.stego_bits);
  if (w->cfg_set(wc, "stego-bits", v, err, n)) return -1;
  snprintf(v, sizeof v, "%d", a->batch);
  return w->cfg_set(wc, "batch", v, err, n);
}

/* ------------------------------------------------------------------ the run */

static int steg_resume_check(void *ctx, const char *path) {
  steg_train_ctx *c = ctx;
  char err[1024];
  mf_st_file *ckf = mf_st_open(path, err, sizeof err);
  mf_steg_config ckc;
  int bad = !ckf || mf_steg_model_config(ckf, path, &ckc, err, sizeof err) < 0;
  const char *ckfmt = ckf ? mf_st_meta(ckf, "format") : NULL;
  const mf_steg_config *cfg = &c->T->m->cfg;
  if (bad) fprintf(stderr, "memfit train steg: --resume: %s\n", err);
  else if (!ckfmt || strcmp(ckfmt, "memfit-checkpoint-1")) { /* before the data position: it would only warn */
    fprintf(stderr, "memfit train steg: --resume %s: %s, not a training checkpoint; --resume needs the "
                    "checkpoint.safetensors of a run's --out folder (weights, optimizer state and data position)\n",
            path, ckfmt && !strcmp(ckfmt, MF_STEG_MODEL_FORMAT) ? "a model file (parameters only)" : "not a memfit checkpoint");
    bad = 1;
  } else if (ckc.blocks != cfg->blocks || ckc.growth != cfg->growth) { /* the model first: it decides more than the data */
    fprintf(stderr, "memfit train steg: --resume %s: the checkpoint holds another model (%d coupling blocks, growth %d) than "
                    "this run builds (%d, growth %d; see --preset, --blocks, --growth)\n", path, ckc.blocks, ckc.growth,
            cfg->blocks, cfg->growth);
    bad = 1;
  }
  mf_st_close(ckf);
  return bad ? -1 : 0;
}

/* the fixed inputs: the DCT matrix (with --dct) and the reveal pass's z (zeros) */
static int steg_session_ready(void *ctx, mf_session *s, char *err, size_t n) {
  steg_train_ctx *c = ctx;
  train_graph *T = c->T;
  if (T->dct_mat >= 0) {
    double Dd[64];
    float D[64];
    mf_steg_dct_matrix(Dd);
    for (int i = 0; i < 64; i++) D[i] = (float)Dd[i];
    if (mf_session_write_input(s, T->dct_mat, D, 64) < 0) { snprintf(err, n, "writing the DCT matrix failed"); return -1; }
  }
  size_t nz = (size_t)mf_tensor_numel(T->g, T->m->z);
  float *z = calloc(nz, sizeof *z);
  int rc = z ? mf_session_write_input(s, T->m->z, z, nz) : -1;
  free(z);
  if (rc < 0) snprintf(err, n, "writing z failed");
  return rc < 0 ? -1 : 0;
}

static void steg_ctx_free(void *ctx) {
  steg_train_ctx *c = ctx;
  if (!c) return;
  train_graph_free(&c->T_);
  free(c);
}

static int train_setup(const void *p, const mf_train_args *a, const mf_train_choice *ch, mf_train_job *j, char *err, size_t n) {
  const steg_tcfg *tc = p;
  mf_steg_config cfg;
  if (steg_config(tc, a, &cfg, err, n) < 0) return -1;
  int micro = ch->micro_batch, gen_size = tc->gen_size ? tc->gen_size : tc->size > 128 ? tc->size : 128;
  cfg.batch = micro;
  cfg.segments = ch->variant == 0 ? MF_STEG_SEG_BLOCKS : MF_STEG_SEG_SUBNETS;
  steg_train_ctx *c = calloc(1, sizeof *c);
  if (!c) { snprintf(err, n, "out of host memory"); return -1; }
  j->hooks.ctx = c;
  j->ctx_free = steg_ctx_free;
  c->T = &c->T_;
  if (train_graph_build(c->T, &cfg, ch->dtype, tc, (uint64_t)a->seed, err, n) < 0) return -1;
  train_graph *T = c->T;
  mf_steg_model *m = T->m;
  j->g = T->g;
  j->loss = T->loss;
  mf_tensor keep[6] = {m->loss_guide, m->loss_rec, m->loss_low, m->stego, m->revealed, T->l_ssim};
  j->n_keep = T->l_ssim >= 0 ? 6 : 5;
  memcpy(j->keep, keep, sizeof keep);
  j->optim = MF_ADAM;

  /* ---- data ---- */
  int generated = !strcmp(a->data, "generated");
  if (generated) {
    j->train = mf_dataset_generated((size_t)tc->gen_count, gen_size, gen_size, (uint64_t)a->seed * 7919u + 1, err, n);
    j->val = j->train ? mf_dataset_generated((size_t)(tc->val_count + 1), gen_size, gen_size, 0xabcdefull + (uint64_t)a->seed,
                                            err, n)
                      : NULL;
  } else {
    mf_folder_opts fo = mf_folder_opts_default();
    fo.val_fraction = a->val_data ? 0 : a->val_split;
    fo.max_image_bytes = (size_t)a->budget; /* an image whose decoding alone exceeds --budget is skipped unread (0: no limit) */
    fo.split = !a->val_data && a->val_split > 0 ? MF_SPLIT_TRAIN : MF_SPLIT_ALL;
    j->train = mf_dataset_open_path(a->data, &fo, err, n); /* a folder, or an IDX images file */
    if (j->train && (a->val_data || a->val_split > 0)) {
      fo.split = a->val_data ? MF_SPLIT_ALL : MF_SPLIT_VAL; /* not quiet: its bad files are warned about like the training split's */
      char verr[1024];
      j->val = mf_dataset_open_path(a->val_data ? a->val_data : a->data, &fo, verr, sizeof verr);
      if (!j->val) fprintf(stderr, "memfit train steg: no validation images (%s); validating on training images\n", verr);
    }
  }
  if (!j->train) return -1;
  mf_loader_opts *lo = &j->lo;
  *lo = mf_loader_opts_default();
  lo->dataset = j->train;
  lo->batch_size = 2 * micro; /* first half covers, second half secrets */
  lo->workers = a->workers;
  lo->seed = (uint64_t)a->seed;
  lo->tf.out_w = lo->tf.out_h = tc->size;
  lo->tf.crop = MF_CROP_RANDOM;
  lo->tf.hflip = 0.5f;
  lo->tf.vflip = 0.5f;
  mf_train_job_data_setting(j, "steg.seed", "--seed", MF_DATA_DECISIVE, "%d", a->seed);
  mf_train_job_data_setting(j, "steg.size", "--size", MF_DATA_DECISIVE, "%d", tc->size);
  mf_train_job_data_setting(j, "steg.micro_batch", "the micro-batch (--batch, or chosen for --budget)", MF_DATA_DECISIVE | MF_DATA_PER_RANK, "%d", micro);
  if (generated) {
    mf_train_job_data_setting(j, "steg.gen_count", "--gen-count", MF_DATA_DECISIVE, "%d", tc->gen_count);
    mf_train_job_data_setting(j, "steg.gen_size", "--gen-size", MF_DATA_DECISIVE, "%d", gen_size);
  } else mf_train_job_data_setting(j, "steg.val_fraction", "--val-split", MF_DATA_DECISIVE, "%.17g", a->val_data ? 0 : a->val_split);
  mf_train_job_data_setting(j, "steg.workers", "--workers", 0, "%d", a->workers);

  /* ---- hooks and what the trainer prints ---- */
  c->vd = j->val ? j->val : j->train;
  c->val_count = tc->val_count;
  c->micro = micro;
  c->size = tc->size;
  c->img = (size_t)micro * 3 * tc->size * tc->size;
  mf_train_args_command(a, "steg", c->note, sizeof c->note);
  j->hooks.feed = steg_feed;
  j->hooks.read_terms = steg_read_terms;
  j->hooks.describe_terms = steg_describe_terms;
  j->hooks.validate = steg_validate;
  j->hooks.save_model = steg_save_model;
  j->resume_check = steg_resume_check;
  j->session_ready = steg_session_ready;
  static const char *const terms[2] = {"guide", "rec"};
  j->n_terms = 2;
  j->term_names = terms;
  j->psnr_terms = 3; /* guide and rec: summed squared errors over the micro-batch's pixels */
  j->sample_unit = "pairs";
  j->loss_divisor = 1; /* the loss everywhere (progress, log, validation) is the micro-batch sum, as HiNet sums */
  j->loss_sum = 1;     /* so data-parallel ranks add theirs: N ranks x B/N pairs train as one process with B */
  j->values_per_sample = (double)c->img;
  snprintf(j->crop_option, sizeof j->crop_option, "--size %d", tc->size);
  snprintf(j->batch_note, sizeof j->batch_note, " (%d pairs of a cover and a secret)", micro);
  snprintf(j->more_data_hint, sizeof j->more_data_hint, "%s",
           generated ? " or raise --gen-count" : " or lower --val-split (the share of images kept for validation)");
  snprintf(j->model_use, sizeof j->model_use, " (for hide/reveal/eval)");
  snprintf(j->timeline_title, sizeof j->timeline_title, "one training step: %dx%d crops, micro-batch %d, %s", tc->size, tc->size,
           micro, mf_dtype_name(ch->dtype));
  snprintf(j->settings, sizeof j->settings, "preset %s (%d coupling blocks, growth %d), %dx%d crops, batch %d = micro-batch %d x %d, "
           "%s, lr %g (%s schedule, warm-up %d, clip %g)", cfg.name, cfg.blocks, cfg.growth, tc->size, tc->size, a->batch, micro,
           ch->accum, mf_dtype_name(ch->dtype), a->lr, a->schedule, a->warmup, a->clip);
  snprintf(j->header, sizeof j->header,
           "memfit train steg: preset '%s' (%d coupling blocks, growth %d, %lld parameters), %dx%d crops, batch %d = micro-batch %d "
           "x %d, %s, %s\n"
           "data: %s (%zu training images%s, %zu validation images)",
           cfg.name, cfg.blocks, cfg.growth, (long long)mf_steg_param_count(&cfg), tc->size, tc->size, a->batch, micro, ch->accum,
           mf_dtype_name(ch->dtype),
           a->budget ? "settings from the budget search" : (a->dtypes || a->mode != -2 || a->micro_batch || a->variant >= 0)
                                                              ? "settings as given" : "memory-free backprop through every coupling block",
           generated ? "generated procedural images" : a->data, mf_dataset_size(j->train),
           generated ? " rendered on the fly, random crops" : "", j->val ? mf_dataset_size(j->val) : (size_t)0);
  snprintf(j->losses, sizeof j->losses, "losses: %g*guide + %g*rec + %g*low%s%s, %s", tc->w_guide, tc->w_rec, tc->w_low,
           tc->w_ssim > 0 ? " + ssim" : "", tc->w_dct > 0 ? " + dct" : "",
           tc->stego_bits == 8 ? "revealed from the 8-bit stego" : "revealed from the float stego");
  return 0;
}

const mf_workload_train mf_workload_steg_train = {
  .train_defaults = train_defaults,
  .train_cfg_new = train_cfg_new,
  .train_cfg_set = train_cfg_set,
  .train_help = train_help,
  .train_check = train_check,
  .train_batch = train_batch,
  .train_plan_cfg = train_plan_cfg,
  .train_setup = train_setup,
};

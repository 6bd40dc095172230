/* vqgan_train.c — VQGAN as a planner workload and a trainer client (`memfit plan|train vqgan`): its settings,
 * the exact choice of micro-batch, precision and recompute over both phases, images in [-1,1], the GAN factor
 * from --disc-start, the EMA codebook between steps, reconstruction PSNR/SSIM, codebook usage and perplexity at
 * each validation and a PNG grid of inputs and reconstructions. */
#include "models/vqgan_workload.h"
#include "models/workload.h"
#include "data/grid.h"
#include "data/metrics.h"
#include "data/data.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the planning half */

static const char *const variant_names[2] = {"stored", "checkpointed blocks"};

static void *cfg_new(void) {
  vqgan_cfg *c = calloc(1, sizeof *c);
  char err[128];
  if (c) vqgan_cfg_preset("low", c, err, sizeof err);
  return c;
}
static int cfg_set(void *p, const char *key, const char *val, char *err, size_t n) { return vqgan_cfg_set(p, key, val, err, n); }
static void cfg_describe(const void *p, char *buf, size_t n) { vqgan_cfg_describe(p, buf, n); }
static int effective_batch(const void *p) { return ((const vqgan_cfg *)p)->batch; }
static int default_micro_batch(const void *p) {
  const vqgan_cfg *c = p;
  return c->micro_batch > 0 ? c->micro_batch : c->batch;
}

typedef struct vq_state { vqgan_net net; } vq_state;

/* the generator phase's loss (the generic search plans one loss; memfit plan|train vqgan plan both phases) */
static int build(mf_graph *g, const void *p, int variant, int micro, mf_tensor *loss, void **state, char *err, size_t n) {
  vqgan_cfg c = *(const vqgan_cfg *)p;
  c.segments = variant == 1;
  vq_state *s = calloc(1, sizeof *s);
  if (!s) { snprintf(err, n, "out of host memory"); return -1; }
  *state = s;
  if (vqgan_build(g, &c, micro, &s->net, err, n) < 0) return -1;
  vqgan_net_free(&s->net); /* planning needs the graph only */
  *loss = s->net.gen_loss;
  return 0;
}
static size_t staging_bytes(const void *p, int micro) {
  const vqgan_cfg *c = p;
  return (size_t)micro * (size_t)c->frames * (size_t)c->channels * (size_t)c->size * (size_t)c->size * sizeof(float) * 2;
}

/* ------------------------------------------------------------------ training settings */

#define MAX_MODEL_SETTINGS 24
typedef struct vqgan_tcfg {
  char preset[32];
  int n_model;
  char model_key[MAX_MODEL_SETTINGS][24], model_val[MAX_MODEL_SETTINGS][512];
  vqgan_cfg mc;                /* after train_check */
  int gen_count, val_count, grid_rows;
  int frame_stride;            /* video folders: every k-th frame */
} vqgan_tcfg;

static void train_defaults(mf_train_args *a) {
  a->data = "generated";
  a->out = "vqgan-run";
  a->schedule = "constant";
  a->batch = 0;
  a->epochs = 1;
  a->lr = 4.5e-6 * 8; /* taming: base lr 4.5e-6 x batch; Adam betas (0.5, 0.9) for both optimizers */
  a->beta1 = 0.5;
  a->beta2 = 0.9;
  a->weight_decay = 0;
  a->seed = 1;
}

static void *train_cfg_new(void) {
  vqgan_tcfg *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  snprintf(c->preset, sizeof c->preset, "low");
  c->gen_count = 2048;
  c->val_count = 16;
  c->grid_rows = 4;
  c->frame_stride = 1;
  return c;
}

static int train_cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  vqgan_tcfg *c = p;
  if (!strcmp(key, "gen-count")) return mf_setting_int(key, val, 1, 1 << 30, &c->gen_count, err, n);
  if (!strcmp(key, "val-count")) return mf_setting_int(key, val, 1, 1 << 20, &c->val_count, err, n);
  if (!strcmp(key, "grid-rows")) return mf_setting_int(key, val, 1, 64, &c->grid_rows, err, n);
  if (!strcmp(key, "frame-stride")) return mf_setting_int(key, val, 1, 1 << 16, &c->frame_stride, err, n);
  vqgan_cfg t;
  vqgan_cfg_preset("low", &t, err, n);
  if (vqgan_cfg_set(&t, key, val, err, n) < 0) return strstr(err, "unknown setting") ? -2 : -1;
  if (!strcmp(key, "preset")) { snprintf(c->preset, sizeof c->preset, "%s", val); c->n_model = 0; return 0; }
  if (c->n_model == MAX_MODEL_SETTINGS) { snprintf(err, n, "--%s: too many model settings", key); return -1; }
  if (strlen(val) >= sizeof c->model_val[0] || strlen(key) >= sizeof c->model_key[0]) { snprintf(err, n, "--%s: too long", key); return -1; }
  snprintf(c->model_key[c->n_model], sizeof c->model_key[0], "%s", key);
  snprintf(c->model_val[c->n_model++], sizeof c->model_val[0], "%s", val);
  return 0;
}

static void train_help(FILE *f) {
  vqgan_cfg_help(f);
  fprintf(f, "  --gen-count N          generated training images (clips with --clips) per pass (default 2048)\n"
             "  --frame-stride K       video folders (--clips T --data DIR): clips of every K-th frame (default 1)\n"
             "  --val-count N          validation images (generated with another seed, or --val-data; default 16)\n"
             "  --grid-rows N          rows of the validation grid PNG (input | reconstruction; default 4)\n"
             "  (Adam betas 0.5, 0.9 for the generator and the discriminator; --lr default 3.6e-5 = taming's\n"
             "  4.5e-6 x batch 8; --batch counts images, default the preset's)\n");
}

static int vq_config(const vqgan_tcfg *c, const mf_train_args *a, vqgan_cfg *mc, char *err, size_t n) {
  if (vqgan_cfg_preset(c->preset, mc, err, n) < 0) return -1;
  for (int i = 0; i < c->n_model; i++)
    if (vqgan_cfg_set(mc, c->model_key[i], c->model_val[i], err, n) < 0) return -1;
  if (a->batch && !a->batch_default) { mc->batch = a->batch; mc->micro_batch = 0; } /* given: the micro-batch chosen */
  return 0;
}

/* without --batch: the preset's */
static int train_batch(const void *p, const mf_train_args *a, int *batch, char *err, size_t n) {
  vqgan_cfg mc;
  if (vq_config(p, a, &mc, err, n) < 0) return -1;
  *batch = mc.batch;
  return 0;
}

/* a->batch is one rank's share (mf_train_check) */
static int train_check(void *p, mf_train_args *a, char *err, size_t n) {
  vqgan_tcfg *c = p;
  vqgan_cfg mc;
  if (vq_config(c, a, &mc, err, n) < 0) return -1;
  mc.batch = a->batch;
  if (a->micro_batch) mc.micro_batch = a->micro_batch;
  else if (mc.micro_batch > 0 && mc.batch % mc.micro_batch) { /* the preset's micro-batch on a smaller share: their gcd */
    int x = mc.micro_batch, y = mc.batch;
    while (y) { int t = x % y; x = y; y = t; }
    mc.micro_batch = x;
  }
  if (vqgan_cfg_check(&mc, err, n) < 0 || vqgan_perceptual_check(&mc, err, n) < 0) return -1;
  c->mc = mc;
  return 0;
}

static int train_plan_cfg(const void *p, const mf_train_args *a, void *wc, char *err, size_t n) {
  (void)err, (void)n;
  vqgan_cfg *mc = wc;
  *mc = ((const vqgan_tcfg *)p)->mc;
  mc->batch = a->batch;
  mc->micro_batch = 0;
  return 0;
}

/* the exact two-phase choice: as given (preset micro-batch, f32, stored) or the fastest that fits --budget */
static int train_choose(const void *p, const mf_train_args *a, mf_train_choice *ch, char *err, size_t n) {
  const vqgan_tcfg *c = p;
  vqgan_cfg mc = c->mc; /* one rank's batch and its micro-batch (train_check) */
  int pm = a->micro_batch ? a->micro_batch : mc.micro_batch; /* --accum sets a->micro_batch after train_check */
  mc.micro_batch = pm;
  vqgan_search_opts so = {a->budget, a->backend, a->threads, a->dtypes ? a->dtypes : 1u << MF_F32, a->mode < 0 ? 0 : a->mode, pm};
  if (a->budget) {
    so.dtypes = a->dtypes ? a->dtypes : (1u << MF_F32) | (1u << MF_BF16);
    so.mode = a->mode == -2 ? -1 : a->mode;
    so.micro = a->micro_batch;
  }
  vqgan_cand cands[64];
  int nc = 0;
  if (vqgan_search(&mc, &so, cands, 64, &nc, err, n) < 0) return 1;
  if (!nc) { snprintf(err, n, "no setting to plan"); return 1; }
  char d[256], hb[32], hs[32];
  vqgan_cand_describe(&cands[0], d, sizeof d);
  mf_format_bytes(cands[0].total, hs, sizeof hs);
  mf_format_bytes((size_t)a->budget, hb, sizeof hb);
  if (a->budget && !cands[0].fits) {
    snprintf(err, n, "nothing fits %s without shrinking the model ('memfit plan vqgan --budget %s' lists every setting)", hb, hb);
    return 3;
  }
  if (a->budget) printf("budget %s: chose %s (plans %s, both phases; %d plans)\n", hb, d, hs, nc);
  else printf("settings: %s (plans %s, both phases)\n", d, hs);
  ch->micro_batch = cands[0].micro;
  ch->accum = cands[0].accum;
  ch->dtype = cands[0].dtype;
  ch->variant = cands[0].recompute;
  return 0;
}

/* ------------------------------------------------------------------ hooks */

typedef struct vq_ctx {
  mf_graph *g;
  vqgan_net net;
  vqgan_cfg cfg;
  int micro;
  vq_stats train_st, val_st;
  mf_dataset *val;
  int n_val, grid_rows, frames;
  float *xbuf, *rbuf;         /* [micro*T, C, S, S] */
  float *xperm;               /* clips: the loader's [micro, C, T, S, S] as [micro, T, C, S, S] */
  float *vin, *vrec;          /* the grid's rows: inputs and reconstructions in [0,1] */
  double *psnr_t;             /* [T] the last validation's PSNR per frame (mean over clips) */
  double g_adv;               /* the last generator step's raw g_loss = -mean D(xrec) (vq_step_loss) */
  uint64_t seed;
} vq_ctx;

/* one layout to the other: src [B, C, T, HW] -> dst [B, T, C, HW] */
static void clip_to_frames(const float *src, float *dst, int B, int C, int T, int64_t hw) {
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int t = 0; t < T; t++)
        memcpy(dst + (((int64_t)b * T + t) * C + c) * hw, src + (((int64_t)b * C + c) * T + t) * hw, (size_t)hw * sizeof(float));
}

static int vq_feed(void *ctx, mf_session *s, const mf_batch *b, char *err, size_t n) {
  vq_ctx *c = ctx;
  /* the update this micro-batch belongs to, for both phases: the discriminator group's count, which its phase's
   * update (the step's last) advances; mf_session_step is already the next update's once the generator's update of
   * the step's last micro-batch is applied, so the discriminator's hinge would start one update early */
  if (vqgan_set_factor(s, &c->net, mf_session_group_step(s, VQGAN_GROUP_DISC)) < 0) {
    snprintf(err, n, "writing the GAN factor failed");
    return -1;
  }
  const float *data[1] = {b->images};
  if (c->frames > 1) { /* [micro, C, T, S, S] -> [micro, T, C, S, S]: the model's frames are its batch rows */
    clip_to_frames(b->images, c->xperm, c->micro, c->cfg.channels, c->frames, (int64_t)c->cfg.size * c->cfg.size);
    data[0] = c->xperm;
  }
  if (mf_session_stage_inputs(s, 1, &c->net.x, data) < 0) { snprintf(err, n, "staging the batch failed (see above)"); return -1; }
  return 0;
}

/* the generator phase's logged loss: the objective it minimised (lambda x g_loss, not the forward's raw g_loss) */
static double vq_step_loss(void *ctx, mf_session *s, int phase, double loss) {
  vq_ctx *c = ctx;
  return phase == 0 ? vqgan_gen_objective(s, &c->net, loss, &c->g_adv) : loss;
}

/* after the last phase's micro-step: the batch's reconstruction PSNR (on [0,1]), the codes it used, lambda and the
 * generator step's raw g_loss */
static void vq_read_terms(void *ctx, mf_session *s, double *v) {
  vq_ctx *c = ctx;
  int64_t per = (int64_t)c->cfg.channels * c->cfg.size * c->cfg.size, all = per * c->micro * c->frames;
  v[0] = v[1] = v[2] = NAN;
  v[3] = c->g_adv;
  float lam;
  if (mf_session_read(s, c->net.lambda, &lam, 1) == 0) v[2] = lam;
  if (mf_session_read(s, c->net.x, c->xbuf, (size_t)all) < 0 || mf_session_read(s, c->net.xrec, c->rbuf, (size_t)all) < 0) return;
  double se = 0;
  for (int64_t i = 0; i < all; i++) { double d = 0.5 * ((double)c->rbuf[i] - c->xbuf[i]); se += d * d; }
  v[0] = psnr_from_mse(se / (double)all);
  if (vq_observe(&c->train_st, &c->net.vq, s, 1) == 0) {
    double u, p;
    vq_stats_usage(&c->train_st, &u, &p);
    v[1] = p;
  }
}

static void vq_describe_terms(void *ctx, const double *mean, char *buf, size_t n) {
  (void)ctx;
  snprintf(buf, n, "rec %.2f dB  perplexity %.1f  lambda %.3g  g_loss %.3g", mean[0], mean[1], mean[2], mean[3]);
}

static int vq_after_update(void *ctx, mf_session *s, int64_t update, char *err, size_t n) {
  vq_ctx *c = ctx;
  (void)update;
  if (vq_ema_apply(&c->train_st, &c->net.vq, s) < 0) { snprintf(err, n, "the EMA codebook update failed (see above)"); return -1; }
  vq_stats_reset(&c->train_st); /* the progress line's perplexity: codes since the last update */
  return 0;
}

static float to01(float v) { return 0.5f * (v + 1); }

/* The first validation clip as a video beside the grid (samples-epochNNN.mp4): each frame input | reconstruction
 * side by side, [S, 2S] RGB, 8 frames per second. in and rec hold `frames` planar [3, S, S] frames in [0, 1]. */
static int clip_video(const char *grid, const float *in, const float *rec, int frames, int S, char *err, size_t n) {
  char path[4096];
  size_t L = strlen(grid);
  snprintf(path, sizeof path, "%.*s.mp4", (int)(L > 4 && !strcmp(grid + L - 4, ".png") ? L - 4 : L), grid);
  float *f = malloc((size_t)S * 2 * S * 3 * sizeof *f); /* [S][2S][3] */
  video_writer *v = f ? video_writer_init(path, 2 * S, S, 8, err, n) : NULL;
  if (!f) snprintf(err, n, "%s: out of host memory", path);
  int rc = v ? 0 : -1;
  int64_t hw = (int64_t)S * S;
  for (int t = 0; t < frames && rc == 0; t++) {
    for (int y = 0; y < S; y++)
      for (int x = 0; x < 2 * S; x++)
        for (int k = 0; k < 3; k++) {
          const float *src = x < S ? in + (int64_t)t * 3 * hw : rec + (int64_t)t * 3 * hw;
          f[((size_t)y * 2 * S + x) * 3 + k] = src[k * hw + (int64_t)y * S + (x % S)];
        }
    rc = video_writer_add(v, f, err, n);
  }
  if (rc == 0) rc = video_writer_close(v, err, n);
  video_writer_free(v);
  free(f);
  return rc;
}

static int vq_validate(void *ctx, mf_session *s, const char *grid, int64_t *bad, const char **names, double *vals, char *line,
                       size_t n, int *grid_failed) {
  vq_ctx *c = ctx;
  *grid_failed = 0;
  int S = c->cfg.size, C = c->cfg.channels, T = c->frames;
  int64_t per = (int64_t)C * S * S, clip = per * T; /* one frame, one sample */
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = t.out_h = S;
  t.channels = C;
  t.crop = MF_CROP_CENTER;
  t.normalize = 1;
  for (int k = 0; k < 3; k++) t.mean[k] = 0.5f, t.std[k] = 0.5f;
  double psnr = 0, ssim = 0;
  int done = 0, rows = 0;
  vq_stats_reset(&c->val_st);
  char err[512];
  for (int k = 0; k < T; k++) c->psnr_t[k] = 0;
  int clips = 0;
  for (int i0 = 0; i0 < c->n_val; i0 += c->micro) {
    for (int j = 0; j < c->micro; j++) {
      size_t idx = (size_t)((i0 + j) % c->n_val);
      float *dst = T > 1 ? c->xperm + j * clip : c->xbuf + j * clip; /* mf_dataset_get writes [C, T, S, S] */
      int rc = mf_dataset_get(c->val, idx, &t, c->seed, dst, err, sizeof err);
      if (rc < 0) { bad[rc == -2 ? 1 : 0]++; memset(dst, 0, (size_t)clip * sizeof(float)); }
    }
    if (T > 1) clip_to_frames(c->xperm, c->xbuf, c->micro, C, T, (int64_t)S * S);
    float f = 0;
    mf_session_write_input(s, c->net.factor, &f, 1);
    if (mf_session_write_input(s, c->net.x, c->xbuf, (size_t)(clip * c->micro)) < 0 || isnan(mf_session_forward(s)) ||
        mf_session_read(s, c->net.xrec, c->rbuf, (size_t)(clip * c->micro)) < 0)
      return 0;
    vq_observe(&c->val_st, &c->net.vq, s, 0);
    for (int j = 0; j < c->micro && i0 + j < c->n_val; j++) {
      for (int k = 0; k < T; k++) { /* frame k of clip j (one image when T is 1) */
        float *a = c->xbuf + j * clip + k * per, *r = c->rbuf + j * clip + k * per;
        for (int64_t q = 0; q < per; q++) a[q] = to01(a[q]), r[q] = quant8(to01(r[q]));
        double p1;
        if (C == 3) {
          p1 = psnr_from_mse(img_mse(r, a, S, S, 0));
          ssim += img_ssim(r, a, S, S, 0);
        } else {
          double se = 0;
          for (int64_t q = 0; q < per; q++) se += ((double)r[q] - a[q]) * ((double)r[q] - a[q]);
          p1 = psnr_from_mse(se / (double)per);
          ssim += plane_ssim(r, a, S, S);
        }
        psnr += p1;
        c->psnr_t[k] += p1;
        /* the grid: images, or the frames of the first clip */
        if (rows < c->grid_rows && (T == 1 || clips == 0)) {
          memcpy(c->vin + rows * per, a, (size_t)per * sizeof(float));
          memcpy(c->vrec + rows * per, r, (size_t)per * sizeof(float));
          rows++;
        }
        done++;
      }
      clips++;
    }
  }
  for (int k = 0; k < T && clips; k++) c->psnr_t[k] /= clips;
  if (!done) return 0;
  double usage, ppl;
  vq_stats_usage(&c->val_st, &usage, &ppl);
  static const char *const nm[4] = {"rec_psnr_neg", "rec_psnr", "rec_ssim", "code_usage"};
  names[0] = nm[0]; vals[0] = -psnr / done;
  names[1] = nm[1]; vals[1] = psnr / done;
  names[2] = nm[2]; vals[2] = ssim / done;
  names[3] = nm[3]; vals[3] = usage;
  names[4] = "code_perplexity"; vals[4] = ppl;
  size_t o = (size_t)snprintf(line, n, "reconstruction %.2f dB PSNR, SSIM %.4f (%d %s, 8-bit); codebook usage %.1f%% (%lld of %lld codes), perplexity %.1f",
           psnr / done, ssim / done, done, T > 1 ? "frames" : "images", 100 * usage, (long long)llround(usage * (double)c->val_st.K),
           (long long)c->val_st.K, ppl);
  if (T > 1 && o < n) { /* the video figure: PSNR of each frame position, mean over the clips */
    o += (size_t)snprintf(line + o, n - o, "\n  PSNR per frame (dB, %d clips):", clips);
    for (int k = 0; k < T && o < n; k++) o += (size_t)snprintf(line + o, n - o, " %.2f", c->psnr_t[k]);
  }
  if (grid && C == 3 && T > 1 && rows > 0 && clip_video(grid, c->vin, c->vrec, rows, S, err, sizeof err) < 0) {
    fprintf(stderr, "memfit train vqgan: %s\n", err);
    *grid_failed = 1;
  }
  if (grid && C == 3 && rows > 0) {
    const float *in[64], *rc[64];
    for (int r = 0; r < rows; r++) in[r] = c->vin + r * per, rc[r] = c->vrec + r * per;
    grid_col cols[2] = {{"input", in, NULL, 0}, {"reconstruction", rc, NULL, 0}};
    if (grid_write_png(grid, cols, 2, rows, S, S, err, sizeof err) < 0) { fprintf(stderr, "memfit train vqgan: %s\n", err); *grid_failed = 1; }
  }
  return 5;
}

static int vqgan_session_ready_hook(void *ctx, mf_session *s, char *err, size_t n) {
  vq_ctx *c = ctx;
  float f = 0;
  if (mf_session_write_input(s, c->net.factor, &f, 1) < 0 || vq_session_ready(&c->net.vq, s) < 0) {
    snprintf(err, n, "preparing the VQGAN session failed (see above)");
    return -1;
  }
  if (vqgan_load_perceptual(&c->net, s, err, n) < 0) return -1;
  return 0;
}

static void vq_ctx_free(void *ctx) {
  vq_ctx *c = ctx;
  if (!c) return;
  vq_stats_free(&c->train_st);
  vq_stats_free(&c->val_st);
  free(c->xbuf);
  free(c->rbuf);
  free(c->vin);
  free(c->vrec);
  free(c->xperm);
  free(c->psnr_t);
  vqgan_net_free(&c->net);
  if (c->g) mf_graph_free(c->g);
  free(c);
}

static int train_setup(const void *p, const mf_train_args *a, const mf_train_choice *ch, mf_train_job *j, char *err, size_t n) {
  const vqgan_tcfg *tc = p;
  vqgan_cfg cfg = tc->mc;
  int micro = ch->micro_batch;
  cfg.batch = a->batch;
  cfg.micro_batch = micro;
  cfg.segments = ch->variant == 1;
  if (vqgan_cfg_check(&cfg, err, n) < 0) return -1;
  vq_ctx *c = calloc(1, sizeof *c);
  if (!c) { snprintf(err, n, "out of host memory"); return -1; }
  j->hooks.ctx = c;
  j->ctx_free = vq_ctx_free;
  c->micro = micro;
  c->seed = (uint64_t)a->seed;
  c->frames = cfg.frames;
  c->grid_rows = cfg.frames > 1 ? (cfg.frames < 64 ? cfg.frames : 64) : tc->grid_rows; /* clips: the first clip's frames */
  if (!(c->g = mf_graph_init(ch->dtype))) { snprintf(err, n, "out of host memory"); return -1; }
  mf_graph_set_seed(c->g, (uint64_t)a->seed);
  if (vqgan_build(c->g, &cfg, micro, &c->net, err, n) < 0) return -1;
  c->cfg = c->net.cfg;
  j->g = c->g;
  j->loss = c->net.gen_loss;
  vqgan_phases(&c->net, j->phases);
  j->n_phases = 2;
  j->n_groups = 2;
  j->n_keep = vqgan_keep(&c->net, j->keep);
  j->optim = MF_ADAM;
  int64_t per = (int64_t)cfg.channels * cfg.size * cfg.size * cfg.frames; /* one sample */
  if (!(c->psnr_t = calloc((size_t)cfg.frames, sizeof *c->psnr_t)) || (cfg.frames > 1 && !(c->xperm = malloc((size_t)(per * micro) * sizeof(float))))) {
    snprintf(err, n, "out of host memory");
    return -1;
  }
  if (vq_stats_init(&c->train_st, &c->net.vq, (uint64_t)a->seed) < 0 || vq_stats_init(&c->val_st, &c->net.vq, (uint64_t)a->seed) < 0 ||
      !(c->xbuf = malloc((size_t)(per * micro) * sizeof(float))) || !(c->rbuf = malloc((size_t)(per * micro) * sizeof(float))) ||
      !(c->vin = malloc((size_t)(per / cfg.frames * c->grid_rows) * sizeof(float))) ||
      !(c->vrec = malloc((size_t)(per / cfg.frames * c->grid_rows) * sizeof(float)))) {
    snprintf(err, n, "out of host memory");
    return -1;
  }
  c->train_st.samples = micro; /* clips or images per micro-batch: the EMA restarts' rows under data parallelism */
  int generated = !strcmp(a->data, "generated");
  if (generated && cfg.frames > 1) {
    j->train = mf_dataset_generated_video((size_t)tc->gen_count, cfg.size, cfg.size, cfg.frames, (uint64_t)a->seed * 7919u + 1, err, n);
    j->val = j->train ? mf_dataset_generated_video((size_t)tc->val_count, cfg.size, cfg.size, cfg.frames, (uint64_t)a->seed * 104729u + 17, err, n)
                      : NULL;
  } else if (generated) {
    j->train = mf_dataset_generated((size_t)tc->gen_count, cfg.size, cfg.size, (uint64_t)a->seed * 7919u + 1, err, n);
    j->val = j->train ? mf_dataset_generated((size_t)tc->val_count, cfg.size, cfg.size, (uint64_t)a->seed * 104729u + 17, err, n) : NULL;
  } else if (cfg.frames > 1) { /* a video folder (UCF-101 layout): clips of T frames, unreadable or short files skipped */
    mf_video_opts vo = mf_video_opts_default();
    vo.clip_len = cfg.frames;
    vo.frame_stride = tc->frame_stride;
    vo.val_fraction = a->val_data ? 0 : a->val_split;
    vo.split = !a->val_data && a->val_split > 0 ? MF_SPLIT_TRAIN : MF_SPLIT_ALL;
    j->train = mf_dataset_open_video(a->data, &vo, err, n);
    if (j->train && (a->val_data || a->val_split > 0)) {
      vo.split = a->val_data ? MF_SPLIT_ALL : MF_SPLIT_VAL;
      j->val = mf_dataset_open_video(a->val_data ? a->val_data : a->data, &vo, err, n);
    }
  } else {
    mf_folder_opts fo = mf_folder_opts_default();
    fo.val_fraction = a->val_data ? 0 : a->val_split;
    fo.split = !a->val_data && a->val_split > 0 ? MF_SPLIT_TRAIN : MF_SPLIT_ALL;
    j->train = mf_dataset_open_path(a->data, &fo, err, n);
    if (j->train && (a->val_data || a->val_split > 0)) {
      fo.split = a->val_data ? MF_SPLIT_ALL : MF_SPLIT_VAL;
      j->val = mf_dataset_open_path(a->val_data ? a->val_data : a->data, &fo, err, n);
    }
  }
  if (!j->train) return -1;
  c->val = j->val;
  c->n_val = j->val ? (int)(mf_dataset_size(j->val) < (size_t)tc->val_count ? mf_dataset_size(j->val) : (size_t)tc->val_count) : 0;
  mf_loader_opts *lo = &j->lo;
  *lo = mf_loader_opts_default();
  lo->dataset = j->train;
  lo->batch_size = micro;
  lo->workers = a->workers;
  lo->seed = (uint64_t)a->seed;
  lo->tf = mf_transform_opts_default();
  lo->tf.out_w = lo->tf.out_h = cfg.size;
  lo->tf.channels = cfg.channels;
  lo->tf.crop = MF_CROP_RANDOM;
  lo->tf.hflip = 0.5f;
  lo->tf.normalize = 1; /* [0,1] -> [-1,1] as taming's data */
  for (int k = 0; k < 3; k++) lo->tf.mean[k] = 0.5f, lo->tf.std[k] = 0.5f;
  mf_train_job_data_setting(j, "vqgan.seed", "--seed", MF_DATA_DECISIVE, "%d", a->seed);
  mf_train_job_data_setting(j, "vqgan.size", "--size", MF_DATA_DECISIVE, "%d", cfg.size);
  mf_train_job_data_setting(j, "vqgan.frames", "--clips", MF_DATA_DECISIVE, "%d", cfg.frames);
  if (cfg.frames > 1 && !generated) mf_train_job_data_setting(j, "vqgan.frame_stride", "--frame-stride", MF_DATA_DECISIVE, "%d", tc->frame_stride);
  mf_train_job_data_setting(j, "vqgan.micro_batch", "the micro-batch (--batch, or chosen for --budget)", MF_DATA_DECISIVE | MF_DATA_PER_RANK, "%d", micro);
  if (generated) mf_train_job_data_setting(j, "vqgan.gen_count", "--gen-count", MF_DATA_DECISIVE, "%d", tc->gen_count);
  mf_train_job_data_setting(j, "vqgan.workers", "--workers", 0, "%d", a->workers);

  j->hooks.feed = vq_feed;
  j->hooks.read_terms = vq_read_terms;
  j->hooks.describe_terms = vq_describe_terms;
  j->hooks.after_update = vq_after_update;
  j->hooks.step_loss = vq_step_loss;
  j->hooks.validate = c->n_val ? vq_validate : NULL;
  j->session_ready = vqgan_session_ready_hook;
  static const char *const terms[4] = {"rec_psnr", "code_perplexity", "lambda", "g_loss"};
  j->n_terms = 4;
  j->term_names = terms;
  j->sample_unit = cfg.frames > 1 ? "clips" : "images";
  j->loss_divisor = 1;
  j->values_per_sample = (double)per;
  snprintf(j->crop_option, sizeof j->crop_option, "--size %d", cfg.size);
  snprintf(j->batch_note, sizeof j->batch_note, cfg.frames > 1 ? " (%d clips)" : " (%d images)", micro);
  snprintf(j->more_data_hint, sizeof j->more_data_hint, "%s", generated ? " or raise --gen-count" : "");
  char desc[512];
  vqgan_cfg_describe(&cfg, desc, sizeof desc);
  snprintf(j->timeline_title, sizeof j->timeline_title, "one training step: VQGAN %dx%d, micro-batch %d, %s", cfg.size, cfg.size, micro,
           mf_dtype_name(ch->dtype));
  snprintf(j->settings, sizeof j->settings, "%.300s; micro-batch %d x %d, %s, Adam lr %g betas (%g, %g)", desc, micro, ch->accum,
           mf_dtype_name(ch->dtype), a->lr, a->beta1, a->beta2);
  snprintf(j->header, sizeof j->header, "memfit train vqgan: preset '%s': %s; micro-batch %d x %d, %s, %s\ndata: %s (%zu training %s%s)",
           cfg.preset, desc, micro, ch->accum, mf_dtype_name(ch->dtype), a->budget ? "settings from the budget search" : "settings as given",
           generated ? (cfg.frames > 1 ? "generated procedural video" : "generated procedural images") : a->data, mf_dataset_size(j->train),
           cfg.frames > 1 ? "clips" : "images", c->n_val ? "; PSNR/SSIM and codebook usage on the validation samples" : "; no validation samples");
  char ssim[64] = "";
  if (cfg.ssim_weight > 0) snprintf(ssim, sizeof ssim, " + %g x (1 - SSIM)", cfg.ssim_weight);
  char perc[200] = "; perceptual loss off (no network file: --perceptual FILE)";
  if (cfg.perceptual[0]) snprintf(perc, sizeof perc, " + %g x perceptual (%.120s, frozen)", cfg.perceptual_weight, cfg.perceptual);
  snprintf(j->losses, sizeof j->losses, "losses: %s%s + adaptive-weight hinge GAN from update %d + %s%s",
           cfg.rec_l2 ? "L2" : "L1", ssim, cfg.disc_start, cfg.q.kind == VQ_KIND_FSQ ? "FSQ (no codebook loss)" : "codebook + 0.25 commitment", perc);
  return 0;
}

static const mf_workload_train vqgan_train = {
  .train_defaults = train_defaults,
  .train_cfg_new = train_cfg_new,
  .train_cfg_set = train_cfg_set,
  .train_help = train_help,
  .train_check = train_check,
  .train_batch = train_batch,
  .train_plan_cfg = train_plan_cfg,
  .train_setup = train_setup,
  .train_choose = train_choose,
};

const mf_workload mf_workload_vqgan = {
  .name = "vqgan",
  .summary = "VQGAN image tokenizer (taming-transformers layout): VQ or FSQ, PatchGAN, two phases",
  .cfg_new = cfg_new,
  .cfg_set = cfg_set,
  .cfg_help = vqgan_cfg_help,
  .cfg_describe = cfg_describe,
  .effective_batch = effective_batch,
  .default_micro_batch = default_micro_batch,
  .n_variants = 2,
  .variant_names = variant_names,
  .build = build,
  .state_free = free,
  .staging_bytes = staging_bytes,
  .wider_option = "--ch",
  .train = &vqgan_train,
};

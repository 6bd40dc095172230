/* vqgan_workload.c — VQGAN's settings by name (--preset, --size, --ch, --mult, --latent, --codes, --ema,
 * --fsq-levels, --batch, --micro-batch...) and its exact two-phase planning: every candidate (micro-batch,
 * precision, recompute) is one mf_plan_init_phases of the generator and discriminator phases, so the peak,
 * the phase that sets it and the arenas are the plan's, to the byte. */
#include "models/vqgan_workload.h"
#include "models/workload.h"
#include <stdlib.h>
#include <string.h>

/* "8,5,5,5" -> up to max positive ints; count or -1 */
static int int_list(const char *v, int *out, int max) {
  int n = 0;
  const char *p = v;
  while (*p) {
    char *end;
    long x = strtol(p, &end, 10);
    if (end == p || n >= max || x < -1000000 || x > 1000000) return -1;
    out[n++] = (int)x;
    if (*end == ',') p = end + 1;
    else if (*end == 0) p = end;
    else return -1;
  }
  return n;
}

int vqgan_cfg_set(vqgan_cfg *c, const char *key, const char *val, char *err, size_t n) {
  if (!strcmp(key, "preset")) return vqgan_cfg_preset(val, c, err, n);
  if (!strcmp(key, "size")) {
    if (mf_setting_int(key, val, 8, 8192, &c->size, err, n)) return -1;
    c->size_given = 1;
    return 0;
  }
  if (!strcmp(key, "clips")) {
    if (mf_setting_int(key, val, 1, 4096, &c->frames, err, n)) return -1;
    if (c->frames > 1 && !c->size_given) c->size = 128; /* the presets' clips: T x 128 x 128 */
    return 0;
  }
  if (!strcmp(key, "channels")) return mf_setting_int(key, val, 1, 64, &c->channels, err, n);
  if (!strcmp(key, "ch")) return mf_setting_int(key, val, 1, 4096, &c->ch, err, n);
  if (!strcmp(key, "res-blocks")) return mf_setting_int(key, val, 1, 16, &c->res_blocks, err, n);
  if (!strcmp(key, "latent")) {
    if (mf_setting_int(key, val, 1, 4096, &c->z_channels, err, n)) return -1;
    if (c->q.kind == VQ_KIND_VQ) c->q.dim = c->z_channels;
    return 0;
  }
  if (!strcmp(key, "codes")) {
    int k;
    if (mf_setting_int(key, val, 0, 1 << 30, &k, err, n)) return -1;
    c->q.codes = k;
    c->q.kind = VQ_KIND_VQ;
    c->q.dim = c->z_channels;
    return 0;
  }
  if (!strcmp(key, "ema")) return mf_setting_int(key, val, 0, 1, &c->q.ema, err, n);
  if (!strcmp(key, "beta")) return mf_setting_double(key, val, 0, 1e6, &c->q.beta, err, n);
  if (!strcmp(key, "fsq-levels")) {
    int lv[VQ_MAX_LEVELS + 1];
    int k = int_list(val, lv, VQ_MAX_LEVELS + 1);
    if (k < 1 || k > VQ_MAX_LEVELS) {
      snprintf(err, n, "--fsq-levels: '%s' is not a list of 1 to %d whole numbers such as 8,5,5,5", val, VQ_MAX_LEVELS);
      return -1;
    }
    c->q.kind = VQ_KIND_FSQ;
    c->q.dim = k;
    memcpy(c->q.levels, lv, (size_t)k * sizeof *lv);
    return 0;
  }
  if (!strcmp(key, "mult")) {
    int m[VQGAN_MAX_LEVELS + 1];
    int k = int_list(val, m, VQGAN_MAX_LEVELS + 1);
    if (k < 1 || k > VQGAN_MAX_LEVELS) {
      snprintf(err, n, "--mult: '%s' is not a list of 1 to %d channel multipliers such as 1,2,4,8", val, VQGAN_MAX_LEVELS);
      return -1;
    }
    memcpy(c->mult, m, (size_t)k * sizeof *m);
    c->levels = k;
    return 0;
  }
  if (!strcmp(key, "batch")) {
    if (mf_setting_int(key, val, 1, 1 << 20, &c->batch, err, n)) return -1;
    c->micro_batch = 0;
    return 0;
  }
  if (!strcmp(key, "micro-batch")) return mf_setting_int(key, val, 1, 1 << 20, &c->micro_batch, err, n);
  if (!strcmp(key, "disc-start")) return mf_setting_int(key, val, 0, 1 << 30, &c->disc_start, err, n);
  if (!strcmp(key, "disc-weight")) return mf_setting_double(key, val, 0, 1e6, &c->disc_weight, err, n);
  if (!strcmp(key, "disc-layers")) return mf_setting_int(key, val, 1, 8, &c->disc_layers, err, n);
  if (!strcmp(key, "disc-ch")) return mf_setting_int(key, val, 1, 4096, &c->disc_ch, err, n);
  if (!strcmp(key, "codebook-weight")) return mf_setting_double(key, val, 0, 1e6, &c->codebook_weight, err, n);
  if (!strcmp(key, "rec-loss")) {
    if (strcmp(val, "l1") && strcmp(val, "l2")) { snprintf(err, n, "--rec-loss: '%s' is not l1 or l2", val); return -1; }
    c->rec_l2 = !strcmp(val, "l2");
    return 0;
  }
  if (!strcmp(key, "perceptual")) {
    if (strlen(val) >= sizeof c->perceptual) { snprintf(err, n, "--perceptual: the path is longer than %zu bytes", sizeof c->perceptual - 1); return -1; }
    snprintf(c->perceptual, sizeof c->perceptual, "%s", val);
    return 0;
  }
  if (!strcmp(key, "perceptual-weight")) return mf_setting_double(key, val, 0, 1e6, &c->perceptual_weight, err, n);
  if (!strcmp(key, "ssim")) return mf_setting_double(key, val, 0, 1e6, &c->ssim_weight, err, n);
  if (!strcmp(key, "keep-scores")) return mf_setting_int(key, val, 0, 1, &c->keep_scores, err, n);
  if (!strcmp(key, "attn")) return mf_setting_int(key, val, 0, 1, &c->attn, err, n);
  snprintf(err, n, "vqgan: unknown setting --%s (settings: --preset, --size, --clips, --channels, --ch, --mult, --res-blocks, --latent, "
                   "--codes, --ema, --beta, --fsq-levels, --batch, --micro-batch, --disc-start, --disc-weight, --disc-layers, "
                   "--disc-ch, --codebook-weight, --rec-loss, --ssim, --perceptual, --perceptual-weight, --keep-scores, --attn)", key);
  return -1;
}

void vqgan_cfg_help(FILE *f) {
  fprintf(f, "  --preset P           %s (default low): hidden [16,32,64,128] / latent 16 / 128 codes / batch 1 x 8,\n"
             "                       mid [32,...,256] / 16 / 256 / 2 x 4, high [32,...,256] / 24 / 512 / 4 x 2,\n"
             "                       original [64,...,512] / 32 / 512 / 8 x 1; all 256 x 256 images\n"
             "  --size S             image side (a multiple of 2^(levels-1))\n"
             "  --clips T            video: clips of T frames (default 1: images); per-frame 2D layers with a 3-tap\n"
             "                       temporal conv in every ResNet block; 128 x 128 unless --size is given\n"
             "  --ch C, --mult LIST  base channels and per-level multipliers (hidden = C x mult, e.g. 16 and 1,2,4,8)\n"
             "  --res-blocks N       ResNet blocks per level (2)\n"
             "  --latent D           latent channels and code dimension\n"
             "  --codes K            codebook entries;  --ema 1: EMA codebook (decay 0.99, dead-code restarts)\n"
             "  --fsq-levels LIST    FSQ instead of a codebook, e.g. 8,5,5,5 (each at least 2)\n"
             "  --beta B             commitment weight (0.25)\n"
             "  --batch N, --micro-batch M  effective batch and samples per micro-step\n"
             "  --disc-start N       updates before the GAN terms switch on (0);  --disc-weight W (0.8)\n"
             "  --disc-layers L, --disc-ch C  PatchGAN layers and filters (3, 64)\n"
             "  --perceptual FILE    adds W x sum over the network's outputs of mean (f(xrec) - f(x))^2, f an ONNX feature\n"
             "                       network you supply (frozen; gets [2N, C, S, S] in [0, 1]); none is bundled: off without\n"
             "  --perceptual-weight W  (1)\n"
             "  --ssim W             adds W x mean(1 - SSIM) per image or frame (steg's SSIM, 7x7 windows; 0: off)\n"
             "  --rec-loss l1|l2     reconstruction loss (l1);  --keep-scores 1: attention keeps its scores for backward\n",
          vqgan_preset_names());
}

/* ---- exact planning of both phases ---- */

int vqgan_plan_one(const vqgan_cfg *c, int micro, mf_dtype dt, int recompute, const char *backend, int threads, vqgan_cand *out,
                   mf_plan **keep_plan, mf_graph **keep_graph, char *err, size_t n) {
  memset(out, 0, sizeof *out);
  out->micro = micro;
  out->accum = c->batch / micro;
  out->dtype = dt;
  out->recompute = recompute;
  mf_graph *g = mf_graph_init(dt);
  vqgan_net net;
  if (!g || vqgan_build(g, c, micro, &net, err, n) < 0) { mf_graph_free(g); return -1; }
  mf_phase_opts ph[2];
  vqgan_phases(&net, ph);
  mf_tensor keep[12];
  mf_plan_opts po = mf_plan_opts_default();
  po.optim = MF_ADAM;
  po.recompute = recompute ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
  po.backend = backend;
  po.threads = threads;
  po.n_keep = vqgan_keep(&net, keep);
  po.keep = keep;
  mf_plan *p = mf_plan_init_phases(g, 2, ph, &po, err, n);
  vqgan_net_free(&net); /* the plan needs the graph only */
  if (!p) { mf_graph_free(g); return -1; }
  for (int a = 0; a < MF_ARENA_COUNT; a++) out->arena[a] = mf_plan_arena_bytes(p, (mf_arena_kind)a);
  out->total = mf_plan_total_bytes(p);
  for (int k = 0; k < 2; k++) {
    const char *op = NULL;
    out->peak[k] = mf_plan_phase_peak(p, k, &op);
    snprintf(out->peak_op[k], sizeof out->peak_op[k], "%s", op ? op : "-");
  }
  out->flops = mf_plan_flops(p);
  if (keep_plan) { *keep_plan = p; *keep_graph = g; }
  else { mf_plan_free(p); mf_graph_free(g); }
  return 0;
}

/* predicted seconds per effective batch: the plan's arithmetic at the calibrated rate of its precision */
static double cand_time(const vqgan_cand *c, const mf_calibration *cal) {
  double r = cal->flops_per_s[c->dtype] > 0 ? cal->flops_per_s[c->dtype] : 1e10;
  return c->flops * c->accum / r;
}

int vqgan_search(const vqgan_cfg *c, const vqgan_search_opts *o, vqgan_cand *cands, int max, int *n_out, char *err, size_t n) {
  mf_calibration cal;
  char e2[256];
  if (mf_calibrate(o->backend, o->threads, &cal, e2, sizeof e2) < 0) memset(&cal, 0, sizeof cal);
  int k = 0;
  for (int m = c->batch; m >= 1 && k < max; m--) {
    if (c->batch % m || (o->micro && m != o->micro)) continue;
    for (int d = 0; d < 2 && k < max; d++) {
      mf_dtype dt = d ? MF_BF16 : MF_F32;
      if (!(o->dtypes & (1u << dt))) continue;
      for (int r = 0; r < 2 && k < max; r++) {
        if (o->mode >= 0 && r != o->mode) continue;
        if (vqgan_plan_one(c, m, dt, r, o->backend, o->threads, &cands[k], NULL, NULL, err, n) < 0) return -1;
        cands[k].time = cand_time(&cands[k], &cal);
        cands[k].fits = !o->budget || cands[k].total <= (size_t)o->budget;
        k++;
      }
    }
  }
  /* rank: fits first, then predicted time, then f32 before bf16 at equal time */
  for (int i = 1; i < k; i++)
    for (int j = i; j > 0; j--) {
      vqgan_cand *a = &cands[j - 1], *b = &cands[j];
      int swap = b->fits > a->fits || (b->fits == a->fits && (b->time < a->time * 0.999 ||
                                                              (b->time <= a->time * 1.001 && b->dtype == MF_F32 && a->dtype != MF_F32)));
      if (!swap) break;
      vqgan_cand t = *a;
      *a = *b;
      *b = t;
    }
  *n_out = k;
  return 0;
}

void vqgan_cand_describe(const vqgan_cand *c, char *buf, size_t n) {
  snprintf(buf, n, "micro-batch %d x %d accumulation, %s, %s", c->micro, c->accum, mf_dtype_name(c->dtype),
           c->recompute ? "every block recomputed in backward" : "every activation stored");
}

/* imagegs_workload.c — Image-GS as a planner workload: settings by name (--size WxH, --gaussians, --channels,
 * --initial, --top-k, --max-radius), and its variants, tile side x backward mode, each tile one micro-step of the
 * update: the budget search picks the tile size and whether the top-K map is kept. */
#include "models/imagegs.h"
#include "models/workload.h"
#include <stdlib.h>
#include <string.h>

static void *cfg_new(void) {
  igs_cfg *c = calloc(1, sizeof *c);
  if (c) *c = igs_cfg_default();
  return c;
}

/* "7680x4320" -> 7680, 4320 */
int igs_parse_size(const char *val, int *w, int *h, char *err, size_t n) {
  char *end;
  long a = strtol(val, &end, 10), b = 0;
  if (end != val && (*end == 'x' || *end == 'X')) {
    const char *p = end + 1;
    b = strtol(p, &end, 10);
    if (end == p) b = 0;
  }
  if (*end || a < IGS_SSIM_K || b < IGS_SSIM_K || a > (1 << 20) || b > (1 << 20)) {
    snprintf(err, n, "--size: '%s' is not WIDTHxHEIGHT with each from %d to 1048576 pixels (e.g. 7680x4320)", val, IGS_SSIM_K);
    return -1;
  }
  *w = (int)a;
  *h = (int)b;
  return 0;
}

int igs_cfg_set(igs_cfg *c, const char *key, const char *val, char *err, size_t n) {
  if (!strcmp(key, "size")) return igs_parse_size(val, &c->width, &c->height, err, n);
  if (!strcmp(key, "gaussians")) return mf_setting_int(key, val, 0, 1 << 30, &c->gaussians, err, n);
  if (!strcmp(key, "initial")) return mf_setting_int(key, val, 0, 1 << 30, &c->initial, err, n);
  if (!strcmp(key, "channels")) return mf_setting_int(key, val, 1, 12, &c->channels, err, n);
  if (!strcmp(key, "top-k")) return mf_setting_int(key, val, 1, 32, &c->top_k, err, n);
  if (!strcmp(key, "quant-bits")) return mf_setting_int(key, val, 0, 16, &c->quant_bits, err, n);
  if (!strcmp(key, "tile")) return mf_setting_int(key, val, 0, 1 << 20, &c->tile_side, err, n);
  if (!strcmp(key, "max-radius")) return mf_setting_double(key, val, 1, 4096, &c->max_radius, err, n);
  snprintf(err, n, "imagegs: unknown setting --%s (settings: --size, --gaussians, --channels, --initial, --top-k, --max-radius, --tile, --quant-bits)", key);
  return -1;
}

static int cfg_check(const void *p, char *err, size_t n) { return igs_cfg_check(p, err, n); }

static int cfg_set(void *p, const char *key, const char *val, char *err, size_t n) { return igs_cfg_set(p, key, val, err, n); }

void igs_cfg_help(FILE *f) {
  fprintf(f, "  --size WxH         the image in pixels (512x512)\n"
             "  --gaussians N      the final number of Gaussians, planned from step 0 (2000); 1 .. the pixels\n"
             "  --initial N        Gaussians active at step 0; the rest are added during the fit (0: half)\n"
             "  --channels C       colour channels of the image and the Gaussians, 1 .. 12 (3)\n"
             "  --top-k K          Gaussians blended per pixel (10)\n"
             "  --max-radius R     the largest 3-sigma radius drawn, pixels (64): bounds the Gaussian-tile pair lists\n"
             "  --quant-bits B     draw the parameters quantised to B bits (straight-through gradients; 0: off, f32)\n"
             "  --tile S           image tiles of at most S x S pixels, a multiple of 16 (default: chosen by the planner)\n");
}

static void cfg_help(FILE *f) {
  igs_cfg_help(f);
  fprintf(f, "  (variants: tile side x backward mode; with --budget the planner picks the tiles that fit, each tile a\n"
             "  micro-step whose gradients add up to the whole image's, and keeps the top-K map when it fits; without a\n"
             "  budget: the whole image with the map kept)\n");
}

static void cfg_describe(const void *p, char *buf, size_t n) {
  const igs_cfg *c = p;
  snprintf(buf, n, "Image-GS: %dx%d image, %d channels, %d Gaussians (%d at step 0), top-%d, radius <= %g px, loss L1 + %g (1 - SSIM %dx%d)",
           c->width, c->height, c->channels, c->gaussians, c->initial ? c->initial : (c->gaussians + 1) / 2, c->top_k, c->max_radius,
           c->ssim_weight, IGS_SSIM_K, IGS_SSIM_K);
}

static int effective_batch(const void *p) { (void)p; return 1; }
static int default_micro_batch(const void *p) { (void)p; return 1; }

static int build(mf_graph *g, const void *p, int variant, int mb, mf_tensor *loss, void **state, char *err, size_t n) {
  (void)mb;
  igs_net *m = calloc(1, sizeof *m);
  if (!m) { snprintf(err, n, "out of host memory"); return -1; }
  if (igs_build(g, p, variant, m, err, n) < 0) { free(m); return -1; }
  *loss = m->loss;
  *state = m;
  return 0;
}

static int micro_steps(const void *p, int variant, int mb) {
  (void)mb;
  igs_tiling t = igs_tiling_of(p, variant);
  return t.nx * t.ny;
}

/* the image on the host (f32), read tile by tile */
static size_t staging_bytes(const void *p, int mb) {
  (void)mb;
  const igs_cfg *c = p;
  return (size_t)c->width * c->height * c->channels * sizeof(float);
}

/* Keeping the top-K map saves the second selection pass (about 40% of a step in the profile, docs/imagegs.md; bench_raster
 * measures the kept mode about 25-30% faster): the cost model, which charges the map's bytes but prices the selection like
 * any FLOP, cannot see that, so the search takes the kept map whenever it fits at the same settings. */
static int preferred_variant(const void *p, int variant) {
  (void)p;
  return variant % 2 == 0 ? variant + 1 : -1;
}

static void explain(const void *p, int variant, int mb, FILE *f) {
  (void)mb;
  const igs_cfg *c = p;
  igs_tiling t = igs_tiling_of(c, variant);
  mf_raster_opts ro = {0};
  ro.width = t.ww;
  ro.height = t.wh;
  ro.max_radius = c->max_radius;
  if (t.nx * t.ny == 1)
    fprintf(f, "image tiles: none, the whole %dx%d image in one micro-step\n", c->width, c->height);
  else
    fprintf(f, "image tiles: %dx%d px (windows of %dx%d with the %d px SSIM halo), %d x %d = %d micro-steps per update whose\n"
               "  gradients add up to the whole image's (the loss is a sum over pixels)\n",
            t.tw, t.th, t.ww, t.wh, IGS_SSIM_K - 1, t.nx, t.ny, t.nx * t.ny);
  fprintf(f, "backward: %s\n", t.keep_topk ? "the top-K index map is kept from forward (4 x top-k bytes per window pixel, activations;\n"
                                             "  the faster mode: backward does not select again)"
                                           : "the top-K selection is recomputed (no per-pixel map kept; one more pass over the tiles:\n"
                                             "  slower, chosen when the kept map does not fit)");
  fprintf(f, "Gaussian-tile pairs: at most %lld per window (%d Gaussians, radius <= %g px), planned as workspace\n",
          (long long)mf_raster_pair_bound(c->gaussians, &ro), c->gaussians, c->max_radius);
}

const mf_workload mf_workload_imagegs = {
  .name = "imagegs",
  .summary = "Image-GS: an image as 2D Gaussians, fitted over image tiles (docs/imagegs.md)",
  .cfg_new = cfg_new,
  .cfg_set = cfg_set,
  .cfg_help = cfg_help,
  .cfg_check = cfg_check,
  .cfg_describe = cfg_describe,
  .effective_batch = effective_batch,
  .default_micro_batch = default_micro_batch,
  .n_variants = IGS_N_VARIANTS,
  .variant_names = igs_variant_names,
  .build = build,
  .state_free = free,
  .staging_bytes = staging_bytes,
  .micro_steps = micro_steps,
  .explain = explain,
  .preferred_variant = preferred_variant,
  .default_variant = 1, /* without a budget: the whole image (or --tile's tiles), the top-K map kept */
  .wider_option = "--gaussians",
  .train = &mf_workload_imagegs_train, /* src/models/imagegs_train.c */
};

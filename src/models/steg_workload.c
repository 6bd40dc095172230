/* steg_workload.c — the steganography model as a planner workload: settings by name, and two graph
 * variants for the planner: coupling blocks as invertible segments (memory-free backprop) or each
 * dense-block subnet as a checkpoint segment (finer recompute). */
#include "models/steg.h"
#include "models/workload.h"
#include <stdlib.h>
#include <string.h>

typedef struct steg_wcfg { mf_steg_config c; int eff_batch; } steg_wcfg;

static void *cfg_new(void) {
  steg_wcfg *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  char err[128];
  mf_steg_config_preset("small", &w->c, err, sizeof err); /* as memfit train steg */
  w->eff_batch = w->c.batch * w->c.accum_steps;
  return w;
}

static int cfg_set(void *p, const char *key, const char *val, char *err, size_t n) {
  steg_wcfg *w = p;
  if (!strcmp(key, "preset")) {
    if (mf_steg_config_preset(val, &w->c, err, n) < 0) return -1;
    w->eff_batch = w->c.batch * w->c.accum_steps;
    return 0;
  }
  if (!strcmp(key, "size")) {
    int s;
    if (mf_setting_int(key, val, 2, 16384, &s, err, n)) return -1;
    if (s % 2) { snprintf(err, n, "--size: %d is odd; the Haar wavelet needs an even size", s); return -1; }
    w->c.height = w->c.width = s;
    return 0;
  }
  if (!strcmp(key, "blocks")) return mf_setting_int(key, val, 1, MF_STEG_MAX_BLOCKS, &w->c.blocks, err, n);
  if (!strcmp(key, "growth")) return mf_setting_int(key, val, 1, 4096, &w->c.growth, err, n);
  if (!strcmp(key, "batch")) return mf_setting_int(key, val, 1, 1 << 20, &w->eff_batch, err, n);
  if (!strcmp(key, "stego-bits")) {
    if (strcmp(val, "8") && strcmp(val, "0")) {
      snprintf(err, n, "--stego-bits: '%s': use 8 (train through the 8-bit PNG) or 0 (float stego)", val);
      return -1;
    }
    w->c.stego_bits = atoi(val);
    return 0;
  }
  snprintf(err, n, "steg: unknown setting --%s (settings: --preset, --size, --blocks, --growth, --batch, --stego-bits)", key);
  return -1;
}

static void cfg_help(FILE *f) {
  fprintf(f, "  --preset NAME   one of the presets below (default small, as memfit train steg)\n"
             "  --size PIXELS   square crop, even (default: the preset's)\n"
             "  --blocks N      coupling blocks, 1..%d (default: the preset's)\n"
             "  --growth G      dense-block growth (default: the preset's)\n"
             "  --batch B       effective batch; micro-batch x accumulation is kept equal to it (default: the preset's)\n"
             "  --stego-bits B  8 (default): the training step rounds the stego to 8 bits before revealing; 0: float\n"
             "presets of steg (--preset):\n", MF_STEG_MAX_BLOCKS);
  char names[256];
  snprintf(names, sizeof names, "%s", mf_steg_preset_names());
  char *save = NULL;
  for (char *n = strtok_r(names, ", ", &save); n; n = strtok_r(NULL, ", ", &save)) {
    mf_steg_config c;
    char err[160];
    if (mf_steg_config_preset(n, &c, err, sizeof err) < 0) continue;
    fprintf(f, "  %-10s %2d blocks, growth %3d, %dx%d, batch %d x %d accumulated (%lld parameters)\n", n, c.blocks,
            c.growth, c.height, c.width, c.batch, c.accum_steps, (long long)mf_steg_param_count(&c));
  }
}

static void cfg_describe(const void *p, char *buf, size_t n) {
  const steg_wcfg *w = p;
  snprintf(buf, n, "steganography: %d blocks, growth %d, %dx%d, effective batch %d (%lld parameters)", w->c.blocks,
           w->c.growth, w->c.height, w->c.width, w->eff_batch, (long long)mf_steg_param_count(&w->c));
}

static int effective_batch(const void *p) { return ((const steg_wcfg *)p)->eff_batch; }

static int default_micro_batch(const void *p) {
  const steg_wcfg *w = p;
  int mb = w->c.batch < w->eff_batch ? w->c.batch : w->eff_batch;
  while (mb > 1 && w->eff_batch % mb) mb--;
  return mb;
}

static const char *const variants[] = {"invertible blocks", "checkpointed subnets"};

static int build(mf_graph *g, const void *p, int variant, int mb, mf_tensor *loss, void **state, char *err, size_t n) {
  const steg_wcfg *w = p;
  mf_steg_model *m = calloc(1, sizeof *m);
  if (!m) { snprintf(err, n, "out of host memory"); return -1; }
  mf_steg_config c = w->c;
  c.batch = mb;
  c.segments = variant == 0 ? MF_STEG_SEG_BLOCKS : MF_STEG_SEG_SUBNETS;
  if (mf_steg_build(g, &c, m) < 0) { snprintf(err, n, "%s", mf_graph_error(g)); free(m); return -1; }
  *loss = m->loss;
  *state = m;
  return 0;
}

/* cover + secret per sample, f32, in each of the loader's prefetch+1 staging buffers (prefetch 2) */
static size_t staging_bytes(const void *p, int mb) {
  const steg_wcfg *w = p;
  return (size_t)3 * 2 * (size_t)mb * 3 * (size_t)w->c.height * (size_t)w->c.width * sizeof(float);
}

const mf_workload mf_workload_steg = {
  .wider_option = "--growth",
  .name = "steg",
  .summary = "image steganography with an invertible network (HiNet-style, docs/design.md)",
  .cfg_new = cfg_new,
  .cfg_set = cfg_set,
  .cfg_help = cfg_help,
  .cfg_describe = cfg_describe,
  .effective_batch = effective_batch,
  .default_micro_batch = default_micro_batch,
  .n_variants = 2,
  .variant_names = variants,
  .build = build,
  .state_free = free,
  .batch_ok = NULL,
  .staging_bytes = staging_bytes,
  .train = &mf_workload_steg_train,
};

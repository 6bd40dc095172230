/* cmd_steg.c — the steganography workload's commands (docs/design.md 3.1, issue 3): `memfit train steg`,
 * `memfit hide`, `memfit reveal` and `memfit eval`: training inside an exact memory plan, hiding an
 * image or a text message in a cover, revealing it, and measuring the quality on 8-bit PNGs. */
#include "cli/cli.h"
#include "base/rng.h"
#include "data/data.h"
#include "data/grid.h"
#include "data/metrics.h"
#include "models/steg.h"
#include "models/steg_infer.h"
#include "models/steg_loss.h"
#include "models/workload.h"
#include "plan/search.h"
#include "train/safetensors.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MODEL_FORMAT "memfit-steg-model-1"
#define MSG_CELL 4        /* message mode: each bit is a MSG_CELL x MSG_CELL block of one channel */

/* ------------------------------------------------------------------ small helpers */

static void hwc_to_chw(const float *src, int w, int h, float *dst) {
  size_t n = (size_t)w * (size_t)h;
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) dst[(size_t)c * n + i] = src[i * 3 + (size_t)c];
}
static void chw_to_hwc(const float *src, int w, int h, float *dst) {
  size_t n = (size_t)w * (size_t)h;
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) dst[i * 3 + (size_t)c] = src[(size_t)c * n + i];
}

/* ------------------------------------------------------------------ sample grid */

/* Writes rows of [cover | stego | |stego-cover| x10 | secret | recovered | |recovered-secret| x10]
 * under column labels, each tile w x h (planar inputs, n rows), through grid_write_png. */
static int write_grid(const char *path, int n, const float *const *cover, const float *const *stego,
                      const float *const *secret, const float *const *rec, int w, int h, char *err, size_t errlen) {
  const grid_col cols[6] = {{"cover", cover, NULL, 0},  {"stego", stego, NULL, 0},   {"diff x10", stego, cover, 10.0f},
                            {"secret", secret, NULL, 0}, {"recovered", rec, NULL, 0}, {"diff x10", rec, secret, 10.0f}};
  return grid_write_png(path, cols, 6, n, w, h, err, errlen);
}

/* ------------------------------------------------------------------ model files */

/* Writes the parameters only (no optimizer state), with the settings in the metadata. */
static int model_save(mf_session *s, mf_graph *g, const mf_steg_model *m, const char *path, const char *note, char *err,
                      size_t errlen) {
  int nt = m->cfg.blocks * MF_STEG_SUBNETS * MF_STEG_CONVS * 2, ti = 0;
  float **bufs = calloc((size_t)nt, sizeof *bufs);
  char(*names)[96] = calloc((size_t)nt, sizeof *names);
  mf_st_writer *w = mf_st_writer_init();
  int rc = -1;
  if (!bufs || !names || !w) { snprintf(err, errlen, "%s: out of memory", path); goto out; }
  char v[64], pn[64];
  mf_st_writer_meta(w, "format", MODEL_FORMAT);
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

/* ------------------------------------------------------------------ messages as secret images */

/* CRC-32 of the 4 big-endian length bytes and the payload (so an all-black secret is no valid empty message) */
static uint32_t crc32_bytes(const uint8_t *p, size_t n) {
  uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  return mf_st_crc32(mf_st_crc32(0, hdr, 4), p, n);
}

/* Message layout. Every MSG_CELL x MSG_CELL block of every channel holds one bit (1 white, 0 black).
 * Positions q with q % 8 == 0 repeat the 32-bit payload length (bit (q/8) % 32); the others repeat
 * the body [payload | CRC-32 of length + payload] cyclically (body position j holds body bit j % F),
 * so every bit is stored as many times as fits, spread over the whole image, and read back by
 * summing the soft values (block mean - 0.5) of all its copies. */
static size_t msg_positions(int w, int h) { return (size_t)(w / MSG_CELL) * (size_t)(h / MSG_CELL) * 3; }
static long msg_capacity_bytes(int w, int h) {
  size_t n = msg_positions(w, h), nh = (n + 7) / 8;
  if (nh < 32) return 0;             /* not even one copy of the length */
  long body = (long)(n - nh) - 32;   /* one copy of payload + CRC */
  return body > 0 ? body / 8 : 0;
}

/* Bit i of the body [payload (len bytes) | CRC-32 (big-endian)]. */
static int body_bit(const uint8_t *msg, size_t len, uint32_t crc, size_t i) {
  if (i < len * 8) return (msg[i / 8] >> (7 - i % 8)) & 1;
  i -= len * 8;
  return (int)((crc >> (31 - i)) & 1);
}

/* The bit stored at position q for a message of len bytes. */
static int pos_bit(const uint8_t *msg, size_t len, uint32_t crc, size_t q) {
  if (q % 8 == 0) return (int)((len >> (31 - (q / 8) % 32)) & 1);
  size_t j = q - q / 8 - 1; /* index among the body positions */
  return body_bit(msg, len, crc, j % (len * 8 + 32));
}

/* Position q (channel fastest, then blocks in row-major order) of a planar w x h image. */
static void cell_pos(int w, size_t q, int *c, int *cx, int *cy) {
  int cw = w / MSG_CELL;
  *c = (int)(q % 3);
  size_t cell = q / 3;
  *cx = (int)(cell % (size_t)cw) * MSG_CELL;
  *cy = (int)(cell / (size_t)cw) * MSG_CELL;
}

/* Draws the message as a planar secret image (len <= msg_capacity_bytes). */
static void msg_encode(const uint8_t *msg, size_t len, int w, int h, float *img) {
  size_t np = (size_t)w * h, n = msg_positions(w, h);
  for (size_t i = 0; i < 3 * np; i++) img[i] = 0.5f; /* the margin right of / below the blocks */
  uint32_t crc = crc32_bytes(msg, len);
  for (size_t q = 0; q < n; q++) {
    int c, cx, cy;
    cell_pos(w, q, &c, &cx, &cy);
    float v = pos_bit(msg, len, crc, q) ? 1.0f : 0.0f;
    for (int y = 0; y < MSG_CELL; y++)
      for (int x = 0; x < MSG_CELL; x++) img[(size_t)c * np + (size_t)(cy + y) * w + cx + x] = v;
  }
}

/* Soft value of position q of a recovered secret: block mean - 0.5 (> 0 reads as 1) */
static double msg_soft(const float *img, int w, int h, size_t q) {
  size_t np = (size_t)w * h;
  int c, cx, cy;
  cell_pos(w, q, &c, &cx, &cy);
  double s = 0;
  for (int y = 0; y < MSG_CELL; y++)
    for (int x = 0; x < MSG_CELL; x++) s += img[(size_t)c * np + (size_t)(cy + y) * w + cx + x];
  return s / (MSG_CELL * MSG_CELL) - 0.5;
}

/* Decodes a message; returns its length (msg malloc'd, NUL-terminated), -1 bad length, -2 bad CRC. */
static long msg_decode(const float *img, int w, int h, uint8_t **msg) {
  *msg = NULL;
  size_t n = msg_positions(w, h);
  double hs[32] = {0};
  for (size_t q = 0; q < n; q += 8) hs[(q / 8) % 32] += msg_soft(img, w, h, q);
  uint32_t len = 0;
  for (int i = 0; i < 32; i++) len = len << 1 | (hs[i] > 0);
  if ((long)len > msg_capacity_bytes(w, h)) return -1;
  size_t F = (size_t)len * 8 + 32;
  double *acc = calloc(F, sizeof *acc);
  uint8_t *m = calloc((size_t)len + 1, 1);
  if (!acc || !m) { free(acc); free(m); return -1; }
  for (size_t q = 0; q < n; q++)
    if (q % 8) acc[(q - q / 8 - 1) % F] += msg_soft(img, w, h, q);
  for (size_t i = 0; i < (size_t)len * 8; i++)
    if (acc[i] > 0) m[i / 8] |= (uint8_t)(1u << (7 - i % 8));
  uint32_t crc = 0;
  for (int i = 0; i < 32; i++) crc = crc << 1 | (acc[(size_t)len * 8 + (size_t)i] > 0);
  free(acc);
  *msg = m;
  return crc == crc32_bytes(m, len) ? (long)len : -2;
}

/* ------------------------------------------------------------------ image input with checks */

/* PNG colour type from the IHDR chunk (byte 25), or -1 when not a PNG */
static int png_colour_type(const char *path) {
  unsigned char b[26];
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  return n == sizeof b && !memcmp(b, sig, 8) ? b[25] : -1;
}

/* Loads an image as planar RGB floats [3,h,w]; says what was converted (gray, alpha). */
static float *load_rgb(const char *path, const char *what, int *w, int *h, char *err, size_t errlen) {
  mf_image im;
  if (mf_image_load(path, 3, &im, err, errlen) != 0) return NULL;
  size_t n = (size_t)im.w * im.h;
  int ct = png_colour_type(path);
  if (ct == 4 || ct == 6)
    printf("%s %s: has an alpha channel: dropped (only RGB is hidden; transparent areas keep their colour values)\n", what, path);
  int gray = ct == 0 || ct == 4;
  if (ct < 0) { /* JPEG: gray when every pixel has equal channels */
    gray = 1;
    for (size_t i = 0; i < n && gray; i++) gray = im.data[i * 3] == im.data[i * 3 + 1] && im.data[i * 3] == im.data[i * 3 + 2];
  }
  if (gray) printf("%s %s: grayscale: used as RGB (the gray value in all three channels)\n", what, path);
  float *p = malloc(3 * n * sizeof *p);
  if (!p) { mf_image_free(&im); snprintf(err, errlen, "%s: out of memory", path); return NULL; }
  hwc_to_chw(im.data, im.w, im.h, p);
  *w = im.w;
  *h = im.h;
  mf_image_free(&im);
  return p;
}

static int save_planar(const char *path, const float *p, int w, int h, char *err, size_t errlen) {
  float *t = malloc((size_t)3 * w * h * sizeof *t);
  if (!t) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
  chw_to_hwc(p, w, h, t);
  int rc = mf_image_save_png(path, t, w, h, 3, err, errlen);
  free(t);
  return rc;
}

static int open_model(const char *path, mf_st_file **f, mf_steg_config *cfg, const char *cmd) {
  char err[1024];
  if (!path) { fprintf(stderr, "memfit %s: --model FILE is required (e.g. models/steg-small.safetensors)\n", cmd); return 2; }
  *f = mf_st_open(path, err, sizeof err);
  if (!*f) { fprintf(stderr, "memfit %s: model %s\n", cmd, err); return 1; }
  if (mf_steg_model_config(*f, path, cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit %s: %s\n", cmd, err); mf_st_close(*f); return 1; }
  return 0;
}

/* Reads at most max + 1 bytes of path, so that /dev/zero or a huge file cannot fill memory: *n > max
 * says the file is longer than max. Returns 0, or -1 with errno. */
static int read_file_bytes(const char *path, size_t max, uint8_t **buf, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 4096, len = 0;
  uint8_t *b = malloc(cap);
  for (size_t r; b && len <= max && (r = fread(b + len, 1, (cap - len < max + 1 - len ? cap - len : max + 1 - len), f)) > 0;) {
    len += r;
    if (len == cap) {
      uint8_t *nb = realloc(b, cap *= 2);
      if (!nb) { free(b); b = NULL; }
      else b = nb;
    }
  }
  int bad = ferror(f) || !b;
  fclose(f);
  if (bad) { free(b); return -1; }
  *buf = b;
  *n = len;
  return 0;
}

/* ------------------------------------------------------------------ memory budget of hide / reveal / eval */

/* A number from a one-line file or the "KEY: N kB" line of /proc/meminfo; 0 when absent or "max". */
static size_t read_size_file(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[256];
  size_t v = 0;
  while (fgets(line, sizeof line, f)) {
    if (key && strncmp(line, key, strlen(key))) continue;
    unsigned long long x;
    if (sscanf(key ? line + strlen(key) : line, " %llu", &x) == 1) v = (size_t)x * (key ? 1024 : 1);
    break;
  }
  fclose(f);
  return v;
}

/* The default --budget: half of the physical memory (sysconf), or of the cgroup's memory limit when
 * that is lower, or the kernel's MemAvailable (/proc/meminfo) when that is less still. */
static size_t default_budget(char *how, size_t n) {
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  size_t phys = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0, lim = phys;
  const char *what = "physical memory";
  size_t cg = read_size_file("/sys/fs/cgroup/memory.max", NULL);
  if (!cg) cg = read_size_file("/sys/fs/cgroup/memory/memory.limit_in_bytes", NULL);
  if (cg && (!lim || cg < lim)) { lim = cg; what = "the cgroup's memory limit"; }
  size_t b = lim / 2, avail = read_size_file("/proc/meminfo", "MemAvailable:");
  char h1[32], h2[32];
  mf_format_bytes(lim, h1, sizeof h1);
  if (avail && (!b || avail < b)) {
    mf_format_bytes(avail, h2, sizeof h2);
    snprintf(how, n, "default: MemAvailable %s, less than half of the %s of %s", h2, h1, what);
    return avail;
  }
  if (!b) { snprintf(how, n, "default: no limit (the machine's memory is unknown)"); return 0; }
  snprintf(how, n, "default: half of the %s of %s", h1, what);
  return b;
}

typedef struct budget_args {
  const char *budget_s; /* --budget as given, or NULL */
  int tile, halo;       /* --tile (0: chosen), --halo (-1: the receptive radius) */
} budget_args;

/* --budget / --tile / --halo; returns 1 when argv[*i] was one of them, 0 when not, -1 on a bad value. */
static int budget_opt(int argc, char **argv, int *i, budget_args *b) {
  const char *v;
  if ((v = cli_opt(argc, argv, i, "--budget"))) {
    int64_t bytes;
    if (cli_bytes("--budget", v, &bytes)) return -1;
    b->budget_s = v;
    return 1;
  }
  if ((v = cli_opt(argc, argv, i, "--tile"))) return cli_int("--tile", v, 2, 1 << 20, &b->tile) ? -1 : 1;
  if ((v = cli_opt(argc, argv, i, "--halo"))) return cli_int("--halo", v, 0, 1 << 20, &b->halo) ? -1 : 1;
  return 0;
}

/* Settings that contradict each other; returns 2 (a usage error) after saying why, else 0. */
static int budget_args_check(const char *cmd, const budget_args *b) {
  if (b->halo >= 0 && !b->tile) {
    fprintf(stderr, "memfit %s: --halo goes with --tile (without --tile the halo is the network's receptive radius)\n", cmd);
    return 2;
  }
  return 0;
}

#define BUDGET_HELP                                                                                               \
  "  --budget SIZE  memory for the whole command (e.g. 2GiB): the image buffers it holds plus memfit's plan of\n"   \
  "                 the network; when the whole image does not fit, the image runs in tiles with a halo of the\n"  \
  "                 network's receptive radius (the same output as one pass), as large as fit. Default: half of\n" \
  "                 the physical memory (sysconf; or of the cgroup memory limit when lower), or MemAvailable\n"     \
  "                 from /proc/meminfo when that is less.\n"                                                        \
  "  --tile N       force tiles of N x N pixels (for tests and demonstrations); --halo H overrides their halo\n"    \
  "                 (a multiple of 2; less than the receptive radius changes the output near tile edges)\n"    \
  "  --threads T    CPU threads (default 0: all cores; on a busy machine fewer run faster)\n"

/* Chooses whole image or tiles for a w x h image so that `host` bytes the command holds plus the
 * plan fit the budget (`share` graphs live at once, each gets an equal part of what is left), prints
 * one line saying which, and builds the runner. NULL after printing why. */
static mf_steg_runner *budget_runner(const char *cmd, const char *what, const mf_steg_config *cfg, int hide, int w, int h,
                                     size_t host, const char *host_what, int share, const budget_args *b, const mf_st_file *f,
                                     const char *model, int threads, mf_steg_tiling *t) {
  char how[160], err[1024], hb[32], hh[32], hp[32], hf[32], ht[32], desc[256];
  size_t budget = b->budget_s ? (size_t)mf_parse_bytes(b->budget_s) : default_budget(how, sizeof how);
  if (b->budget_s) snprintf(how, sizeof how, "--budget %s", b->budget_s);
  mf_format_bytes(budget, hb, sizeof hb);
  mf_format_bytes(host, hh, sizeof hh);
  size_t need = 0;
  int rc = !budget || host < budget
               ? mf_steg_tiling_choose(cfg, hide, w, h, budget ? (budget - host) / (size_t)share : 0, b->tile, b->halo, threads,
                                       MF_F32, t, &need, err, sizeof err)
               : mf_steg_tiling_choose(cfg, hide, w, h, 1, 0, -1, threads, MF_F32, t, &need, err, sizeof err);
  if (rc < 0 && !need) {
    fprintf(stderr, "memfit %s: %s%s\n", cmd, err, b->halo >= 0 ? " (see --halo)" : b->tile ? " (see --tile and --budget)" : "");
    return NULL;
  }
  if (rc < 0 || (budget && host >= budget)) {
    size_t min_total = host + (size_t)share * need, mib = (min_total + ((size_t)1 << 20) - 1) >> 20;
    mf_format_bytes(need, hp, sizeof hp);
    mf_format_bytes(min_total, ht, sizeof ht);
    char budget_what[256];
    if (b->budget_s) snprintf(budget_what, sizeof budget_what, "--budget %s", b->budget_s);
    else snprintf(budget_what, sizeof budget_what, "the budget (%s: %s)", how, hb);
    fprintf(stderr, "memfit %s: %s is too small for this %dx%d image: %s take %s and even the smallest tile (%dx%d pixels with "
                    "a %d-pixel halo: a %dx%d graph) needs %s%s, %s in all. Give --budget %zuMiB or more.\n",
            cmd, budget_what, w, h, host_what, hh, t->tile_w, t->tile_h, t->halo, t->rw, t->rh, hp,
            share > 1 ? " per graph (hide and reveal)" : "", ht, mib);
    return NULL;
  }
  mf_steg_tiling_describe(t, desc, sizeof desc);
  mf_format_bytes(t->plan_bytes, hp, sizeof hp);
  mf_format_bytes(t->buffer_bytes, hf, sizeof hf);
  mf_format_bytes(host + (size_t)share * (t->plan_bytes + t->buffer_bytes), ht, sizeof ht);
  printf("%s: %s; plan %s%s + tile buffer %s%s + %s %s = %s of the %s budget (%s)\n", what, desc, hp,
         t->nx * t->ny > 1 ? " per tile" : "", hf, share > 1 ? ", twice (hide and reveal graphs)" : "", host_what, hh, ht,
         budget ? hb : "unlimited", how);
  if (t->nx * t->ny > 1 && t->halo < t->radius)
    printf("warning: --halo %d is less than the network's receptive radius %d: pixels near tile edges differ from a "
           "whole-image run\n", t->halo, t->radius);
  mf_steg_runner *r = mf_steg_runner_init(cfg, t, f, model, threads, err, sizeof err);
  if (!r) fprintf(stderr, "memfit %s: %s\n", cmd, err);
  return r;
}

/* Refuses an image before decoding it when decoding would need more than the budget: reads its size
 * from the header and counts the file bytes, the decoded pixels (8 or 16 bits per channel) and the
 * float copies the command makes of the whole image (`float_copies` RGB float images), plus `held`
 * bytes the command already holds. Returns 0 when it fits (or the budget is unlimited), else -1 after
 * saying so, naming the file, its size and the budget. A file that is no image passes: the decoder
 * then says what is wrong with it. */
static int image_fits_budget(const char *cmd, const char *what, const char *path, int float_copies, size_t held,
                             const budget_args *b) {
  char how[160], why[256];
  size_t budget = b->budget_s ? (size_t)mf_parse_bytes(b->budget_s) : default_budget(how, sizeof how);
  if (b->budget_s) snprintf(how, sizeof how, "--budget %s", b->budget_s);
  int w, h, c, depth;
  struct stat st;
  if (!budget || stat(path, &st) != 0 || !S_ISREG(st.st_mode) || image_probe_file(path, &w, &h, &c, &depth, why, sizeof why) != 0)
    return 0;
  size_t px = (size_t)w * (size_t)h;
  size_t need = held + (size_t)st.st_size + px * (size_t)c * (size_t)(depth / 8) + px * 3 * sizeof(float) * (size_t)float_copies;
  if (need <= budget) return 0;
  char hn[32], hb[32], hf[32], budget_what[256];
  mf_format_bytes(need, hn, sizeof hn);
  mf_format_bytes(budget, hb, sizeof hb);
  mf_format_bytes((size_t)st.st_size, hf, sizeof hf);
  if (b->budget_s) snprintf(budget_what, sizeof budget_what, "--budget %s", b->budget_s);
  else snprintf(budget_what, sizeof budget_what, "the budget (%s: %s)", how, hb);
  fprintf(stderr, "memfit %s: %s is too small to decode %s %s, a %dx%d image (a %s file): decoding it needs %s; refused before "
                  "decoding. Give a smaller image or a larger --budget.\n", cmd, budget_what, what, path, w, h, hf, hn);
  return -1;
}

static void plan_line(const mf_steg_tiling *t, const char *what) {
  char h[32], rs[32];
  mf_format_bytes(t->plan_bytes, h, sizeof h);
  mf_format_bytes(mf_peak_rss_bytes(), rs, sizeof rs);
  printf("%s: memory plan %s%s (process peak RSS %s)\n", what, h, t->nx * t->ny > 1 ? " per tile" : "", rs);
}

/* ------------------------------------------------------------------ memfit hide */

int mf_cmd_hide(int argc, char **argv) {
  const char *model = NULL, *cover = NULL, *secret = NULL, *message = NULL, *message_file = NULL, *out = NULL;
  int threads = 0;
  budget_args ba = {NULL, 0, -1};
  for (int i = 1; i < argc; i++) {
    const char *v;
    int k;
    if (!strcmp(argv[i], "--help")) {
      printf("usage: memfit hide --model MODEL --cover COVER.png (--secret SECRET.png | --message TEXT | --message-file F)\n"
             "                   --out STEGO.png [--budget SIZE] [--threads T]\n"
             "Hides a secret image (resized to the cover with the data pipeline's antialiased bilinear filter) or a\n"
             "message in a cover of any size, and writes the stego image as an 8-bit PNG. Odd sizes are padded by\n"
             "one pixel (edge copy) for the network and cropped back. Messages: one bit per %dx%d block of a\n"
             "channel, with a length and a CRC-32, every bit repeated over the whole image as many times as fits\n"
             "(short messages survive more damage).\n"
             BUDGET_HELP, MSG_CELL, MSG_CELL);
      return 0;
    } else if ((v = cli_opt(argc, argv, &i, "--model"))) model = v;
    else if ((v = cli_opt(argc, argv, &i, "--cover"))) cover = v;
    else if ((v = cli_opt(argc, argv, &i, "--secret"))) secret = v;
    else if ((v = cli_opt(argc, argv, &i, "--message-file"))) message_file = v;
    else if ((v = cli_opt(argc, argv, &i, "--message"))) message = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) out = v;
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) return 2; }
    else if ((k = budget_opt(argc, argv, &i, &ba)) != 0) { if (k < 0) return 2; }
    else return cli_unknown_option("hide", argv[i]);
  }
  if (budget_args_check("hide", &ba)) return 2;
  if (!cover || !out || (!secret + !message + !message_file) != 2) {
    fprintf(stderr, "memfit hide: needs --cover, --out and exactly one of --secret, --message, --message-file (see --help)\n");
    return 2;
  }
  mf_st_file *f;
  mf_steg_config cfg;
  int rc = open_model(model, &f, &cfg, "hide");
  if (rc) return rc;
  char err[1024];
  int w, h, sw = 0, sh = 0;
  float *cv = NULL, *sc = NULL, *sec = NULL, *stc = NULL;
  uint8_t *msg = NULL;
  mf_steg_runner *R = NULL;
  mf_steg_tiling t;
  rc = 1;
  if (image_fits_budget("hide", "cover", cover, 2, 0, &ba) != 0 || (secret && image_fits_budget("hide", "secret", secret, 2, 0, &ba) != 0))
    goto out;
  cv = load_rgb(cover, "cover", &w, &h, err, sizeof err);
  if (!cv) { fprintf(stderr, "memfit hide: cover %s\n", err); goto out; }
  if (w < 2 || h < 2) { fprintf(stderr, "memfit hide: cover %s is %dx%d: the smallest cover is 2x2 pixels\n", cover, w, h); goto out; }
  size_t np = (size_t)w * h;
  if (secret) {
    sc = load_rgb(secret, "secret", &sw, &sh, err, sizeof err);
    if (!sc) { fprintf(stderr, "memfit hide: secret %s\n", err); goto out; }
    if (sw != w || sh != h) {
      printf("secret %s (%dx%d) resized to the cover's %dx%d (antialiased bilinear)%s\n", secret, sw, sh, w, h,
             (sw > w || sh > h) ? " (it is larger than the cover: detail is lost; give a secret no larger than the cover to avoid that)" : "");
      if (!(sec = malloc(3 * np * sizeof *sec))) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
      if (tf_resize_planes(sc, sw, sh, 3, sec, w, h, MF_FILTER_BILINEAR) != 0) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
      free(sc);
    } else sec = sc;
    sc = NULL;
  } else {
    size_t len;
    long cap = msg_capacity_bytes(w, h);
    if (message) { len = strlen(message); msg = malloc(len + 1); if (msg) memcpy(msg, message, len + 1); }
    else if (read_file_bytes(message_file, (size_t)cap, &msg, &len) != 0) {
      fprintf(stderr, "memfit hide: cannot read message file %s: %s\n", message_file, strerror(errno));
      goto out;
    }
    if (!msg) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
    if (message_file && (long)len > cap) { /* read no further than one byte past the capacity */
      fprintf(stderr, "memfit hide: the message file %s is longer than %ld bytes; a %dx%d cover holds at most %ld bytes (one bit "
                      "per %dx%d block of each channel, plus 8 bytes of length and CRC). Shorten it or use a larger cover.\n",
              message_file, cap, w, h, cap, MSG_CELL, MSG_CELL);
      goto out;
    }
    if ((long)len > cap) {
      fprintf(stderr, "memfit hide: the message is %zu bytes; a %dx%d cover holds at most %ld bytes (one bit per %dx%d block of "
                      "each channel, plus 8 bytes of length and CRC). Shorten it or use a larger cover.\n",
              len, w, h, cap, MSG_CELL, MSG_CELL);
      goto out;
    }
    if (!(sec = malloc(3 * np * sizeof *sec))) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
    msg_encode(msg, len, w, h, sec);
    printf("message: %zu bytes of %ld the cover holds (%dx%d blocks, length + CRC-32 framed; each bit stored %zu times or more)\n",
           len, cap, MSG_CELL, MSG_CELL, (msg_positions(w, h) - (msg_positions(w, h) + 7) / 8) / (len * 8 + 32));
  }
  if (w % 2 || h % 2)
    printf("cover %s is %dx%d (odd): padded to %dx%d by repeating the last %s for the network; the stego is cropped back to %dx%d\n",
           cover, w, h, w + w % 2, h + h % 2, w % 2 && h % 2 ? "column and row" : w % 2 ? "column" : "row", w, h);
  /* held while the network runs: cover, secret and stego, planar float RGB */
  R = budget_runner("hide", "hide", &cfg, 1, w, h, 3 * np * 3 * sizeof(float), "3 images (cover, secret, stego)", 1, &ba, f,
                    model, threads, &t);
  if (!R) goto out;
  if (!(stc = malloc(3 * np * sizeof *stc))) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
  if (mf_steg_runner_run(R, cv, sec, stc, err, sizeof err) != 0) { fprintf(stderr, "memfit hide: %s\n", err); goto out; }
  mf_steg_runner_free(R);
  R = NULL;
  free(sec);
  sec = NULL;
  img_quant8(stc, 3 * np);
  double psnr = psnr_from_mse(img_mse(stc, cv, w, h, 0)), ssim = img_ssim(stc, cv, w, h, 0);
  free(cv);
  cv = NULL;
  if (save_planar(out, stc, w, h, err, sizeof err) != 0) { fprintf(stderr, "memfit hide: %s\n", err); goto out; }
  printf("stego %s: %dx%d 8-bit PNG, PSNR %.2f dB, SSIM %.4f against the cover (model %s: %d blocks, growth %d)\n", out, w, h, psnr,
         ssim, cfg.name, cfg.blocks, cfg.growth);
  plan_line(&t, "hide");
  rc = 0;
out:
  mf_steg_runner_free(R);
  free(cv); free(sc); free(sec); free(stc); free(msg);
  mf_st_close(f);
  return rc;
}

/* ------------------------------------------------------------------ memfit reveal */

int mf_cmd_reveal(int argc, char **argv) {
  const char *model = NULL, *stego = NULL, *out = NULL;
  int threads = 0, message = 0;
  budget_args ba = {NULL, 0, -1};
  for (int i = 1; i < argc; i++) {
    const char *v;
    int k;
    if (!strcmp(argv[i], "--help")) {
      printf("usage: memfit reveal --model MODEL --stego STEGO.png [--out SECRET.png] [--message] [--budget SIZE] [--threads T]\n"
             "Runs the network backwards on the stego image (lost part z = zeros) and writes the recovered secret;\n"
             "--message decodes a hidden message instead (checks its CRC-32) and prints it.\n" BUDGET_HELP);
      return 0;
    } else if ((v = cli_opt(argc, argv, &i, "--model"))) model = v;
    else if ((v = cli_opt(argc, argv, &i, "--stego"))) stego = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) out = v;
    else if (!strcmp(argv[i], "--message")) message = 1;
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) return 2; }
    else if ((k = budget_opt(argc, argv, &i, &ba)) != 0) { if (k < 0) return 2; }
    else return cli_unknown_option("reveal", argv[i]);
  }
  if (budget_args_check("reveal", &ba)) return 2;
  if (!stego || (!out && !message)) { fprintf(stderr, "memfit reveal: needs --stego and --out (or --message) (see --help)\n"); return 2; }
  mf_st_file *f;
  mf_steg_config cfg;
  int rc = open_model(model, &f, &cfg, "reveal");
  if (rc) return rc;
  char err[1024];
  int w, h;
  float *sg = NULL, *rv = NULL;
  uint8_t *msg = NULL;
  mf_steg_runner *R = NULL;
  mf_steg_tiling t;
  rc = 1;
  if (image_fits_budget("reveal", "stego", stego, 2, 0, &ba) != 0) goto out;
  sg = load_rgb(stego, "stego", &w, &h, err, sizeof err);
  if (!sg) { fprintf(stderr, "memfit reveal: stego %s\n", err); goto out; }
  if (w < 2 || h < 2) { fprintf(stderr, "memfit reveal: stego %s is %dx%d: too small (at least 2x2)\n", stego, w, h); goto out; }
  if (w % 2 || h % 2) {
    const char *what = w % 2 && h % 2 ? "column and row" : w % 2 ? "column" : "row";
    printf("stego %s is %dx%d (odd, as hide writes for an odd cover): padded to %dx%d by repeating the last %s; "
           "the secret is cropped back to %dx%d (its last %s is less accurate)\n", stego, w, h, w + w % 2, h + h % 2, what, w, h, what);
  }
  size_t np = (size_t)w * h;
  /* held while the network runs: the stego and the recovered secret, planar float RGB */
  R = budget_runner("reveal", "reveal", &cfg, 0, w, h, 2 * np * 3 * sizeof(float), "2 images (stego, secret)", 1, &ba, f, model,
                    threads, &t);
  if (!R) goto out;
  if (!(rv = malloc(3 * np * sizeof *rv))) { fprintf(stderr, "memfit reveal: out of memory\n"); goto out; }
  if (mf_steg_runner_run(R, sg, NULL, rv, err, sizeof err) != 0) { fprintf(stderr, "memfit reveal: %s\n", err); goto out; }
  mf_steg_runner_free(R);
  R = NULL;
  free(sg);
  sg = NULL;
  if (out) {
    if (save_planar(out, rv, w, h, err, sizeof err) != 0) { fprintf(stderr, "memfit reveal: %s\n", err); goto out; }
    printf("recovered secret %s: %dx%d 8-bit PNG (model %s: %d blocks, growth %d)\n", out, w, h, cfg.name, cfg.blocks, cfg.growth);
  }
  if (message) {
    long len = msg_decode(rv, w, h, &msg);
    if (len < 0) {
      fprintf(stderr, "memfit reveal: %s holds no intact message (%s): it was not made by 'memfit hide --message' with this "
                      "model, or the stego image was changed (resized, recompressed or edited)\n",
              stego, len == -1 ? "the length field is impossible" : "the CRC-32 does not match: corrupted");
      goto out;
    }
    printf("message (%ld bytes, CRC-32 ok):\n", len);
    fwrite(msg, 1, (size_t)len, stdout);
    printf("\n");
  }
  plan_line(&t, "reveal");
  rc = 0;
out:
  mf_steg_runner_free(R);
  free(sg); free(rv); free(msg);
  mf_st_close(f);
  return rc;
}

/* ------------------------------------------------------------------ memfit eval */

typedef struct pair_metrics {
  double hide_psnr, hide_psnr_y, hide_ssim, hide_ssim_y, rec_psnr, rec_psnr_y, rec_ssim, rec_ssim_y;
  double hide_psnr_float, rec_psnr_float, bit_acc, msg_ok;
} pair_metrics;
#define EVAL_MSG_BYTES 256

int mf_cmd_eval(int argc, char **argv) {
  const char *model = NULL, *data = NULL, *pairs = NULL, *grid = NULL;
  int size = 256, threads = 0, messages = 1, grid_rows = 4, max_pairs = 1000;
  budget_args ba = {NULL, 0, -1};
  for (int i = 1; i < argc; i++) {
    const char *v;
    int k;
    if (!strcmp(argv[i], "--help")) {
      printf("usage: memfit eval --model MODEL (--data DIR | --pairs LIST.txt) [--size 256] [--out grid.png]\n"
             "                   [--grid-rows 4] [--max-pairs N] [--no-messages] [--budget SIZE] [--threads T]\n"
             "Hides each image of DIR in another (cover i, secret i+1, sorted paths), on centre crops of --size,\n"
             "and reports hiding PSNR/SSIM (stego vs cover) and recovery PSNR/SSIM (recovered vs secret) on RGB\n"
             "and on Y (BT.601 luma), with the stego rounded to 8 bits exactly as the PNG writer stores it\n"
             "(and the recovered secret too). LIST.txt: one 'COVER SECRET' pair of paths per line.\n"
             "Also hides a random 256-byte message in each cover and reports the raw block bit accuracy / bit error\n"
             "rate and whether the message came back intact.\n" BUDGET_HELP);
      return 0;
    } else if ((v = cli_opt(argc, argv, &i, "--model"))) model = v;
    else if ((v = cli_opt(argc, argv, &i, "--data"))) data = v;
    else if ((v = cli_opt(argc, argv, &i, "--pairs"))) pairs = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) grid = v;
    else if ((v = cli_opt(argc, argv, &i, "--size"))) { if (cli_int("--size", v, 2, 16384, &size)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--grid-rows"))) { if (cli_int("--grid-rows", v, 1, 64, &grid_rows)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--max-pairs"))) { if (cli_int("--max-pairs", v, 1, 1000000, &max_pairs)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) return 2; }
    else if (!strcmp(argv[i], "--no-messages")) messages = 0;
    else if ((k = budget_opt(argc, argv, &i, &ba)) != 0) { if (k < 0) return 2; }
    else return cli_unknown_option("eval", argv[i]);
  }
  if (budget_args_check("eval", &ba)) return 2;
  if (!data == !pairs) { fprintf(stderr, "memfit eval: give --data DIR or --pairs LIST.txt (see --help)\n"); return 2; }
  if (size % 2) { fprintf(stderr, "memfit eval: --size %d is odd; the Haar wavelet needs an even size\n", size); return 2; }
  mf_st_file *f;
  mf_steg_config cfg;
  int rc = open_model(model, &f, &cfg, "eval");
  if (rc) return rc;
  char err[1024];
  /* the list of (cover, secret) paths */
  char **cov = NULL, **sec = NULL;
  int np = 0, cap = 0;
  mf_dataset *ds = NULL;
  if (data) {
    mf_folder_opts fo = mf_folder_opts_default();
    ds = mf_dataset_open_folder(data, &fo, err, sizeof err);
    if (!ds) { fprintf(stderr, "memfit eval: %s\n", err); mf_st_close(f); return 1; }
    int n = (int)mf_dataset_size(ds);
    if (n < 2) { fprintf(stderr, "memfit eval: %s has %d usable image(s); pairs need at least 2\n", data, n); mf_dataset_free(ds); mf_st_close(f); return 1; }
    cap = n;
    cov = calloc((size_t)n, sizeof *cov);
    sec = calloc((size_t)n, sizeof *sec);
    for (int i = 0; i < n && cov && sec; i++) {
      char p1[4096], p2[4096];
      snprintf(p1, sizeof p1, "%s/%s", data, mf_dataset_file(ds, (size_t)i));
      snprintf(p2, sizeof p2, "%s/%s", data, mf_dataset_file(ds, (size_t)((i + 1) % n)));
      cov[np] = strdup(p1);
      sec[np++] = strdup(p2);
    }
  } else {
    FILE *lf = fopen(pairs, "r");
    if (!lf) { fprintf(stderr, "memfit eval: cannot open %s: %s\n", pairs, strerror(errno)); mf_st_close(f); return 1; }
    char line[8300], a[4096], b[4096];
    int oom = 0;
    while (!oom && fgets(line, sizeof line, lf)) {
      if (sscanf(line, "%4095s %4095s", a, b) != 2 || a[0] == '#') continue;
      if (np == cap) { /* grow both lists; on failure the old ones stay valid and are freed below */
        int nc = cap ? 2 * cap : 16;
        char **c2 = realloc(cov, (size_t)nc * sizeof *cov);
        if (c2) cov = c2;
        char **s2 = c2 ? realloc(sec, (size_t)nc * sizeof *sec) : NULL;
        if (s2) sec = s2;
        if (!c2 || !s2) { oom = 1; break; }
        cap = nc;
      }
      cov[np] = strdup(a);
      sec[np] = strdup(b);
      if (!cov[np] || !sec[np]) { free(cov[np]); free(sec[np]); oom = 1; break; }
      np++;
    }
    fclose(lf);
    if (oom) {
      fprintf(stderr, "memfit eval: out of memory reading %s (%d pairs read)\n", pairs, np);
      for (int i = 0; i < np; i++) { free(cov[i]); free(sec[i]); }
      free(cov); free(sec); mf_st_close(f);
      return 1;
    }
    if (!np) { fprintf(stderr, "memfit eval: %s lists no 'COVER SECRET' pairs\n", pairs); free(cov); free(sec); mf_st_close(f); return 1; }
  }
  int n_listed = np; /* all are freed at the end */
  if (np > max_pairs) np = max_pairs;
  /* from the headers, before anything of --size is allocated: does any pair hold two images of at least that size? */
  int fitting = 0, big_w = 0, big_h = 0;
  for (int p = 0; p < np; p++) {
    int small = 0;
    for (int k = 0; k < 2; k++) {
      int w, h, ch, depth;
      if (image_probe_file(k ? sec[p] : cov[p], &w, &h, &ch, &depth, err, sizeof err) != 0) continue; /* reported when loaded */
      if ((int64_t)w * h > (int64_t)big_w * big_h) { big_w = w; big_h = h; }
      small |= w < size || h < size;
    }
    fitting += !small;
  }
  if (!fitting && big_w) { /* (when no header could be read, the loop below says why, pair by pair) */
    fprintf(stderr, "memfit eval: no pair has two images of at least %dx%d (--size %d; the largest image is %dx%d): lower "
                    "--size\n", size, size, size, big_w, big_h);
    for (int i = 0; i < n_listed; i++) { free(cov[i]); free(sec[i]); }
    free(cov); free(sec); mf_dataset_free(ds); mf_st_close(f);
    return 1;
  }
  printf("eval: model %s (%s: %d blocks, growth %d), %d pairs, %dx%d centre crops, stego rounded to 8 bits as saved\n", model,
         cfg.name, cfg.blocks, cfg.growth, np, size, size);
  mf_steg_runner *H = NULL, *R = NULL;
  mf_steg_tiling tH, tR;
  rc = 1;
  size_t pn = (size_t)size * size;
  float *bufs = malloc(8 * 3 * pn * sizeof *bufs);
  float **keep = calloc((size_t)grid_rows * 4, sizeof *keep);
  pair_metrics sum = {0};
  int done = 0, skipped = 0, shown = 0;
  if (!bufs || !keep) { fprintf(stderr, "memfit eval: out of memory\n"); goto out; }
  float *c = bufs, *s = c + 3 * pn, *st = s + 3 * pn, *st8 = st + 3 * pn, *rv = st8 + 3 * pn, *rvf = rv + 3 * pn,
        *ms = rvf + 3 * pn, *mr = ms + 3 * pn;
  {
    /* held while the networks run: the 8 crops of a pair, the grid rows, and the two graphs */
    size_t host = 8 * 3 * pn * sizeof *bufs + (grid ? (size_t)grid_rows * 4 * 3 * pn * sizeof(float) : 0);
    H = budget_runner("eval", "eval hide graph", &cfg, 1, size, size, host, "crops", 2, &ba, f, model, threads, &tH);
    if (!H) goto out;
    R = budget_runner("eval", "eval reveal graph", &cfg, 0, size, size, host, "crops", 2, &ba, f, model, threads, &tR);
    if (!R) goto out;
  }
  mf_transform_opts tf = mf_transform_opts_default();
  tf.out_w = tf.out_h = size;
  tf.crop = MF_CROP_CENTER;
  tf.jpeg_draft = 0;
  printf("%-28s %-28s %8s %8s %7s %8s %8s %7s %8s\n", "cover", "secret", "hide dB", "hide Y", "SSIM", "rec dB", "rec Y", "SSIM",
         messages ? "bit acc message" : "");
  uint64_t rs = 0x9e3779b97f4a7c15ull;
  for (int p = 0; p < np; p++) {
    const char *paths[2] = {cov[p], sec[p]};
    float *dst[2] = {c, s};
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
      mf_image im;
      char what[64];
      snprintf(what, sizeof what, "eval: skipping pair %d", p + 1);
      if (image_fits_budget(what, "file", paths[k], 1, 8 * 3 * pn * sizeof(float), &ba) != 0) { ok = 0; break; }
      if (mf_image_load(paths[k], 3, &im, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: skipping pair %d: %s\n", p + 1, err); ok = 0; break; }
      if (im.w < size || im.h < size) {
        fprintf(stderr, "memfit eval: skipping pair %d: %s is %dx%d, smaller than the %dx%d crop (use a smaller --size)\n", p + 1,
                paths[k], im.w, im.h, size, size);
        mf_image_free(&im);
        ok = 0;
        break;
      }
      int x0 = (im.w - size) / 2, y0 = (im.h - size) / 2;
      for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
          for (int ch = 0; ch < 3; ch++)
            dst[k][(size_t)ch * pn + (size_t)y * size + x] = im.data[((size_t)(y0 + y) * im.w + x0 + x) * 3 + ch];
      mf_image_free(&im);
    }
    if (!ok) { skipped++; continue; }
    pair_metrics m;
    if (mf_steg_runner_run(H, c, s, st, err, sizeof err) != 0 || mf_steg_runner_run(R, st, NULL, rvf, err, sizeof err) != 0) {
      fprintf(stderr, "memfit eval: %s\n", err); /* rvf: the float stego's reveal, for the no-rounding reference figure */
      goto out;
    }
    memcpy(st8, st, 3 * pn * sizeof *st);
    img_quant8(st8, 3 * pn);
    m.rec_psnr_float = psnr_from_mse(img_mse(rvf, s, size, size, 0));
    m.hide_psnr_float = psnr_from_mse(img_mse(st, c, size, size, 0));
    if (mf_steg_runner_run(R, st8, NULL, rv, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); goto out; }
    img_quant8(rv, 3 * pn); /* the recovered secret is saved as an 8-bit PNG too */
    m.hide_psnr = psnr_from_mse(img_mse(st8, c, size, size, 0));
    m.hide_psnr_y = psnr_from_mse(img_mse(st8, c, size, size, 1));
    m.hide_ssim = img_ssim(st8, c, size, size, 0);
    m.hide_ssim_y = img_ssim(st8, c, size, size, 1);
    m.rec_psnr = psnr_from_mse(img_mse(rv, s, size, size, 0));
    m.rec_psnr_y = psnr_from_mse(img_mse(rv, s, size, size, 1));
    m.rec_ssim = img_ssim(rv, s, size, size, 0);
    m.rec_ssim_y = img_ssim(rv, s, size, size, 1);
    m.bit_acc = 0;
    m.msg_ok = 0;
    if (messages) { /* a random message of min(EVAL_MSG_BYTES, capacity) bytes, through the 8-bit stego */
      long len = msg_capacity_bytes(size, size);
      if (len > EVAL_MSG_BYTES) len = EVAL_MSG_BYTES;
      uint8_t *msg = malloc((size_t)len + 1), *got = NULL;
      for (long i = 0; msg && i < len; i++) {
        msg[i] = (uint8_t)(xorshift64_next(&rs) >> 56);
      }
      if (msg) {
        msg_encode(msg, (size_t)len, size, size, ms);
        if (mf_steg_runner_run(H, c, ms, st, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); free(msg); goto out; }
        img_quant8(st, 3 * pn);
        if (mf_steg_runner_run(R, st, NULL, mr, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); free(msg); goto out; }
        size_t nb = msg_positions(size, size), right = 0;
        uint32_t crc = crc32_bytes(msg, (size_t)len);
        for (size_t q = 0; q < nb; q++) right += (msg_soft(mr, size, size, q) > 0) == pos_bit(msg, (size_t)len, crc, q);
        m.bit_acc = (double)right / (double)nb;
        long got_len = msg_decode(mr, size, size, &got);
        m.msg_ok = got_len == len && !memcmp(got, msg, (size_t)len);
        free(got);
        free(msg);
      }
    }
    const char *cn = strrchr(cov[p], '/'), *sn = strrchr(sec[p], '/');
    printf("%-28.28s %-28.28s %8.2f %8.2f %7.4f %8.2f %8.2f %7.4f", cn ? cn + 1 : cov[p], sn ? sn + 1 : sec[p], m.hide_psnr,
           m.hide_psnr_y, m.hide_ssim, m.rec_psnr, m.rec_psnr_y, m.rec_ssim);
    if (messages) printf(" %8.5f %s", m.bit_acc, m.msg_ok ? "ok" : "LOST");
    printf("\n");
    fflush(stdout);
    double *a = (double *)&sum, *b = (double *)&m;
    for (size_t i = 0; i < sizeof m / sizeof(double); i++) a[i] += b[i];
    done++;
    if (grid && shown < grid_rows) {
      float *cp = malloc(4 * 3 * pn * sizeof *cp);
      if (cp) {
        memcpy(cp, c, 3 * pn * sizeof *cp);
        memcpy(cp + 3 * pn, st8, 3 * pn * sizeof *cp);
        memcpy(cp + 6 * pn, s, 3 * pn * sizeof *cp);
        memcpy(cp + 9 * pn, rv, 3 * pn * sizeof *cp);
        keep[shown++] = cp;
      }
    }
  }
  if (!done) { fprintf(stderr, "memfit eval: no pair could be evaluated (%d skipped)\n", skipped); goto out; }
  {
    double *a = (double *)&sum;
    for (size_t i = 0; i < sizeof sum / sizeof(double); i++) a[i] /= done;
  }
  printf("%-57s %8.2f %8.2f %7.4f %8.2f %8.2f %7.4f", "mean", sum.hide_psnr, sum.hide_psnr_y, sum.hide_ssim, sum.rec_psnr,
         sum.rec_psnr_y, sum.rec_ssim);
  if (messages) printf(" %8.5f", sum.bit_acc);
  printf("\n");
  printf("means over %d pairs (%d skipped), 8-bit stego: hiding PSNR %.2f dB (Y %.2f), SSIM %.4f (Y %.4f); recovery PSNR %.2f dB "
         "(Y %.2f), SSIM %.4f (Y %.4f)\n", done, skipped, sum.hide_psnr, sum.hide_psnr_y, sum.hide_ssim, sum.hide_ssim_y,
         sum.rec_psnr, sum.rec_psnr_y, sum.rec_ssim, sum.rec_ssim_y);
  printf("without rounding the stego (float, as most papers report): hiding PSNR %.2f dB, recovery PSNR %.2f dB\n",
         sum.hide_psnr_float, sum.rec_psnr_float);
  if (messages)
    printf("messages (%ld random bytes per %dx%d cover, each bit repeated over the %zu %dx%d blocks x 3 channels): raw block "
           "bit accuracy %.5f (bit error rate %.2e); messages decoded intact (CRC ok, bytes equal): %.0f of %d\n",
           msg_capacity_bytes(size, size) < EVAL_MSG_BYTES ? msg_capacity_bytes(size, size) : (long)EVAL_MSG_BYTES, size, size,
           msg_positions(size, size) / 3, MSG_CELL, MSG_CELL, sum.bit_acc, 1 - sum.bit_acc, sum.msg_ok * done, done);
  if (grid && shown) {
    const float *gc[64], *gs[64], *gx[64], *gr[64];
    for (int i = 0; i < shown; i++) {
      gc[i] = keep[i];
      gs[i] = keep[i] + 3 * pn;
      gx[i] = keep[i] + 6 * pn;
      gr[i] = keep[i] + 9 * pn;
    }
    if (write_grid(grid, shown, gc, gs, gx, gr, size, size, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); goto out; }
    printf("grid %s: %d rows of cover | stego | |stego-cover| x10 | secret | recovered | |recovered-secret| x10\n", grid, shown);
  }
  plan_line(&tH, "eval hide graph");
  rc = 0;
out:
  mf_steg_runner_free(H);
  mf_steg_runner_free(R);
  for (int i = 0; keep && i < grid_rows; i++) free(keep[i]);
  free(keep);
  free(bufs);
  for (int i = 0; i < n_listed; i++) { free(cov[i]); free(sec[i]); }
  free(cov);
  free(sec);
  mf_dataset_free(ds);
  mf_st_close(f);
  return rc;
}

/* ------------------------------------------------------------------ memfit train steg */

typedef struct train_args {
  const char *data, *preset, *resume, *out, *budget_s, *schedule, *loss_log, *json_log, *backend;
  int size, gen_size, batch, epochs, steps, warmup, threads, workers, blocks, growth, gen_count, val_count, epoch_steps, step_every,
      log_every, seed, stop_after, restart_data;
  int micro_batch, variant, mode; /* as plan's: 0 / -1 / -2 when not given (mode -1: auto) */
  unsigned dtypes;                /* --precision as a dtype set; 0 when not given */
  double val_fraction, lr, clip, w_guide, w_rec, w_low, w_ssim, w_dct, gamma, beta1, beta2;
} train_args;

static void train_help(void) {
  printf("usage: memfit train steg --data DIR|generated [options]\n"
         "Trains the HiNet-style steganography network (docs/design.md 3.1) inside an exact memory plan.\n"
         "  --data DIR|generated   image folder (recursive PNG/JPEG) or procedural images (default: generated)\n"
         "  --preset P             %s (default small)\n"
         "  --blocks N --growth G  override the preset's coupling blocks / dense-block growth\n"
         "  --size S               square random crop, even (default 64); flips on\n"
         "  --batch B              effective batch of cover/secret pairs (default 4)\n"
         "  --epochs N | --steps N training length (default 10 epochs); --steps: optimizer updates in all\n"
         "  --epoch-steps N        updates per epoch (default: one pass over the training images)\n"
         "  --gen-count N          generated images per pass (default 2048)\n"
         "  --gen-size N           generated images are rendered at N x N and randomly cropped (default 128)\n"
         "  --val-fraction F       share of the folder's files held out for validation (default 0.1)\n"
         "  --val-count N          validation pairs per epoch (default 16)\n"
         "  --lr X                 Adam learning rate (default 10^-4.5 = 3.16e-5, HiNet); --beta1 0.5 --beta2 0.999\n"
         "  --schedule S           cosine (default), step or constant; --warmup N updates (default 0);\n"
         "                         step: --step-every N updates (default a third of the run), --gamma G (0.5)\n"
         "  --clip X               clip the global gradient norm to X (default 0: off)\n"
         "  --w-guide --w-rec --w-low  loss weights (HiNet: 1 5 1; sums over pixels)\n"
         "  --ssim W               add W * sum(1 - SSIM map) for stego/cover and recovered/secret (7x7 window)\n"
         "  --dct W                add W * sum |DCT8x8(stego) - DCT8x8(cover)| (size a multiple of 8)\n"
         "  --budget SIZE          fit the device budget (e.g. 4GiB): searches micro-batch, precision, recompute\n"
         "                         (default: memory-free backprop through every coupling block, f32)\n"
         "  --precision P          f32, bf16, f16 or auto (f32 and bf16) (default: f32 without --budget, auto with it)\n"
         "  --recompute M          none, all or auto (default: all without --budget, auto: searched, with it)\n"
         "  --micro-batch N        pairs per micro-step, dividing --batch (default: --batch without --budget, searched\n"
         "                         with it); --variant N: 0 segments per coupling block, 1 per dense subnet\n"
         "                         (as 'memfit plan steg' takes them: the same settings plan the same memory)\n"
         "  --resume CK            continue from a checkpoint written by this command: weights, optimizer state,\n"
         "                         schedule and the data order (the same batches as an uninterrupted run; refused,\n"
         "                         naming the setting, when --data, --seed, --size, --batch... no longer match)\n"
         "  --restart-data         with --resume: keep the weights and optimizer state but start the data order again\n"
         "  --stop-after N         stop after update N as if interrupted, with a checkpoint there to --resume from\n"
         "  Ctrl-C (SIGINT) or SIGTERM: finish the current update, save a checkpoint, exit 130 / 143 (a second one\n"
         "                         ends the run at once; the last checkpoint stays whole)\n"
         "  --loss-log FILE        write 'update loss guide rec' for every update (exact decimal values)\n"
         "  --log FILE.jsonl       one JSON object per update (losses, lr, grad norm, loss scale, pairs/s, memory), per\n"
         "                         validation, and at the end planned vs measured bytes per arena (each starts {\"step\": N)\n"
         "                         (default OUT/log.jsonl); OUT/report.html is drawn from it at every epoch end and at the\n"
         "                         end (curves, memory plan vs measured, timeline, samples; 'memfit report OUT' rebuilds it)\n"
         "  --out DIR              checkpoints, model.safetensors, sample grids, log.jsonl, report.html (default steg-run)\n"
         "  --backend B            cpu (default) or cuda; on a device the next batch is copied in during each step\n"
         "  --threads T --workers W --seed S --log-every SECONDS (default 10)\n",
         mf_steg_preset_names());
}

static int train_parse(int argc, char **argv, train_args *a) {
  memset(a, 0, sizeof *a);
  a->data = "generated"; a->preset = "small"; a->out = "steg-run"; a->schedule = "cosine"; a->backend = "cpu";
  a->size = 64; a->batch = 4; a->epochs = 10; a->workers = 1; a->gen_count = 2048; a->val_count = 16; a->log_every = 10;
  a->val_fraction = 0.1; a->lr = pow(10, -4.5); a->beta1 = 0.5; a->beta2 = 0.999; a->gamma = 0.5;
  a->w_guide = 1; a->w_rec = 5; a->w_low = 1; a->seed = 1;
  a->variant = -1; a->mode = -2;
  for (int i = 1; i < argc; i++) {
    const char *v;
#define INT_OPT(nm, field, lo, hi) else if ((v = cli_opt(argc, argv, &i, nm))) { if (cli_int(nm, v, lo, hi, &a->field)) return 2; }
#define DBL_OPT(nm, field, lo, hi) else if ((v = cli_opt(argc, argv, &i, nm))) { if (cli_double(nm, v, lo, hi, &a->field)) return 2; }
    if (!strcmp(argv[i], "--help")) { train_help(); return 1; }
    else if ((v = cli_opt(argc, argv, &i, "--data"))) a->data = v;
    else if ((v = cli_opt(argc, argv, &i, "--preset"))) a->preset = v;
    else if ((v = cli_opt(argc, argv, &i, "--resume"))) a->resume = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) a->out = v;
    else if ((v = cli_opt(argc, argv, &i, "--budget"))) a->budget_s = v;
    else if ((v = cli_opt(argc, argv, &i, "--schedule"))) a->schedule = v;
    else if ((v = cli_opt(argc, argv, &i, "--loss-log"))) a->loss_log = v;
    else if ((v = cli_opt(argc, argv, &i, "--log"))) a->json_log = v;
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) a->backend = v;
    else if (!strcmp(argv[i], "--restart-data")) a->restart_data = 1;
    else if ((v = cli_opt(argc, argv, &i, "--precision"))) { if (cli_precision("train steg", v, &a->dtypes)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--recompute"))) { if (cli_recompute("train steg", v, &a->mode)) return 2; }
    INT_OPT("--micro-batch", micro_batch, 1, 1 << 20)
    INT_OPT("--variant", variant, 0, mf_workload_steg.n_variants - 1)
    INT_OPT("--size", size, 2, 16384)
    INT_OPT("--gen-size", gen_size, 8, 16384)
    INT_OPT("--batch", batch, 1, 1 << 20)
    INT_OPT("--epochs", epochs, 1, 1000000)
    INT_OPT("--steps", steps, 1, 1 << 30)
    INT_OPT("--epoch-steps", epoch_steps, 1, 1 << 30)
    INT_OPT("--warmup", warmup, 0, 1 << 30)
    INT_OPT("--threads", threads, 0, 1024)
    INT_OPT("--workers", workers, 1, 64)
    INT_OPT("--blocks", blocks, 1, MF_STEG_MAX_BLOCKS)
    INT_OPT("--growth", growth, 1, 4096)
    INT_OPT("--gen-count", gen_count, 1, 1 << 30)
    INT_OPT("--val-count", val_count, 0, 100000)
    INT_OPT("--step-every", step_every, 1, 1 << 30)
    INT_OPT("--log-every", log_every, 0, 100000)
    INT_OPT("--seed", seed, 0, 1 << 30)
    INT_OPT("--stop-after", stop_after, 1, 1 << 30)
    DBL_OPT("--val-fraction", val_fraction, 0, 0.9)
    DBL_OPT("--lr", lr, 0, 10)
    DBL_OPT("--beta1", beta1, 0, 0.99999)
    DBL_OPT("--beta2", beta2, 0, 0.99999999)
    DBL_OPT("--gamma", gamma, 0, 1)
    DBL_OPT("--clip", clip, 0, 1e12)
    DBL_OPT("--w-guide", w_guide, 0, 1e6)
    DBL_OPT("--w-rec", w_rec, 0, 1e6)
    DBL_OPT("--w-low", w_low, 0, 1e6)
    DBL_OPT("--ssim", w_ssim, 0, 1e6)
    DBL_OPT("--dct", w_dct, 0, 1e6)
    else return cli_unknown_option("train steg", argv[i]);
#undef INT_OPT
#undef DBL_OPT
  }
  if (!a->gen_size) a->gen_size = a->size > 128 ? a->size : 128;
  if (a->gen_size < a->size) { fprintf(stderr, "memfit train steg: --gen-size %d is smaller than --size %d\n", a->gen_size, a->size); return 2; }
  if (a->size % 2) { fprintf(stderr, "memfit train steg: --size %d is odd; the Haar wavelet needs an even size\n", a->size); return 2; }
  if (a->w_dct > 0 && a->size % 8) { fprintf(stderr, "memfit train steg: --dct needs --size a multiple of 8 (8x8 blocks); %d is not\n", a->size); return 2; }
  if (a->w_ssim > 0 && a->size < 8) { fprintf(stderr, "memfit train steg: --ssim needs --size 8 or more\n"); return 2; }
  if (a->restart_data && !a->resume) { fprintf(stderr, "memfit train steg: --restart-data goes with --resume CK\n"); return 2; }
  if (strcmp(a->schedule, "cosine") && strcmp(a->schedule, "step") && strcmp(a->schedule, "constant")) {
    fprintf(stderr, "memfit train steg: --schedule '%s': use cosine, step or constant\n", a->schedule);
    return 2;
  }
  return 0;
}

/* the training graph with its extra loss terms */
typedef struct train_graph {
  mf_graph *g;
  mf_steg_model *m;
  mf_tensor loss, dct_mat, l_ssim, l_dct;
} train_graph;

static int train_graph_build(train_graph *t, const mf_steg_config *c, mf_dtype dt, const train_args *a, char *err, size_t n) {
  t->g = mf_graph_init(dt);
  t->m = calloc(1, sizeof *t->m);
  t->dct_mat = t->l_ssim = t->l_dct = -1;
  if (!t->g || !t->m) { snprintf(err, n, "out of host memory"); return -1; }
  mf_graph_set_seed(t->g, (uint64_t)a->seed);
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
 * training graph (float stego). Returns the number of pairs measured. */
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
      if (write_grid(grid, rows, gc, gs, gx, gr, size, size, err, sizeof err) != 0) {
        fprintf(stderr, "memfit train steg: %s\n", err);
        r.grid_failed = 1;
      }
    }
    batches++;
  }
  if (r.pairs) {
    r.hide_psnr = se_h / r.pairs; r.rec_psnr = se_r / r.pairs; r.hide_ssim = ss_h / r.pairs; r.rec_ssim = ss_r / r.pairs;
    r.loss = loss / batches / B;
  }
  free(cov); free(sec); free(st); free(rv);
  return r;
}

/* ------------------------------------------------------------------ exact resume: the data position */

/* A setting that decides which images the training batches hold, saved in the checkpoint's metadata
 * under `key`; decisive ones must match on --resume (they change the data order), the others are
 * only reported (the loader's batches do not depend on them). */

static int data_settings(const train_args *a, int micro, int generated, mf_data_setting *ds) {
  int n = 0;
#define SETTING(k, opt, dec, ...) \
  (ds[n].key = k, ds[n].option = opt, ds[n].decisive = dec, snprintf(ds[n].value, sizeof ds[n].value, __VA_ARGS__), n++)
  SETTING("steg.seed", "--seed", 1, "%d", a->seed);
  SETTING("steg.size", "--size", 1, "%d", a->size);
  SETTING("steg.micro_batch", "the micro-batch (--batch, or chosen for --budget)", 1, "%d", micro);
  if (generated) {
    SETTING("steg.gen_count", "--gen-count", 1, "%d", a->gen_count);
    SETTING("steg.gen_size", "--gen-size", 1, "%d", a->gen_size);
  } else SETTING("steg.val_fraction", "--val-fraction", 1, "%.17g", a->val_fraction);
  SETTING("steg.workers", "--workers", 0, "%d", a->workers);
#undef SETTING
  return n;
}

/* ------------------------------------------------------------------ steg's hooks for the trainer */

typedef struct steg_train_ctx {
  train_graph *T;
  mf_dataset *vd;          /* validation images (the training images when there are none) */
  int val_count, micro, size;
  size_t img;              /* floats of one micro-batch's covers (= its secrets) */
  const char *note;        /* the command line, in the model file */
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
           "hide on the 8-bit stego, rec from the float stego)", v.loss, v.hide_psnr, v.rec_psnr, v.hide_ssim, v.rec_ssim, v.pairs);
  return 6;
}

static int steg_save_model(void *ctx, mf_session *s, const char *path, char *err, size_t n) {
  steg_train_ctx *c = ctx;
  return model_save(s, c->T->g, c->T->m, path, c->note, err, n);
}

int mf_cmd_train_steg(int argc, char **argv) {
  train_args a;
  int rc = train_parse(argc, argv, &a);
  if (rc) return rc == 1 ? 0 : rc;
  char err[2048];
  mf_steg_config cfg;
  if (mf_steg_config_preset(a.preset, &cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit train steg: %s\n", err); return 2; }
  if (a.blocks) { cfg.blocks = a.blocks; cfg.name = "custom"; }
  if (a.growth) { cfg.growth = a.growth; cfg.name = "custom"; }
  cfg.height = cfg.width = a.size;
  cfg.w_guide = a.w_guide; cfg.w_rec = a.w_rec; cfg.w_low = a.w_low;
  cfg.batch = a.batch;
  if (mf_steg_config_check(&cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit train steg: %s\n", err); return 2; }
  const mf_backend *be = mf_backend_get(a.backend, err, sizeof err);
  if (!be) { fprintf(stderr, "memfit train steg: --backend: %s\n", err); return 2; }
  if (be->alloc) { /* a device backend: is there a device? (planning works without one, training does not) */
    void *probe = be->alloc(1, err, sizeof err);
    if (!probe) { fprintf(stderr, "memfit train steg: --backend %s: %s\n", a.backend, err); return 2; }
    be->free(probe);
  }

  /* ---- settings: fixed (memory-free backprop) or searched for a budget ---- */
  int micro = a.batch, accum = 1, variant = 0;
  mf_dtype dt = MF_F32;
  mf_candidate cand;
  int have_cand = 0;
  int64_t budget = 0;
  int fixed = a.dtypes || a.mode != -2 || a.micro_batch || a.variant >= 0; /* settings given as plan takes them */
  if (a.budget_s || fixed) {
    if (a.budget_s && cli_bytes("--budget", a.budget_s, &budget)) return 2;
    const mf_workload *w = &mf_workload_steg;
    void *wc = w->cfg_new();
    char v[32];
    int bad = !wc;
    snprintf(v, sizeof v, "%d", cfg.blocks); bad = bad || w->cfg_set(wc, "blocks", v, err, sizeof err);
    snprintf(v, sizeof v, "%d", cfg.growth); bad = bad || w->cfg_set(wc, "growth", v, err, sizeof err);
    snprintf(v, sizeof v, "%d", a.size); bad = bad || w->cfg_set(wc, "size", v, err, sizeof err);
    snprintf(v, sizeof v, "%d", a.batch); bad = bad || w->cfg_set(wc, "batch", v, err, sizeof err);
    mf_search_opts so = mf_search_opts_default();
    so.budget = budget;
    so.threads = a.threads;
    so.backend = a.backend;
    so.allow_offload = be->alloc != NULL; /* host offload only means something with device memory */
    if (budget) { /* searched, within what was given */
      so.dtypes = a.dtypes ? a.dtypes : (1u << MF_F32) | (1u << MF_BF16);
      so.fixed_mode = a.mode == -2 ? -1 : a.mode;
      so.fixed_variant = a.variant;
      so.fixed_micro_batch = a.micro_batch;
    } else { /* as given; what was not given as without these options, as memfit plan does */
      so.allow_offload = 0;
      so.dtypes = a.dtypes ? a.dtypes : 1u << MF_F32;
      so.fixed_mode = a.mode < 0 ? 1 : a.mode;
      so.fixed_variant = a.variant < 0 ? 0 : a.variant;
      so.fixed_micro_batch = a.micro_batch ? a.micro_batch : a.batch;
    }
    mf_search_result *r = bad ? NULL : malloc(sizeof *r);
    if (bad || !r || mf_search(w, wc, &so, r, err, sizeof err) < 0) {
      fprintf(stderr, "memfit train steg: %s: %s\n", budget ? "budget search" : "settings", bad ? err : r ? err : "out of memory");
      free(r); free(wc); /* mf_search frees its candidates itself when it fails */
      return 1;
    }
    char d[256], hb[32], hs[32];
    mf_format_bytes((size_t)budget, hb, sizeof hb);
    if (!r->found) {
      mf_format_bytes(r->smallest.device_bytes, hs, sizeof hs);
      mf_candidate_describe(&r->smallest, w, d, sizeof d);
      fprintf(stderr, "memfit train steg: nothing fits %s; the smallest setting needs %s (%s). Raise --budget, or lower "
                      "--size, --growth or --blocks.\n", hb, hs, d);
      mf_search_result_free(r);
      free(r); free(wc);
      return 3;
    }
    cand = r->best;
    have_cand = 1;
    mf_candidate_describe(&cand, w, d, sizeof d);
    mf_format_bytes(cand.device_bytes, hs, sizeof hs);
    if (budget) printf("budget %s: chose %s (plans %s; %d plans searched)\n", hb, d, hs, r->n_planned);
    else printf("settings: %s (plans %s)\n", d, hs);
    micro = cand.micro_batch; accum = cand.accum; dt = cand.dtype; variant = cand.variant;
    mf_search_result_free(r);
    free(r); free(wc);
  }
  cfg.batch = micro;
  cfg.segments = variant == 0 ? MF_STEG_SEG_BLOCKS : MF_STEG_SEG_SUBNETS;

  train_graph T = {0};
  if (train_graph_build(&T, &cfg, dt, &a, err, sizeof err) < 0) {
    fprintf(stderr, "memfit train steg: %s\n", err);
    train_graph_free(&T);
    return 1;
  }
  mf_steg_model *m = T.m;
  mf_graph *g = T.g;

  /* ---- data ---- */
  mf_dataset *td = NULL, *vd = NULL;
  int generated = !strcmp(a.data, "generated");
  if (generated) {
    td = mf_dataset_generated((size_t)a.gen_count, a.gen_size, a.gen_size, (uint64_t)a.seed * 7919u + 1, err, sizeof err);
    vd = td ? mf_dataset_generated((size_t)(a.val_count + 1), a.gen_size, a.gen_size, 0xabcdefull + (uint64_t)a.seed, err, sizeof err)
            : NULL;
  } else {
    mf_folder_opts fo = mf_folder_opts_default();
    fo.val_fraction = a.val_fraction;
    fo.max_image_bytes = (size_t)budget; /* an image whose decoding alone exceeds --budget is skipped unread (0: no limit) */
    fo.split = a.val_fraction > 0 ? MF_SPLIT_TRAIN : MF_SPLIT_ALL;
    td = mf_dataset_open_folder(a.data, &fo, err, sizeof err);
    if (td && a.val_fraction > 0) {
      fo.split = MF_SPLIT_VAL; /* not quiet: its bad files are warned about like the training split's */
      vd = mf_dataset_open_folder(a.data, &fo, err, sizeof err);
      if (!vd) { fprintf(stderr, "memfit train steg: no validation images (%s); validating on training images\n", err); }
    }
  }
  if (!td) { fprintf(stderr, "memfit train steg: %s\n", err); train_graph_free(&T); return 1; }
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = td;
  lo.batch_size = 2 * micro; /* first half covers, second half secrets */
  lo.workers = a.workers;
  lo.seed = (uint64_t)a.seed;
  lo.tf.out_w = lo.tf.out_h = a.size;
  lo.tf.crop = MF_CROP_RANDOM;
  lo.tf.hflip = 0.5f;
  lo.tf.vflip = 0.5f;
  if (be->host_alloc) { /* a device: page-locked staging buffers, so their copies to the device are asynchronous */
    lo.alloc = be->host_alloc;
    lo.free = be->host_free;
  }
  mf_data_setting dset[MF_MAX_DATA_SETTINGS];
  int ndset = data_settings(&a, micro, generated, dset);
  if (a.resume) { /* the model first: it decides more than the data (the trainer checks the rest) */
    mf_st_file *ckf = mf_st_open(a.resume, err, sizeof err);
    mf_steg_config ckc;
    int bad = !ckf || mf_steg_model_config(ckf, a.resume, &ckc, err, sizeof err) < 0;
    const char *ckfmt = ckf ? mf_st_meta(ckf, "format") : NULL;
    if (bad) fprintf(stderr, "memfit train steg: --resume: %s\n", err);
    else if (!ckfmt || strcmp(ckfmt, "memfit-checkpoint-1")) { /* before the data position: it would only warn */
      fprintf(stderr, "memfit train steg: --resume %s: %s, not a training checkpoint; --resume needs the "
                      "checkpoint.safetensors of a run's --out folder (weights, optimizer state and data position)\n",
              a.resume, ckfmt && !strcmp(ckfmt, MODEL_FORMAT) ? "a model file (parameters only)" : "not a memfit checkpoint");
      bad = 1;
    } else if (ckc.blocks != cfg.blocks || ckc.growth != cfg.growth) {
      fprintf(stderr, "memfit train steg: --resume %s: the checkpoint holds another model (%d coupling blocks, growth %d) than "
                      "this run builds (%d, growth %d; see --preset, --blocks, --growth)\n", a.resume, ckc.blocks, ckc.growth,
              cfg.blocks, cfg.growth);
      bad = 1;
    }
    mf_st_close(ckf);
    if (bad) { mf_dataset_free(td); mf_dataset_free(vd); train_graph_free(&T); return 1; }
  }

  /* ---- session (the trainer sets the schedule's length from the run's) ---- */
  mf_train_opts o = mf_train_opts_default();
  o.threads = a.threads;
  o.plan.threads = a.threads;
  o.plan.optim = MF_ADAM;
  o.lr = a.lr; o.beta1 = a.beta1; o.beta2 = a.beta2; o.weight_decay = 0;
  o.clip_norm = a.clip;
  o.schedule = !strcmp(a.schedule, "cosine") ? MF_SCHED_COSINE : !strcmp(a.schedule, "step") ? MF_SCHED_STEP : MF_SCHED_CONSTANT;
  o.warmup_steps = a.warmup;
  o.total_steps = 0;
  o.step_every = a.step_every;
  o.step_gamma = a.gamma;
  o.accum_steps = accum;
  o.seed = (uint64_t)a.seed;
  o.plan.backend = a.backend;
  if (have_cand) mf_candidate_apply(&cand, &o.plan);
  else { o.plan.recompute = MF_RECOMPUTE_ALL; o.plan.invertible = 1; }
  mf_tensor keep[6] = {m->loss_guide, m->loss_rec, m->loss_low, m->stego, m->revealed, T.l_ssim};
  o.plan.keep = keep;
  o.plan.n_keep = T.l_ssim >= 0 ? 6 : 5;
  mf_session *s = mf_session_init(g, T.loss, &o, err, sizeof err);
  if (!s) {
    fprintf(stderr, "memfit train steg: %s\n", err);
    mf_dataset_free(td); mf_dataset_free(vd); train_graph_free(&T);
    return 1;
  }
  if (T.dct_mat >= 0) {
    double Dd[64];
    float D[64];
    mf_steg_dct_matrix(Dd);
    for (int i = 0; i < 64; i++) D[i] = (float)Dd[i];
    mf_session_write_input(s, T.dct_mat, D, 64);
  }
  {
    size_t nz = (size_t)mf_tensor_numel(g, m->z);
    float *z = calloc(nz, sizeof *z);
    if (z) mf_session_write_input(s, m->z, z, nz);
    free(z);
  }

  /* ---- the trainer ---- */
  char note[1024]; /* the command line, in the model file's metadata (steg.trained) and the log */
  {
    size_t k = (size_t)snprintf(note, sizeof note, "memfit train steg");
    for (int i = 1; i < argc && k < sizeof note; i++) k += (size_t)snprintf(note + k, sizeof note - k, " %s", argv[i]);
  }
  steg_train_ctx sc = {&T, vd ? vd : td, a.val_count, micro, a.size, (size_t)micro * 3 * a.size * a.size, note};
  static const char *const terms[2] = {"guide", "rec"};
  char crop[32], batch_note[96], settings[512], title[256];
  snprintf(crop, sizeof crop, "--size %d", a.size);
  snprintf(batch_note, sizeof batch_note, " (%d pairs of a cover and a secret)", micro);
  snprintf(title, sizeof title, "one training step: %dx%d crops, micro-batch %d, %s", a.size, a.size, micro, mf_dtype_name(dt));
  snprintf(settings, sizeof settings, "preset %s (%d coupling blocks, growth %d), %dx%d crops, batch %d = micro-batch %d x %d, %s, "
           "lr %g (%s schedule, warm-up %d, clip %g)", cfg.name, cfg.blocks, cfg.growth, a.size, a.size, a.batch, micro, accum,
           mf_dtype_name(dt), a.lr, a.schedule, a.warmup, a.clip);
  mf_trainer_opts to = mf_trainer_opts_default();
  to.name = "train steg";
  to.settings = settings;
  to.out = a.out;
  to.epochs = a.epochs;
  to.total_steps = a.steps;
  to.steps_per_epoch = a.epoch_steps;
  to.accum = accum;
  to.samples_per_step = a.batch;
  to.sample_unit = "pairs";
  to.loss_divisor = micro;
  to.n_terms = 2;
  to.term_names = terms;
  to.resume = a.resume;
  to.restart_data = a.restart_data;
  to.stop_after = a.stop_after;
  to.loss_log = a.loss_log;
  to.log = a.json_log;
  to.log_every = a.log_every;
  to.handle_signals = 1;
  to.data_source = a.data;
  to.n_data_settings = ndset;
  to.data_settings = dset;
  to.command = note;
  to.timeline_title = title;
  to.values_per_sample = (double)sc.img;
  to.crop_option = crop;
  to.batch_note = batch_note;
  to.more_data_hint = generated ? " or raise --gen-count" : " or lower --val-fraction (the share of images kept for validation)";
  to.model_use = " (for hide/reveal/eval)";
  mf_trainer_hooks h = {.ctx = &sc, .feed = steg_feed, .read_terms = steg_read_terms, .describe_terms = steg_describe_terms,
                        .validate = steg_validate, .save_model = steg_save_model};
  mf_trainer *tr = mf_trainer_init(s, &lo, &to, &h, err, sizeof err);
  if (!tr) {
    if (strcmp(err, "said above")) fprintf(stderr, "memfit train steg: %s\n", err);
    mf_session_free(s); mf_dataset_free(td); mf_dataset_free(vd); train_graph_free(&T);
    return 1;
  }
  int64_t start = mf_trainer_first_step(tr), total = mf_trainer_total_steps(tr), per_epoch = mf_trainer_steps_per_epoch(tr);
  int epochs = mf_trainer_epochs(tr);
  if (start < total && !(a.stop_after && a.stop_after <= start)) {
    printf("memfit train steg: preset '%s' (%d coupling blocks, growth %d, %lld parameters), %dx%d crops, batch %d = "
           "micro-batch %d x %d, %s, %s\n", cfg.name, cfg.blocks, cfg.growth, (long long)mf_steg_param_count(&cfg), a.size, a.size,
           a.batch, micro, accum, mf_dtype_name(dt),
           have_cand ? (budget ? "settings from the budget search" : "settings as given") : "memory-free backprop through every coupling block");
    printf("data: %s (%zu training images%s, %zu validation images); %d epochs of %lld updates (%lld in all)\n",
           generated ? "generated procedural images" : a.data, mf_dataset_size(td), generated ? " rendered on the fly, random crops" : "",
           vd ? mf_dataset_size(vd) : (size_t)0, epochs, (long long)per_epoch, (long long)total);
    printf("losses: %g*guide + %g*rec + %g*low%s%s; Adam lr %.3g (betas %g, %g), %s schedule, warm-up %d, clip %g\n", a.w_guide,
           a.w_rec, a.w_low, a.w_ssim > 0 ? " + ssim" : "", a.w_dct > 0 ? " + dct" : "", a.lr, a.beta1, a.beta2, a.schedule,
           a.warmup, a.clip);
    mf_plan_print(mf_session_plan(s), stdout);
    if (budget && (int64_t)mf_plan_total_bytes(mf_session_plan(s)) > budget) {
      char hb[32], ht[32];
      mf_format_bytes((size_t)budget, hb, sizeof hb);
      mf_format_bytes(mf_plan_total_bytes(mf_session_plan(s)), ht, sizeof ht);
      printf("note: the search planned the base losses; with the extra terms and the tensors kept for the metrics this run "
             "plans %s, above the %s budget. Lower --batch or --size if the budget is hard.\n", ht, hb);
    }
    fflush(stdout);
  }
  rc = mf_trainer_run(tr);
  mf_trainer_free(tr);
  mf_session_free(s);
  mf_dataset_free(td);
  mf_dataset_free(vd);
  train_graph_free(&T);
  return rc;
}

/* `memfit train WORKLOAD ...` */
int mf_cmd_train(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help")) {
    printf("usage: memfit train WORKLOAD [options]   (workloads: steg; 'memfit train steg --help')\n");
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "steg")) return mf_cmd_train_steg(argc - 1, argv + 1);
  const char *names[] = {"steg"}, *near = cli_nearest(argv[1], names, 1);
  fprintf(stderr, "memfit train: unknown workload '%s'%s%s%s (available: steg)\n", argv[1], near ? "; did you mean '" : "",
          near ? near : "", near ? "'?" : "");
  return 2;
}

/* cmd_steg.c — the steganography workload's commands (docs/design.md 3.1): `memfit hide`, `memfit reveal`
 * and `memfit eval`: hiding an image or a text message in a cover, revealing it, and measuring the quality
 * on 8-bit PNGs (`memfit train steg` is cmd_train.c with src/models/steg_train.c). */
#include "cli/cli.h"
#include "base/rng.h"
#include "data/data.h"
#include "data/grid.h"
#include "data/metrics.h"
#include "models/steg.h"
#include "models/steg_infer.h"
#include "models/steg_loss.h"
#include "models/steg_message.h"
#include "models/steg_train.h"
#include "models/workload.h"
#include "train/measure.h"
#include "train/safetensors.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


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

/* why a cover holds the bytes it does, for the messages that refuse a longer one */
_Static_assert(STEG_MSG_REPEAT == 2 && STEG_MSG_CELL == 4, "CAPACITY_WHY states the repeat and the cell");
#define CAPACITY_WHY "each byte takes 16 coded bits, stored at least twice, one per 4x4 block of a channel, plus the length, " \
                     "CRC-32 and code tail"

/* the part of a capacity message that says the cover's clipped areas took some of it */
static const char *clipped_note(long cap, long cap_max) {
  return cap < cap_max ? "; its pure white, black or saturated areas carry little" : "";
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

static void plan_line(FILE *f, const mf_steg_tiling *t, const char *what) {
  char h[32], rs[32];
  mf_format_bytes(t->plan_bytes, h, sizeof h);
  mf_format_bytes(mf_peak_rss_bytes(), rs, sizeof rs);
  fprintf(f, "%s: memory plan %s%s (process peak RSS %s)\n", what, h, t->nx * t->ny > 1 ? " per tile" : "", rs);
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
             "one pixel (edge copy) for the network and cropped back. Messages: a CRC-32 and a rate-1/2 convolutional\n"
             "code (K=7, 171/133 octal, soft Viterbi), one coded bit per %dx%d block of a channel at low contrast,\n"
             "interleaved and repeated over the whole image as many times as fits (at least %d times; short messages\n"
             "survive more damage).\n"
             BUDGET_HELP, STEG_MSG_CELL, STEG_MSG_CELL, STEG_MSG_REPEAT);
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
  size_t msg_len = 0;
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
    long cap = steg_msg_cover_capacity(cv, w, h), cap_max = steg_msg_capacity(w, h);
    if (message) { len = strlen(message); msg = malloc(len + 1); if (msg) memcpy(msg, message, len + 1); }
    else if (read_file_bytes(message_file, (size_t)cap, &msg, &len) != 0) {
      fprintf(stderr, "memfit hide: cannot read message file %s: %s\n", message_file, strerror(errno));
      goto out;
    }
    if (!msg) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
    if (message_file && (long)len > cap) { /* read no further than one byte past the capacity */
      fprintf(stderr, "memfit hide: the message file %s is longer than %ld bytes; this %dx%d cover holds at most %ld bytes (%s%s). "
                      "Shorten it or use a larger cover.\n", message_file, cap, w, h, cap, CAPACITY_WHY, clipped_note(cap, cap_max));
      goto out;
    }
    if ((long)len > cap) {
      fprintf(stderr, "memfit hide: the message is %zu bytes; this %dx%d cover holds at most %ld bytes (%s%s). Shorten it or use "
                      "a larger cover.\n", len, w, h, cap, CAPACITY_WHY, clipped_note(cap, cap_max));
      goto out;
    }
    if (!(sec = malloc(3 * np * sizeof *sec))) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
    if (steg_msg_encode(msg, len, w, h, sec) != 0) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
    msg_len = len;
    size_t n = steg_msg_positions(w, h);
    printf("message: %zu bytes of %ld the cover holds (%ld without clipped areas; CRC-32, rate-1/2 convolutional code; each coded "
           "bit stored %zu times or more in %dx%d blocks)\n", len, cap, cap_max, (n - (n + 7) / 8) / (2 * (len * 8 + 38)),
           STEG_MSG_CELL, STEG_MSG_CELL);
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
  if (msg) { /* a message is only written when it comes back from the 8-bit stego: reveal it here first */
    mf_steg_tiling t2;
    R = budget_runner("hide", "message check (reveal)", &cfg, 0, w, h, 2 * np * 3 * sizeof(float), "2 images (stego, secret)", 1,
                      &ba, f, model, threads, &t2);
    if (!R) goto out;
    if (!(sec = malloc(3 * np * sizeof *sec))) { fprintf(stderr, "memfit hide: out of memory\n"); goto out; }
    if (mf_steg_runner_run(R, stc, NULL, sec, err, sizeof err) != 0) { fprintf(stderr, "memfit hide: %s\n", err); goto out; }
    uint8_t *got = NULL;
    long glen = steg_msg_decode(sec, stc, w, h, &got);
    int same = glen >= 0 && (size_t)glen == msg_len && !memcmp(got, msg, msg_len);
    double acc = steg_msg_bit_accuracy(sec, msg, msg_len, w, h);
    free(got);
    if (!same) {
      fprintf(stderr, "memfit hide: the %zu-byte message does not come back from this stego (%.1f%% of the coded bits read wrong "
                      "after the 8-bit rounding; large white or black areas of a cover carry little), so %s was not written. "
                      "Use a shorter message or a cover with fewer clipped areas.\n", msg_len, 100 * (1 - acc), out);
      goto out;
    }
    printf("message check: revealed from the 8-bit stego intact (%.2f%% of the coded bits read right before correction)\n",
           100 * acc);
  }
  if (save_planar(out, stc, w, h, err, sizeof err) != 0) { fprintf(stderr, "memfit hide: %s\n", err); goto out; }
  printf("stego %s: %dx%d 8-bit PNG, PSNR %.2f dB, SSIM %.4f against the cover (model %s: %d blocks, growth %d)\n", out, w, h, psnr,
         ssim, cfg.name, cfg.blocks, cfg.growth);
  plan_line(stdout, &t, "hide");
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
  const char *message_file = NULL;
  budget_args ba = {NULL, 0, -1};
  for (int i = 1; i < argc; i++) {
    const char *v;
    int k;
    if (!strcmp(argv[i], "--help")) {
      printf("usage: memfit reveal --model MODEL --stego STEGO.png [--out SECRET.png] [--message | --message-file F] [--budget SIZE]\n"
             "       [--threads T]\n"
             "Runs the network backwards on the stego image (lost part z = zeros) and writes the recovered secret;\n"
             "--message decodes a hidden message instead (checks its CRC-32) and prints it; --message-file F writes its\n"
             "bytes to F instead (any bytes, as hide --message-file takes them).\n" BUDGET_HELP);
      return 0;
    } else if ((v = cli_opt(argc, argv, &i, "--model"))) model = v;
    else if ((v = cli_opt(argc, argv, &i, "--stego"))) stego = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) out = v;
    else if (!strcmp(argv[i], "--message")) message = 1;
    else if ((v = cli_opt(argc, argv, &i, "--message-file"))) { message_file = v; message = 1; }
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
  if (out) {
    if (save_planar(out, rv, w, h, err, sizeof err) != 0) { fprintf(stderr, "memfit reveal: %s\n", err); goto out; }
    printf("recovered secret %s: %dx%d 8-bit PNG (model %s: %d blocks, growth %d)\n", out, w, h, cfg.name, cfg.blocks, cfg.growth);
  }
  if (message) {
    long len = steg_msg_decode(rv, sg, w, h, &msg);
    if (len == -3) { fprintf(stderr, "memfit reveal: out of memory\n"); goto out; }
    if (len < 0) {
      fprintf(stderr, "memfit reveal: %s holds no intact message (%s): it was not made by 'memfit hide --message' with this "
                      "model, or the stego image was changed (resized, recompressed or edited)\n",
              stego, len == -1 ? "the length field is impossible" : "the CRC-32 does not match: corrupted");
      goto out;
    }
    if (message_file) {
      FILE *mf = fopen(message_file, "wb");
      int bad = !mf || fwrite(msg, 1, (size_t)len, mf) != (size_t)len;
      if (mf && fclose(mf) != 0) bad = 1;
      if (bad) { fprintf(stderr, "memfit reveal: cannot write the message to %s: %s\n", message_file, strerror(errno)); goto out; }
      printf("message (%ld bytes, CRC-32 ok) written to %s\n", len, message_file);
    } else {
      printf("message (%ld bytes, CRC-32 ok):\n", len);
      fwrite(msg, 1, (size_t)len, stdout);
      printf("\n");
    }
  }
  plan_line(stdout, &t, "reveal");
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
  double hide_psnr_float, rec_psnr_float, bit_acc, msg_ok, msg_hide_psnr, msg_hide_ssim, msg_bytes;
} pair_metrics;

/* one pair's figures as a JSON object (cover and secret NULL: the means; a leading comma after the first) */
static void pair_json(FILE *f, int index, const char *cover, const char *secret, const pair_metrics *m, int messages) {
  if (index) fputs(", ", f);
  fputc('{', f);
  if (cover) {
    fputs("\"cover\": ", f);
    mf_json_str(f, cover);
    fputs(", \"secret\": ", f);
    mf_json_str(f, secret);
    fputs(", ", f);
  }
  const char *names[15] = {"hide_psnr", "hide_psnr_y", "hide_ssim", "hide_ssim_y", "rec_psnr", "rec_psnr_y", "rec_ssim",
                           "rec_ssim_y", "hide_psnr_float", "rec_psnr_float", "bit_accuracy", "message_ok",
                           "message_hide_psnr", "message_hide_ssim", "message_bytes"};
  const double v[15] = {m->hide_psnr, m->hide_psnr_y, m->hide_ssim, m->hide_ssim_y, m->rec_psnr, m->rec_psnr_y, m->rec_ssim,
                        m->rec_ssim_y, m->hide_psnr_float, m->rec_psnr_float, m->bit_acc, m->msg_ok, m->msg_hide_psnr,
                        m->msg_hide_ssim, m->msg_bytes};
  for (int i = 0; i < (messages ? 15 : 10); i++) {
    if (i) fputs(", ", f);
    mf_json_str(f, names[i]);
    fputs(": ", f);
    mf_json_num(f, v[i]);
  }
  fputc('}', f);
}

int mf_cmd_eval(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "moco")) return mf_cmd_eval_moco(argc - 1, argv + 1);
  if (argc > 1 && !strcmp(argv[1], "steg")) argc--, argv++; /* memfit eval steg ...: the same as memfit eval ... */
  const char *model = NULL, *data = NULL, *pairs = NULL, *grid = NULL;
  int size = 256, threads = 0, messages = 1, grid_rows = 4, max_pairs = 1000, json = 0;
  budget_args ba = {NULL, 0, -1};
  for (int i = 1; i < argc; i++) {
    const char *v;
    int k;
    if (!strcmp(argv[i], "--help")) {
      printf("usage: memfit eval --model MODEL (--data DIR | --pairs LIST.txt) [--size 256] [--out grid.png]\n"
             "                   [--grid-rows 4] [--max-pairs N] [--no-messages] [--budget SIZE] [--threads T] [--json]\n"
             "Hides each image of DIR in another (cover i, secret i+1, sorted paths), on centre crops of --size,\n"
             "and reports hiding PSNR/SSIM (stego vs cover) and recovery PSNR/SSIM (recovered vs secret) on RGB\n"
             "and on Y (BT.601 luma), with the stego rounded to 8 bits exactly as the PNG writer stores it\n"
             "(and the recovered secret too). LIST.txt: one 'COVER SECRET' pair of paths per line.\n"
             "Also hides a random message filling each cover's capacity and reports the raw block bit accuracy / bit error\n"
             "rate and whether the message came back intact.\n"
             "--json: the figures as one JSON object on standard output (per pair and the means); the text goes to\n"
             "standard error.\n" BUDGET_HELP);
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
    else if (!strcmp(argv[i], "--json")) json = 1;
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
  FILE *out = stdout;
  int json_fd = -1; /* with --json, standard output holds the JSON only: the text goes to standard error until then */
  if (json) {
    fflush(stdout);
    json_fd = dup(STDOUT_FILENO);
    if (json_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) { fprintf(stderr, "memfit eval: --json: %s\n", strerror(errno)); return 1; }
  }
  char *jbuf = NULL; /* the pairs' JSON records */
  size_t jlen = 0;
  FILE *jf = json ? open_memstream(&jbuf, &jlen) : NULL;
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
  fprintf(out, "eval: model %s (%s: %d blocks, growth %d), %d pairs, %dx%d centre crops, stego rounded to 8 bits as saved\n", model,
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
  fprintf(out, "%-28s %-28s %8s %8s %7s %8s %8s %7s %8s\n", "cover", "secret", "hide dB", "hide Y", "SSIM", "rec dB", "rec Y", "SSIM",
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
    m.bit_acc = m.msg_ok = m.msg_hide_psnr = m.msg_hide_ssim = m.msg_bytes = 0;
    if (messages) { /* a random message filling the cover's stated capacity, through the 8-bit stego */
      long len = steg_msg_cover_capacity(c, size, size);
      m.msg_bytes = (double)len;
      uint8_t *msg = malloc((size_t)len + 1), *got = NULL;
      for (long i = 0; msg && i < len; i++) {
        msg[i] = (uint8_t)(xorshift64_next(&rs) >> 56);
      }
      if (msg) {
        if (steg_msg_encode(msg, (size_t)len, size, size, ms) != 0) { fprintf(stderr, "memfit eval: out of memory\n"); free(msg); goto out; }
        if (mf_steg_runner_run(H, c, ms, st, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); free(msg); goto out; }
        img_quant8(st, 3 * pn);
        m.msg_hide_psnr = psnr_from_mse(img_mse(st, c, size, size, 0));
        m.msg_hide_ssim = img_ssim(st, c, size, size, 0);
        if (mf_steg_runner_run(R, st, NULL, mr, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); free(msg); goto out; }
        m.bit_acc = steg_msg_bit_accuracy(mr, msg, (size_t)len, size, size);
        long got_len = steg_msg_decode(mr, st, size, size, &got);
        m.msg_ok = got_len == len && !memcmp(got, msg, (size_t)len);
        free(got);
        free(msg);
      }
    }
    const char *cn = strrchr(cov[p], '/'), *sn = strrchr(sec[p], '/');
    fprintf(out, "%-28.28s %-28.28s %8.2f %8.2f %7.4f %8.2f %8.2f %7.4f", cn ? cn + 1 : cov[p], sn ? sn + 1 : sec[p], m.hide_psnr,
           m.hide_psnr_y, m.hide_ssim, m.rec_psnr, m.rec_psnr_y, m.rec_ssim);
    if (messages) fprintf(out, " %8.5f %s", m.bit_acc, m.msg_ok ? "ok" : "LOST");
    fprintf(out, "\n");
    if (jf) pair_json(jf, done, cov[p], sec[p], &m, messages);
    fflush(out);
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
  fprintf(out, "%-57s %8.2f %8.2f %7.4f %8.2f %8.2f %7.4f", "mean", sum.hide_psnr, sum.hide_psnr_y, sum.hide_ssim, sum.rec_psnr,
         sum.rec_psnr_y, sum.rec_ssim);
  if (messages) fprintf(out, " %8.5f", sum.bit_acc);
  fprintf(out, "\n");
  fprintf(out, "means over %d pairs (%d skipped), 8-bit stego: hiding PSNR %.2f dB (Y %.2f), SSIM %.4f (Y %.4f); recovery PSNR %.2f dB "
         "(Y %.2f), SSIM %.4f (Y %.4f)\n", done, skipped, sum.hide_psnr, sum.hide_psnr_y, sum.hide_ssim, sum.hide_ssim_y,
         sum.rec_psnr, sum.rec_psnr_y, sum.rec_ssim, sum.rec_ssim_y);
  fprintf(out, "without rounding the stego (float, as most papers report): hiding PSNR %.2f dB, recovery PSNR %.2f dB\n",
         sum.hide_psnr_float, sum.rec_psnr_float);
  if (messages)
    fprintf(out, "messages (random bytes filling each %dx%d cover's stated capacity, %.0f bytes on average, at most %ld: CRC-32, "
           "rate-1/2 convolutional code, %zu %dx%d blocks x 3 channels): message-mode stego PSNR %.2f dB, SSIM %.4f (8-bit); raw "
           "block bit accuracy %.5f (bit error rate %.2e); messages decoded intact (CRC ok, bytes equal): %.0f of %d\n",
           size, size, sum.msg_bytes, steg_msg_capacity(size, size), steg_msg_positions(size, size) / 3, STEG_MSG_CELL,
           STEG_MSG_CELL, sum.msg_hide_psnr, sum.msg_hide_ssim, sum.bit_acc, 1 - sum.bit_acc, sum.msg_ok * done, done);
  if (grid && shown) {
    const float *gc[64], *gs[64], *gx[64], *gr[64];
    for (int i = 0; i < shown; i++) {
      gc[i] = keep[i];
      gs[i] = keep[i] + 3 * pn;
      gx[i] = keep[i] + 6 * pn;
      gr[i] = keep[i] + 9 * pn;
    }
    if (mf_steg_grid_write(grid, shown, gc, gs, gx, gr, size, size, err, sizeof err) != 0) { fprintf(stderr, "memfit eval: %s\n", err); goto out; }
    fprintf(out, "grid %s: %d rows of cover | stego | |stego-cover| x10 | secret | recovered | |recovered-secret| x10\n", grid, shown);
  }
  plan_line(out, &tH, "eval hide graph");
  if (jf) {
    fclose(jf);
    jf = NULL;
    fflush(stdout);
    dup2(json_fd, STDOUT_FILENO);
    close(json_fd);
    json_fd = -1;
    printf("{\"model\": ");
    mf_json_str(stdout, model);
    printf(", \"size\": %d, \"evaluated\": %d, \"skipped\": %d, \"pairs\": [%s], \"mean\": ", size, done, skipped, jbuf ? jbuf : "");
    pair_json(stdout, 0, NULL, NULL, &sum, messages);
    printf("}\n");
  }
  rc = 0;
out:
  if (jf) fclose(jf);
  free(jbuf);
  if (json_fd >= 0) { /* failed before the JSON: standard output back as it was */
    fflush(stdout);
    dup2(json_fd, STDOUT_FILENO);
    close(json_fd);
  }
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

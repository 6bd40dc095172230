/* dataset.c — the image-folder and procedural datasets: recursive scan with header probes, skip
 * accounting with one warning per bad file, hash-of-path train/validation split, class-per-subfolder
 * labels, and producing one transformed sample (decode only the needed region). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"

static const char *const reason_names[SKIP_REASON_COUNT] = {
  "empty file", "not a PNG or JPEG image", "truncated or corrupt", "unsupported format or bit depth",
  "smaller than the crop", "unreadable", "not inside a class folder", "unreadable video",
  "too large for the memory budget"};
const char *skip_reason_name(skip_reason r) { return (unsigned)r < SKIP_REASON_COUNT ? reason_names[r] : "?"; }

void data_warn(int quiet, const char *fmt, ...) {
  if (quiet) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "memfit data: warning: %s\n", buf);
}

void worker_ctx_free(worker_ctx *w) {
  free(w->file);
  raw_image_free(&w->raw);
  tf_scratch_free(&w->tf);
  if (w->video) video_ctx_free(w->video);
  memset(w, 0, sizeof *w);
}

mf_folder_opts mf_folder_opts_default(void) {
  mf_folder_opts o = {MF_SPLIT_ALL, 0.1, 0, 0, 0, 0};
  return o;
}

/* ---------------- common accessors ---------------- */
size_t mf_dataset_size(const mf_dataset *d) { return d ? d->n : 0; }
int mf_dataset_frames(const mf_dataset *d) { return d ? d->frames : 0; }
int mf_dataset_num_classes(const mf_dataset *d) { return d ? d->nclasses : 0; }
const char *mf_dataset_class_name(const mf_dataset *d, int k) {
  return d && k >= 0 && k < d->nclasses ? d->classes[k] : NULL;
}
static size_t sample_file(const mf_dataset *d, size_t i) { return d->kind == 2 ? d->clip_file[i] : i; }
int mf_dataset_label(const mf_dataset *d, size_t i) {
  if (!d || i >= d->n || d->kind == 1) return -1;
  if (d->kind == 3) return d->idx_label[i];
  return d->files[sample_file(d, i)].label;
}
const char *mf_dataset_file(const mf_dataset *d, size_t i) {
  if (!d || i >= d->n || d->kind == 1 || d->kind == 3) return NULL;
  return d->files[sample_file(d, i)].rel;
}
size_t mf_dataset_skipped(const mf_dataset *d) {
  size_t s = 0;
  if (d) for (int r = 0; r < SKIP_REASON_COUNT; r++) s += d->skipped[r];
  return s;
}
void dataset_path(const mf_dataset *d, size_t i, char *buf, size_t n) { snprintf(buf, n, "%s/%s", d->root, d->files[i].rel); }

void mf_dataset_free(mf_dataset *d) {
  if (!d) return;
  if (d->vt) d->vt->free(d);
  for (size_t i = 0; i < d->nfiles; i++) free(d->files[i].rel);
  free(d->files);
  for (int k = 0; k < d->nclasses; k++) free(d->classes[k]);
  free(d->classes);
  free(d->clip_file); free(d->clip_start);
  free(d->root);
  free(d);
}

/* ---------------- producing a sample ---------------- */
typedef struct choose_ctx {
  const mf_transform_opts *o; int views; rng_t *r; tf_params *p;
  int rejected; char *err; size_t errlen;
} choose_ctx;

static int choose_views(void *vctx, int w, int h, decode_region *reg) {
  choose_ctx *c = vctx;
  if (tf_draw_views(c->o, c->views, c->r, w, h, c->p, reg, c->err, c->errlen) != 0) { c->rejected = 1; return -1; }
  return 0;
}

static int folder_get(mf_dataset *d, size_t idx, const mf_transform_opts *o, int views, rng_t *r, float *const *planes,
                      worker_ctx *w, char *err, size_t errlen) {
  char path[4096], why[256];
  dataset_path(d, idx, path, sizeof path);
  long n = file_read_all(path, &w->file, &w->file_cap, why, sizeof why);
  if (n < 0) { snprintf(err, errlen, "%s: %s", path, why); return -1 - SKIP_UNREADABLE; }
  tf_params p[2];
  choose_ctx cc = {o, views, r, p, 0, why, sizeof why};
  if (image_decode_mem(w->file, (size_t)n, &w->raw, choose_views, &cc, o->jpeg_draft, why, sizeof why) != 0) {
    int reason = cc.rejected ? SKIP_TOO_SMALL : n == 0 ? SKIP_EMPTY : image_sniff(w->file, (size_t)n) == IMG_UNKNOWN ? SKIP_NOT_IMAGE : SKIP_CORRUPT;
    snprintf(err, errlen, "%s: %s", path, why);
    return -1 - reason;
  }
  for (int v = 0; v < views; v++)
    if (tf_apply(o, &p[v], &w->raw, planes + (size_t)v * o->channels, &w->tf) != 0) {
      snprintf(err, errlen, "%s: out of memory", path);
      return -1 - SKIP_CORRUPT;
    }
  return 0;
}

static int gen_get(mf_dataset *d, size_t idx, const mf_transform_opts *o, int views, rng_t *r, float *const *planes,
                   worker_ctx *w, char *err, size_t errlen) {
  if (gen_render(d->gen_seed, idx, d->gen_w, d->gen_h, &w->raw) != 0) { snprintf(err, errlen, "generated image %zu: out of memory", idx); return -1 - SKIP_CORRUPT; }
  tf_params p[2];
  decode_region reg;
  if (tf_draw_views(o, views, r, d->gen_w, d->gen_h, p, &reg, err, errlen) != 0) return -1 - SKIP_TOO_SMALL;
  for (int v = 0; v < views; v++)
    if (tf_apply(o, &p[v], &w->raw, planes + (size_t)v * o->channels, &w->tf) != 0) {
      snprintf(err, errlen, "generated image %zu: out of memory", idx);
      return -1 - SKIP_CORRUPT;
    }
  return 0;
}

static void folder_free(mf_dataset *d) { (void)d; }
static const dataset_vt folder_vt = {folder_get, folder_free};
static const dataset_vt gen_vt = {gen_get, folder_free};

int mf_dataset_get(mf_dataset *d, size_t i, const mf_transform_opts *t, uint64_t seed, float *out, char *err,
                   size_t errlen) {
  if (!d || !t || !out) { snprintf(err, errlen, "null argument"); return -1; }
  if (i >= d->n) { snprintf(err, errlen, "sample %zu out of range (dataset has %zu)", i, d->n); return -1; }
  if (tf_validate(t, err, errlen) != 0) return -1;
  int C = t->channels, T = d->frames;
  size_t hw = (size_t)t->out_w * t->out_h;
  float **planes = malloc((size_t)C * T * sizeof *planes);
  if (!planes) { snprintf(err, errlen, "out of memory"); return -1; }
  /* video layout [C][T][H][W]: plane (t, c) at (c*T + t)*HW; the getter wants planes[t*C + c] */
  for (int f = 0; f < T; f++)
    for (int c = 0; c < C; c++) planes[f * C + c] = out + ((size_t)c * T + f) * hw;
  rng_t r;
  rng_init(&r, hash_words(seed, 0, i));
  worker_ctx w;
  memset(&w, 0, sizeof w);
  int rc = d->vt->get(d, i, t, 1, &r, planes, &w, err, errlen);
  worker_ctx_free(&w);
  free(planes);
  return rc == -1 - SKIP_TOO_SMALL ? -2 : rc < 0 ? -1 : 0;
}

/* ---------------- the procedural set ---------------- */
mf_dataset *mf_dataset_generated(size_t n, int w, int h, uint64_t seed, char *err, size_t errlen) {
  if (n == 0) { snprintf(err, errlen, "generated dataset: n must be > 0"); return NULL; }
  if (w < 8 || h < 8 || w > 16384 || h > 16384) { snprintf(err, errlen, "generated dataset: bad size %dx%d", w, h); return NULL; }
  mf_dataset *d = calloc(1, sizeof *d);
  if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
  d->vt = &gen_vt; d->kind = 1; d->n = n; d->frames = 1;
  d->gen_seed = seed; d->gen_w = w; d->gen_h = h;
  return d;
}

/* ---------------- image folder ---------------- */
typedef struct strvec { char **v; size_t n, cap; } strvec;
static int strvec_push(strvec *s, const char *str) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? 2 * s->cap : 256;
    char **p = realloc(s->v, nc * sizeof *p);
    if (!p) return -1;
    s->v = p; s->cap = nc;
  }
  s->v[s->n] = strdup(str);
  if (!s->v[s->n]) return -1;
  s->n++;
  return 0;
}
static void strvec_free(strvec *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The folders a walk has entered, by device and inode: each is scanned once, so symlinks to a
 * folder itself or to one of its parents (loops) or two links to one folder add nothing twice. */
typedef struct dir_seen { struct { dev_t dev; ino_t ino; } *v; size_t n, cap; } dir_seen;
/* 1 when (dev, ino) was seen already, 0 when it is new (and now recorded), -1 out of memory */
static int dir_seen_add(dir_seen *s, const struct stat *st) {
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i].dev == st->st_dev && s->v[i].ino == st->st_ino) return 1;
  if (s->n == s->cap) {
    size_t nc = s->cap ? 2 * s->cap : 16;
    void *p = realloc(s->v, nc * sizeof *s->v);
    if (!p) return -1;
    s->v = p; s->cap = nc;
  }
  s->v[s->n].dev = st->st_dev; s->v[s->n].ino = st->st_ino; s->n++;
  return 0;
}

/* Collects regular files (relative paths) under root/rel; hidden entries are ignored. */
static int walk(const char *root, const char *rel, int depth, strvec *out, dir_seen *seen, int quiet) {
  char dir[4096];
  if (rel[0]) snprintf(dir, sizeof dir, "%s/%s", root, rel);
  else snprintf(dir, sizeof dir, "%s", root);
  DIR *dp = opendir(dir);
  if (!dp) { data_warn(quiet, "%s: cannot open folder: %s", dir, strerror(errno)); return 0; }
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(dp)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char sub[4096], full[8192];
    if (rel[0]) snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
    else snprintf(sub, sizeof sub, "%s", e->d_name);
    snprintf(full, sizeof full, "%s/%s", root, sub);
    struct stat st;
    if (stat(full, &st) != 0) { data_warn(quiet, "%s: cannot stat: %s", full, strerror(errno)); continue; }
    if (S_ISDIR(st.st_mode)) {
      int k = dir_seen_add(seen, &st);
      if (k < 0) { rc = -1; break; }
      if (k > 0) { data_warn(quiet, "%s: skipped: the same folder as one already scanned (a symlink)", full); continue; }
      if (depth < 32) rc |= walk(root, sub, depth + 1, out, seen, quiet);
    } else if (S_ISREG(st.st_mode)) {
      if (strvec_push(out, sub) != 0) { rc = -1; break; }
    }
  }
  closedir(dp);
  return rc;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) { h ^= (uint8_t)*s; h *= 0x100000001b3ull; }
  return h;
}
/* 1 when rel belongs to the validation part */
static int split_is_val(const char *rel, double frac, uint64_t seed) {
  uint64_t h = hash_words(fnv1a(rel), seed, 0x73706c6974ull);
  return (double)(h >> 11) * (1.0 / 9007199254740992.0) < frac;
}
static int split_keep(const char *rel, mf_split split, double frac, uint64_t seed) {
  if (split == MF_SPLIT_ALL) return 1;
  int val = split_is_val(rel, frac, seed);
  return split == MF_SPLIT_VAL ? val : !val;
}

/* Scans dir into d->files (sorted relative paths). probe: header-check images (video: checked later).
 * Files outside the split are dropped silently; unusable ones are warned about and counted. */
static int scan_folder(mf_dataset *d, const char *dir, mf_split split, double frac, uint64_t seed, int labels,
                       int probe, char *err, size_t errlen) {
  struct stat st;
  if (stat(dir, &st) != 0) { snprintf(err, errlen, "%s: folder not found: %s", dir, strerror(errno)); return -1; }
  if (!S_ISDIR(st.st_mode)) { snprintf(err, errlen, "%s: not a folder", dir); return -1; }
  d->root = strdup(dir);
  if (!d->root) { snprintf(err, errlen, "out of memory"); return -1; }
  size_t rl = strlen(d->root);
  while (rl > 1 && d->root[rl - 1] == '/') d->root[--rl] = 0;
  strvec files = {0}, classes = {0};
  dir_seen seen = {0};
  int wrc = dir_seen_add(&seen, &st) < 0 ? -1 : walk(d->root, "", 0, &files, &seen, d->quiet);
  free(seen.v);
  if (wrc != 0) { strvec_free(&files); snprintf(err, errlen, "out of memory"); return -1; }
  if (files.n) qsort(files.v, files.n, sizeof *files.v, cmp_str);
  d->files = calloc(files.n ? files.n : 1, sizeof *d->files);
  if (!d->files) { strvec_free(&files); snprintf(err, errlen, "out of memory"); return -1; }
  size_t total = files.n;
  for (size_t i = 0; i < files.n; i++) {
    const char *rel = files.v[i];
    if (!split_keep(rel, split, frac, seed)) continue;
    char full[8192], why[256];
    snprintf(full, sizeof full, "%s/%s", d->root, rel);
    int w = 0, h = 0, c = 0, depth = 0;
    if (labels && !strchr(rel, '/')) {
      data_warn(d->quiet, "%s: skipped: %s", full, reason_names[SKIP_NO_CLASS]);
      d->skipped[SKIP_NO_CLASS]++;
      continue;
    }
    if (probe) {
      int rc = image_probe_file(full, &w, &h, &c, &depth, why, sizeof why);
      if (rc != 0) {
        int reason = -1 - rc;
        data_warn(d->quiet, "%s: skipped: %s", full, why);
        d->skipped[reason]++;
        continue;
      }
      size_t need = (size_t)w * (size_t)h * (size_t)c * (size_t)(depth / 8);
      if (d->max_image_bytes && need > d->max_image_bytes) { /* refused before any decoding */
        char hn[32], hb[32];
        mf_format_bytes(need, hn, sizeof hn);
        mf_format_bytes(d->max_image_bytes, hb, sizeof hb);
        data_warn(d->quiet, "%s: skipped: a %dx%d image: decoding it needs %s, more than the memory budget of %s", full, w, h,
                  hn, hb);
        d->skipped[SKIP_TOO_LARGE]++;
        continue;
      }
    }
    file_entry *f = &d->files[d->nfiles++];
    f->rel = files.v[i]; files.v[i] = NULL;
    f->w = w; f->h = h; f->label = -1;
  }
  strvec_free(&files);
  if (labels) {
    for (size_t i = 0; i < d->nfiles; i++) {
      const char *rel = d->files[i].rel, *slash = strchr(rel, '/');
      char cls[4096];
      snprintf(cls, sizeof cls, "%.*s", (int)(slash - rel), rel);
      if (classes.n == 0 || strcmp(classes.v[classes.n - 1], cls) != 0) /* files are sorted: classes come grouped */
        if (strvec_push(&classes, cls) != 0) { strvec_free(&classes); snprintf(err, errlen, "out of memory"); return -1; }
      d->files[i].label = (int)classes.n - 1;
    }
    d->classes = classes.v; d->nclasses = (int)classes.n;
  }
  if (d->nfiles == 0) {
    size_t sk = mf_dataset_skipped(d);
    if (total == 0) snprintf(err, errlen, "%s: no files found (empty folder)", d->root);
    else if (sk == 0) snprintf(err, errlen, "%s: none of its %zu files is in the %s split (val_fraction %g)", d->root,
                               total, split == MF_SPLIT_VAL ? "validation" : "training", frac);
    else snprintf(err, errlen, "%s: no usable file: all %zu in the split were skipped (see warnings)", d->root, sk);
    return -1;
  }
  return 0;
}

mf_dataset *mf_dataset_open_folder(const char *dir, const mf_folder_opts *o, char *err, size_t errlen) {
  mf_folder_opts def = mf_folder_opts_default();
  if (!o) o = &def;
  if (!dir) { snprintf(err, errlen, "null folder"); return NULL; }
  if (o->split != MF_SPLIT_ALL && !(o->val_fraction >= 0 && o->val_fraction <= 1)) {
    snprintf(err, errlen, "val_fraction %g not in [0,1]", o->val_fraction);
    return NULL;
  }
  mf_dataset *d = calloc(1, sizeof *d);
  if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
  d->vt = &folder_vt; d->kind = 0; d->frames = 1; d->quiet = o->quiet; d->max_image_bytes = o->max_image_bytes;
  if (scan_folder(d, dir, o->split, o->val_fraction, o->split_seed, o->labels, 1, err, errlen) != 0) {
    mf_dataset_free(d);
    return NULL;
  }
  d->n = d->nfiles;
  size_t sk = mf_dataset_skipped(d);
  if (sk && !d->quiet) {
    fprintf(stderr, "memfit data: %s: %zu usable images, %zu skipped (", d->root, d->n, sk);
    const char *sep = "";
    for (int r = 0; r < SKIP_REASON_COUNT; r++)
      if (d->skipped[r]) { fprintf(stderr, "%s%zu %s", sep, d->skipped[r], reason_names[r]); sep = ", "; }
    fprintf(stderr, ")\n");
  }
  return d;
}

/* shared with video.c */
int dataset_scan(mf_dataset *d, const char *dir, mf_split split, double frac, uint64_t seed, int labels, char *err,
                 size_t errlen) {
  return scan_folder(d, dir, split, frac, seed, labels, 0, err, errlen);
}

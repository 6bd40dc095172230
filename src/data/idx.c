/* idx.c — the IDX format of MNIST and Fashion-MNIST as a dataset: idx3-ubyte images (u8, N x rows x cols)
 * and idx1-ubyte labels, plain or gzip-compressed (as Debian's dataset-fashion-mnist ships them), held in
 * memory and handed to the transforms as 1-channel 8-bit images; and opening a --data path that is either
 * an image folder or an IDX images file (labels found beside it by the standard naming). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"

#define IDX_IMAGES_MAGIC 0x00000803u /* type 0x08 (unsigned byte), 3 dimensions */
#define IDX_LABELS_MAGIC 0x00000801u /* type 0x08, 1 dimension */
#define IDX_LABELS32_MAGIC 0x00000C01u /* type 0x0C (big-endian int32), 1 dimension */
#define IDX_MAX_SIDE 16384
#define IDX_MAX_CLASSES 256

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

mf_idx_opts mf_idx_opts_default(void) {
  mf_idx_opts o = {MF_SPLIT_ALL, 0.1, 0, 0, 0, 0};
  return o;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Opens path (a regular file only: a FIFO or a folder is refused without blocking) for reading through
 * zlib, which reads gzip and plain files alike. Returns the stream, or NULL with err naming the file. */
static gzFile idx_open(const char *path, char *err, size_t errlen) {
  char why[256];
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: is %s, not an IDX file", path, S_ISDIR(st.st_mode) ? "a folder" : "not a regular file");
    return NULL;
  }
  FILE *f = file_open_regular(path, why, sizeof why);
  if (!f) { snprintf(err, errlen, "%s: %s", path, why); return NULL; }
  int fd = dup(fileno(f));
  fclose(f);
  gzFile z = fd >= 0 ? gzdopen(fd, "rb") : NULL;
  if (!z) {
    if (fd >= 0) close(fd);
    snprintf(err, errlen, "%s: cannot open: %s", path, fd < 0 ? strerror(errno) : "out of memory");
    return NULL;
  }
  gzbuffer(z, 1 << 17);
  return z;
}

/* Reads up to n bytes; returns the bytes read (fewer at the end of the data), or -1 with err when the
 * gzip stream is corrupt or the read fails. */
static long long idx_read(gzFile z, const char *path, void *buf, size_t n, char *err, size_t errlen) {
  size_t got = 0;
  while (got < n) {
    size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
    int r = gzread(z, (uint8_t *)buf + got, (unsigned)want);
    if (r < 0) {
      int code = 0;
      const char *m = gzerror(z, &code);
      snprintf(err, errlen, "%s: %s: %s", path, code == Z_DATA_ERROR ? "corrupt gzip data" : "read error", m ? m : "?");
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  /* gzread reports a gzip stream cut short as an end of data with an error code: say so */
  if (got < n) {
    int code = 0;
    const char *m = gzerror(z, &code);
    if (code != Z_OK && code != Z_BUF_ERROR) {
      snprintf(err, errlen, "%s: corrupt gzip data: %s", path, m ? m : "?");
      return -1;
    }
  }
  return (long long)got;
}

/* Reads n bytes into *buf, growing it (realloc, *cap its size) in steps of at most 1 MiB as the data arrives,
 * so that a header promising more than the file holds costs only what is there. Returns the bytes read
 * (fewer at the end of the data), or -1 with err (corrupt gzip data, read error, out of memory). */
static long long idx_read_grow(gzFile z, const char *path, uint8_t **buf, size_t *cap, size_t n, char *err, size_t errlen) {
  size_t got = 0;
  while (got < n) {
    size_t piece = n - got < (1u << 20) ? n - got : (1u << 20);
    if (got + piece > *cap) {
      size_t nc = *cap * 2 > got + piece ? *cap * 2 : got + piece;
      if (nc > n) nc = n;
      uint8_t *p = realloc(*buf, nc);
      if (!p) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
      *buf = p; *cap = nc;
    }
    long long r = idx_read(z, path, *buf + got, piece, err, errlen);
    if (r < 0) return -1;
    got += (size_t)r;
    if ((size_t)r < piece) break;
  }
  return (long long)got;
}

/* Reads the magic number and the dimensions of an IDX file: 0 with dims, -1 with err. */
static int idx_header(gzFile z, const char *path, uint32_t *magic, uint32_t *dims, int max_dims, int *ndims, char *err,
                      size_t errlen) {
  uint8_t h[4 + 4 * 4];
  long long r = idx_read(z, path, h, 4, err, errlen);
  if (r < 0) return -1;
  if (r < 4) { snprintf(err, errlen, "%s: not an IDX file: %lld bytes, shorter than the 4-byte magic number", path, r); return -1; }
  *magic = be32(h);
  int nd = (int)(*magic & 0xff);
  if ((*magic >> 16) != 0 || nd < 1 || nd > max_dims) { *ndims = nd; return 0; } /* the caller names the magic */
  r = idx_read(z, path, h + 4, (size_t)nd * 4, err, errlen);
  if (r < 0) return -1;
  if (r < nd * 4) {
    snprintf(err, errlen, "%s: truncated: the header has %lld of its %d bytes", path, 4 + r, 4 + 4 * nd);
    return -1;
  }
  for (int i = 0; i < nd; i++) dims[i] = be32(h + 4 + 4 * i);
  *ndims = nd;
  return 0;
}

int idx_sniff_file(const char *path) {
  char err[64];
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  gzFile z = idx_open(path, err, sizeof err);
  if (!z) return 0;
  uint8_t h[4];
  long long r = idx_read(z, path, h, 4, err, sizeof err);
  gzclose(z);
  return r == 4 && be32(h) == IDX_IMAGES_MAGIC;
}

int idx_labels_beside(const char *images, char *out, size_t n) {
  const char *base = strrchr(images, '/');
  base = base ? base + 1 : images;
  const char *at = strstr(base, "-images-idx3-ubyte");
  if (!at) at = strstr(base, "-images.idx3-ubyte"); /* the other spelling some copies use */
  if (!at) return -1;
  const char *tail = at + strlen("-images-idx3-ubyte");
  int w = snprintf(out, n, "%.*s-labels%cidx1-ubyte%s", (int)(at - images), images, at[7], tail);
  return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* 64-bit hash of a byte block, a word at a time (the content part of the loader's data id). */
static uint64_t hash_block(uint64_t h, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static int idx_split_is_val(uint64_t index, double frac, uint64_t seed) {
  uint64_t h = hash_words(index, seed, 0x69647873706c6974ull);
  return (double)(h >> 11) * (1.0 / 9007199254740992.0) < frac;
}

/* Reads the labels file: n labels (u8, or big-endian int32 in [0, 256)) into *out (malloc'd). 0, or -1 with err. */
static int idx_read_labels(const char *path, uint32_t n_images, int32_t **out, char *err, size_t errlen) {
  gzFile z = idx_open(path, err, errlen);
  if (!z) return -1;
  uint32_t magic = 0, dims[1] = {0};
  int nd = 0, rc = -1;
  uint8_t *raw = NULL;
  size_t cap = 0;
  if (idx_header(z, path, &magic, dims, 1, &nd, err, errlen) != 0) goto done;
  if (magic != IDX_LABELS_MAGIC && magic != IDX_LABELS32_MAGIC) {
    if (magic == IDX_IMAGES_MAGIC)
      snprintf(err, errlen, "%s: an IDX images file (magic 0x%08x) where the labels were expected (magic 0x%08x)", path, magic,
               IDX_LABELS_MAGIC);
    else
      snprintf(err, errlen, "%s: not an IDX labels file: magic number 0x%08x (labels files have 0x%08x, or 0x%08x for int32 "
                            "labels)", path, magic, IDX_LABELS_MAGIC, IDX_LABELS32_MAGIC);
    goto done;
  }
  if (dims[0] != n_images) {
    snprintf(err, errlen, "%s: %u labels, but the images file has %u images: they do not belong together", path, dims[0], n_images);
    goto done;
  }
  size_t es = magic == IDX_LABELS_MAGIC ? 1 : 4, need = (size_t)n_images * es;
  long long r = idx_read_grow(z, path, &raw, &cap, need, err, errlen);
  if (r < 0) goto done;
  if ((size_t)r < need) {
    snprintf(err, errlen, "%s: truncated: the header says %u labels (%zu bytes) but the file holds %lld", path, n_images, need, r);
    goto done;
  }
  *out = malloc((size_t)n_images * sizeof **out);
  if (!*out) { snprintf(err, errlen, "%s: out of memory for %u labels", path, n_images); goto done; }
  rc = 0;
  for (uint32_t i = 0; i < n_images; i++) {
    int64_t v = es == 1 ? raw[i] : (int64_t)(int32_t)be32(raw + 4 * (size_t)i);
    if (v < 0 || v >= IDX_MAX_CLASSES) {
      snprintf(err, errlen, "%s: label %lld of image %u is not a class number in [0, %d)", path, (long long)v, i, IDX_MAX_CLASSES);
      rc = -1;
      break;
    }
    (*out)[i] = (int32_t)v;
  }
done:
  free(raw);
  gzclose(z);
  return rc;
}

/* ---------------- the dataset ---------------- */
static int idx_get(mf_dataset *d, size_t idx, const mf_transform_opts *o, int views, rng_t *r, float *const *planes,
                   worker_ctx *w, char *err, size_t errlen) {
  int W = d->idx_w, H = d->idx_h;
  if (raw_image_reserve(&w->raw, W, H, 1, 8) != 0) {
    snprintf(err, errlen, "%s: image %u: out of memory", d->root, d->idx_index[idx]);
    return -1 - SKIP_CORRUPT;
  }
  memcpy(w->raw.data, d->idx_pix + idx * (size_t)W * H, (size_t)W * H); /* [H, W] u8, stride W */
  w->raw.x0 = w->raw.y0 = 0;
  w->raw.full_w = w->raw.orig_w = W;
  w->raw.full_h = w->raw.orig_h = H;
  w->raw.scale = 1.0;
  tf_params p[2];
  decode_region reg;
  if (tf_draw_views(o, views, r, W, H, p, &reg, err, errlen) != 0) return -1 - SKIP_TOO_SMALL;
  for (int v = 0; v < views; v++)
    if (tf_apply(o, &p[v], &w->raw, planes + (size_t)v * o->channels, &w->tf) != 0) {
      snprintf(err, errlen, "%s: image %u: out of memory", d->root, d->idx_index[idx]);
      return -1 - SKIP_CORRUPT;
    }
  return 0;
}

static void idx_free(mf_dataset *d) {
  free(d->idx_pix);
  free(d->idx_label);
  free(d->idx_index);
}
static const dataset_vt idx_vt = {idx_get, idx_free};

static int contains_nocase(const char *s, const char *sub) {
  size_t n = strlen(sub);
  for (; *s; s++)
    if (!strncasecmp(s, sub, n)) return 1;
  return 0;
}

mf_dataset *mf_dataset_open_idx(const char *images, const char *labels, const mf_idx_opts *o, char *err, size_t errlen) {
  mf_idx_opts def = mf_idx_opts_default();
  if (!o) o = &def;
  if (!images) { snprintf(err, errlen, "mf_dataset_open_idx: null images path"); return NULL; }
  if (o->split != MF_SPLIT_ALL && !(o->val_fraction >= 0 && o->val_fraction <= 1)) {
    snprintf(err, errlen, "%s: val_fraction %g not in [0,1]", images, o->val_fraction);
    return NULL;
  }
  if (o->num_classes < 0 || o->num_classes > IDX_MAX_CLASSES) {
    snprintf(err, errlen, "%s: num_classes %d not in [0, %d]", images, o->num_classes, IDX_MAX_CLASSES);
    return NULL;
  }
  gzFile z = idx_open(images, err, errlen);
  if (!z) return NULL;
  mf_dataset *d = calloc(1, sizeof *d);
  int32_t *all_labels = NULL;
  uint8_t *chunk = NULL;
  if (!d) { snprintf(err, errlen, "out of memory"); goto fail; }
  d->vt = &idx_vt; d->kind = 3; d->frames = 1; d->quiet = o->quiet;
  d->root = strdup(images);
  if (!d->root) { snprintf(err, errlen, "out of memory"); goto fail; }

  /* header: magic 0x00000803, then N, rows, cols (big-endian u32) */
  uint32_t magic = 0, dims[4] = {0};
  int nd = 0;
  if (idx_header(z, images, &magic, dims, 3, &nd, err, errlen) != 0) goto fail;
  if (magic != IDX_IMAGES_MAGIC) {
    if (magic == IDX_LABELS_MAGIC || magic == IDX_LABELS32_MAGIC)
      snprintf(err, errlen, "%s: an IDX labels file (magic 0x%08x) where the images were expected (magic 0x%08x)", images, magic,
               IDX_IMAGES_MAGIC);
    else if ((magic >> 16) == 0 && (magic >> 8 & 0xff) != 0x08)
      snprintf(err, errlen, "%s: IDX data type 0x%02x (magic 0x%08x) is not supported: images must be unsigned bytes (magic "
                            "0x%08x)", images, magic >> 8 & 0xff, magic, IDX_IMAGES_MAGIC);
    else
      snprintf(err, errlen, "%s: not an IDX images file: magic number 0x%08x, expected 0x%08x (unsigned bytes, 3 dimensions: "
                            "images x rows x columns)", images, magic, IDX_IMAGES_MAGIC);
    goto fail;
  }
  uint32_t N = dims[0], H = dims[1], W = dims[2];
  if (N == 0 || H == 0 || W == 0 || H > IDX_MAX_SIDE || W > IDX_MAX_SIDE || N > INT32_MAX) {
    snprintf(err, errlen, "%s: header says %u images of %u x %u pixels: %s", images, N, H, W,
             N == 0 ? "no images" : N > INT32_MAX ? "too many images" : "each side must be 1 to 16384 pixels");
    goto fail;
  }
  d->idx_w = (int)W; d->idx_h = (int)H;

  /* labels first (small), so that a mismatch is reported before the images are read */
  int num_classes = 0;
  if (labels) {
    if (idx_read_labels(labels, N, &all_labels, err, errlen) != 0) goto fail;
    for (uint32_t i = 0; i < N; i++) {
      if (o->num_classes && all_labels[i] >= o->num_classes) {
        snprintf(err, errlen, "%s: label %d of image %u is not below num_classes %d", labels, all_labels[i], i, o->num_classes);
        goto fail;
      }
      if (all_labels[i] + 1 > num_classes) num_classes = all_labels[i] + 1;
    }
    if (o->num_classes) num_classes = o->num_classes;
  }

  /* images, read in chunks of about 1 MiB that grow as the data arrives: a header that promises more than
   * the file holds allocates only what is there */
  size_t img = (size_t)H * W, cap = 0, kept = 0, chunk_cap = 0, limit = o->limit ? o->limit : SIZE_MAX;
  size_t per_chunk = img >= (1u << 20) ? 1 : (1u << 20) / img;
  uint64_t h = 0x6d656d6669742d69ull ^ ((uint64_t)W << 32 | H);
  for (uint32_t first = 0; first < N && kept < limit; first += (uint32_t)per_chunk) {
    size_t cnt = N - first < per_chunk ? N - first : per_chunk;
    long long r = idx_read_grow(z, images, &chunk, &chunk_cap, cnt * img, err, errlen);
    if (r < 0) goto fail;
    if ((size_t)r < cnt * img) {
      unsigned long long whole = (unsigned long long)first + (unsigned long long)r / img;
      snprintf(err, errlen, "%s: truncated: the header says %u images of %ux%u (%llu bytes of pixels) but the file ends after "
                            "%llu bytes of them (%llu whole image%s)", images, N, H, W, (unsigned long long)N * img,
               (unsigned long long)first * img + (unsigned long long)r, whole, whole == 1 ? "" : "s");
      goto fail;
    }
    for (size_t j = 0; j < cnt && kept < limit; j++) {
      uint32_t index = first + (uint32_t)j;
      if (o->split != MF_SPLIT_ALL && idx_split_is_val(index, o->val_fraction, o->split_seed) != (o->split == MF_SPLIT_VAL))
        continue;
      if (kept == cap) { /* room for twice as many images (at first about 1 MiB of them), never more than can be kept */
        size_t nc = cap ? 2 * cap : per_chunk;
        if (nc > N) nc = N;
        if (nc > limit) nc = limit;
        uint8_t *p = realloc(d->idx_pix, nc * img);
        if (p) d->idx_pix = p;
        int32_t *lb = p ? realloc(d->idx_label, nc * sizeof *lb) : NULL;
        if (lb) d->idx_label = lb;
        uint32_t *ix = lb ? realloc(d->idx_index, nc * sizeof *ix) : NULL;
        if (ix) d->idx_index = ix;
        if (!p || !lb || !ix) { snprintf(err, errlen, "%s: out of memory for %zu images of %ux%u", images, nc, H, W); goto fail; }
        cap = nc;
      }
      memcpy(d->idx_pix + kept * img, chunk + j * img, img);
      d->idx_label[kept] = all_labels ? all_labels[index] : -1;
      d->idx_index[kept] = index;
      h = hash_block(h, chunk + j * img, img);
      h = (h ^ ((uint64_t)index << 16 ^ (uint64_t)(uint32_t)d->idx_label[kept])) * 0x9e3779b97f4a7c15ull;
      kept++;
    }
  }
  if (kept == 0) {
    snprintf(err, errlen, "%s: none of its %u images is in the %s split (val_fraction %g)", images, N,
             o->split == MF_SPLIT_VAL ? "validation" : "training", o->val_fraction);
    goto fail;
  }
  d->n = kept;
  d->idx_total = N;
  d->idx_hash = h;
  if (num_classes) {
    d->classes = calloc((size_t)num_classes, sizeof *d->classes);
    if (!d->classes) { snprintf(err, errlen, "out of memory"); goto fail; }
    d->nclasses = num_classes;
    int fashion = num_classes == 10 && contains_nocase(images, "fashion");
    for (int k = 0; k < num_classes; k++) {
      char nm[16];
      snprintf(nm, sizeof nm, "%d", k);
      d->classes[k] = strdup(fashion ? fashion_names[k] : nm);
      if (!d->classes[k]) { snprintf(err, errlen, "out of memory"); goto fail; }
    }
  }
  free(chunk);
  free(all_labels);
  gzclose(z);
  return d;
fail:
  free(chunk);
  free(all_labels);
  gzclose(z);
  mf_dataset_free(d);
  return NULL;
}

/* ---------------- a --data path: folder or IDX file ---------------- */
mf_dataset *mf_dataset_open_path(const char *path, const mf_folder_opts *o, char *err, size_t errlen) {
  mf_folder_opts def = mf_folder_opts_default();
  if (!o) o = &def;
  if (!path) { snprintf(err, errlen, "null data path"); return NULL; }
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
    if (!idx_sniff_file(path)) {
      snprintf(err, errlen, "%s: a file, but not an IDX images file (magic 0x%08x, plain or gzip): data must be a folder of "
                            "images or an IDX images file", path, IDX_IMAGES_MAGIC);
      return NULL;
    }
    mf_idx_opts io = mf_idx_opts_default();
    io.split = o->split; io.val_fraction = o->val_fraction; io.split_seed = o->split_seed; io.quiet = o->quiet;
    char lab[4096];
    struct stat ls;
    int have = idx_labels_beside(path, lab, sizeof lab) == 0 && stat(lab, &ls) == 0;
    if (!have && idx_labels_beside(path, lab, sizeof lab) == 0) { /* x.gz beside x, or x beside x.gz */
      size_t n = strlen(lab);
      if (n > 3 && !strcmp(lab + n - 3, ".gz")) lab[n - 3] = 0;
      else if (n + 3 < sizeof lab) strcat(lab, ".gz");
      have = stat(lab, &ls) == 0;
    }
    if (!have && o->labels) {
      if (idx_labels_beside(path, lab, sizeof lab) == 0)
        snprintf(err, errlen, "%s: labels were asked for, but %s (its labels by the standard naming) is not there", path, lab);
      else
        snprintf(err, errlen, "%s: labels were asked for, but the name is not of the form PREFIX-images-idx3-ubyte[.gz], so "
                              "the labels file cannot be found beside it", path);
      return NULL;
    }
    return mf_dataset_open_idx(path, have ? lab : NULL, &io, err, errlen);
  }
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* the folder of an IDX set: say which file to give */
    static const char *const names[2] = {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"};
    for (int i = 0; i < 2; i++) {
      char f[4096];
      struct stat fs;
      snprintf(f, sizeof f, "%s/%s", path, names[i]);
      if (stat(f, &fs) == 0 && S_ISREG(fs.st_mode)) {
        const char *gz = i ? ".gz" : "";
        snprintf(err, errlen, "%s holds IDX files (the MNIST layout), not images: give the images file itself, e.g. --data "
                              "%s/train-images-idx3-ubyte%s (its labels are found beside it) and --val-data "
                              "%s/t10k-images-idx3-ubyte%s", path, path, gz, path, gz);
        return NULL;
      }
    }
  }
  return mf_dataset_open_folder(path, o, err, errlen);
}

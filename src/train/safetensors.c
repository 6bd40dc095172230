/* safetensors.c — checkpoint files: a strict reader (own JSON parser, full layout validation, CRC-32
 * checks) and an atomic writer (temp file, fsync, rename, directory fsync). See safetensors.h. */
#include "train/safetensors.h"
#include "train/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- dtypes */

typedef struct st_dtype_info {
  const char *name;
  size_t size;
  int mf; /* mf_dtype, or MF_DTYPE_COUNT when memfit has none */
} st_dtype_info;

/* Every dtype the reference implementation knows; memfit writes only those with an mf_dtype. */
static const st_dtype_info st_dtypes[] = {
    {"F64", 8, MF_F64},     {"F32", 4, MF_F32},         {"F16", 2, MF_F16},
    {"BF16", 2, MF_BF16},   {"I64", 8, MF_DTYPE_COUNT}, {"I32", 4, MF_I32},
    {"I16", 2, MF_DTYPE_COUNT}, {"I8", 1, MF_DTYPE_COUNT}, {"U64", 8, MF_DTYPE_COUNT},
    {"U32", 4, MF_DTYPE_COUNT}, {"U16", 2, MF_DTYPE_COUNT}, {"U8", 1, MF_U8},
    {"BOOL", 1, MF_DTYPE_COUNT}, {"F8_E4M3", 1, MF_DTYPE_COUNT}, {"F8_E5M2", 1, MF_DTYPE_COUNT},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static const st_dtype_info *dtype_by_mf(mf_dtype dt) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (st_dtypes[i].mf == (int)dt && dt != MF_DTYPE_COUNT) return &st_dtypes[i];
  return NULL;
}

static const st_dtype_info *dtype_by_name(const char *s) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
  return NULL;
}

/* ---------------------------------------------------------------- small helpers */

static void err_set(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static char *str_dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Length of the valid UTF-8 prefix of s[0..n) (n when all valid): no overlongs, surrogates or > U+10FFFF. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;      /* overlong */
      else if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;      /* overlong */
      else if (c == 0xf4) hi = 0x8f; /* > U+10FFFF */
    } else return i;
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; k++)
      if ((s[i + k] & 0xc0) != 0x80) return i;
    i += len;
  }
  return n;
}

static uint64_t le64_load(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* safetensors data is little-endian; tensors are written and read as the host holds them. */
static int host_is_little(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

static void le64_store(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---------------------------------------------------------------- CRC-32 (slicing by 8) */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[0][i] = c;
  }
  for (int t = 1; t < 8; t++)
    for (int i = 0; i < 256; i++)
      crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xffu];
}

uint32_t mf_st_crc32(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc_once, crc_table_init);
  const unsigned char *p = data;
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t a = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    c = crc_table[7][a & 0xffu] ^ crc_table[6][(a >> 8) & 0xffu] ^ crc_table[5][(a >> 16) & 0xffu] ^
        crc_table[4][a >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
        crc_table[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) c = crc_table[0][(c ^ *p++) & 0xffu] ^ (c >> 8);
  return ~c;
}

static const char META_CRC[] = "memfit.crc32";
static const char META_HCRC[] = "memfit.header_crc32";

/* CRC of the 8 length bytes and the header, with the 8 digits at hcrc_pos counted as '0'. */
static uint32_t header_crc(const unsigned char *len8, const char *hdr, size_t n, size_t hcrc_pos) {
  static const char zeros[8] = {'0', '0', '0', '0', '0', '0', '0', '0'};
  uint32_t c = mf_st_crc32(0, len8, 8);
  c = mf_st_crc32(c, hdr, hcrc_pos);
  c = mf_st_crc32(c, zeros, 8);
  return mf_st_crc32(c, hdr + hcrc_pos + 8, n - hcrc_pos - 8);
}

static int hex8_parse(const char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 8; i++) {
    char c = s[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = (v << 4) | (uint32_t)d;
  }
  if (s[8] != '\0') return -1;
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------- reader: file state */

struct mf_st_file {
  char *path;
  void *map; /* whole file when mapped */
  size_t map_len;
  char *hdr_buf;           /* header when read (not mapped) */
  unsigned char *data_buf; /* data section when read */
  const char *hdr;
  size_t hdr_len;
  const unsigned char *data;
  uint64_t data_len;
  char *arena; /* unescaped names, dtype names are static */
  size_t arena_pos, arena_cap;
  mf_st_tensor *t;
  int nt, capt;
  int *by_name; /* tensor indices sorted by name */
  const char **mkey, **mval;
  int nm, capm;
  int seen_meta;
  int has_crc;
  long hcrc_pos; /* offset in hdr of memfit.header_crc32's digits, -1 if absent */
};

/* ---------------------------------------------------------------- reader: strict JSON header */

typedef struct jp {
  mf_st_file *f;
  const char *s;
  size_t n, i;
  char msg[400];
  size_t at;
  int failed;
} jp;

static int jp_fail(jp *p, const char *fmt, ...) {
  if (p->failed) return -1;
  p->failed = 1;
  p->at = p->i;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->msg, sizeof p->msg, fmt, ap);
  va_end(ap);
  return -1;
}

static void jp_ws(jp *p) {
  while (p->i < p->n) {
    char c = p->s[p->i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->i++;
    else break;
  }
}

/* What is at the cursor, for messages. */
static const char *jp_here(jp *p, char *buf, size_t n) {
  if (p->i >= p->n) return "the end of the header";
  unsigned char c = (unsigned char)p->s[p->i];
  if (c >= 0x20 && c < 0x7f) snprintf(buf, n, "'%c'", c);
  else snprintf(buf, n, "byte 0x%02x", c);
  return buf;
}

static int jp_expect(jp *p, char c, const char *what) {
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] == c) {
    p->i++;
    return 0;
  }
  char b[32];
  return jp_fail(p, "expected %s but found %s", what, jp_here(p, b, sizeof b));
}

/* Parses a JSON string at the cursor into the arena (NUL-terminated, no embedded NULs allowed).
 * raw_pos, raw_len: where the string's content lies in the header (between the quotes). */
static int jp_string(jp *p, char **out, size_t *raw_pos, size_t *raw_len) {
  mf_st_file *f = p->f;
  jp_ws(p);
  if (p->i >= p->n || p->s[p->i] != '"') {
    char b[32];
    return jp_fail(p, "expected a string but found %s", jp_here(p, b, sizeof b));
  }
  size_t start = p->i + 1, len;
  char *d0 = f->arena + f->arena_pos, why[160];
  if (mf_json_string_read(p->s, p->n, &p->i, d0, &len, why, sizeof why) < 0) return jp_fail(p, "%s", why);
  if (raw_pos) *raw_pos = start;
  if (raw_len) *raw_len = p->i - 1 - start;
  /* An unescaped string is never longer than its quoted form, so the arena (header length + 1) fits. */
  f->arena_pos += len + 1;
  *out = d0;
  return 0;
}

/* A non-negative JSON integer (no sign, fraction or exponent) up to `max`. */
static int jp_uint(jp *p, uint64_t max, uint64_t *out, const char *what) {
  jp_ws(p);
  char b[32];
  if (p->i >= p->n) return jp_fail(p, "expected %s but found the end of the header", what);
  char c = p->s[p->i];
  if (c == '-') return jp_fail(p, "%s must not be negative", what);
  if (c < '0' || c > '9') return jp_fail(p, "expected %s (an integer) but found %s", what, jp_here(p, b, sizeof b));
  if (c == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
    return jp_fail(p, "%s has a leading zero (not valid JSON)", what);
  uint64_t v = 0;
  while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
    unsigned dgt = (unsigned)(p->s[p->i] - '0');
    if (v > (max - dgt) / 10) return jp_fail(p, "%s is too large (more than %" PRIu64 ")", what, max);
    v = v * 10 + dgt;
    p->i++;
  }
  if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
    return jp_fail(p, "%s must be an integer", what);
  *out = v;
  return 0;
}

static int jp_meta(jp *p) {
  mf_st_file *f = p->f;
  jp_ws(p);
  if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) {
    p->i += 4;
    return 0;
  }
  if (jp_expect(p, '{', "'{' to start __metadata__")) return -1;
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] == '}') {
    p->i++;
    return 0;
  }
  for (;;) {
    char *k, *v;
    size_t vpos, vlen;
    if (jp_string(p, &k, NULL, NULL)) return -1;
    if (jp_expect(p, ':', "':' after a metadata key")) return -1;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] != '"') {
      char b[32];
      return jp_fail(p, "metadata '%s' must be a string but is %s", k, jp_here(p, b, sizeof b));
    }
    if (jp_string(p, &v, &vpos, &vlen)) return -1;
    for (int j = 0; j < f->nm; j++)
      if (strcmp(f->mkey[j], k) == 0) return jp_fail(p, "metadata key '%s' appears twice", k);
    if (f->nm == f->capm) {
      int cap = f->capm ? 2 * f->capm : 8;
      const char **nk = realloc(f->mkey, (size_t)cap * sizeof *nk);
      if (!nk) return jp_fail(p, "out of memory");
      f->mkey = nk;
      const char **nv = realloc(f->mval, (size_t)cap * sizeof *nv);
      if (!nv) return jp_fail(p, "out of memory");
      f->mval = nv;
      f->capm = cap;
    }
    f->mkey[f->nm] = k;
    f->mval[f->nm] = v;
    f->nm++;
    if (strcmp(k, META_CRC) == 0) {
      uint32_t dummy;
      if (hex8_parse(v, &dummy)) return jp_fail(p, "metadata %s is '%s', not 8 lowercase hex digits", META_CRC, v);
    }
    if (strcmp(k, META_HCRC) == 0) {
      uint32_t dummy;
      if (vlen != 8 || hex8_parse(v, &dummy)) return jp_fail(p, "metadata %s is not 8 lowercase hex digits", META_HCRC);
      f->hcrc_pos = (long)vpos;
    }
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (jp_expect(p, '}', "',' or '}' in __metadata__")) return -1;
    return 0;
  }
}

static int jp_tensor(jp *p, const char *name) {
  mf_st_file *f = p->f;
  if (f->nt == f->capt) {
    int cap = f->capt ? 2 * f->capt : 16;
    mf_st_tensor *nt = realloc(f->t, (size_t)cap * sizeof *nt);
    if (!nt) return jp_fail(p, "out of memory");
    f->t = nt;
    f->capt = cap;
  }
  mf_st_tensor *t = &f->t[f->nt];
  memset(t, 0, sizeof *t);
  t->name = name;
  int have_dtype = 0, have_shape = 0, have_off = 0;
  const st_dtype_info *di = NULL;
  if (jp_expect(p, '{', "'{' to start the tensor's entry")) return -1;
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] == '}') return jp_fail(p, "tensor '%s' has no dtype, shape or data_offsets", name);
  for (;;) {
    char *key;
    size_t mark = f->arena_pos;
    if (jp_string(p, &key, NULL, NULL)) return -1;
    if (jp_expect(p, ':', "':' after a key")) return -1;
    if (strcmp(key, "dtype") == 0) {
      if (have_dtype) return jp_fail(p, "tensor '%s' has two dtype keys", name);
      have_dtype = 1;
      char *dn;
      jp_ws(p);
      if (p->i < p->n && p->s[p->i] != '"') return jp_fail(p, "tensor '%s': dtype must be a string", name);
      if (jp_string(p, &dn, NULL, NULL)) return -1;
      di = dtype_by_name(dn);
      if (!di)
        return jp_fail(p, "tensor '%s' has unknown dtype '%s' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 "
                          "BOOL F8_E4M3 F8_E5M2)", name, dn);
    } else if (strcmp(key, "shape") == 0) {
      if (have_shape) return jp_fail(p, "tensor '%s' has two shape keys", name);
      have_shape = 1;
      if (jp_expect(p, '[', "'[' to start the shape")) return -1;
      jp_ws(p);
      if (p->i < p->n && p->s[p->i] == ']') p->i++;
      else
        for (;;) {
          uint64_t v;
          if (t->ndim == MF_ST_MAX_DIMS)
            return jp_fail(p, "tensor '%s' has more than %d dimensions", name, MF_ST_MAX_DIMS);
          if (jp_uint(p, (uint64_t)INT64_MAX, &v, "a shape dimension")) return -1;
          t->shape[t->ndim++] = (int64_t)v;
          jp_ws(p);
          if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
          }
          if (jp_expect(p, ']', "',' or ']' in the shape")) return -1;
          break;
        }
    } else if (strcmp(key, "data_offsets") == 0) {
      if (have_off) return jp_fail(p, "tensor '%s' has two data_offsets keys", name);
      have_off = 1;
      if (jp_expect(p, '[', "'[' to start data_offsets")) return -1;
      if (jp_uint(p, UINT64_MAX, &t->begin, "a data offset")) return -1;
      if (jp_expect(p, ',', "',' between the two data_offsets")) return -1;
      if (jp_uint(p, UINT64_MAX, &t->end, "a data offset")) return -1;
      if (jp_expect(p, ']', "']' after the two data_offsets")) return -1;
    } else {
      return jp_fail(p, "tensor '%s' has an unexpected key '%s' (expected dtype, shape, data_offsets)", name, key);
    }
    f->arena_pos = mark; /* the key (and dtype name) are not kept */
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (jp_expect(p, '}', "',' or '}' in the tensor's entry")) return -1;
    break;
  }
  if (!have_dtype || !have_shape || !have_off)
    return jp_fail(p, "tensor '%s' lacks %s", name, !have_dtype ? "a dtype" : !have_shape ? "a shape" : "data_offsets");
  t->dtype = (mf_dtype)di->mf;
  t->dtype_name = di->name;
  t->elem_size = di->size;
  /* numel and byte size, with overflow checks */
  uint64_t numel = 1;
  int zero = 0;
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] == 0) zero = 1;
  if (zero) numel = 0;
  else
    for (int d = 0; d < t->ndim; d++) {
      uint64_t s = (uint64_t)t->shape[d];
      if (numel > (uint64_t)INT64_MAX / s) return jp_fail(p, "tensor '%s': the shape's element count overflows", name);
      numel *= s;
    }
  if (numel > UINT64_MAX / di->size) return jp_fail(p, "tensor '%s': the byte size overflows", name);
  t->numel = (int64_t)numel;
  f->nt++;
  return 0;
}

static int jp_header(jp *p) {
  mf_st_file *f = p->f;
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] != '{') {
    char b[32];
    return jp_fail(p, "the header must be a JSON object but starts with %s", jp_here(p, b, sizeof b));
  }
  if (jp_expect(p, '{', "'{'")) return -1;
  jp_ws(p);
  if (p->i < p->n && p->s[p->i] == '}') p->i++;
  else
    for (;;) {
      char *key;
      if (jp_string(p, &key, NULL, NULL)) return -1;
      if (jp_expect(p, ':', "':' after a tensor name")) return -1;
      if (strcmp(key, "__metadata__") == 0) {
        if (f->seen_meta) return jp_fail(p, "__metadata__ appears twice");
        f->seen_meta = 1;
        if (jp_meta(p)) return -1;
      } else if (jp_tensor(p, key))
        return -1;
      jp_ws(p);
      if (p->i < p->n && p->s[p->i] == ',') {
        p->i++;
        continue;
      }
      if (jp_expect(p, '}', "',' or '}' after a tensor entry")) return -1;
      break;
    }
  jp_ws(p);
  if (p->i != p->n) {
    char b[32];
    return jp_fail(p, "unexpected %s after the JSON object (only space padding may follow)", jp_here(p, b, sizeof b));
  }
  return 0;
}

/* ---------------------------------------------------------------- reader: validation */

static const mf_st_file *sort_file; /* qsort has no context argument; guarded by sort_lock */
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static int cmp_by_name(const void *a, const void *b) {
  return strcmp(sort_file->t[*(const int *)a].name, sort_file->t[*(const int *)b].name);
}

static int cmp_by_offset(const void *a, const void *b) {
  const mf_st_tensor *x = &sort_file->t[*(const int *)a], *y = &sort_file->t[*(const int *)b];
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static void sort_indices(const mf_st_file *f, int *idx, int (*cmp)(const void *, const void *)) {
  pthread_mutex_lock(&sort_lock);
  sort_file = f;
  qsort(idx, (size_t)f->nt, sizeof *idx, cmp);
  sort_file = NULL;
  pthread_mutex_unlock(&sort_lock);
}

static void shape_str(const mf_st_tensor *t, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int d = 0; d < t->ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, d ? "," : "", t->shape[d]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Checks offsets against sizes and the data section, builds the name index, verifies the CRCs. */
static int file_validate(mf_st_file *f, const unsigned char *len8, char *err, size_t errlen) {
  const char *P = f->path;
  /* memfit writes both checksums or neither: one alone means a damaged key (which would silently
   * switch its check off) */
  if ((f->hcrc_pos >= 0) != (mf_st_meta(f, META_CRC) != NULL)) {
    err_set(err, errlen, "checkpoint %s: metadata has %s but not %s: the header is corrupted", P,
            f->hcrc_pos >= 0 ? META_HCRC : META_CRC, f->hcrc_pos >= 0 ? META_CRC : META_HCRC);
    return -1;
  }
  /* header checksum first: when it does not match, the layout errors below would mislead */
  if (f->hcrc_pos >= 0) {
    uint32_t want = 0, got = header_crc(len8, f->hdr, f->hdr_len, (size_t)f->hcrc_pos);
    hex8_parse(mf_st_meta(f, META_HCRC), &want);
    if (got != want) {
      err_set(err, errlen, "checkpoint %s: header checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                           "): the header is corrupted", P, want, got);
      return -1;
    }
  }
  int *idx = malloc((size_t)(f->nt ? f->nt : 1) * sizeof *idx);
  if (!idx) {
    err_set(err, errlen, "checkpoint %s: out of memory", P);
    return -1;
  }
  f->by_name = idx; /* freed by mf_st_close */
  for (int i = 0; i < f->nt; i++) idx[i] = i;
  sort_indices(f, idx, cmp_by_name);
  for (int k = 1; k < f->nt; k++)
    if (strcmp(f->t[idx[k - 1]].name, f->t[idx[k]].name) == 0) {
      err_set(err, errlen, "checkpoint %s: tensor name '%s' appears twice", P, f->t[idx[k]].name);
      return -1;
    }
  for (int i = 0; i < f->nt; i++) {
    mf_st_tensor *t = &f->t[i];
    char sh[160];
    shape_str(t, sh, sizeof sh);
    uint64_t want = (uint64_t)t->numel * t->elem_size;
    if (t->end < t->begin) {
      err_set(err, errlen, "checkpoint %s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] that end before they begin",
              P, t->name, t->begin, t->end);
      return -1;
    }
    if (t->end - t->begin != want) {
      err_set(err, errlen, "checkpoint %s: tensor '%s' is %s %s = %" PRIu64 " bytes but its data_offsets [%" PRIu64 ", %" PRIu64
                           "] span %" PRIu64 " bytes", P, t->name, t->dtype_name, sh, want, t->begin, t->end, t->end - t->begin);
      return -1;
    }
    if (t->end > f->data_len) {
      err_set(err, errlen, "checkpoint %s: tensor '%s' data ends at byte %" PRIu64 " but the file's data section has %" PRIu64
                           " bytes (truncated?)", P, t->name, t->end, f->data_len);
      return -1;
    }
    t->nbytes = (size_t)want;
    t->data = f->data + t->begin;
  }
  int *ord = malloc((size_t)(f->nt ? f->nt : 1) * sizeof *ord);
  if (!ord) {
    err_set(err, errlen, "checkpoint %s: out of memory", P);
    return -1;
  }
  for (int i = 0; i < f->nt; i++) ord[i] = i;
  sort_indices(f, ord, cmp_by_offset);
  uint64_t pos = 0;
  const mf_st_tensor *prev = NULL;
  for (int k = 0; k < f->nt; k++) {
    const mf_st_tensor *t = &f->t[ord[k]];
    if (t->begin < pos) {
      err_set(err, errlen, "checkpoint %s: tensor '%s' (bytes %" PRIu64 "..%" PRIu64 ") overlaps tensor '%s' (bytes %" PRIu64
                           "..%" PRIu64 ")", P, t->name, t->begin, t->end, prev->name, prev->begin, prev->end);
      free(ord);
      return -1;
    }
    if (t->begin > pos) {
      err_set(err, errlen, "checkpoint %s: bytes %" PRIu64 "..%" PRIu64 " of the data section belong to no tensor (gap before '%s')",
              P, pos, t->begin, t->name);
      free(ord);
      return -1;
    }
    pos = t->end;
    prev = t;
  }
  if (pos != f->data_len) {
    err_set(err, errlen, "checkpoint %s: the tensors end at byte %" PRIu64 " of the data section but it has %" PRIu64
                         " bytes (trailing garbage or a damaged header)", P, pos, f->data_len);
    free(ord);
    return -1;
  }
  free(ord);
  const char *crc = mf_st_meta(f, META_CRC);
  if (crc) {
    uint32_t want = 0, got;
    hex8_parse(crc, &want); /* format checked by the parser */
    got = mf_st_crc32(0, f->data, (size_t)f->data_len);
    if (got != want) {
      err_set(err, errlen, "checkpoint %s: data checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                           "): the tensor data is corrupted", P, want, got);
      return -1;
    }
    f->has_crc = 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- reader: I/O */

static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
  unsigned char *b = buf;
  while (n > 0) {
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    ssize_t r = pread(fd, b, chunk, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) {
      errno = 0; /* short file */
      return -1;
    }
    b += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

void mf_st_close(mf_st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  free(f->hdr_buf);
  free(f->data_buf);
  free(f->arena);
  free(f->t);
  free(f->by_name);
  free(f->mkey);
  free(f->mval);
  free(f->path);
  free(f);
}

static mf_st_file *open_fail(mf_st_file *f, int fd) {
  if (fd >= 0) close(fd);
  mf_st_close(f);
  return NULL;
}

mf_st_file *mf_st_open(const char *path, char *err, size_t errlen) {
  return mf_st_open_flags(path, MF_ST_OPEN_MMAP, err, errlen);
}

mf_st_file *mf_st_open_flags(const char *path, int flags, char *err, size_t errlen) {
  if (!path) {
    err_set(err, errlen, "checkpoint: no path given");
    return NULL;
  }
  const char *P = path;
  if (!host_is_little()) {
    err_set(err, errlen, "checkpoint %s: big-endian hosts are not supported", P);
    return NULL;
  }
  mf_st_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = str_dup(path))) {
    free(f);
    err_set(err, errlen, "checkpoint %s: out of memory", P);
    return NULL;
  }
  f->hcrc_pos = -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* O_NONBLOCK: a FIFO must not hang us */
  if (fd < 0) {
    err_set(err, errlen, "checkpoint %s: cannot open: %s", P, strerror(errno));
    return open_fail(f, fd);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    err_set(err, errlen, "checkpoint %s: cannot stat: %s", P, strerror(errno));
    return open_fail(f, fd);
  }
  if (S_ISDIR(st.st_mode)) {
    err_set(err, errlen, "checkpoint %s: is a directory, not a file", P);
    return open_fail(f, fd);
  }
  if (!S_ISREG(st.st_mode)) {
    err_set(err, errlen, "checkpoint %s: not a regular file", P);
    return open_fail(f, fd);
  }
  uint64_t fsize = (uint64_t)st.st_size;
  if (fsize < 8) {
    err_set(err, errlen, "checkpoint %s: the file has %" PRIu64 " bytes, fewer than the 8-byte header length "
                         "(truncated or not a safetensors file)", P, fsize);
    return open_fail(f, fd);
  }
  if (fsize > (uint64_t)SIZE_MAX) {
    err_set(err, errlen, "checkpoint %s: the file is too large for this address space", P);
    return open_fail(f, fd);
  }
  unsigned char len8[8];
  if (!(flags & MF_ST_OPEN_READ)) {
    void *m = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
      f->map = m;
      f->map_len = (size_t)fsize;
    }
  }
  if (f->map) memcpy(len8, f->map, 8);
  else if (pread_all(fd, len8, 8, 0)) {
    err_set(err, errlen, "checkpoint %s: cannot read: %s", P, errno ? strerror(errno) : "file shrank while reading");
    return open_fail(f, fd);
  }
  uint64_t n = le64_load(len8);
  if (n > MF_ST_MAX_HEADER) {
    err_set(err, errlen, "checkpoint %s: header length %" PRIu64 " is absurd (more than 100 MiB): not a safetensors file, "
                         "or its first 8 bytes are corrupted", P, n);
    return open_fail(f, fd);
  }
  if (n > fsize - 8) {
    err_set(err, errlen, "checkpoint %s: header length is %" PRIu64 " bytes but only %" PRIu64 " bytes follow the length "
                         "field (truncated?)", P, n, fsize - 8);
    return open_fail(f, fd);
  }
  f->hdr_len = (size_t)n;
  f->data_len = fsize - 8 - n;
  if (f->map) {
    f->hdr = (const char *)f->map + 8;
    f->data = (const unsigned char *)f->map + 8 + n;
  } else {
    f->hdr_buf = malloc((size_t)n + 1);
    f->data_buf = malloc(f->data_len ? (size_t)f->data_len : 1);
    if (!f->hdr_buf || !f->data_buf) {
      err_set(err, errlen, "checkpoint %s: out of memory reading %" PRIu64 " bytes", P, fsize);
      return open_fail(f, fd);
    }
    if (pread_all(fd, f->hdr_buf, (size_t)n, 8) || pread_all(fd, f->data_buf, (size_t)f->data_len, 8 + n)) {
      err_set(err, errlen, "checkpoint %s: cannot read: %s", P, errno ? strerror(errno) : "file shrank while reading");
      return open_fail(f, fd);
    }
    f->hdr = f->hdr_buf;
    f->data = f->data_buf;
  }
  close(fd);
  fd = -1;
  if (n == 0) {
    err_set(err, errlen, "checkpoint %s: the header is empty (not a safetensors file?)", P);
    return open_fail(f, fd);
  }
  size_t bad = utf8_valid_prefix((const unsigned char *)f->hdr, f->hdr_len);
  if (bad != f->hdr_len) {
    err_set(err, errlen, "checkpoint %s: header byte %zu (0x%02x) is not valid UTF-8: the header is corrupted", P, bad,
            (unsigned char)f->hdr[bad]);
    return open_fail(f, fd);
  }
  f->arena_cap = f->hdr_len + 1;
  f->arena = malloc(f->arena_cap);
  if (!f->arena) {
    err_set(err, errlen, "checkpoint %s: out of memory", P);
    return open_fail(f, fd);
  }
  jp p = {.f = f, .s = f->hdr, .n = f->hdr_len};
  if (jp_header(&p)) {
    err_set(err, errlen, "checkpoint %s: bad header at byte %zu of %zu: %s", P, p.at, f->hdr_len, p.msg);
    return open_fail(f, fd);
  }
  if (file_validate(f, len8, err, errlen)) return open_fail(f, fd);
  return f;
}

/* ---------------------------------------------------------------- reader: queries */

int mf_st_count(const mf_st_file *f) { return f ? f->nt : 0; }

const mf_st_tensor *mf_st_at(const mf_st_file *f, int i) {
  if (!f || i < 0 || i >= f->nt) return NULL;
  return &f->t[i];
}

const mf_st_tensor *mf_st_find(const mf_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  int lo = 0, hi = f->nt - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(f->t[f->by_name[mid]].name, name);
    if (c == 0) return &f->t[f->by_name[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

const void *mf_st_get(const mf_st_file *f, const char *name, mf_dtype dt, int ndim, const int64_t *shape,
                      char *err, size_t errlen) {
  if (!f) {
    err_set(err, errlen, "checkpoint: no file");
    return NULL;
  }
  const mf_st_tensor *t = mf_st_find(f, name);
  if (!t) {
    err_set(err, errlen, "checkpoint %s: has no tensor '%s' (it holds %d tensors)", f->path, name ? name : "(null)", f->nt);
    return NULL;
  }
  int same = t->dtype == dt && t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
  if (!same) {
    char have[160], want[200];
    shape_str(t, have, sizeof have);
    const st_dtype_info *di = dtype_by_mf(dt);
    mf_st_tensor w = {.ndim = ndim < 0 ? 0 : ndim > MF_ST_MAX_DIMS ? MF_ST_MAX_DIMS : ndim};
    for (int d = 0; d < w.ndim; d++) w.shape[d] = shape[d];
    shape_str(&w, want, sizeof want);
    err_set(err, errlen, "checkpoint %s: tensor '%s' is %s %s but %s %s was expected", f->path, t->name, t->dtype_name,
            have, di ? di->name : "?", want);
    return NULL;
  }
  return t->data;
}

int64_t mf_st_nonfinite(const mf_st_tensor *t) {
  if (!t || !t->data) return -1;
  const unsigned char *p = t->data;
  const char *dn = t->dtype_name;
  /* a value is NaN or infinite when its exponent bits are all ones */
  uint64_t mask;
  if (!strcmp(dn, "F64")) mask = 0x7ff0000000000000ull;
  else if (!strcmp(dn, "F32")) mask = 0x7f800000u;
  else if (!strcmp(dn, "F16")) mask = 0x7c00u;
  else if (!strcmp(dn, "BF16")) mask = 0x7f80u;
  else return -1; /* integers, booleans and 8-bit floats: nothing to check */
  size_t es = t->elem_size;
  for (int64_t i = 0; i < t->numel; i++) {
    uint64_t u = 0;
    if (es == 4) { uint32_t v; memcpy(&v, p + (size_t)i * 4, 4); u = v; } /* the common case, a fixed-size copy */
    else memcpy(&u, p + (size_t)i * es, es); /* little-endian host: the low bytes of u */
    if ((u & mask) == mask) return i;
  }
  return -1;
}

const char *mf_st_meta(const mf_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (int i = 0; i < f->nm; i++)
    if (strcmp(f->mkey[i], key) == 0) return f->mval[i];
  return NULL;
}

int mf_st_meta_count(const mf_st_file *f) { return f ? f->nm : 0; }

int mf_st_meta_at(const mf_st_file *f, int i, const char **key, const char **value) {
  if (!f || i < 0 || i >= f->nm) return -1;
  if (key) *key = f->mkey[i];
  if (value) *value = f->mval[i];
  return 0;
}

int mf_st_has_crc(const mf_st_file *f) { return f ? f->has_crc : 0; }

/* ---------------------------------------------------------------- writer */

typedef struct st_wtensor {
  char *name;
  const st_dtype_info *di;
  int ndim;
  int64_t shape[MF_ST_MAX_DIMS];
  const void *data;
  uint64_t nbytes;
  uint64_t begin;
} st_wtensor;

struct mf_st_writer {
  st_wtensor *t;
  int nt, capt;
  char **mk, **mv;
  int nm, capm;
  int crc;
  char err[512];
};

mf_st_writer *mf_st_writer_init(void) {
  mf_st_writer *w = calloc(1, sizeof *w);
  if (w) w->crc = 1;
  return w;
}

void mf_st_writer_free(mf_st_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->nt; i++) free(w->t[i].name);
  for (int i = 0; i < w->nm; i++) {
    free(w->mk[i]);
    free(w->mv[i]);
  }
  free(w->t);
  free(w->mk);
  free(w->mv);
  free(w);
}

void mf_st_writer_set_crc(mf_st_writer *w, int on) {
  if (w) w->crc = on != 0;
}

const char *mf_st_writer_error(const mf_st_writer *w) { return w && w->err[0] ? w->err : NULL; }

static int writer_fail(mf_st_writer *w, const char *fmt, ...) {
  if (w->err[0]) return -1; /* keep the first */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->err, sizeof w->err, fmt, ap);
  va_end(ap);
  return -1;
}

static int text_ok(const char *s) { return utf8_valid_prefix((const unsigned char *)s, strlen(s)) == strlen(s); }

int mf_st_writer_add(mf_st_writer *w, const char *name, mf_dtype dt, int ndim, const int64_t *shape, const void *data) {
  if (!w) return -1;
  const st_dtype_info *di = dtype_by_mf(dt);
  if (!di) return writer_fail(w, "checkpoint: tensor '%s' has unknown dtype %d", name ? name : "(null)", (int)dt);
  return mf_st_writer_add_typed(w, name, di->name, ndim, shape, data);
}

int mf_st_writer_add_typed(mf_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                           const void *data) {
  if (!w) return -1;
  if (!name || !*name) return writer_fail(w, "checkpoint: a tensor has an empty name");
  if (!text_ok(name)) return writer_fail(w, "checkpoint: tensor name '%s' is not valid UTF-8", name);
  if (strcmp(name, "__metadata__") == 0) return writer_fail(w, "checkpoint: '__metadata__' cannot name a tensor");
  const st_dtype_info *di = dtype ? dtype_by_name(dtype) : NULL;
  if (!di) return writer_fail(w, "checkpoint: tensor '%s' has unknown dtype '%s'", name, dtype ? dtype : "(null)");
  if (ndim < 0 || ndim > MF_ST_MAX_DIMS || (ndim > 0 && !shape))
    return writer_fail(w, "checkpoint: tensor '%s' has %d dimensions (0..%d allowed)", name, ndim, MF_ST_MAX_DIMS);
  uint64_t numel = 1;
  for (int d = 0; d < ndim; d++)
    if (shape[d] < 0) return writer_fail(w, "checkpoint: tensor '%s' has negative dimension %" PRId64, name, shape[d]);
  for (int d = 0; d < ndim; d++) {
    uint64_t s = (uint64_t)shape[d];
    if (s != 0 && numel > ((uint64_t)INT64_MAX / di->size) / s)
      return writer_fail(w, "checkpoint: tensor '%s': its size overflows", name);
    numel *= s;
  }
  uint64_t nbytes = numel * di->size;
  if (nbytes > 0 && !data) return writer_fail(w, "checkpoint: tensor '%s' has no data", name);
  for (int i = 0; i < w->nt; i++)
    if (strcmp(w->t[i].name, name) == 0) return writer_fail(w, "checkpoint: tensor '%s' added twice", name);
  if (w->nt == w->capt) {
    int cap = w->capt ? 2 * w->capt : 16;
    st_wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
    if (!nt) return writer_fail(w, "checkpoint: out of memory");
    w->t = nt;
    w->capt = cap;
  }
  st_wtensor *t = &w->t[w->nt];
  memset(t, 0, sizeof *t);
  if (!(t->name = str_dup(name))) return writer_fail(w, "checkpoint: out of memory");
  t->di = di;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  t->data = data;
  t->nbytes = nbytes;
  w->nt++;
  return 0;
}

int mf_st_writer_meta(mf_st_writer *w, const char *key, const char *value) {
  if (!w) return -1;
  if (!key || !value) return writer_fail(w, "checkpoint: metadata key or value is NULL");
  if (!text_ok(key) || !text_ok(value)) return writer_fail(w, "checkpoint: metadata '%s' is not valid UTF-8", key);
  if (strcmp(key, META_CRC) == 0 || strcmp(key, META_HCRC) == 0)
    return writer_fail(w, "checkpoint: metadata key '%s' is reserved for the writer", key);
  char *v = str_dup(value);
  if (!v) return writer_fail(w, "checkpoint: out of memory");
  for (int i = 0; i < w->nm; i++)
    if (strcmp(w->mk[i], key) == 0) {
      free(w->mv[i]);
      w->mv[i] = v;
      return 0;
    }
  if (w->nm == w->capm) {
    int cap = w->capm ? 2 * w->capm : 8;
    char **nk = realloc(w->mk, (size_t)cap * sizeof *nk);
    if (nk) w->mk = nk;
    char **nv = nk ? realloc(w->mv, (size_t)cap * sizeof *nv) : NULL;
    if (nv) w->mv = nv;
    if (!nk || !nv) {
      free(v);
      return writer_fail(w, "checkpoint: out of memory");
    }
    w->capm = cap;
  }
  char *k = str_dup(key);
  if (!k) {
    free(v);
    return writer_fail(w, "checkpoint: out of memory");
  }
  w->mk[w->nm] = k;
  w->mv[w->nm] = v;
  w->nm++;
  return 0;
}

/* growable text buffer for the header */
typedef struct sbuf {
  char *s;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *ns = realloc(b->s, cap);
    if (!ns) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) {
  char tmp[256]; /* callers format numbers and fixed keys only */
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= sizeof tmp) b->oom = 1; /* cannot happen; fail rather than truncate */
  else sb_put(b, tmp, (size_t)k);
}

/* JSON string literal: escapes quote, backslash and control characters; UTF-8 passes through. */
static void sb_json(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"') sb_put(b, "\\\"", 2);
    else if (*p == '\\') sb_put(b, "\\\\", 2);
    else if (*p == '\n') sb_put(b, "\\n", 2);
    else if (*p == '\t') sb_put(b, "\\t", 2);
    else if (*p == '\r') sb_put(b, "\\r", 2);
    else if (*p < 0x20) sb_fmt(b, "\\u%04x", *p);
    else sb_put(b, (const char *)p, 1);
  }
  sb_put(b, "\"", 1);
}

static int write_all(int fd, const void *buf, uint64_t n) {
  const unsigned char *p = buf;
  while (n > 0) {
    size_t chunk = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
    ssize_t r = write(fd, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    n -= (uint64_t)r;
  }
  return 0;
}

/* Removes the temporary files PATH.tmp.PID that earlier saves of path left in dir when they were
 * killed mid-write: only those whose PID is no running process (kill(pid, 0) fails with ESRCH), never
 * this process's own nor another save's in progress. (A folder shared by several machines could hold a
 * live process's file whose PID is free here; checkpoints are not written that way.) */
static void st_remove_stale_tmp(const char *dir, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t bl = strlen(base);
  DIR *dp = opendir(dir);
  if (!dp) return;
  for (struct dirent *e; (e = readdir(dp)) != NULL;) {
    const char *n = e->d_name;
    if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
    const char *digits = n + bl + 5;
    char *end;
    errno = 0;
    long pid = strtol(digits, &end, 10);
    if (!*digits || *end || errno || pid <= 0 || pid == (long)getpid() || (pid_t)pid != pid) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge (EPERM) */
    size_t dl = strlen(dir), nl = strlen(n);
    char *full = malloc(dl + nl + 2);
    if (!full) break;
    memcpy(full, dir, dl);
    full[dl] = '/';
    memcpy(full + dl + 1, n, nl + 1);
    unlink(full);
    free(full);
  }
  closedir(dp);
}

int mf_st_writer_save(mf_st_writer *w, const char *path, char *err, size_t errlen) {
  if (!w || !path || !*path) {
    err_set(err, errlen, "checkpoint: no writer or path");
    return -1;
  }
  if (w->err[0]) {
    err_set(err, errlen, "%s (saving %s)", w->err, path);
    return -1;
  }
  if (!host_is_little()) {
    err_set(err, errlen, "checkpoint %s: big-endian hosts are not supported", path);
    return -1;
  }
  /* layout: largest elements first, keeping the order added within each size, so every tensor's data is
   * aligned to its element size (the reference writer does the same) */
  int *order = malloc((size_t)(w->nt ? w->nt : 1) * sizeof *order);
  if (!order) {
    err_set(err, errlen, "checkpoint %s: out of memory", path);
    return -1;
  }
  int k = 0;
  uint64_t total = 0;
  for (size_t sz = 8; sz >= 1; sz /= 2)
    for (int i = 0; i < w->nt; i++)
      if (w->t[i].di->size == sz) {
        order[k++] = i;
        w->t[i].begin = total;
        total += w->t[i].nbytes;
      }
  uint32_t dcrc = 0;
  if (w->crc)
    for (int j = 0; j < w->nt; j++) dcrc = mf_st_crc32(dcrc, w->t[order[j]].data, (size_t)w->t[order[j]].nbytes);

  sbuf b = {0};
  size_t hcrc_pos = 0;
  sb_str(&b, "{");
  if (w->nm > 0 || w->crc) {
    sb_str(&b, "\"__metadata__\":{");
    for (int i = 0; i < w->nm; i++) {
      if (i) sb_str(&b, ",");
      sb_json(&b, w->mk[i]);
      sb_str(&b, ":");
      sb_json(&b, w->mv[i]);
    }
    if (w->crc) {
      sb_fmt(&b, "%s\"%s\":\"%08" PRIx32 "\",\"%s\":\"", w->nm ? "," : "", META_CRC, dcrc, META_HCRC);
      hcrc_pos = b.n;
      sb_str(&b, "00000000\"");
    }
    sb_str(&b, "}");
  }
  for (int j = 0; j < w->nt; j++) {
    const st_wtensor *t = &w->t[order[j]];
    if (j || w->nm > 0 || w->crc) sb_str(&b, ",");
    sb_json(&b, t->name);
    sb_fmt(&b, ":{\"dtype\":\"%s\",\"shape\":[", t->di->name);
    for (int d = 0; d < t->ndim; d++) sb_fmt(&b, "%s%" PRId64, d ? "," : "", t->shape[d]);
    sb_fmt(&b, "],\"data_offsets\":[%" PRIu64 ",", t->begin);
    sb_fmt(&b, "%" PRIu64 "]}", t->begin + t->nbytes);
  }
  sb_str(&b, "}");
  while (b.n % 8) sb_str(&b, " ");
  if (b.oom) {
    free(order);
    free(b.s);
    err_set(err, errlen, "checkpoint %s: out of memory", path);
    return -1;
  }
  unsigned char len8[8];
  le64_store(len8, (uint64_t)b.n);
  if (w->crc) {
    char hex[9];
    snprintf(hex, sizeof hex, "%08" PRIx32, header_crc(len8, b.s, b.n, hcrc_pos));
    memcpy(b.s + hcrc_pos, hex, 8);
  }

  /* temp file in the same directory, then rename over path */
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32), *dir = malloc(plen + 2);
  if (!tmp || !dir) {
    free(tmp);
    free(dir);
    free(order);
    free(b.s);
    err_set(err, errlen, "checkpoint %s: out of memory", path);
    return -1;
  }
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
  const char *slash = strrchr(path, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == path) strcpy(dir, "/");
  else {
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
  }
  st_remove_stale_tmp(dir, path);
  int rc = -1, e = 0;
  const char *what = NULL;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    err_set(err, errlen, "checkpoint %s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
    goto done;
  }
  if (write_all(fd, len8, 8) || write_all(fd, b.s, b.n)) what = "writing";
  for (int j = 0; j < w->nt && !what; j++) {
    const st_wtensor *t = &w->t[order[j]];
    if (t->nbytes && write_all(fd, t->data, t->nbytes)) what = "writing";
  }
  if (!what && fsync(fd) != 0) what = "syncing";
  e = errno;
  if (close(fd) != 0 && !what) {
    what = "closing";
    e = errno;
  }
  if (what) {
    unlink(tmp);
    err_set(err, errlen, "checkpoint %s: %s the temporary file %s failed: %s (the previous checkpoint, if any, is intact)",
            path, what, tmp, strerror(e));
    goto done;
  }
  if (rename(tmp, path) != 0) {
    e = errno;
    unlink(tmp);
    err_set(err, errlen, "checkpoint %s: cannot rename %s over it: %s (the previous checkpoint, if any, is intact)", path,
            tmp, strerror(e));
    goto done;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP)) {
    e = errno;
    if (dfd >= 0) close(dfd);
    err_set(err, errlen, "checkpoint %s: written, but syncing its directory %s failed: %s (a crash now could lose it)",
            path, dir, strerror(e));
    goto done;
  }
  close(dfd);
  rc = 0;
done:
  free(order);
  free(tmp);
  free(dir);
  free(b.s);
  return rc;
}

/* safetensors.h — checkpoint files in the safetensors format: an atomic, checksummed writer and a
 * reader that validates every byte of the header and the data layout before handing out tensors.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON (padded with spaces to a multiple of 8),
 * then the data section. The JSON maps tensor name -> {"dtype","shape","data_offsets":[begin,end]}
 * (offsets relative to the data section) plus an optional "__metadata__" object of string -> string.
 *
 * memfit-written files also carry two metadata keys (verified by mf_st_open when present):
 *   "memfit.crc32"        CRC-32 (zlib's) of the data section, 8 lowercase hex digits
 *   "memfit.header_crc32" CRC-32 of the 8 length bytes + the N header bytes, computed with this key's
 *                         own 8 hex digits replaced by '0' (so flips in names and metadata are caught)
 *
 * Usage:
 *   mf_st_writer *w = mf_st_writer_init();
 *   int64_t shape[2] = {16, 8};
 *   mf_st_writer_add(w, "w1", MF_F32, 2, shape, w1_data);     // referenced until save, not copied
 *   mf_st_writer_meta(w, "step", "1000");
 *   if (mf_st_writer_save(w, "run/ck.safetensors", err, sizeof err)) fprintf(stderr, "%s\n", err);
 *   mf_st_writer_free(w);
 *
 *   mf_st_file *f = mf_st_open("run/ck.safetensors", err, sizeof err);   // NULL + err when invalid
 *   const float *w1 = mf_st_get(f, "w1", MF_F32, 2, shape, err, sizeof err); // NULL when absent/mismatch
 *   mf_st_close(f);                                                        // w1 is invalid after this
 */
#ifndef MF_SAFETENSORS_H
#define MF_SAFETENSORS_H

#include "memfit.h"
#include <stddef.h>
#include <stdint.h>

#define MF_ST_MAX_DIMS 8
/* Headers longer than this are rejected as corrupt (the reference implementation's limit). */
#define MF_ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

/* ---- writer ---- */
typedef struct mf_st_writer mf_st_writer;

mf_st_writer *mf_st_writer_init(void);
void mf_st_writer_free(mf_st_writer *w);
/* Adds a tensor; `data` (numel * element size bytes, host memory) must stay valid until save.
 * Returns 0, or -1 on a bad name/shape/duplicate; the first such error is kept and save reports it. */
int mf_st_writer_add(mf_st_writer *w, const char *name, mf_dtype dt, int ndim, const int64_t *shape,
                     const void *data);
/* Same with a safetensors dtype name ("I64", "U64", "BOOL", ... or "F32" etc.), for the types memfit's
 * mf_dtype lacks (step counters, RNG state). */
int mf_st_writer_add_typed(mf_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                           const void *data);
/* Sets a metadata string (copied); setting a key again replaces its value. Keys "memfit.crc32" and
 * "memfit.header_crc32" are reserved. Returns 0 or -1 (kept like add's errors). */
int mf_st_writer_meta(mf_st_writer *w, const char *key, const char *value);
/* Checksums are on by default; 0 writes a plain safetensors file without memfit.* keys. */
void mf_st_writer_set_crc(mf_st_writer *w, int on);
/* NULL, or the first add/meta error. */
const char *mf_st_writer_error(const mf_st_writer *w);
/* Writes atomically: to "<path>.tmp.<pid>" in the same directory, fsync, rename over path, fsync the
 * directory. On failure returns -1 with err naming the path and the reason; the temporary file is
 * removed and an existing file at path is left as it was. The writer can be saved again. */
int mf_st_writer_save(mf_st_writer *w, const char *path, char *err, size_t errlen);

/* ---- reader ---- */
typedef struct mf_st_file mf_st_file;

typedef struct mf_st_tensor {
  const char *name;
  mf_dtype dtype;         /* MF_DTYPE_COUNT when memfit has no such type (I64, U16, BOOL, ...) */
  const char *dtype_name; /* as in the file: "F32", "BF16", "I64", ... */
  size_t elem_size;
  int ndim;
  int64_t shape[MF_ST_MAX_DIMS];
  int64_t numel;
  const void *data; /* inside the file's data section; aligned to elem_size when the offsets are
                     * (always for memfit-written files); valid until mf_st_close */
  size_t nbytes;
  uint64_t begin, end; /* data_offsets as in the file */
} mf_st_tensor;

enum { MF_ST_OPEN_MMAP = 0, MF_ST_OPEN_READ = 1 };

/* Opens and validates a whole file (see mf_st_open_flags); NULL with err filled when anything is off. */
mf_st_file *mf_st_open(const char *path, char *err, size_t errlen);
/* MF_ST_OPEN_MMAP maps the file read-only (falls back to reading it when mapping fails);
 * MF_ST_OPEN_READ reads the data section into one heap buffer. */
mf_st_file *mf_st_open_flags(const char *path, int flags, char *err, size_t errlen);
void mf_st_close(mf_st_file *f);

int mf_st_count(const mf_st_file *f);
/* i-th tensor in the header's order (0 <= i < count), else NULL. */
const mf_st_tensor *mf_st_at(const mf_st_file *f, int i);
/* NULL when there is no tensor of that name. */
const mf_st_tensor *mf_st_find(const mf_st_file *f, const char *name);
/* Looks a tensor up and checks it has exactly this dtype and shape; returns its data, or NULL with err
 * saying what was expected and what the file holds. */
const void *mf_st_get(const mf_st_file *f, const char *name, mf_dtype dt, int ndim, const int64_t *shape,
                      char *err, size_t errlen);
/* Index of the first NaN or infinite element of a F64/F32/F16/BF16 tensor, or -1 when every element is
 * finite or the tensor holds no floating-point type. (Memory is little-endian, as the reader requires.) */
int64_t mf_st_nonfinite(const mf_st_tensor *t);
/* Metadata value, or NULL when the key is absent. */
const char *mf_st_meta(const mf_st_file *f, const char *key);
int mf_st_meta_count(const mf_st_file *f);
/* i-th metadata entry in the header's order; returns 0, or -1 when i is out of range. */
int mf_st_meta_at(const mf_st_file *f, int i, const char **key, const char **value);
/* 1 when the file carried memfit.crc32 (and it matched), else 0. */
int mf_st_has_crc(const mf_st_file *f);

/* CRC-32 (IEEE 802.3 polynomial, same as zlib's crc32): pass crc 0 to start, feed chunks in order. */
uint32_t mf_st_crc32(uint32_t crc, const void *data, size_t n);

#endif

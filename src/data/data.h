/* data.h — internals of the data pipeline (src/data): per-sample RNG, decoded raw images,
 * the PNG/JPEG decoders, transforms, the procedural generator and the dataset interface. */
#ifndef MEMFIT_DATA_H
#define MEMFIT_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/rng.h"
#include "memfit.h"

/* Messages are cut to their buffers on purpose (snprintf); paths are limited to PATH_MAX. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

/* ---- RNG: rng_t and splitmix64 live in base/rng.h (one implementation for the library) ---- */
double rng_normal(rng_t *r); /* standard normal (Box-Muller), in transform.c */

/* ---- raw decoded images ----
 * A region of a (possibly DCT-downscaled) decoded image, interleaved HWC, 8- or 16-bit samples
 * (16-bit in native byte order). (x0,y0) is the region's origin in the full image at scale `scale`;
 * full_w/full_h are the full image's size at that scale. The buffer grows and is reused. */
typedef struct raw_image {
  int w, h, c, depth;    /* region: h rows x w cols x c channels (1 or 3), depth 8 or 16 */
  size_t stride;         /* bytes per row */
  int x0, y0;            /* region origin within the scaled full image */
  int full_w, full_h;    /* scaled full image size */
  int orig_w, orig_h;    /* full image size before DCT scaling */
  double scale;          /* scaled / original size (1, 1/2, 1/4, 1/8 for JPEG draft decode) */
  uint8_t *data; size_t cap;
} raw_image;
void raw_image_free(raw_image *r);
int raw_image_reserve(raw_image *r, int w, int h, int c, int depth);

/* A crop request: after the header is read, the decoder asks `choose` which part of the image
 * is needed (box in original pixel coordinates, and the output size it will be resampled to). */
typedef struct decode_region {
  double bx, by, bw, bh; /* box in original pixels */
  int out_w, out_h;      /* resample target (for the DCT scale and the filter margin) */
  double support;        /* resampling filter support in output pixels (kept around the box) */
} decode_region;
typedef int (*decode_choose_fn)(void *ctx, int w, int h, decode_region *reg);

enum { IMG_UNKNOWN = 0, IMG_PNG, IMG_JPEG };
int image_sniff(const uint8_t *buf, size_t n); /* IMG_PNG / IMG_JPEG / IMG_UNKNOWN */

/* Decoding. choose may be NULL (whole image). draft: allow JPEG DCT downscaling.
 * Returns 0, or -1 with err filled (never aborts on corrupt input). */
int png_decode_mem(const uint8_t *buf, size_t n, raw_image *out, decode_choose_fn choose, void *ctx,
                   char *err, size_t errlen);
int jpeg_decode_mem(const uint8_t *buf, size_t n, raw_image *out, decode_choose_fn choose, void *ctx,
                    int draft, char *err, size_t errlen);
int image_decode_mem(const uint8_t *buf, size_t n, raw_image *out, decode_choose_fn choose, void *ctx,
                     int draft, char *err, size_t errlen);

/* Header-only probe from a file (cheap; used when a folder is opened).
 * Returns 0 with w/h/c/depth, or -(1 + skip_reason) with the reason in err. */
int image_probe_file(const char *path, int *w, int *h, int *c, int *depth, char *err, size_t errlen);

/* Opens path for reading only when it is a regular file (a directory, FIFO or device is refused with
 * err saying which, without blocking on a FIFO). Returns the stream, or NULL with err. */
FILE *file_open_regular(const char *path, char *err, size_t errlen);

/* Reads a whole file into *buf (grown with realloc; *cap its capacity). Returns bytes or -1. */
long file_read_all(const char *path, uint8_t **buf, size_t *cap, char *err, size_t errlen);

/* ---- transforms ---- */
typedef struct tf_params {
  double bx, by, bw, bh;          /* source box (original pixels) */
  int hflip, vflip, rot;          /* rot: number of 90-degree counter-clockwise turns */
  int jitter; int order[4];       /* colour jitter on/off and the order of b, c, s, h */
  float bright, contrast, sat, hue;
  int gray;                       /* convert to grayscale */
  float blur_sigma;               /* 0: no blur */
  float noise_std;                /* 0: no noise */
  uint64_t noise_seed;
} tf_params;

/* Draws the random parameters of one view for an image of size w x h (original pixels).
 * Returns 0, or -1 when the image is smaller than a fixed-size crop (err says so). */
int tf_params_draw(const mf_transform_opts *o, rng_t *r, int w, int h, tf_params *p, char *err, size_t errlen);
/* Draws `views` parameter sets for a w x h image and the decode request covering all of them.
 * Returns 0, or -1 when a fixed-size crop does not fit (err says so). */
int tf_draw_views(const mf_transform_opts *o, int views, rng_t *r, int w, int h, tf_params *p, decode_region *reg,
                  char *err, size_t errlen);
/* Checks options; returns 0 or -1 with err. */
int tf_validate(const mf_transform_opts *o, char *err, size_t errlen);

/* Per-thread scratch for transforms (grows, reused). */
typedef struct tf_scratch { float *buf; size_t cap; } tf_scratch;
void tf_scratch_free(tf_scratch *s);

/* Resamples p->box of raw into out_c planes of out_h x out_w (planes[c], each contiguous, row
 * stride out_w) and applies every other transform. Gray sources are replicated to 3 channels. */
int tf_apply(const mf_transform_opts *o, const tf_params *p, const raw_image *raw, float *const *planes,
             tf_scratch *s);

/* Resizes nc planar sw x sh planes (each contiguous) to dw x dh in dst with the pipeline's resampling
 * (antialiased bilinear: the triangle filter widened by the scale when shrinking; or area), pixel
 * centres aligned, the result clamped to [0,1]. Holds the filter tables and one row. Returns 0, or -1
 * on a bad size or out of memory. */
int tf_resize_planes(const float *src, int sw, int sh, int nc, float *dst, int dw, int dh, mf_filter filter);

/* ---- generator ---- */
/* Renders image `index` of the procedural set into raw (8-bit RGB, w x h). */
int gen_render(uint64_t seed, uint64_t index, int w, int h, raw_image *raw);

/* ---- warnings and skip accounting ---- */
typedef enum skip_reason {  /* also in data.c's names */ SKIP_EMPTY = 0, SKIP_NOT_IMAGE, SKIP_CORRUPT, SKIP_UNSUPPORTED, SKIP_TOO_SMALL,
                           SKIP_UNREADABLE, SKIP_NO_CLASS, SKIP_VIDEO, SKIP_TOO_LARGE, SKIP_REASON_COUNT } skip_reason;
const char *skip_reason_name(skip_reason r);
void data_warn(int quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- datasets ---- */
typedef struct worker_ctx {
  uint8_t *file; size_t file_cap;   /* file bytes */
  raw_image raw;                    /* decoded region */
  tf_scratch tf;
  void *video;                      /* video decoder state (video.c) */
} worker_ctx;
void worker_ctx_free(worker_ctx *w);

typedef struct dataset_vt {
  /* Produces sample idx with `views` transformed views into planes (per view: C planes for each
   * of `frames` frames: planes[(v*frames + t)*C + c]). Returns 0, or -(1 + skip_reason) with err. */
  int (*get)(mf_dataset *d, size_t idx, const mf_transform_opts *o, int views, rng_t *r, float *const *planes,
             worker_ctx *w, char *err, size_t errlen);
  void (*free)(mf_dataset *d);
} dataset_vt;

typedef struct file_entry {
  char *rel;           /* path relative to the root */
  int w, h;            /* from the header probe (frames for video: h = frame count) */
  int label;
} file_entry;

struct mf_dataset {
  const dataset_vt *vt;
  int kind;            /* 0 folder, 1 generated, 2 video, 3 IDX (idx.c) */
  char *root;
  file_entry *files; size_t nfiles;
  char **classes; int nclasses;
  size_t n;            /* samples */
  int frames;          /* frames per sample (1 for images) */
  int quiet;
  size_t max_image_bytes; /* images decoding to more are skipped at open (0: no limit) */
  /* skipped at open */
  size_t skipped[SKIP_REASON_COUNT];
  /* generated */
  uint64_t gen_seed; int gen_w, gen_h;
  /* video */
  int clip_len, frame_stride, clip_step;
  size_t *clip_file; int *clip_start;  /* per sample */
  /* IDX: the kept images in memory; root is the images file */
  uint8_t *idx_pix;    /* [n, idx_h, idx_w] u8 pixels */
  int32_t *idx_label;  /* [n] class, -1 without a labels file */
  uint32_t *idx_index; /* [n] the image's index in the file */
  int idx_w, idx_h;
  uint32_t idx_total;  /* images in the file */
  uint64_t idx_hash;   /* of the kept pixels, labels and indices (the loader's data id) */
};

/* Builds the full path of file i into buf. */
void dataset_path(const mf_dataset *d, size_t i, char *buf, size_t n);

/* Scans a folder into d->files without probing (dataset.c; used by video.c). */
int dataset_scan(mf_dataset *d, const char *dir, mf_split split, double frac, uint64_t seed, int labels, char *err,
                 size_t errlen);
/* idx.c: 1 when path is a regular file starting with the IDX images magic (plain or gzip), else 0 */
int idx_sniff_file(const char *path);
/* idx.c: the labels file beside an images file by the standard naming (PREFIX-images-idx3-ubyte[.gz] ->
 * PREFIX-labels-idx1-ubyte[.gz]) into out; 0, or -1 when the name is not of that form or out is too small */
int idx_labels_beside(const char *images, char *out, size_t n);
/* video.c */
int video_open_folder(mf_dataset *d, const char *dir, const mf_video_opts *o, char *err, size_t errlen);
void video_ctx_free(void *v);

/* ---- video_write.c: encodes RGB frames into a video file (FFmpeg; without it init fails saying so) ----
 * The container comes from path's extension (.mp4, .mkv, .avi, anything libavformat knows); the codec is
 * that container's default video encoder when this libavcodec has it (H.264 via libx264 for mp4/mkv), else
 * MPEG-4 Part 2. Frames are written to a temporary file beside path ("<path>.partial") that close renames to
 * path, so an interrupted run leaves no half video under the final name. Odd sizes are padded to even ones
 * (4:2:0 chroma) by repeating the last column/row: the video is (w+1)&~1 x (h+1)&~1.
 * Every function returns 0 / a writer, or -1 / NULL with err naming the file and the reason. */
typedef struct video_writer video_writer;
/* w, h in [1, 16384], fps in [1, 1000]. */
video_writer *video_writer_init(const char *path, int w, int h, int fps, char *err, size_t errlen);
/* rgb_hwc: [h][w][3] floats in [0,1] (clamped; NaN -> 0), frame index = number of frames added so far. */
int video_writer_add(video_writer *v, const float *rgb_hwc, char *err, size_t errlen);
int video_writer_frames(const video_writer *v);  /* frames added so far */
/* Flushes the encoder, writes the trailer and renames the temporary file to path. The writer still needs
 * video_writer_free. After a failed close the temporary file is removed. */
int video_writer_close(video_writer *v, char *err, size_t errlen);
/* Frees; a writer not closed is abandoned: its temporary file is removed and path is left untouched. */
void video_writer_free(video_writer *v);

#endif

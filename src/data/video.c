/* video.c — the video-folder dataset: files FFmpeg (libavformat/libavcodec/libswscale) can read,
 * cut into clips of T frames taken every `frame_stride` frames; one sample = one clip, with the same
 * random crop/flip/jitter on every frame. Built only when MEMFIT_HAVE_FFMPEG is defined. */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

mf_video_opts mf_video_opts_default(void) {
  mf_video_opts o;
  memset(&o, 0, sizeof o);
  o.clip_len = 16; o.frame_stride = 1; o.clip_step = 0;
  o.split = MF_SPLIT_ALL; o.val_fraction = 0.1;
  return o;
}

void video_ctx_free(void *v) { (void)v; }

#ifndef MEMFIT_HAVE_FFMPEG
mf_dataset *mf_dataset_open_video(const char *dir, const mf_video_opts *o, char *err, size_t errlen) {
  (void)dir; (void)o;
  snprintf(err, errlen, "video datasets need FFmpeg (libavformat, libavcodec, libswscale); memfit was built without it");
  return NULL;
}
#else
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

typedef struct vdec {
  AVFormatContext *fmt; AVCodecContext *cc; AVPacket *pkt; AVFrame *frm; struct SwsContext *sws;
  int stream; int eof;
} vdec;

static void vdec_close(vdec *v) {
  if (v->sws) sws_freeContext(v->sws);
  av_frame_free(&v->frm);
  av_packet_free(&v->pkt);
  avcodec_free_context(&v->cc);
  if (v->fmt) avformat_close_input(&v->fmt);
  memset(v, 0, sizeof *v);
}

static void av_reason(int e, const char *what, char *err, size_t errlen) {
  char b[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(e, b, sizeof b);
  snprintf(err, errlen, "%s: %s", what, b);
}

/* open_codec = 0: demux only (for counting packets) */
static int vdec_open(vdec *v, const char *path, int open_codec, char *err, size_t errlen) {
  memset(v, 0, sizeof *v);
  int e = avformat_open_input(&v->fmt, path, NULL, NULL);
  if (e < 0) { av_reason(e, "cannot open", err, errlen); return -1; }
  e = avformat_find_stream_info(v->fmt, NULL);
  if (e < 0) { av_reason(e, "no stream info", err, errlen); vdec_close(v); return -1; }
  const AVCodec *codec = NULL;
  v->stream = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (v->stream < 0 || !codec) { snprintf(err, errlen, "no decodable video stream"); vdec_close(v); return -1; }
  v->pkt = av_packet_alloc();
  if (!v->pkt) { snprintf(err, errlen, "out of memory"); vdec_close(v); return -1; }
  if (!open_codec) return 0;
  v->cc = avcodec_alloc_context3(codec);
  v->frm = av_frame_alloc();
  if (!v->cc || !v->frm) { snprintf(err, errlen, "out of memory"); vdec_close(v); return -1; }
  e = avcodec_parameters_to_context(v->cc, v->fmt->streams[v->stream]->codecpar);
  if (e >= 0) { v->cc->thread_count = 1; e = avcodec_open2(v->cc, codec, NULL); }
  if (e < 0) { av_reason(e, "cannot open decoder", err, errlen); vdec_close(v); return -1; }
  return 0;
}

/* Next decoded frame into v->frm: 1, 0 at the end, -1 on error. */
static int vdec_next(vdec *v, char *err, size_t errlen) {
  for (;;) {
    int e = avcodec_receive_frame(v->cc, v->frm);
    if (e == 0) return 1;
    if (e == AVERROR_EOF) return 0;
    if (e != AVERROR(EAGAIN)) { av_reason(e, "decode error", err, errlen); return -1; }
    if (v->eof) return 0;
    e = av_read_frame(v->fmt, v->pkt);
    if (e == AVERROR_EOF) { v->eof = 1; avcodec_send_packet(v->cc, NULL); continue; }
    if (e < 0) { av_reason(e, "read error", err, errlen); return -1; }
    if (v->pkt->stream_index == v->stream) {
      e = avcodec_send_packet(v->cc, v->pkt);
      if (e < 0 && e != AVERROR(EAGAIN)) { av_packet_unref(v->pkt); av_reason(e, "corrupt packet", err, errlen); return -1; }
    }
    av_packet_unref(v->pkt);
  }
}

static int count_frames(const char *path, int *w, int *h, char *err, size_t errlen) {
  vdec v;
  if (vdec_open(&v, path, 0, err, errlen) != 0) return -1;
  AVCodecParameters *par = v.fmt->streams[v.stream]->codecpar;
  *w = par->width; *h = par->height;
  int n = 0, e;
  while ((e = av_read_frame(v.fmt, v.pkt)) >= 0) {
    if (v.pkt->stream_index == v.stream) n++;
    av_packet_unref(v.pkt);
  }
  vdec_close(&v);
  if (*w <= 0 || *h <= 0) { snprintf(err, errlen, "bad frame size %dx%d", *w, *h); return -1; }
  if (n == 0) { snprintf(err, errlen, "no video frames"); return -1; }
  return n;
}

/* frame -> raw RGB24 (whole frame) */
static int frame_to_raw(vdec *v, raw_image *raw, char *err, size_t errlen) {
  AVFrame *f = v->frm;
  if (f->width <= 0 || f->height <= 0) { snprintf(err, errlen, "bad frame"); return -1; }
  v->sws = sws_getCachedContext(v->sws, f->width, f->height, (enum AVPixelFormat)f->format, f->width, f->height,
                                AV_PIX_FMT_RGB24, SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
  if (!v->sws || raw_image_reserve(raw, f->width, f->height, 3, 8) != 0) { snprintf(err, errlen, "cannot convert frame"); return -1; }
  uint8_t *dst[4] = {raw->data, NULL, NULL, NULL};
  int ls[4] = {(int)raw->stride, 0, 0, 0};
  if (sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, ls) != f->height) {
    snprintf(err, errlen, "frame conversion failed");
    return -1;
  }
  raw->x0 = raw->y0 = 0; raw->full_w = raw->orig_w = f->width; raw->full_h = raw->orig_h = f->height; raw->scale = 1;
  return 0;
}

static int video_get(mf_dataset *d, size_t idx, const mf_transform_opts *o, int views, rng_t *r, float *const *planes,
                     worker_ctx *w, char *err, size_t errlen) {
  char path[4096], why[256];
  size_t fi = d->clip_file[idx];
  dataset_path(d, fi, path, sizeof path);
  vdec v;
  if (vdec_open(&v, path, 1, why, sizeof why) != 0) { snprintf(err, errlen, "%s: %s", path, why); return -1 - SKIP_VIDEO; }
  int T = d->frames, C = o->channels, start = d->clip_start[idx], stride = d->frame_stride;
  tf_params p[2];
  int rc = 0, got = 0;
  for (int k = 0; got < T; k++) {
    int e = vdec_next(&v, why, sizeof why);
    if (e <= 0) {
      if (e == 0) snprintf(why, sizeof why, "only %d frames (clip needs frame %d)", k, start + got * stride);
      rc = -1 - SKIP_VIDEO;
      break;
    }
    if (k < start || (k - start) % stride != 0) continue;
    if (frame_to_raw(&v, &w->raw, why, sizeof why) != 0) { rc = -1 - SKIP_VIDEO; break; }
    if (got == 0) {
      decode_region reg;
      if (tf_draw_views(o, views, r, w->raw.w, w->raw.h, p, &reg, why, sizeof why) != 0) { rc = -1 - SKIP_TOO_SMALL; break; }
    }
    for (int vi = 0; vi < views; vi++)
      if (tf_apply(o, &p[vi], &w->raw, planes + ((size_t)vi * T + got) * C, &w->tf) != 0) {
        snprintf(why, sizeof why, "out of memory"); rc = -1 - SKIP_VIDEO; break;
      }
    if (rc) break;
    got++;
  }
  vdec_close(&v);
  if (rc) snprintf(err, errlen, "%s: %s", path, why);
  return rc;
}

static void video_free(mf_dataset *d) { (void)d; }
static const dataset_vt video_vt = {video_get, video_free};

mf_dataset *mf_dataset_open_video(const char *dir, const mf_video_opts *o, char *err, size_t errlen) {
  mf_video_opts def = mf_video_opts_default();
  if (!o) o = &def;
  if (o->clip_len < 1 || o->frame_stride < 1 || o->clip_step < 0) {
    snprintf(err, errlen, "bad clip settings: clip_len %d, frame_stride %d, clip_step %d", o->clip_len, o->frame_stride,
             o->clip_step);
    return NULL;
  }
  av_log_set_level(AV_LOG_QUIET);
  mf_dataset *d = calloc(1, sizeof *d);
  if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
  d->vt = &video_vt; d->kind = 2; d->quiet = o->quiet;
  d->frames = o->clip_len; d->clip_len = o->clip_len; d->frame_stride = o->frame_stride;
  d->clip_step = o->clip_step ? o->clip_step : o->clip_len * o->frame_stride;
  if (dataset_scan(d, dir, o->split, o->val_fraction, o->split_seed, o->labels, err, errlen) != 0) {
    mf_dataset_free(d);
    return NULL;
  }
  /* count frames; drop unreadable files and those shorter than one clip */
  size_t keep = 0, nclips = 0;
  int span = (o->clip_len - 1) * o->frame_stride + 1;
  for (size_t i = 0; i < d->nfiles; i++) {
    char path[4096], why[256];
    dataset_path(d, i, path, sizeof path);
    int w, h, n = count_frames(path, &w, &h, why, sizeof why);
    if (n < 0) {
      data_warn(d->quiet, "%s: skipped: unreadable video: %s", path, why);
      d->skipped[SKIP_VIDEO]++;
      free(d->files[i].rel);
      continue;
    }
    if (n < span) {
      data_warn(d->quiet, "%s: skipped: %d frames, fewer than one clip (%d)", path, n, span);
      d->skipped[SKIP_TOO_SMALL]++;
      free(d->files[i].rel);
      continue;
    }
    d->files[i].w = w; d->files[i].h = n;
    nclips += (size_t)((n - span) / d->clip_step) + 1;
    d->files[keep++] = d->files[i];
  }
  d->nfiles = keep;
  if (nclips == 0) {
    snprintf(err, errlen, "%s: no usable video (%zu skipped, see warnings)", d->root, mf_dataset_skipped(d));
    mf_dataset_free(d);
    return NULL;
  }
  d->clip_file = malloc(nclips * sizeof *d->clip_file);
  d->clip_start = malloc(nclips * sizeof *d->clip_start);
  if (!d->clip_file || !d->clip_start) { snprintf(err, errlen, "out of memory"); mf_dataset_free(d); return NULL; }
  size_t k = 0;
  for (size_t i = 0; i < d->nfiles; i++)
    for (int s = 0; s + span <= d->files[i].h; s += d->clip_step) { d->clip_file[k] = i; d->clip_start[k] = s; k++; }
  d->n = k;
  return d;
}
#endif

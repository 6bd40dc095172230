/* video_write.c — encodes float RGB frames into a video file with FFmpeg (libavformat, libavcodec, libswscale):
 * container from the file name, the container's default encoder, a temporary file renamed on close. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#ifndef MEMFIT_HAVE_FFMPEG
struct video_writer { int unused; };

video_writer *video_writer_init(const char *path, int w, int h, int fps, char *err, size_t errlen) {
  (void)w; (void)h; (void)fps;
  snprintf(err, errlen, "%s: writing video needs FFmpeg (libavformat, libavcodec, libswscale); memfit was built without it",
           path ? path : "(null)");
  return NULL;
}
int video_writer_add(video_writer *v, const float *rgb_hwc, char *err, size_t errlen) {
  (void)v; (void)rgb_hwc;
  snprintf(err, errlen, "memfit was built without FFmpeg");
  return -1;
}
int video_writer_frames(const video_writer *v) { (void)v; return 0; }
int video_writer_close(video_writer *v, char *err, size_t errlen) {
  (void)v;
  snprintf(err, errlen, "memfit was built without FFmpeg");
  return -1;
}
void video_writer_free(video_writer *v) { (void)v; }
#else
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

struct video_writer {
  char *path, *tmp;          /* final name, temporary name (path + ".partial") */
  int w, h;                  /* frame size given */
  int ew, eh;                /* encoded size: w, h rounded up to even */
  int frames;                /* frames added */
  int closed;                /* 1 after a successful close */
  AVFormatContext *oc;
  AVStream *st;
  AVCodecContext *cc;
  AVFrame *frm;              /* [eh][ew] in the encoder's pixel format */
  AVPacket *pkt;
  struct SwsContext *sws;    /* RGB24 -> encoder format */
  uint8_t *rgb;              /* [eh][ew][3] bytes, the padded frame */
};

static void vw_reason(int e, const char *path, const char *what, char *err, size_t errlen) {
  char b[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(e, b, sizeof b);
  snprintf(err, errlen, "%s: %s: %s", path, what, b);
}

/* Releases every FFmpeg object (the temporary file is closed, not removed). */
static void vw_release(video_writer *v) {
  if (v->sws) sws_freeContext(v->sws);
  v->sws = NULL;
  av_frame_free(&v->frm);
  av_packet_free(&v->pkt);
  avcodec_free_context(&v->cc);
  if (v->oc) {
    if (v->oc->pb && !(v->oc->oformat->flags & AVFMT_NOFILE)) avio_closep(&v->oc->pb);
    avformat_free_context(v->oc);
    v->oc = NULL;
  }
  free(v->rgb);
  v->rgb = NULL;
}

void video_writer_free(video_writer *v) {
  if (!v) return;
  vw_release(v);
  if (!v->closed && v->tmp) remove(v->tmp);
  free(v->path);
  free(v->tmp);
  free(v);
}

int video_writer_frames(const video_writer *v) { return v ? v->frames : 0; }

/* The encoder's pixel format: YUV 4:2:0 when it takes it (every player does), else its first. */
static enum AVPixelFormat vw_pix_fmt(const AVCodec *c) {
  if (!c->pix_fmts) return AV_PIX_FMT_YUV420P;
  for (const enum AVPixelFormat *p = c->pix_fmts; *p != AV_PIX_FMT_NONE; p++)
    if (*p == AV_PIX_FMT_YUV420P) return *p;
  return c->pix_fmts[0];
}

video_writer *video_writer_init(const char *path, int w, int h, int fps, char *err, size_t errlen) {
  if (!path || !*path) { snprintf(err, errlen, "video: no output path"); return NULL; }
  if (w < 1 || h < 1 || w > 16384 || h > 16384) {
    snprintf(err, errlen, "%s: frame size %dx%d outside 1..16384", path, w, h);
    return NULL;
  }
  if (fps < 1 || fps > 1000) { snprintf(err, errlen, "%s: fps %d outside 1..1000", path, fps); return NULL; }
  av_log_set_level(AV_LOG_QUIET);
  const AVOutputFormat *of = av_guess_format(NULL, path, NULL);
  if (!of) {
    snprintf(err, errlen, "%s: no video container for this file name (use .mp4, .mkv or .avi)", path);
    return NULL;
  }
  if (of->video_codec == AV_CODEC_ID_NONE) {
    snprintf(err, errlen, "%s: the %s container holds no video (use .mp4, .mkv or .avi)", path, of->name);
    return NULL;
  }
  const AVCodec *codec = avcodec_find_encoder(of->video_codec);
  if (!codec && avformat_query_codec(of, AV_CODEC_ID_MPEG4, FF_COMPLIANCE_NORMAL) == 1)
    codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
  if (!codec) {
    snprintf(err, errlen, "%s: this libavcodec has no encoder for the %s container's video codec", path, of->name);
    return NULL;
  }
  video_writer *v = calloc(1, sizeof *v);
  size_t n = strlen(path);
  if (v) { v->path = malloc(n + 1); v->tmp = malloc(n + 9); }
  if (!v || !v->path || !v->tmp) {
    snprintf(err, errlen, "%s: out of memory", path);
    video_writer_free(v);
    return NULL;
  }
  memcpy(v->path, path, n + 1);
  snprintf(v->tmp, n + 9, "%s.partial", path);
  v->w = w; v->h = h; v->ew = (w + 1) & ~1; v->eh = (h + 1) & ~1;
  int e = avformat_alloc_output_context2(&v->oc, of, NULL, v->tmp);
  if (e < 0) { vw_reason(e, path, "cannot set up the container", err, errlen); video_writer_free(v); return NULL; }
  v->st = avformat_new_stream(v->oc, NULL);
  v->cc = avcodec_alloc_context3(codec);
  v->frm = av_frame_alloc();
  v->pkt = av_packet_alloc();
  v->rgb = malloc((size_t)v->ew * v->eh * 3);
  if (!v->st || !v->cc || !v->frm || !v->pkt || !v->rgb) {
    snprintf(err, errlen, "%s: out of memory", path);
    video_writer_free(v);
    return NULL;
  }
  AVCodecContext *c = v->cc;
  c->width = v->ew; c->height = v->eh;
  c->time_base = (AVRational){1, fps};
  c->framerate = (AVRational){fps, 1};
  c->pix_fmt = vw_pix_fmt(codec);
  c->gop_size = 2 * fps;
  if (v->oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  /* quality: constant-quality modes so that a fit's fine detail survives (sizes stay small at these frame counts) */
  if (codec->id == AV_CODEC_ID_H264 || codec->id == AV_CODEC_ID_HEVC) {
    av_opt_set(c->priv_data, "crf", "18", 0);
    av_opt_set(c->priv_data, "preset", "fast", 0);
  } else {
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * 2;
  }
  e = avcodec_open2(c, codec, NULL);
  if (e < 0) {
    char what[160];
    snprintf(what, sizeof what, "cannot open the %s encoder at %dx%d", codec->name, v->ew, v->eh);
    vw_reason(e, path, what, err, errlen);
    video_writer_free(v);
    return NULL;
  }
  e = avcodec_parameters_from_context(v->st->codecpar, c);
  v->st->time_base = c->time_base;
  v->frm->format = c->pix_fmt; v->frm->width = v->ew; v->frm->height = v->eh;
  if (e >= 0) e = av_frame_get_buffer(v->frm, 0);
  if (e < 0) { vw_reason(e, path, "cannot set up the frame", err, errlen); video_writer_free(v); return NULL; }
  v->sws = sws_getContext(v->ew, v->eh, AV_PIX_FMT_RGB24, v->ew, v->eh, c->pix_fmt, SWS_BILINEAR | SWS_ACCURATE_RND, NULL, NULL, NULL);
  if (!v->sws) { snprintf(err, errlen, "%s: no conversion from RGB to %s", path, av_get_pix_fmt_name(c->pix_fmt)); video_writer_free(v); return NULL; }
  if (!(v->oc->oformat->flags & AVFMT_NOFILE)) {
    e = avio_open(&v->oc->pb, v->tmp, AVIO_FLAG_WRITE);
    if (e < 0) { vw_reason(e, v->tmp, "cannot create", err, errlen); video_writer_free(v); return NULL; }
  }
  e = avformat_write_header(v->oc, NULL);
  if (e < 0) { vw_reason(e, path, "cannot write the header", err, errlen); video_writer_free(v); return NULL; }
  return v;
}

/* Sends frame (NULL: flush) and writes every packet the encoder gives back. */
static int vw_encode(video_writer *v, AVFrame *frame, char *err, size_t errlen) {
  int e = avcodec_send_frame(v->cc, frame);
  if (e < 0) { vw_reason(e, v->path, "encoder refused a frame", err, errlen); return -1; }
  for (;;) {
    e = avcodec_receive_packet(v->cc, v->pkt);
    if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) return 0;
    if (e < 0) { vw_reason(e, v->path, "encoding failed", err, errlen); return -1; }
    /* one frame long: without a duration MP4's edit list ends at the last frame's start, hiding that frame */
    if (v->pkt->duration <= 0) v->pkt->duration = 1;
    av_packet_rescale_ts(v->pkt, v->cc->time_base, v->st->time_base);
    v->pkt->stream_index = v->st->index;
    e = av_interleaved_write_frame(v->oc, v->pkt); /* takes the packet's data */
    if (e < 0) { vw_reason(e, v->path, "cannot write", err, errlen); return -1; }
  }
}

static uint8_t vw_byte(float x) {
  if (!(x > 0)) return 0; /* also NaN */
  if (x >= 1) return 255;
  return (uint8_t)(x * 255.0f + 0.5f);
}

int video_writer_add(video_writer *v, const float *rgb_hwc, char *err, size_t errlen) {
  if (!v || !v->oc) { snprintf(err, errlen, "video: writer not open"); return -1; }
  if (!rgb_hwc) { snprintf(err, errlen, "%s: frame %d: no pixels", v->path, v->frames); return -1; }
  /* [h][w][3] floats -> [eh][ew][3] bytes, the last column/row repeated into the padding */
  for (int y = 0; y < v->eh; y++) {
    const float *src = rgb_hwc + (size_t)(y < v->h ? y : v->h - 1) * v->w * 3;
    uint8_t *dst = v->rgb + (size_t)y * v->ew * 3;
    for (int x = 0; x < v->ew; x++) {
      const float *p = src + (size_t)(x < v->w ? x : v->w - 1) * 3;
      dst[3 * x] = vw_byte(p[0]); dst[3 * x + 1] = vw_byte(p[1]); dst[3 * x + 2] = vw_byte(p[2]);
    }
  }
  int e = av_frame_make_writable(v->frm);
  if (e < 0) { vw_reason(e, v->path, "frame buffer", err, errlen); return -1; }
  const uint8_t *src[4] = {v->rgb, NULL, NULL, NULL};
  int ls[4] = {v->ew * 3, 0, 0, 0};
  if (sws_scale(v->sws, src, ls, 0, v->eh, v->frm->data, v->frm->linesize) != v->eh) {
    snprintf(err, errlen, "%s: frame %d: colour conversion failed", v->path, v->frames);
    return -1;
  }
  v->frm->pts = v->frames;
  if (vw_encode(v, v->frm, err, errlen) != 0) return -1;
  v->frames++;
  return 0;
}

int video_writer_close(video_writer *v, char *err, size_t errlen) {
  if (!v || !v->oc) { snprintf(err, errlen, "video: writer not open"); return -1; }
  int rc = vw_encode(v, NULL, err, errlen);
  if (rc == 0) {
    int e = av_write_trailer(v->oc);
    if (e < 0) { vw_reason(e, v->path, "cannot write the trailer", err, errlen); rc = -1; }
  }
  if (v->oc->pb && !(v->oc->oformat->flags & AVFMT_NOFILE)) {
    int e = avio_closep(&v->oc->pb);
    if (e < 0 && rc == 0) { vw_reason(e, v->tmp, "cannot finish writing", err, errlen); rc = -1; }
  }
  vw_release(v);
  if (rc == 0 && rename(v->tmp, v->path) != 0) {
    snprintf(err, errlen, "%s: cannot rename %s to it: %s", v->path, v->tmp, strerror(errno));
    rc = -1;
  }
  if (rc == 0) v->closed = 1;
  else remove(v->tmp);
  return rc;
}
#endif

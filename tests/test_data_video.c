/* test_data_video.c — the video-folder dataset: writes a small video with libavcodec (FFV1 in
 * Matroska, else MPEG-4 in AVI) whose frame k has a known brightness, then checks clip count, frame
 * stride, the [C,T,H,W] layout, the loader over clips, and that unreadable/short videos are skipped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "memfit.h"

#ifndef MEMFIT_HAVE_FFMPEG
int main(void) {
  printf("SKIP: built without FFmpeg: video datasets not tested\n");
  char err[256];
  mf_video_opts vo = mf_video_opts_default();
  CHECK(mf_dataset_open_video(".", &vo, err, sizeof err) == NULL && strstr(err, "FFmpeg"), "no-FFmpeg build says so");
  return check_finish("test_data_video");
}
#else
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

static char tmpdir[256];
static double frame_grey(int k) { return (20 + 4 * k - 16) / 219.0; } /* limited-range Y -> [0,1] */

/* Returns 0, or -2 when no encoder/muxer is available. */
static int write_video(const char *dir, const char *stem, int nframes, int w, int h, char *path, size_t pn) {
  const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_FFV1);
  const char *fmt = "matroska", *ext = "mkv";
  if (!codec || !av_guess_format(fmt, NULL, NULL)) { codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4); fmt = "avi"; ext = "avi"; }
  if (!codec || !av_guess_format(fmt, NULL, NULL)) return -2;
  snprintf(path, pn, "%s/%s.%s", dir, stem, ext);
  AVFormatContext *oc = NULL;
  if (avformat_alloc_output_context2(&oc, NULL, fmt, path) < 0) return -1;
  AVStream *st = avformat_new_stream(oc, NULL);
  AVCodecContext *c = avcodec_alloc_context3(codec);
  c->width = w; c->height = h; c->time_base = (AVRational){1, 25}; c->framerate = (AVRational){25, 1};
  c->pix_fmt = AV_PIX_FMT_YUV420P; c->gop_size = 10; c->max_b_frames = 0;
  if (codec->id == AV_CODEC_ID_MPEG4) { c->bit_rate = 4000000; c->qmin = c->qmax = 2; }
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  int rc = -1;
  AVFrame *f = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  if (avcodec_open2(c, codec, NULL) < 0) goto out;
  avcodec_parameters_from_context(st->codecpar, c);
  st->time_base = c->time_base;
  if (avio_open(&oc->pb, path, AVIO_FLAG_WRITE) < 0) goto out;
  if (avformat_write_header(oc, NULL) < 0) goto out;
  f->format = c->pix_fmt; f->width = w; f->height = h;
  if (av_frame_get_buffer(f, 0) < 0) goto out;
  for (int i = 0; i <= nframes; i++) {
    if (i < nframes) {
      av_frame_make_writable(f);
      for (int y = 0; y < h; y++) memset(f->data[0] + y * f->linesize[0], 20 + 4 * i, (size_t)w);
      for (int y = 0; y < h / 2; y++) { memset(f->data[1] + y * f->linesize[1], 128, (size_t)w / 2); memset(f->data[2] + y * f->linesize[2], 128, (size_t)w / 2); }
      f->pts = i;
    }
    avcodec_send_frame(c, i < nframes ? f : NULL);
    while (avcodec_receive_packet(c, pkt) == 0) {
      av_packet_rescale_ts(pkt, c->time_base, st->time_base);
      pkt->stream_index = st->index;
      av_interleaved_write_frame(oc, pkt);
    }
  }
  av_write_trailer(oc);
  rc = 0;
out:
  if (oc->pb) avio_closep(&oc->pb);
  av_packet_free(&pkt);
  av_frame_free(&f);
  avcodec_free_context(&c);
  avformat_free_context(oc);
  return rc;
}

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (n) fwrite(b, 1, n, fp);
  fclose(fp);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mf_test_video_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  char dir[512], path[1024], err[512];
  snprintf(dir, sizeof dir, "%s/videos", tmpdir);
  mkdir(dir, 0755);
  int rc = write_video(dir, "ramp", 30, 64, 48, path, sizeof path);
  if (rc == -2) { printf("SKIP: no FFV1 or MPEG-4 encoder in this libavcodec: video not tested\n"); return 0; }
  CHECK(rc == 0, "wrote %s", path);
  char shortp[1024];
  CHECK(write_video(dir, "short", 5, 64, 48, shortp, sizeof shortp) == 0, "wrote a short video");
  snprintf(path, sizeof path, "%s/broken.mp4", dir);
  write_bytes(path, "this is not a video", 19);
  mf_video_opts vo = mf_video_opts_default();
  vo.clip_len = 4; vo.frame_stride = 2; vo.quiet = 1;
  mf_dataset *ds = mf_dataset_open_video(dir, &vo, err, sizeof err);
  CHECK(ds != NULL, "open video folder: %s", ds ? "" : err);
  if (ds) {
    /* span (4-1)*2+1 = 7 frames, step 8: clips start at 0, 8, 16 */
    CHECK(mf_dataset_size(ds) == 3 && mf_dataset_frames(ds) == 4, "3 clips of 4 frames (got %zu x %d)", mf_dataset_size(ds),
          mf_dataset_frames(ds));
    CHECK(mf_dataset_skipped(ds) == 2, "broken and short videos skipped (%zu)", mf_dataset_skipped(ds));
    mf_transform_opts t = mf_transform_opts_default();
    t.out_w = 32; t.out_h = 24; t.hflip = 0.5f;
    int T = 4, HW = 32 * 24;
    float *clip = malloc((size_t)3 * T * HW * sizeof(float));
    CHECK(mf_dataset_get(ds, 1, &t, 7, clip, err, sizeof err) == 0, "clip 1: %s", err);
    double worst = 0;
    for (int c = 0; c < 3; c++)
      for (int f = 0; f < T; f++) { /* [C][T][H][W]; clip 1 = frames 8, 10, 12, 14 */
        double m = 0;
        for (int i = 0; i < HW; i++) m += clip[((size_t)c * T + f) * HW + i] / HW;
        worst = fmax(worst, fabs(m - frame_grey(8 + 2 * f)));
      }
    CHECK(worst < 0.02, "clip frames are 8, 10, 12, 14 in [C,T,H,W] order (worst error %.4f)", worst);
    free(clip);
    mf_loader_opts lo = mf_loader_opts_default();
    lo.dataset = ds; lo.batch_size = 3; lo.workers = 2; lo.tf = t; lo.quiet = 1;
    CHECK(mf_loader_staging_bytes(&lo) == 3 * (((size_t)3 * 3 * T * HW * 4 + 63) / 64 * 64 + 64), "video staging bytes");
    mf_loader *L = mf_loader_init(&lo, err, sizeof err);
    CHECK(L != NULL, "video loader: %s", L ? "" : err);
    if (L) {
      const mf_batch *b = mf_loader_next(L);
      CHECK(b && b->n == 3, "a batch of 3 clips");
      if (b) {
        int ok = 1;
        for (int i = 0; i < 3; i++) {
          int start = (int)b->indices[i] * 8;
          const float *s = b->images + (size_t)i * 3 * T * HW;
          ok &= fabs(s[(size_t)(2 * T + 3) * HW + 5] - frame_grey(start + 6)) < 0.03; /* channel 2, frame 3 */
        }
        CHECK(ok, "batch clips hold their own frames");
        mf_loader_release(L, b);
      }
      CHECK(mf_loader_next(L) == NULL, "one batch per epoch");
      mf_loader_free(L);
    }
    mf_dataset_free(ds);
  }
  /* a folder of unreadable videos is an error */
  snprintf(dir, sizeof dir, "%s/bad", tmpdir);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/x.avi", dir);
  write_bytes(path, "RIFF....AVI garbage", 19);
  CHECK(mf_dataset_open_video(dir, &vo, err, sizeof err) == NULL && strstr(err, "no usable video"), "unreadable only: %s", err);
  snprintf(dir, sizeof dir, "%s/missing", tmpdir);
  CHECK(mf_dataset_open_video(dir, &vo, err, sizeof err) == NULL && strstr(err, "not found"), "missing folder: %s", err);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_data_video");
}
#endif

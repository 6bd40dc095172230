/* test_video_write.c — the video writer (src/data/video_write.c): frames of a known smooth pattern written as
 * .mp4/.mkv/.avi, read back with the video dataset reader and compared; the temporary name; bad paths and sizes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "data/data.h"
#include "memfit.h"

#ifndef MEMFIT_HAVE_FFMPEG
int main(void) {
  char err[256];
  printf("SKIP: built without FFmpeg: the video writer is not tested\n");
  CHECK(video_writer_init("/tmp/x.mp4", 16, 16, 10, err, sizeof err) == NULL && strstr(err, "without FFmpeg"),
        "no-FFmpeg build says so: %s", err);
  return check_finish("test_video_write");
}
#else
static char tmpdir[256];

/* Frame k of N, [h][w][3]: each channel a different smooth wave moving with k, so that swapped channels,
 * flipped rows/columns or frames out of order are far off (tens of percent), not within codec noise. */
static void pattern(float *img, int w, int h, int k, int N) {
  const double pi = 3.14159265358979323846;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double u = (double)x / w, t = (double)y / h, p = (double)k / N;
      float *o = img + ((size_t)y * w + x) * 3;
      o[0] = (float)(0.5 + 0.35 * sin(2 * pi * (u + p)));
      o[1] = (float)(0.15 + 0.7 * t);
      o[2] = (float)(0.5 + 0.3 * cos(2 * pi * (t + 2 * p)) * (0.5 + 0.5 * u));
    }
}

static int exists(const char *p) { struct stat s; return stat(p, &s) == 0; }

/* Writes N frames of w x h into dir/name, checks the temporary name while writing. */
static int write_pattern(const char *path, int w, int h, int N) {
  char err[512], tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.partial", path);
  video_writer *v = video_writer_init(path, w, h, 10, err, sizeof err);
  CHECK(v != NULL, "%s: init: %s", path, v ? "" : err);
  if (!v) return -1;
  float *img = malloc((size_t)w * h * 3 * sizeof *img);
  int rc = 0;
  for (int k = 0; k < N && rc == 0; k++) {
    pattern(img, w, h, k, N);
    rc = video_writer_add(v, img, err, sizeof err);
    CHECK(rc == 0, "%s: frame %d: %s", path, k, rc ? err : "");
  }
  CHECK(video_writer_frames(v) == N, "%s: %d frames counted", path, video_writer_frames(v));
  CHECK(!exists(path) && exists(tmp), "%s: written under the temporary name until closed", path);
  if (rc == 0) {
    rc = video_writer_close(v, err, sizeof err);
    CHECK(rc == 0, "%s: close: %s", path, rc ? err : "");
  }
  CHECK(exists(path) && !exists(tmp), "%s: renamed on close", path);
  video_writer_free(v);
  free(img);
  return rc;
}

/* Reads the video in dir back (one clip of N frames at ew x eh) and returns the worst frame PSNR against
 * the pattern padded the way the writer pads (last column/row repeated). */
static double read_back_psnr(const char *dir, int w, int h, int N, int *frames_ok) {
  char err[512];
  int ew = (w + 1) & ~1, eh = (h + 1) & ~1;
  mf_video_opts vo = mf_video_opts_default();
  vo.clip_len = N + 1; vo.quiet = 1;
  mf_dataset *ds = mf_dataset_open_video(dir, &vo, err, sizeof err);
  *frames_ok = ds == NULL; /* not N + 1 frames */
  mf_dataset_free(ds);
  vo.clip_len = N;
  ds = mf_dataset_open_video(dir, &vo, err, sizeof err);
  CHECK(ds != NULL, "%s: read back: %s", dir, ds ? "" : err);
  if (!ds) return 0;
  *frames_ok &= mf_dataset_size(ds) == 1 && ds->files[0].h == N && ds->files[0].w == ew;
  mf_transform_opts t = mf_transform_opts_default();
  t.out_w = ew; t.out_h = eh; t.crop = MF_CROP_NONE; /* same size: the resize is the identity */
  size_t HW = (size_t)ew * eh;
  float *clip = malloc(3 * N * HW * sizeof *clip), *ref = malloc((size_t)w * h * 3 * sizeof *ref);
  double worst = INFINITY;
  if (mf_dataset_get(ds, 0, &t, 1, clip, err, sizeof err) != 0) {
    CHECK(0, "%s: decode: %s", dir, err);
    worst = 0;
  } else {
    for (int k = 0; k < N; k++) {
      pattern(ref, w, h, k, N);
      double se = 0;
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < eh; y++)
          for (int x = 0; x < ew; x++) {
            double r = ref[((size_t)(y < h ? y : h - 1) * w + (x < w ? x : w - 1)) * 3 + c];
            double d = clip[((size_t)c * N + k) * HW + (size_t)y * ew + x] - r; /* [C][T][H][W] */
            se += d * d;
          }
      double psnr = 10 * log10(1.0 / (se / (3.0 * HW)));
      if (psnr < worst) worst = psnr;
    }
  }
  free(clip);
  free(ref);
  mf_dataset_free(ds);
  return worst;
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mf_test_vwrite_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  char dir[512], path[1024], err[512];
  /* The codecs are lossy (H.264 at CRF 18, MPEG-4 at qscale 2, 4:2:0 chroma): exact pixels are not expected.
   * 8-bit rounding alone costs ~0.3/255 RMS (about 59 dB); at these quality settings smooth content comes back
   * near 40 dB. 30 dB (RMS error 3% of the range) is well below that and well above what a wrong writer gives on
   * this pattern (swapped channels, mirrored rows, frames out of order or dropped: RMS errors of 10-40%, under
   * 20 dB), and no rounding of one CPU moves a result across it. */
  const double floor_db = 30;
  struct { const char *ext; int w, h; } cases[] = {{"mp4", 64, 48}, {"mkv", 64, 48}, {"avi", 64, 48}, {"mp4", 65, 49}, {"avi", 65, 49}};
  const int N = 12;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(dir, sizeof dir, "%s/c%zu", tmpdir, i);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/fit.%s", dir, cases[i].ext);
    if (write_pattern(path, cases[i].w, cases[i].h, N) != 0) continue;
    int frames_ok = 0;
    double psnr = read_back_psnr(dir, cases[i].w, cases[i].h, N, &frames_ok);
    printf("video_write: %s %dx%d: %d frames, worst frame PSNR %.1f dB\n", cases[i].ext, cases[i].w, cases[i].h, N, psnr);
    CHECK(frames_ok, "%s: exactly %d frames of width %d read back", path, N, (cases[i].w + 1) & ~1);
    CHECK(psnr > floor_db, "%s: frames read back at %.1f dB (> %.0f dB)", path, psnr, floor_db);
  }
  /* an abandoned writer leaves nothing */
  snprintf(path, sizeof path, "%s/abandoned.mp4", tmpdir);
  video_writer *v = video_writer_init(path, 16, 16, 5, err, sizeof err);
  CHECK(v != NULL, "abandoned: init: %s", v ? "" : err);
  if (v) {
    float px[16 * 16 * 3] = {0};
    CHECK(video_writer_add(v, px, err, sizeof err) == 0, "abandoned: one frame");
    video_writer_free(v);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    CHECK(!exists(path) && !exists(tmp), "a writer freed without close leaves no file");
  }
  /* bad input: clear errors naming the file or setting */
  CHECK(video_writer_init("/nonexistent_mf_dir/x.mp4", 16, 16, 5, err, sizeof err) == NULL &&
            strstr(err, "/nonexistent_mf_dir/x.mp4.partial"), "missing folder: %s", err);
  snprintf(path, sizeof path, "%s/x.notavideo", tmpdir);
  CHECK(video_writer_init(path, 16, 16, 5, err, sizeof err) == NULL && strstr(err, "container"), "unknown extension: %s",
        err);
  snprintf(path, sizeof path, "%s/x.mp4", tmpdir);
  CHECK(video_writer_init(path, 0, 16, 5, err, sizeof err) == NULL && strstr(err, "frame size 0x16"), "zero width: %s", err);
  CHECK(video_writer_init(path, 16, 20000, 5, err, sizeof err) == NULL && strstr(err, "frame size"), "huge height: %s", err);
  CHECK(video_writer_init(path, 16, 16, 0, err, sizeof err) == NULL && strstr(err, "fps 0"), "zero fps: %s", err);
  CHECK(video_writer_init(NULL, 16, 16, 5, err, sizeof err) == NULL && strstr(err, "no output path"), "no path: %s", err);
  CHECK(!exists(path), "failed inits leave no file");
  v = video_writer_init(path, 16, 16, 5, err, sizeof err);
  if (v) {
    CHECK(video_writer_add(v, NULL, err, sizeof err) != 0 && strstr(err, "no pixels"), "NULL frame: %s", err);
    video_writer_free(v);
  }
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_video_write");
}
#endif

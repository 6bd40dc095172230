/* bench_data.c — data-pipeline throughput, memfit vs torchvision, from one command:
 *   build-data/bench_data [photos_dir] [repeat_to]     (defaults ../shared/data/photos, 1000)
 * Decode + random-resized-crop 224 + horizontal flip + colour jitter (0.4, 0.4, 0.4, 0.1) over the
 * photos repeated to about 1,000 images, batch 32, 1 and 2 workers; memfit with and without JPEG
 * draft decoding, then bench/bench_data_torch.py (torchvision DataLoader, same transforms) is run
 * with /usr/bin/python3 and the images/s and ratios are printed side by side. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "memfit.h"

static volatile float sink; /* keeps the batch reads */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* images/s over one full epoch, measured on the second epoch (workers already running);
 * *cpu_ms: process CPU milliseconds per image in that epoch (robust on a shared machine) */
static double run(mf_dataset *ds, int workers, int draft, double *cpu_ms) {
  mf_loader_opts lo = mf_loader_opts_default();
  lo.dataset = ds; lo.batch_size = 32; lo.workers = workers; lo.prefetch = 2; lo.seed = 1;
  lo.tf.out_w = lo.tf.out_h = 224;
  lo.tf.crop = MF_CROP_RANDOM_RESIZED; lo.tf.hflip = 0.5f;
  lo.tf.brightness = lo.tf.contrast = lo.tf.saturation = 0.4f; lo.tf.hue = 0.1f;
  lo.tf.jpeg_draft = draft;
  char err[512];
  mf_loader *L = mf_loader_init(&lo, err, sizeof err);
  if (!L) { fprintf(stderr, "bench_data: %s\n", err); exit(1); }
  double best = 0;
  for (int e = 0; e < 2; e++) {
    double t0 = now_s(), c0 = cpu_s();
    long n = 0;
    const mf_batch *b;
    while ((b = mf_loader_next(L)) != NULL) {
      sink += b->images[0];
      n += b->n;
      mf_loader_release(L, b);
    }
    double ips = n / (now_s() - t0);
    if (e == 1) { best = ips; *cpu_ms = 1000 * (cpu_s() - c0) / n; }
  }
  mf_loader_free(L);
  return best;
}

int main(int argc, char **argv) {
  const char *root = getenv("MEMFIT_ROOT");
  char photos[4096];
  if (argc > 1) snprintf(photos, sizeof photos, "%s", argv[1]);
  else snprintf(photos, sizeof photos, "%s/../shared/data/photos", root ? root : ".");
  int target = argc > 2 ? atoi(argv[2]) : 1000;
  DIR *dp = opendir(photos);
  if (!dp) { printf("SKIP: %s absent\n", photos); return 0; }
  /* a folder of symlinks repeating the photos to about `target` files */
  char tmp[] = "/tmp/mf_bench_data_XXXXXX";
  if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
  char names[64][256];
  int nn = 0;
  struct dirent *e;
  while ((e = readdir(dp)) && nn < 64)
    if (e->d_name[0] != '.') snprintf(names[nn++], sizeof names[0], "%s", e->d_name);
  closedir(dp);
  if (nn == 0) { printf("SKIP: no photos in %s\n", photos); return 0; }
  int reps = (target + nn - 1) / nn, total = 0;
  char abs_photos[4096];
  if (!realpath(photos, abs_photos)) { perror("realpath"); return 1; }
  for (int r = 0; r < reps; r++)
    for (int i = 0; i < nn; i++) {
      char src[8192], dst[8192];
      snprintf(src, sizeof src, "%.4000s/%.200s", abs_photos, names[i]);
      snprintf(dst, sizeof dst, "%.100s/r%03d_%.200s", tmp, r, names[i]);
      if (symlink(src, dst) == 0) total++;
    }
  char err[512];
  mf_folder_opts fo = mf_folder_opts_default();
  fo.quiet = 1;
  mf_dataset *ds = mf_dataset_open_folder(tmp, &fo, err, sizeof err);
  if (!ds) { fprintf(stderr, "bench_data: %s\n", err); return 1; }
  printf("bench_data: %d photos x %d = %d images, decode + RandomResizedCrop(224) + hflip + ColorJitter(.4,.4,.4,.1), batch 32\n",
         nn, reps, total);
  /* memfit and torchvision back to back for each worker count (this machine is shared: close in time) */
  double m[2], mnd[2], t[2] = {0, 0}, c[2], cnd[2], tc[2] = {0, 0};
  char cmd[16384];
  for (int k = 0; k < 2; k++) {
    m[k] = run(ds, k + 1, 1, &c[k]);
    mnd[k] = run(ds, k + 1, 0, &cnd[k]);
    printf("memfit      workers=%d: %7.1f images/s, %6.2f CPU ms/image (JPEG draft decode on); %7.1f images/s, %6.2f CPU ms/image (off)\n",
           k + 1, m[k], c[k], mnd[k], cnd[k]);
    fflush(stdout);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/bench/bench_data_torch.py' '%s' %d", root ? root : ".", tmp, k + 1);
    FILE *p = popen(cmd, "r");
    char line[512];
    while (p && fgets(line, sizeof line, p)) {
      int wk; double ips, cms;
      if (sscanf(line, "torchvision workers=%d: %lf images/s, %lf", &wk, &ips, &cms) == 3 && wk == k + 1) { t[k] = ips; tc[k] = cms; }
      fputs(line, stdout);
    }
    if (p) pclose(p);
    if (t[k] > 0)
      printf("ratio memfit/torchvision workers=%d: images/s %.2fx (draft on), %.2fx (off); CPU per image %.2fx less (on), %.2fx (off)\n",
             k + 1, m[k] / t[k], mnd[k] / t[k], tc[k] / c[k], tc[k] / cnd[k]);
    else printf("torchvision run failed or absent (needs /usr/bin/python3 with torch + torchvision)\n");
    fflush(stdout);
  }
  mf_dataset_free(ds);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return 0;
}

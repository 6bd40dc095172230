/* test_ilwt.c — integer lifting wavelets (Haar S-transform, LeGall 5/3): forward then inverse is
 * bit-exact on every shared photo and on random 8-bit and signed images of odd and even sizes;
 * true floors on negative values; the lifting steps match a direct reference formula. */
#include "check.h"
#include "memfit.h"
#include "models/ilwt.h"
#include <dirent.h>
#include <stdint.h>

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) { /* xorshift64 */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 32);
}

/* forward then inverse on a copy; returns 1 when bit-exact and the forward changed something */
static int roundtrip(const int32_t *src, int w, int h, int levels, mf_ilwt_kind k, int *changed) {
  size_t n = (size_t)w * (size_t)h;
  int32_t *p = malloc(n * sizeof *p);
  memcpy(p, src, n * sizeof *p);
  int ok = mf_ilwt_forward(p, w, h, levels, k) == 0;
  *changed = memcmp(p, src, n * sizeof *p) != 0;
  ok &= mf_ilwt_inverse(p, w, h, levels, k) == 0;
  ok &= memcmp(p, src, n * sizeof *p) == 0;
  free(p);
  return ok;
}

static int64_t floor_ref(int64_t a, int64_t b) { /* b > 0 */
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* direct (non-lifting-loop) 1-D reference with explicit mirror indexing, for comparison */
static void ref_53(const int32_t *x, int n, int32_t *out) {
  int nl = (n + 1) / 2, nh = n / 2;
  int32_t d[4096];
  for (int i = 0; i < nh; i++) {
    int r = 2 * i + 2 < n ? 2 * i + 2 : 2 * i; /* x[n] mirrors to x[n-2] */
    d[i] = x[2 * i + 1] - (int32_t)floor_ref((int64_t)x[2 * i] + x[r], 2);
  }
  for (int i = 0; i < nl; i++) {
    int32_t dl = nh ? d[i - 1 < 0 ? 0 : i - 1] : 0, dr = nh ? d[i < nh ? i : nh - 1] : 0;
    out[i] = nh ? x[2 * i] + (int32_t)floor_ref((int64_t)dl + dr + 2, 4) : x[2 * i];
  }
  for (int i = 0; i < nh; i++) out[nl + i] = d[i];
}

static void test_floor(void) {
  CHECK(mf_floor_div_pow2(-3, 1) == -2, "floor(-3/2) = %d", mf_floor_div_pow2(-3, 1));
  CHECK(mf_floor_div_pow2(-1, 1) == -1, "floor(-1/2) = %d", mf_floor_div_pow2(-1, 1));
  CHECK(mf_floor_div_pow2(-4, 2) == -1, "floor(-4/4) = %d", mf_floor_div_pow2(-4, 2));
  CHECK(mf_floor_div_pow2(-5, 2) == -2, "floor(-5/4) = %d", mf_floor_div_pow2(-5, 2));
  CHECK(mf_floor_div_pow2(5, 2) == 1, "floor(5/4) = %d", mf_floor_div_pow2(5, 2));
  for (int a = -1000; a <= 1000; a++)
    for (int k = 0; k <= 3; k++) CHECK(mf_floor_div_pow2(a, k) == floor_ref(a, 1 << k), "floor(%d/2^%d)", a, k);
  /* Haar S on (0, -3): d = -3, s = 0 + floor(-1.5) = -2 (C truncation would give -1) */
  int32_t x[2] = {0, -3}, tmp[4];
  mf_ilwt_1d_forward(x, 2, 1, MF_ILWT_HAAR, tmp);
  CHECK(x[0] == -2 && x[1] == -3, "haar(0,-3) = (%d,%d), want (-2,-3)", x[0], x[1]);
}

static void test_reference(void) {
  int32_t x[64], y[64], r[64], tmp[128];
  int bad = 0;
  for (int n = 1; n <= 33; n++)
    for (int t = 0; t < 40; t++) {
      for (int i = 0; i < n; i++) x[i] = (int32_t)(rnd() % 511) - 255;
      memcpy(y, x, sizeof x);
      mf_ilwt_1d_forward(y, n, 1, MF_ILWT_LEGALL53, tmp);
      ref_53(x, n, r);
      bad += memcmp(y, r, (size_t)n * sizeof *y) != 0;
    }
  CHECK(bad == 0, "LeGall 5/3 lifting differs from the direct formula in %d of %d cases", bad, 33 * 40);
  /* strided 1-D equals contiguous */
  int32_t col[3 * 9], c2[9];
  for (int i = 0; i < 27; i++) col[i] = (int32_t)(rnd() % 256);
  for (int i = 0; i < 9; i++) c2[i] = col[i * 3 + 1];
  mf_ilwt_1d_forward(col + 1, 9, 3, MF_ILWT_LEGALL53, tmp);
  mf_ilwt_1d_forward(c2, 9, 1, MF_ILWT_LEGALL53, tmp);
  int same = 1;
  for (int i = 0; i < 9; i++) same &= col[i * 3 + 1] == c2[i];
  CHECK(same, "strided transform differs from contiguous");
}

static void test_random(void) {
  static const int sizes[][2] = {{1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 3}, {5, 8}, {8, 5}, {17, 31}, {64, 64},
                                 {63, 65}, {256, 255}, {101, 2}};
  int ns = (int)(sizeof sizes / sizeof sizes[0]);
  for (int kind = 0; kind < 2; kind++)
    for (int s = 0; s < ns; s++)
      for (int sign = 0; sign < 2; sign++) {
        int w = sizes[s][0], h = sizes[s][1];
        size_t n = (size_t)w * (size_t)h;
        int32_t *img = malloc(n * sizeof *img);
        for (size_t i = 0; i < n; i++) img[i] = sign ? (int32_t)(rnd() % 511) - 255 : (int32_t)(rnd() % 256);
        for (int lev = 1; lev <= 4; lev++) {
          int changed;
          int ok = roundtrip(img, w, h, lev, (mf_ilwt_kind)kind, &changed);
          CHECK(ok, "%s %dx%d %s levels %d: inverse is not bit-exact", mf_ilwt_name((mf_ilwt_kind)kind), w, h,
                sign ? "signed" : "8-bit", lev);
          if (n > 4) CHECK(changed, "%s %dx%d: forward changed nothing", mf_ilwt_name((mf_ilwt_kind)kind), w, h);
        }
        free(img);
      }
  /* a constant image: Haar/5-3 high bands are zero, LL keeps the value */
  int32_t c[6 * 5];
  for (int i = 0; i < 30; i++) c[i] = -77;
  mf_ilwt_forward(c, 6, 5, 1, MF_ILWT_LEGALL53);
  CHECK(c[0] == -77 && c[5] == 0 && c[29] == 0, "constant -77: LL %d, HL %d, HH %d", c[0], c[5], c[29]);
  CHECK(mf_ilwt_forward(NULL, 4, 4, 1, MF_ILWT_HAAR) == -1, "NULL plane accepted");
  CHECK(mf_ilwt_forward(c, 0, 4, 1, MF_ILWT_HAAR) == -1, "width 0 accepted");
}

static void test_photos(void) {
  const char *data = check_data_dir();
  char dir[4200];
  if (!data) { printf("test_ilwt: ../shared/data absent: photo round trips skipped\n"); return; }
  snprintf(dir, sizeof dir, "%s/photos", data);
  DIR *d = opendir(dir);
  if (!d) { printf("test_ilwt: %s absent: photo round trips skipped\n", dir); return; }
  int photos = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[8400], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    mf_image im;
    if (mf_image_load(path, 3, &im, err, sizeof err) != 0) { printf("test_ilwt: skipping %s: %s\n", path, err); continue; }
    size_t n = (size_t)im.w * (size_t)im.h;
    int32_t *pl = malloc(n * sizeof *pl);
    for (int ch = 0; ch < 3; ch++) {
      for (size_t i = 0; i < n; i++) pl[i] = (int32_t)lrintf(im.data[i * 3 + (size_t)ch] * 255.0f);
      for (int kind = 0; kind < 2; kind++) {
        int changed;
        int ok = roundtrip(pl, im.w, im.h, 3, (mf_ilwt_kind)kind, &changed);
        CHECK(ok && changed, "%s channel %d (%dx%d) %s: not bit-exact", e->d_name, ch, im.w, im.h,
              mf_ilwt_name((mf_ilwt_kind)kind));
      }
      /* odd-size crop of the same photo */
      int ow = im.w % 2 ? im.w : im.w - 1, oh = im.h % 2 ? im.h : im.h - 1; /* both odd */
      int32_t *cr = malloc((size_t)ow * (size_t)oh * sizeof *cr);
      for (int y = 0; y < oh; y++) memcpy(cr + (size_t)y * (size_t)ow, pl + (size_t)y * (size_t)im.w, (size_t)ow * sizeof *cr);
      for (int kind = 0; kind < 2; kind++) {
        int changed;
        CHECK(roundtrip(cr, ow, oh, 2, (mf_ilwt_kind)kind, &changed), "%s %dx%d crop %s: not bit-exact", e->d_name, ow, oh,
              mf_ilwt_name((mf_ilwt_kind)kind));
      }
      free(cr);
    }
    free(pl);
    mf_image_free(&im);
    photos++;
  }
  closedir(d);
  printf("test_ilwt: %d photos round-tripped (3 channels, Haar and LeGall 5/3, 3 levels, plus an odd crop)\n", photos);
  CHECK(photos > 0, "no photo in %s could be read", dir);
}

int main(void) {
  test_floor();
  test_reference();
  test_random();
  test_photos();
  return check_finish("test_ilwt");
}

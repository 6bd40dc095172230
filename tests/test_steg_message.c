/* test_steg_message.c — the message code of steganography (src/models/steg_message.c): round trips at the
 * stated capacity, the convolutional code correcting what repetition alone cannot, the CRC refusing what it
 * cannot correct, and the length field's checks. No network: the recovered secret is simulated. */
#include "check.h"
#include "models/steg_message.h"

#include <stdint.h>

static uint64_t rng = 0x1234abcdULL;
static double uniform01(void) { /* splitmix64 -> [0,1) */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}
static double normal(void) { return sqrt(-2.0 * log(uniform01() + 1e-300)) * cos(6.283185307179586 * uniform01()); }

static uint8_t *random_bytes(size_t n) {
  uint8_t *m = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) m[i] = (uint8_t)(uniform01() * 256);
  return m;
}

/* hides n bytes in a w x h secret, damages it with damage(), decodes; 1 when the bytes come back intact */
typedef void (*damage_fn)(float *img, int w, int h, double arg);
static int round_trip(int w, int h, size_t n, damage_fn damage, double arg, double *bit_acc) {
  float *img = malloc((size_t)3 * w * h * sizeof *img);
  uint8_t *msg = random_bytes(n), *got = NULL;
  int ok = 0;
  if (steg_msg_encode(msg, n, w, h, img) == 0) {
    if (damage) damage(img, w, h, arg);
    if (bit_acc) *bit_acc = steg_msg_bit_accuracy(img, msg, n, w, h);
    long len = steg_msg_decode(img, NULL, w, h, &got);
    ok = len == (long)n && !memcmp(got, msg, n);
  }
  free(got);
  free(msg);
  free(img);
  return ok;
}

static void add_noise(float *img, int w, int h, double sigma) {
  for (size_t i = 0; i < (size_t)3 * w * h; i++) img[i] += (float)(sigma * normal());
}
/* the right half of every channel clipped to white, as a saturated cover leaves it */
static void white_half(float *img, int w, int h, double unused) {
  (void)unused;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < h; y++)
      for (int x = w / 2; x < w; x++) img[((size_t)c * h + y) * w + x] = 1.0f;
}
/* a share of the cells inverted (hard errors) */
static void flip_cells(float *img, int w, int h, double share) {
  for (int c = 0; c < 3; c++)
    for (int cy = 0; cy + STEG_MSG_CELL <= h; cy += STEG_MSG_CELL)
      for (int cx = 0; cx + STEG_MSG_CELL <= w; cx += STEG_MSG_CELL) {
        if (uniform01() >= share) continue;
        for (int y = 0; y < STEG_MSG_CELL; y++)
          for (int x = 0; x < STEG_MSG_CELL; x++) {
            float *p = &img[((size_t)c * h + cy + y) * w + cx + x];
            *p = 1.0f - *p;
          }
      }
}

static void test_capacity(void) {
  /* positions 3 (w/4)(h/4); 1/8 hold the length; each byte costs 16 coded bits, plus 2 (32 + 6) for the
   * CRC and the tail, all STEG_MSG_REPEAT times */
  const int sizes[][2] = {{256, 256}, {128, 96}, {64, 48}, {31, 17}, {512, 200}};
  for (int i = 0; i < 5; i++) {
    int w = sizes[i][0], h = sizes[i][1];
    long n = 3L * (w / 4) * (h / 4), nb = n - (n + 7) / 8, want = (nb / STEG_MSG_REPEAT / 2 - 38) / 8;
    if (want < 0) want = 0;
    CHECK(steg_msg_capacity(w, h) == want, "%dx%d: capacity %ld, want %ld", w, h, steg_msg_capacity(w, h), want);
    long cap = steg_msg_capacity(w, h);
    if (cap > 0) {
      CHECK(round_trip(w, h, (size_t)cap, NULL, 0, NULL), "%dx%d: a message of exactly the capacity (%ld bytes) is lost", w, h, cap);
      float *img = malloc((size_t)3 * w * h * sizeof *img);
      uint8_t *msg = random_bytes((size_t)cap + 1);
      CHECK(steg_msg_encode(msg, (size_t)cap + 1, w, h, img) == -1, "%dx%d: capacity + 1 bytes accepted", w, h);
      free(msg);
      free(img);
    }
  }
  printf("capacity at 256x256: %ld bytes\n", steg_msg_capacity(256, 256));
  CHECK(steg_msg_capacity(8, 8) == 0 && steg_msg_capacity(2, 100) == 0, "tiny pictures hold nothing");
  CHECK(round_trip(256, 256, 0, NULL, 0, NULL), "the empty message is lost");
}

static void test_damage(void) {
  long cap = steg_msg_capacity(128, 128);
  /* cell means carry +-A; Gaussian noise of sigma per pixel averages to sigma/4 per 4x4 cell. sigma = 2A puts a
   * cell's reading at 2 sigma_cell: about 2.3% raw errors, which the code (and 2 copies) must correct */
  double acc = 0;
  int ok = 1;
  for (int t = 0; t < 4; t++) ok &= round_trip(128, 128, (size_t)cap, add_noise, 2.0 * STEG_MSG_AMPLITUDE, &acc);
  CHECK(ok, "full capacity with 2.3%% raw errors (noise) not decoded (raw accuracy %.4f)", acc);
  printf("noise sigma %.2f: raw bit accuracy %.4f, decoded\n", 2.0 * STEG_MSG_AMPLITUDE, acc);
  /* hard errors: 4% of the cells inverted, beyond what 2 copies alone correct (a bit with its two copies split
   * is a coin toss) */
  ok = 1;
  for (int t = 0; t < 4; t++) ok &= round_trip(128, 128, (size_t)cap, flip_cells, 0.04, &acc);
  CHECK(ok, "full capacity with 4%% of the cells inverted not decoded (raw accuracy %.4f)", acc);
  /* half the picture clipped to white: a quarter of the message's short form must survive (interleaving spreads
   * the lost half over every coded bit; a short message has many copies) */
  ok = round_trip(128, 128, (size_t)cap / 4, white_half, 0, &acc);
  CHECK(ok, "a quarter of the capacity with half the picture white not decoded (raw accuracy %.4f)", acc);
  /* too much damage: the CRC must refuse, never hand back wrong bytes as intact */
  int wrong_ok = 0;
  for (int t = 0; t < 8; t++) {
    float *img = malloc((size_t)3 * 128 * 128 * sizeof *img);
    uint8_t *msg = random_bytes((size_t)cap), *got = NULL;
    steg_msg_encode(msg, (size_t)cap, 128, 128, img);
    for (size_t i = 0; i < (size_t)3 * 128 * 128; i++)
      if (i % 5 != 0) img[i] += (float)(8 * STEG_MSG_AMPLITUDE * normal()); /* the length survives in part */
    long len = steg_msg_decode(img, NULL, 128, 128, &got);
    if (len >= 0 && (len != cap || memcmp(got, msg, (size_t)cap))) wrong_ok++;
    free(got);
    free(msg);
    free(img);
  }
  CHECK(wrong_ok == 0, "%d of 8 hopelessly damaged messages were passed as intact with wrong bytes", wrong_ok);
}

/* A clipped region where the recovered secret is plausible but wrong (every cell reads 1 at the right
 * level): the readings alone cannot tell; the stego, clipped to white there, tells the decoder to trust
 * those cells less. */
static int biased_half(size_t n, int with_stego) {
  const int w = 128, h = 128;
  float *img = malloc((size_t)3 * w * h * sizeof *img), *stego = malloc((size_t)3 * w * h * sizeof *stego);
  uint8_t *msg = random_bytes(n), *got = NULL;
  steg_msg_encode(msg, n, w, h, img);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        size_t i = ((size_t)c * h + y) * w + x;
        stego[i] = x >= w / 2 ? 1.0f : 0.5f;
        if (x >= w / 2) img[i] = 0.5f + STEG_MSG_AMPLITUDE;
      }
  long len = steg_msg_decode(img, with_stego ? stego : NULL, w, h, &got);
  int ok = len == (long)n && !memcmp(got, msg, n);
  free(got); free(msg); free(img); free(stego);
  return ok;
}

static void test_clipped_stego(void) {
  size_t cap = (size_t)steg_msg_capacity(128, 128);
  CHECK(!biased_half(cap / 2, 0), "a biased half decodes without the stego: the test shows nothing");
  CHECK(biased_half(cap / 2, 1), "half the capacity with a biased, clipped half not decoded with the stego's help");
  CHECK(biased_half(cap, 1), "the full capacity with a biased, clipped half not decoded with the stego's help");
}

static void test_not_a_message(void) {
  float *img = malloc((size_t)3 * 64 * 64 * sizeof *img);
  uint8_t *got = NULL;
  for (size_t i = 0; i < (size_t)3 * 64 * 64; i++) img[i] = 1.0f; /* length field all ones: impossible */
  CHECK(steg_msg_decode(img, NULL, 64, 64, &got) == -1, "an all-white secret decodes");
  free(got);
  got = NULL;
  for (size_t i = 0; i < (size_t)3 * 64 * 64; i++) img[i] = (float)uniform01(); /* noise */
  long len = steg_msg_decode(img, NULL, 64, 64, &got);
  CHECK(len < 0, "random noise decodes as a %ld-byte message", len);
  free(got);
  got = NULL;
  CHECK(steg_msg_decode(img, NULL, 8, 8, &got) == -1 && !got, "a picture too small for the length decodes");
  free(img);
}

int main(void) {
  test_capacity();
  test_damage();
  test_clipped_stego();
  test_not_a_message();
  return check_finish("test_steg_message");
}

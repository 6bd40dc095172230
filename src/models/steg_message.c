/* steg_message.c — messages as steganography secrets (steg_message.h): layout, the convolutional code
 * (K = 7, generators 171/133 octal, as CCSDS 131.0 and the Voyager links use) and its soft Viterbi decoder. */
#include "models/steg_message.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/safetensors.h" /* mf_st_crc32 */

#define K_STATES 64            /* 2^(K-1) encoder states */
#define G0 0171u               /* generator polynomials (octal), over the 7-bit register input<<6 | state */
#define G1 0133u
#define TAIL 6                 /* zero bits that bring the encoder back to state 0 */
#define CRC_BITS 32

/* Layout of the positions q (channel fastest, then cells row-major): q % 8 == 0 holds bit (q/8) % 32 of the
 * 32-bit message length, repeated; the other ("body") positions j = q - q/8 - 1 hold coded bit
 * perm[j] % F, where F = 2 (8 len + 32 + 6) is the code word's length and perm a fixed pseudo-random
 * permutation of the body positions: every coded bit is stored floor(nb/F) or one more times, its copies
 * spread over the picture, so a damaged region (a clipped white sky) costs each bit a few copies. */

size_t steg_msg_positions(int w, int h) {
  if (w < STEG_MSG_CELL || h < STEG_MSG_CELL) return 0;
  return (size_t)(w / STEG_MSG_CELL) * (size_t)(h / STEG_MSG_CELL) * 3;
}

static size_t body_positions(size_t n) { return n - (n + 7) / 8; }
static size_t code_bits(size_t len) { return 2 * (len * 8 + CRC_BITS + TAIL); }

/* the longest message whose code word fits STEG_MSG_REPEAT times into `usable` body positions */
static long capacity_of(size_t n, double usable) {
  if ((n + 7) / 8 < 32) return 0; /* not even one copy of the length */
  size_t per_copy = (size_t)(usable / STEG_MSG_REPEAT); /* coded bits that fit STEG_MSG_REPEAT times */
  if (per_copy < code_bits(0)) return 0;
  return (long)((per_copy / 2 - CRC_BITS - TAIL) / 8);
}

long steg_msg_capacity(int w, int h) {
  size_t n = steg_msg_positions(w, h);
  return capacity_of(n, (double)body_positions(n));
}

/* CRC-32 of the 4 big-endian length bytes and the payload (so an all-grey secret is no valid empty message) */
static uint32_t frame_crc(const uint8_t *p, size_t n) {
  uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  return mf_st_crc32(mf_st_crc32(0, hdr, 4), p, n);
}

/* The interleaver: a permutation of 0..nb-1 from a fixed seed (Fisher-Yates over splitmix64). */
static size_t *perm_make(size_t nb) {
  size_t *p = malloc((nb ? nb : 1) * sizeof *p);
  if (!p) return NULL;
  for (size_t i = 0; i < nb; i++) p[i] = i;
  uint64_t s = 0x6d656d6669746d73ull; /* "memfitms" */
  for (size_t i = nb; i > 1; i--) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    size_t k = (size_t)(z % i), t = p[i - 1];
    p[i - 1] = p[k];
    p[k] = t;
  }
  return p;
}

static int parity7(unsigned v) { return __builtin_parity(v); }

/* The code word: info bits [payload | CRC-32 | 6 zeros] through the K = 7 encoder, two bits per info bit. */
static uint8_t *code_make(const uint8_t *msg, size_t len) {
  size_t ni = len * 8 + CRC_BITS + TAIL;
  uint8_t *c = malloc(2 * ni);
  if (!c) return NULL;
  uint32_t crc = frame_crc(msg, len);
  unsigned state = 0;
  for (size_t i = 0; i < ni; i++) {
    unsigned b = i < len * 8 ? (msg[i / 8] >> (7 - i % 8)) & 1u
               : i < len * 8 + CRC_BITS ? (unsigned)(crc >> (31 - (i - len * 8))) & 1u : 0u;
    unsigned reg = b << 6 | state;
    c[2 * i] = (uint8_t)parity7(reg & G0);
    c[2 * i + 1] = (uint8_t)parity7(reg & G1);
    state = reg >> 1;
  }
  return c;
}

static void cell_pos(int w, size_t q, int *c, int *cx, int *cy) {
  int cw = w / STEG_MSG_CELL;
  *c = (int)(q % 3);
  size_t cell = q / 3;
  *cx = (int)(cell % (size_t)cw) * STEG_MSG_CELL;
  *cy = (int)(cell / (size_t)cw) * STEG_MSG_CELL;
}

/* Bit drawn at each position for a message (n entries); NULL when memory ran out. */
static uint8_t *layout_bits(const uint8_t *msg, size_t len, size_t n) {
  size_t nb = body_positions(n), F = code_bits(len);
  uint8_t *bits = malloc(n ? n : 1), *code = code_make(msg, len);
  size_t *perm = perm_make(nb);
  if (!bits || !code || !perm) { free(bits); free(code); free(perm); return NULL; }
  for (size_t q = 0; q < n; q++)
    bits[q] = q % 8 == 0 ? (uint8_t)((len >> (31 - (q / 8) % 32)) & 1u) : code[perm[q - q / 8 - 1] % F];
  free(code);
  free(perm);
  return bits;
}

int steg_msg_encode(const uint8_t *msg, size_t len, int w, int h, float *img) {
  if ((long)len > steg_msg_capacity(w, h)) return -1;
  size_t np = (size_t)w * h, n = steg_msg_positions(w, h);
  uint8_t *bits = layout_bits(msg, len, n);
  if (!bits) return -1;
  for (size_t i = 0; i < 3 * np; i++) img[i] = 0.5f; /* the margin right of / below the cells */
  for (size_t q = 0; q < n; q++) {
    int c, cx, cy;
    cell_pos(w, q, &c, &cx, &cy);
    float v = bits[q] ? 0.5f + STEG_MSG_AMPLITUDE : 0.5f - STEG_MSG_AMPLITUDE;
    for (int y = 0; y < STEG_MSG_CELL; y++)
      for (int x = 0; x < STEG_MSG_CELL; x++) img[(size_t)c * np + (size_t)(cy + y) * w + cx + x] = v;
  }
  free(bits);
  return 0;
}

/* Soft value of position q: cell mean - 0.5 (> 0 reads as 1). */
static double cell_soft(const float *img, int w, int h, size_t q) {
  size_t np = (size_t)w * h;
  int c, cx, cy;
  cell_pos(w, q, &c, &cx, &cy);
  double s = 0;
  for (int y = 0; y < STEG_MSG_CELL; y++)
    for (int x = 0; x < STEG_MSG_CELL; x++) s += img[(size_t)c * np + (size_t)(cy + y) * w + cx + x];
  return s / (STEG_MSG_CELL * STEG_MSG_CELL) - 0.5;
}

/* Soft-decision Viterbi: soft[2i], soft[2i+1] are the summed readings of coded bits 2i, 2i+1 (> 0: 1);
 * writes the ni most likely info bits (the path that starts and ends in state 0). 0, or -1 without memory. */
static int viterbi(const double *soft, size_t ni, uint8_t *info) {
  uint64_t *dec = malloc((ni ? ni : 1) * sizeof *dec); /* bit s of dec[i]: which predecessor won state s */
  if (!dec) return -1;
  double pm[K_STATES], nm[K_STATES];
  for (int s = 0; s < K_STATES; s++) pm[s] = s ? -1e300 : 0;
  for (size_t i = 0; i < ni; i++) {
    double a = soft[2 * i], b = soft[2 * i + 1];
    uint64_t d = 0;
    for (int ns = 0; ns < K_STATES; ns++) {
      /* ns = reg >> 1 with reg = bit << 6 | state: bit = ns >> 5, state = (ns << 1 & 63) | low, low in {0,1} */
      unsigned bit = (unsigned)ns >> 5, best_low = 0;
      double best = -1e308;
      for (unsigned low = 0; low < 2; low++) {
        unsigned st = ((unsigned)ns << 1 & 63u) | low, reg = bit << 6 | st;
        double m = pm[st] + (parity7(reg & G0) ? a : -a) + (parity7(reg & G1) ? b : -b);
        if (m > best) { best = m; best_low = low; }
      }
      nm[ns] = best;
      d |= (uint64_t)best_low << ns;
    }
    dec[i] = d;
    memcpy(pm, nm, sizeof pm);
  }
  unsigned s = 0; /* the tail ends the path in state 0 */
  for (size_t i = ni; i-- > 0;) {
    info[i] = (uint8_t)(s >> 5);
    s = (s << 1 & 63u) | (unsigned)(dec[i] >> s & 1u);
  }
  free(dec);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Readings of every position, weighted by how much they look like a cell at all: a cell reads 0.5 +- A plus
 * noise, so r = ||reading| - A| is its distance from the nearer level. sigma is a robust estimate of that
 * noise; a cell far beyond a few sigma (a clipped white or black area, where the
 * recovered secret is garbage at full swing) is down-weighted towards an erasure instead of outvoting the
 * good copies of its bit. sigma comes from the lower quartile of r (0.3186 sigma for Gaussian noise), so it
 * holds while up to three quarters of the cells are garbage. The weight is 1 / (1 + (r / 3 sigma)^4);
 * readings are clamped to +-2A. */
/* Share of the pixels around position q's cell (the cell and STEG_MSG_CELL pixels each side) at which some
 * channel of the stego is clipped (at most 0.5/255 from 0 or 1). */
static double clipped_share(const float *stego, int w, int h, size_t q) {
  size_t np = (size_t)w * h;
  int c, cx, cy, all = 0, hit = 0;
  cell_pos(w, q, &c, &cx, &cy);
  for (int y = cy - STEG_MSG_CELL; y < cy + 2 * STEG_MSG_CELL; y++)
    for (int x = cx - STEG_MSG_CELL; x < cx + 2 * STEG_MSG_CELL; x++) {
      if (x < 0 || y < 0 || x >= w || y >= h) continue;
      int clip = 0;
      for (int k = 0; k < 3; k++) {
        float v = stego[(size_t)k * np + (size_t)y * w + x];
        clip |= v <= 0.5f / 255 || v >= 1 - 0.5f / 255;
      }
      hit += clip;
      all++;
    }
  return all ? (double)hit / all : 0;
}

/* the decoder's weight of a cell for its stego neighbourhood's clipped share */
static double clip_weight(double share) { return (1 - share) * (1 - share); }

long steg_msg_cover_capacity(const float *cover, int w, int h) {
  size_t n = steg_msg_positions(w, h);
  double usable = 0;
  for (size_t q = 0; q < n; q++)
    if (q % 8) usable += clip_weight(clipped_share(cover, w, h, q));
  return capacity_of(n, usable);
}

static double *readings(const float *img, const float *stego, int w, int h, size_t n) {
  double *y = malloc((n ? n : 1) * sizeof *y), *r = malloc((n ? n : 1) * sizeof *r);
  if (!y || !r) { free(y); free(r); return NULL; }
  const double A = STEG_MSG_AMPLITUDE;
  for (size_t q = 0; q < n; q++) {
    y[q] = cell_soft(img, w, h, q);
    r[q] = fabs(fabs(y[q]) - A);
  }
  qsort(r, n, sizeof *r, cmp_double);
  double sigma = n ? r[n / 4] / 0.3186 : 0;
  if (sigma < A / 20) sigma = A / 20; /* a clean channel: nothing is down-weighted for tiny deviations */
  free(r);
  for (size_t q = 0; q < n; q++) {
    double d = fabs(fabs(y[q]) - A) / (3 * sigma), v = y[q] > 2 * A ? 2 * A : y[q] < -2 * A ? -2 * A : y[q];
    y[q] = v / (1 + d * d * d * d);
    if (stego) y[q] *= clip_weight(clipped_share(stego, w, h, q)); /* nothing where every pixel is clipped */
  }
  return y;
}

long steg_msg_decode(const float *img, const float *stego, int w, int h, uint8_t **msg) {
  *msg = NULL;
  size_t n = steg_msg_positions(w, h);
  if ((n + 7) / 8 < 32) return -1;
  double *y = readings(img, stego, w, h, n);
  if (!y) return -3;
  double hs[32] = {0};
  for (size_t q = 0; q < n; q += 8) hs[(q / 8) % 32] += y[q];
  uint32_t len = 0;
  for (int i = 0; i < 32; i++) len = len << 1 | (hs[i] > 0);
  if ((long)len > steg_msg_capacity(w, h)) { free(y); return -1; }
  size_t nb = body_positions(n), F = code_bits(len), ni = F / 2;
  double *soft = calloc(F, sizeof *soft);
  uint8_t *info = malloc(ni), *m = calloc((size_t)len + 1, 1);
  size_t *perm = perm_make(nb);
  if (!soft || !info || !m || !perm) { free(soft); free(info); free(m); free(perm); free(y); return -3; }
  for (size_t q = 0; q < n; q++)
    if (q % 8) soft[perm[q - q / 8 - 1] % F] += y[q];
  free(perm);
  free(y);
  int rc = viterbi(soft, ni, info);
  free(soft);
  if (rc) { free(info); free(m); return -3; }
  for (size_t i = 0; i < (size_t)len * 8; i++) m[i / 8] |= (uint8_t)(info[i] << (7 - i % 8));
  uint32_t crc = 0;
  for (int i = 0; i < CRC_BITS; i++) crc = crc << 1 | info[(size_t)len * 8 + (size_t)i];
  free(info);
  *msg = m;
  return crc == frame_crc(m, len) ? (long)len : -2;
}

double steg_msg_bit_accuracy(const float *img, const uint8_t *msg, size_t len, int w, int h) {
  size_t n = steg_msg_positions(w, h), right = 0;
  uint8_t *bits = layout_bits(msg, len, n);
  if (!bits || !n) { free(bits); return 0; }
  for (size_t q = 0; q < n; q++) right += (cell_soft(img, w, h, q) > 0) == bits[q];
  free(bits);
  return (double)right / (double)n;
}

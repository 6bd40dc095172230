/* rng.h — the library's one random number generator, header-only so that every layer (train, data,
 * models, the CLI) can use it: splitmix64 to seed and hash, xoshiro256** to draw (rng_t). */
#ifndef MEMFIT_RNG_H
#define MEMFIT_RNG_H

#include <stdint.h>

/* One step of splitmix64 (Steele et al.): advances *x and returns a well-mixed word. Also the stream
 * the session's parameter initialisation draws from (src/train/session.c), so it must not change. */
static inline uint64_t splitmix64_next(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* uniform in [0,1) with 53 bits from the splitmix64 stream itself */
static inline double splitmix64_uniform(uint64_t *x) { return (double)(splitmix64_next(x) >> 11) * (1.0 / 9007199254740992.0); }

/* A well-mixed 64-bit hash of a few words (order matters). */
static inline uint64_t hash_words(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = a;
  uint64_t h = splitmix64_next(&x);
  x = h ^ b; h = splitmix64_next(&x);
  x = h ^ c; return splitmix64_next(&x);
}

/* xoshiro256** seeded through splitmix64: the data pipeline's per-sample streams (src/data). */
typedef struct rng_t { uint64_t s[4]; } rng_t;

static inline void rng_init(rng_t *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64_next(&x);
}
static inline uint64_t rng_u64(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t x = s[1] * 5, res = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return res;
}
/* uniform in [0,1) with 53 bits */
static inline double rng_uniform(rng_t *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline double rng_range(rng_t *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }
/* integer in [0, n) (n > 0), bias below 2^-32 for n < 2^32 */
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return (uint64_t)(rng_uniform(r) * (double)n) % n; }

/* xorshift64 (Marsaglia), one step; *x must not be 0. Only `memfit eval` uses it, for its random
 * message bytes, kept so that eval's bit accuracies stay comparable with earlier runs. */
static inline uint64_t xorshift64_next(uint64_t *x) {
  *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
  return *x;
}

#endif

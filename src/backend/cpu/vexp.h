/* vexp.h (CPU) — an exp for f32 written as straight-line arithmetic, so that gcc vectorises the loops that call it
 * (libm's expf is a call per element); the same bits on any x86-64 (no FMA: -std=c11 keeps -ffp-contract=off). */
#ifndef MF_CPU_VEXP_H
#define MF_CPU_VEXP_H
#include <stdint.h>
#include <string.h>

/* always inlined, also into the AVX2 copies of a loop (cpu.h: MF_CPU_AVX2_TARGET) */
#if defined(__GNUC__) || defined(__clang__)
#define MF_VEXP_INLINE static inline __attribute__((always_inline))
#else
#define MF_VEXP_INLINE static inline
#endif

/* 2^e for an integer e in [-126, 127], as a float's exponent bits */
MF_VEXP_INLINE float mf_vexp_pow2(int32_t e) {
  uint32_t b = (uint32_t)(e + 127) << 23;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

/* e^x within 2 ulp of the exact value for normal results (tests/test_vexp.c checks it against exp in double on a
 * sweep of floats), +inf above ln(FLT_MAX), 0 or a subnormal below ln(FLT_MIN), NaN for NaN.
 * x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n ln2 is exact), e^r by a degree-7 polynomial (Horner),
 * then times 2^n in two factors so that n in [-150, 128] never needs a subnormal or infinite factor. */
MF_VEXP_INLINE float mf_vexp(float x) {
  x = x > 89.0f ? 89.0f : x;           /* e^89 overflows: inf below; a NaN stays NaN (comparisons are false) */
  x = x < -104.0f ? -104.0f : x;       /* e^-104 rounds to 0 */
  float t = x * 1.44269504088896341f;  /* x / ln2 */
  float nf = (t + 12582912.0f) - 12582912.0f; /* round to nearest integer (1.5 * 2^23 pushes the fraction out) */
  float r = (x - nf * 0.693359375f) - nf * -2.12194440e-4f; /* x - n ln2: the high part's product is exact */
  /* e^r = 1 + r + r^2/2! + ... + r^7/7!, truncated: the tail r^8/8! < 2^-30 for |r| <= ln2/2 */
  float p = 1.98412698e-4f;
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t n = (int32_t)(nf == nf ? nf : 0.0f); /* a NaN's p is NaN whatever the scale; its conversion is undefined */
  int32_t h = n / 2;    /* n = h + (n - h), each in [-75, 64] */
  return p * mf_vexp_pow2(h) * mf_vexp_pow2(n - h);
}
#endif

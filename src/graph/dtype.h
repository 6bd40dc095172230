/* dtype.h — element types: sizes, names and the f16/bf16 <-> f32 conversions every backend
 * shares (round to nearest even, as hardware does). */
#ifndef MF_DTYPE_H
#define MF_DTYPE_H

#include "memfit.h"
#include <stdint.h>
#include <string.h>

static inline float mf_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t mf_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  /* a NaN stays a quiet NaN; written as a select so that loops of conversions vectorise */
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}
static inline float mf_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
  if (e == 0) {
    if (m == 0) u = s;
    else { /* subnormal: normalise */
      e = 127 - 15 + 1;
      while (!(m & 0x400u)) { m <<= 1; e--; }
      u = s | (e << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (e == 31) u = s | 0x7f800000u | (m << 13);
  else u = s | ((e + 127 - 15) << 23) | (m << 13);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t mf_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t s = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(s | 0x7e00u);          /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00u);         /* overflow -> inf */
  if (a < 0x38800000u) {                                         /* subnormal or zero */
    if (a < 0x33000000u) return (uint16_t)s;
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14..24 */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(s | r);
  }
  uint32_t r = ((a - 0x38000000u) >> 13), rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return (uint16_t)(s | r);
}

/* Generic element access for float-like dtypes (f32, f16, bf16, f64, and i32/u8 as numbers). */
static inline double mf_ld(const void *p, mf_dtype t, int64_t i) {
  switch (t) {
  case MF_F32: return ((const float *)p)[i];
  case MF_F64: return ((const double *)p)[i];
  case MF_BF16: return mf_bf16_to_f32(((const uint16_t *)p)[i]);
  case MF_F16: return mf_f16_to_f32(((const uint16_t *)p)[i]);
  case MF_I32: return ((const int32_t *)p)[i];
  case MF_U8: return ((const uint8_t *)p)[i];
  default: return 0;
  }
}
static inline void mf_st(void *p, mf_dtype t, int64_t i, double v) {
  switch (t) {
  case MF_F32: ((float *)p)[i] = (float)v; break;
  case MF_F64: ((double *)p)[i] = v; break;
  case MF_BF16: ((uint16_t *)p)[i] = mf_f32_to_bf16((float)v); break;
  case MF_F16: ((uint16_t *)p)[i] = mf_f32_to_f16((float)v); break;
  case MF_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case MF_U8: ((uint8_t *)p)[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5); break;
  default: break;
  }
}
/* Converts n elements between float-like dtypes. */
void mf_convert(void *dst, mf_dtype dt, const void *src, mf_dtype st, int64_t n);

static inline int mf_dtype_is_float(mf_dtype t) { return t == MF_F32 || t == MF_F16 || t == MF_BF16 || t == MF_F64; }

#endif

/* test_vexp.c — the CPU backend's vectorisable exp (src/backend/cpu/vexp.h, behind exp, sigmoid and SiLU) against
 * exp in double on a sweep of f32 inputs: within 2 ulp where the result is normal, within one step of 2^-149 where
 * it is subnormal, and inf / 0 / NaN at the edges as libm's expf. */
#include "check.h"
#include "backend/cpu/vexp.h"
#include <float.h>
#include <stdint.h>

/* |got - want| in units of the last place of want (f32) */
static double ulp_err(float got, double want) {
  int e;
  frexp(want, &e); /* want = m 2^e with m in [0.5, 1): an f32 ulp there is 2^(e-24), at least 2^-149 */
  return fabs((double)got - want) / ldexp(1.0, e - 24 < -149 ? -149 : e - 24);
}

int main(void) {
  double worst_normal = 0, worst_sub = 0;
  float at_normal = 0, at_sub = 0;
  long n = 0;
  /* every 61st f32 bit pattern (both signs), those whose e^x is neither inf nor rounds to 0 */
  for (uint64_t b = 0; b <= 0xFFFFFFFFu; b += 61) {
    uint32_t u = (uint32_t)b;
    float x;
    memcpy(&x, &u, sizeof x);
    if (!(x > -103.0f && x < 88.72f)) continue;
    double want = exp((double)x), err = ulp_err(mf_vexp(x), want);
    n++;
    if (want >= FLT_MIN) { if (err > worst_normal) { worst_normal = err; at_normal = x; } }
    else if (err > worst_sub) { worst_sub = err; at_sub = x; }
  }
  printf("test_vexp: %ld inputs, worst %.3f ulp (normal results, at %.9g), %.3f (subnormal, at %.9g)\n", n, worst_normal,
         (double)at_normal, worst_sub, (double)at_sub);
  CHECK(n > 10000000, "only %ld inputs swept", n);
  CHECK(worst_normal <= 2.0, "%.3f ulp at x = %.9g", worst_normal, (double)at_normal);
  CHECK(worst_sub <= 1.0, "%.3f steps of 2^-149 at x = %.9g", worst_sub, (double)at_sub);
  /* the edges: ln(FLT_MAX) = 88.7228391; the float above it overflows, the one below does not */
  float hi = 88.7228394f, below = nextafterf(hi, 0.0f);
  CHECK(isinf(mf_vexp(hi)) && isinf(expf(hi)), "e^%.9g = %g", (double)hi, (double)mf_vexp(hi));
  CHECK(isfinite(mf_vexp(below)) && ulp_err(mf_vexp(below), exp((double)below)) <= 2.0, "e^%.9g = %g", (double)below,
        (double)mf_vexp(below));
  CHECK(isinf(mf_vexp(INFINITY)) && mf_vexp(INFINITY) > 0, "e^inf = %g", (double)mf_vexp(INFINITY));
  CHECK(mf_vexp(-INFINITY) == 0.0f && mf_vexp(-104.0f) == 0.0f && mf_vexp(-1e30f) == 0.0f, "e^-inf = %g",
        (double)mf_vexp(-INFINITY));
  CHECK(isnan(mf_vexp(NAN)) && isnan(mf_vexp(-NAN)), "e^NaN = %g", (double)mf_vexp(NAN));
  CHECK(mf_vexp(0.0f) == 1.0f && mf_vexp(-0.0f) == 1.0f, "e^0 = %.9g", (double)mf_vexp(0.0f));
  return check_finish("test_vexp");
}

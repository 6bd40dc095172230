/* test_parse_bytes.c — mf_parse_bytes, the parser behind --budget and --host-budget: every unit up to
 * EiB, NaN / infinity / negative refused (NaN was undefined behaviour), overflow reported as such;
 * plus the inputs its fuzzer (tests/fuzz/fuzz_parse.c) tried that deserve to stay fixed. */
#include "check.h"
#include "memfit.h"
#include <stdint.h>

int main(void) {
  static const struct { const char *s; int64_t want; } cases[] = {
    {"0", 0}, {"123", 123}, {"123B", 123}, {"1K", 1024}, {"1k", 1024}, {"1KiB", 1024}, {"1kB", 1000}, {"1KB", 1000},
    {"1.5GB", 1500000000}, {"4GiB", 4294967296}, {"4 GiB", 4294967296}, {"6000MiB", 6000LL << 20}, {"2TiB", 2LL << 40},
    {"1TB", 1000000000000}, {"1PiB", 1LL << 50}, {"3P", 3LL << 50}, {"1PB", 1000000000000000}, {"1EiB", 1LL << 60},
    {"7.5EiB", 15LL << 59}, {"1EB", 1000000000000000000}, {"0.5", 1}, {"0.4", 0},
    /* not sizes */
    {"", -1}, {"GiB", -1}, {"nan", -1}, {"NaN", -1}, {"nanGiB", -1}, {"-nan", -1}, {"inf", -1}, {"infinity", -1},
    {"-1", -1}, {"-0.5GiB", -1}, {"4 gib", -1}, {"4ZiB", -1}, {"4GiBx", -1}, {" 4GiB", -1}, {"4GiB ", -1}, {"0x", -1},
    /* too large: 2^63 bytes and up */
    {"8EiB", -2}, {"9.3EB", -2}, {"1e19", -2}, {"1e300", -2}, {"1e308KiB", -2}, {"1e400", -2}, {"9223372036854775807", -2},
    {"9223372036854774784", 9223372036854774784LL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int64_t got = mf_parse_bytes(cases[i].s);
    CHECK(got == cases[i].want, "mf_parse_bytes(\"%s\") = %lld, expected %lld", cases[i].s, (long long)got,
          (long long)cases[i].want);
  }
  CHECK(mf_parse_bytes(NULL) == -1, "NULL");
  return check_finish("test_parse_bytes");
}

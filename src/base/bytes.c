/* bytes.c — byte counts as people write them: parsing "4GiB" and friends, formatting "1.50 MiB", and
 * the process's peak resident memory (public: the misc section of memfit.h). Any layer may use them. */
#include "memfit.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

void mf_format_bytes(size_t b, char *buf, size_t n) {
  if (b >= (size_t)1 << 30) snprintf(buf, n, "%.2f GiB", (double)b / (1 << 30));
  else if (b >= (size_t)1 << 20) snprintf(buf, n, "%.2f MiB", (double)b / (1 << 20));
  else if (b >= 1024) snprintf(buf, n, "%.2f KiB", (double)b / 1024);
  else snprintf(buf, n, "%zu B", b);
}

size_t mf_peak_rss_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (size_t)ru.ru_maxrss * 1024;
}

int64_t mf_parse_bytes(const char *str) {
  if (!str || !*str || isspace((unsigned char)*str)) return -1;
  char *end;
  errno = 0;
  double v = strtod(str, &end);
  if (end == str || !(v >= 0)) return -1; /* also NaN ("nan") */
  if (isinf(v)) return errno == ERANGE ? -2 : -1; /* "1e400" overflows; "inf" is no size */
  while (*end == ' ') end++;
  static const struct { const char *unit; double mul; } units[] = {
    {"", 1}, {"B", 1}, {"K", 0x1p10}, {"k", 0x1p10}, {"KiB", 0x1p10}, {"M", 0x1p20}, {"MiB", 0x1p20}, {"G", 0x1p30},
    {"GiB", 0x1p30}, {"T", 0x1p40}, {"TiB", 0x1p40}, {"P", 0x1p50}, {"PiB", 0x1p50}, {"E", 0x1p60}, {"EiB", 0x1p60},
    {"KB", 1e3}, {"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15}, {"EB", 1e18},
  };
  double mul = 0;
  for (size_t i = 0; i < sizeof units / sizeof *units && !mul; i++)
    if (!strcmp(end, units[i].unit)) mul = units[i].mul;
  if (!mul) return -1;
  double b = v * mul + 0.5;
  /* 2^63 is the first value int64_t cannot hold; a size_t of 32 bits holds less */
  if (!(b < 0x1p63) || (SIZE_MAX < UINT64_MAX && b >= (double)SIZE_MAX)) return -2;
  return (int64_t)b;
}

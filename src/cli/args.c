/* args.c — the number and size parsers every memfit command uses for its options (cli_int,
 * cli_double, cli_bytes) and the settings plan and train share (--precision, --recompute); apart from main.c so that tests/fuzz/fuzz_parse.c can fuzz them alone. */
#include "cli/cli.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_int(const char *name, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < lo || x > hi) {
    fprintf(stderr, "memfit: %s: '%s' is not a whole number from %d to %d\n", name, v, lo, hi);
    return -1;
  }
  *out = (int)x;
  return 0;
}

int cli_double(const char *name, const char *v, double lo, double hi, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (!*v || *end || !(x >= lo && x <= hi)) {
    fprintf(stderr, "memfit: %s: '%s' is not a number from %g to %g\n", name, v, lo, hi);
    return -1;
  }
  *out = x;
  return 0;
}

int cli_bytes(const char *name, const char *v, int64_t *out) {
  int64_t b = mf_parse_bytes(v);
  if (b == -2)
    fprintf(stderr, "memfit: %s: '%s' is too large: sizes go up to 8 EiB (2^63 - 1 bytes)\n", name, v);
  else if (b < 0)
    fprintf(stderr, "memfit: %s: '%s' is not a size like 4GiB, 512MiB or 1.5GB (units B, KiB, MiB, GiB, TiB, PiB, EiB "
                    "or kB, MB, GB, TB, PB, EB)\n", name, v);
  else if (b == 0)
    fprintf(stderr, "memfit: %s: '%s' is zero bytes; give a size above 0\n", name, v);
  if (b <= 0) return -1;
  *out = b;
  return 0;
}

int cli_precision(const char *cmd, const char *v, unsigned *dtypes) {
  if (!strcmp(v, "auto")) *dtypes = 1u << MF_F32 | 1u << MF_BF16;
  else if (!strcmp(v, "f32") || !strcmp(v, "bf16") || !strcmp(v, "f16")) *dtypes = 1u << mf_dtype_parse(v);
  else { fprintf(stderr, "memfit %s: --precision: '%s' is not f32, bf16, f16 or auto\n", cmd, v); return -1; }
  return 0;
}

int cli_recompute(const char *cmd, const char *v, int *mode) {
  if (!strcmp(v, "none")) *mode = 0;
  else if (!strcmp(v, "all")) *mode = 1;
  else if (!strcmp(v, "auto")) *mode = -1;
  else { fprintf(stderr, "memfit %s: --recompute: '%s' is not none, all or auto\n", cmd, v); return -1; }
  return 0;
}

/* fuzz_parse.c — libFuzzer harness for the CLI's number and size parsers: mf_parse_bytes (--budget,
 * --host-budget), cli_bytes, cli_int and cli_double (src/cli/args.c).
 * Each input is one argument string; results are checked against their documented ranges. Run it with
 * -close_fd_mask=3: the parsers print every refusal (libFuzzer keeps its own reports). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = 0;
  int64_t b = mf_parse_bytes(s);
  if (b < -2) abort();
  int64_t cb = -7;
  if (cli_bytes("--budget", s, &cb) == 0 && (cb <= 0 || cb != b)) abort();
  int x = 12345;
  if (cli_int("--n", s, -5, 1000, &x) == 0 && (x < -5 || x > 1000)) abort();
  double d = 0;
  if (cli_double("--lr", s, 0, 10, &d) == 0 && !(d >= 0 && d <= 10)) abort();
  free(s);
  return 0;
}

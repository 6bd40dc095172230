/* json.c — JSON string output for the trainer's --log, the report and the commands' --json: every string written (descriptions, paths,
 * names) goes through mf_json_str, so quotes, backslashes, control characters and bytes that are not
 * UTF-8 (a path may hold any) still give valid JSON. */
#include "train/json.h"
#include <stdio.h>

/* length of the well-formed UTF-8 sequence at p (2..4), or 0 when it is not one */
static int utf8_len(const unsigned char *p) {
  int n = p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3 : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0; /* stops at the string's end too */
  if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) return 0; /* overlong, surrogate */
  if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) return 0; /* overlong, > U+10FFFF */
  return n;
}

void mf_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"') fputs("\\\"", f);
    else if (*p == '\\') fputs("\\\\", f);
    else if (*p == '\n') fputs("\\n", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p); /* other control characters */
    else if (*p < 0x80) fputc(*p, f);
    else {
      int n = utf8_len(p);
      if (n) { fwrite(p, 1, (size_t)n, f); p += n - 1; }
      else fputs("\\ufffd", f); /* not UTF-8: the replacement character */
    }
  }
  fputc('"', f);
}

void mf_json_num(FILE *f, double v) {
  if (v != v || v == 1.0 / 0.0 || v == -1.0 / 0.0) fputs("null", f); /* JSON has no NaN or infinity */
  else fprintf(f, "%.17g", v);
}

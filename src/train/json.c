/* json.c — JSON strings: output for the trainer's --log, the report and the commands' --json (every string written (descriptions, paths,
 * names) goes through mf_json_str, so quotes, backslashes, control characters and bytes that are not
 * UTF-8 (a path may hold any) still give valid JSON. */
#include "train/json.h"
#include <stdio.h>
#include <string.h>

int mf_utf8_len(const unsigned char *p) {
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
      int n = mf_utf8_len(p);
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

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* four hex digits at s[*i] (not moved on failure) */
static int hex4_read(const char *s, size_t n, size_t *i, unsigned *out, char *why, size_t wn) {
  if (n - *i < 4) { snprintf(why, wn, "truncated \\u escape"); return -1; }
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    int d = hexval(s[*i + (size_t)k]);
    if (d < 0) { snprintf(why, wn, "bad \\u escape"); return -1; }
    v = (v << 4) | (unsigned)d;
  }
  *i += 4;
  *out = v;
  return 0;
}

int mf_json_string_read(const char *s, size_t n, size_t *i, char *dst, size_t *len, char *why, size_t wn) {
  if (*i >= n || s[*i] != '"') { snprintf(why, wn, "expected a string"); return -1; }
  (*i)++;
  char *d = dst;
  for (;;) {
    if (*i >= n) { snprintf(why, wn, "unterminated string"); return -1; }
    unsigned char c = (unsigned char)s[*i];
    if (c == '"') break;
    if (c < 0x20) { snprintf(why, wn, "control character 0x%02x inside a string (must be escaped)", c); return -1; }
    if (c != '\\') {
      *d++ = (char)c;
      (*i)++;
      continue;
    }
    (*i)++;
    if (*i >= n) { snprintf(why, wn, "unterminated string"); return -1; }
    char e = s[(*i)++];
    switch (e) {
    case '"': *d++ = '"'; break;
    case '\\': *d++ = '\\'; break;
    case '/': *d++ = '/'; break;
    case 'b': *d++ = '\b'; break;
    case 'f': *d++ = '\f'; break;
    case 'n': *d++ = '\n'; break;
    case 'r': *d++ = '\r'; break;
    case 't': *d++ = '\t'; break;
    case 'u': {
      unsigned u, cp;
      if (hex4_read(s, n, i, &u, why, wn)) return -1;
      if (u >= 0xdc00 && u <= 0xdfff) { snprintf(why, wn, "lone low surrogate \\u%04x", u); return -1; }
      if (u >= 0xd800 && u <= 0xdbff) {
        unsigned lo;
        if (n - *i < 2 || s[*i] != '\\' || s[*i + 1] != 'u') { snprintf(why, wn, "lone high surrogate \\u%04x", u); return -1; }
        *i += 2;
        if (hex4_read(s, n, i, &lo, why, wn)) return -1;
        if (lo < 0xdc00 || lo > 0xdfff) { snprintf(why, wn, "high surrogate \\u%04x not followed by a low one", u); return -1; }
        cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
      } else cp = u;
      if (cp == 0) { snprintf(why, wn, "\\u0000 inside a string is not supported"); return -1; }
      if (cp < 0x80) *d++ = (char)cp;
      else if (cp < 0x800) {
        *d++ = (char)(0xc0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        *d++ = (char)(0xe0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *d++ = (char)(0x80 | (cp & 0x3f));
      } else {
        *d++ = (char)(0xf0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *d++ = (char)(0x80 | (cp & 0x3f));
      }
      break;
    }
    default: (*i)--; snprintf(why, wn, "invalid escape '\\%c'", e); return -1;
    }
  }
  (*i)++; /* closing quote */
  *d = '\0';
  *len = (size_t)(d - dst);
  return 0;
}

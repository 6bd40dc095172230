/* json.h — JSON output shared by the trainer's --log records, the run report and the commands' --json. */
#ifndef MF_JSON_H
#define MF_JSON_H

#include <stdio.h>

/* Writes s (NULL: "") as a quoted JSON string, escaping quotes, backslashes and control characters; bytes
 * that are not UTF-8 become U+FFFD. */
void mf_json_str(FILE *f, const char *s);
/* Length of the well-formed UTF-8 sequence at p (2..4), or 0 when it is not one (overlong forms, surrogates and
 * code points past U+10FFFF are not); stops at a NUL. */
int mf_utf8_len(const unsigned char *p);
/* Writes v as a JSON number that reads back to the same double (%.17g), or null for NaN and infinities. */
void mf_json_num(FILE *f, double v);

/* The one JSON string reader (safetensors headers, the run report's records): decodes the string whose opening
 * quote is s[*i] of an n-byte text into dst, which needs room for the string's raw length + 1 bytes (an
 * unescaped string is never longer than its quoted form), NUL-terminated; *i moves past the closing quote and
 * *len gets the decoded length. Strict: control characters, unknown escapes, lone surrogates and \u0000 are
 * refused. 0, or -1 with why ("unterminated string", "lone low surrogate \udc00", ...), *i where it failed. */
int mf_json_string_read(const char *s, size_t n, size_t *i, char *dst, size_t *len, char *why, size_t whylen);

#endif

/* json.h — JSON output shared by the trainer's --log records, the run report and the commands' --json. */
#ifndef MF_JSON_H
#define MF_JSON_H

#include <stdio.h>

/* Writes s (NULL: "") as a quoted JSON string, escaping quotes, backslashes and control characters; bytes
 * that are not UTF-8 become U+FFFD. */
void mf_json_str(FILE *f, const char *s);
/* Writes v as a JSON number that reads back to the same double (%.17g), or null for NaN and infinities. */
void mf_json_num(FILE *f, double v);

#endif

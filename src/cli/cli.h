/* cli.h — the memfit command's subcommands and the small argument helpers they share. */
#ifndef MF_CLI_H
#define MF_CLI_H

#include "memfit.h"
#include <stdio.h>

typedef struct mf_cmd {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} mf_cmd;

int mf_cmd_demo(int argc, char **argv);
int mf_cmd_plan(int argc, char **argv);
int mf_cmd_presets(int argc, char **argv);
int mf_cmd_calibrate(int argc, char **argv); /* cmd_calibrate.c */
int mf_cmd_train(int argc, char **argv); int mf_cmd_hide(int argc, char **argv); int mf_cmd_reveal(int argc, char **argv); int mf_cmd_eval(int argc, char **argv); /* cmd_steg.c */

/* The command of that name (main.c's table), or NULL. */
const mf_cmd *cli_command_find(const char *name);
/* suggest.c: says "memfit CMD: unknown option 'ARG'", with the nearest option CMD's --help lists when
 * one is close ("did you mean --cover?"); returns 2 (the usage-error exit status). CMD may be two
 * words ("train steg"). */
int cli_unknown_option(const char *cmd, const char *arg);
/* The candidate within two edits of word (and fewer than half its letters), nearest first; or NULL. */
const char *cli_nearest(const char *word, const char *const *cands, int n);
int cli_edit_distance(const char *a, const char *b);

/* "--name value" / "--name=value" parsing: returns the value and advances *i, or NULL. */
const char *cli_opt(int argc, char **argv, int *i, const char *name);
/* Parses an int setting, printing "memfit: --name: ..." and returning -1 when bad. */
int cli_int(const char *name, const char *v, int lo, int hi, int *out);
int cli_double(const char *name, const char *v, double lo, double hi, double *out);
/* Parses a byte size with mf_parse_bytes (4GiB, 512MiB, 1.5GB, ... up to EiB), printing "memfit: --name:
 * ..." (not a size, too large, zero) and returning -1 when bad. */
int cli_bytes(const char *name, const char *v, int64_t *out);
/* --precision f32|bf16|f16|auto as a set of dtypes (auto: f32 and bf16) and --recompute none|all|auto as
 * mf_search_opts.fixed_mode (0, 1, -1); print "memfit CMD: --precision: ..." and return -1 when bad. */
int cli_precision(const char *cmd, const char *v, unsigned *dtypes);
int cli_recompute(const char *cmd, const char *v, int *mode);
/* json.c: writes s (NULL: "") as a quoted JSON string, escaping quotes, backslashes and control characters. */
void cli_json_str(FILE *f, const char *s);
/* writes v as a JSON number that reads back to the same double (%.17g), or null for NaN and infinities */
void cli_json_num(FILE *f, double v);
/* Prints the plan next to the runtime's measured high-water of every arena and the process's peak
 * RSS (rss_note explains what RSS holds beyond the plan, or ""). Returns 1 when every arena is exact. */
int cli_print_memory(mf_session *s, const char *rss_note);
/* report.c: `memfit report DIR`; cli_report_write (re)builds DIR/report.html from the records in log_path (a damaged
 * line is skipped with a warning that starts "memfit CMD:"), 0 or -1 with err; cli_report_start_record writes the
 * --log record a run starts with (command line, settings, values per image tensor, planned arenas), 0 or -1 when the
 * write failed; cli_html_str writes s escaped for HTML text and attributes (bytes that are not UTF-8: U+FFFD). */
int mf_cmd_report(int argc, char **argv);
int cli_report_write(const char *dir, const char *log_path, const char *cmd, char *err, size_t n);
int cli_report_start_record(FILE *f, int64_t step, const char *command, const char *settings, double pixels, const mf_plan *p);
void cli_html_str(FILE *f, const char *s);
/* cli_report_write for a run in progress: a page that cannot be written is a warning, not a failed run */
void cli_report_update(const char *dir, const char *log_path, const char *cmd);
/* cmd_plan.c: the memory timeline of the plan's training step as an SVG file; 0, or -1 after saying why on stderr. */
int cli_svg_timeline(const char *path, const mf_plan *p, const char *title, const char *cmd);

#endif

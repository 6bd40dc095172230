/* cli.h — the memfit command's subcommands and the small argument helpers they share. */
#ifndef MF_CLI_H
#define MF_CLI_H

#include "memfit.h"
#include "train/json.h"
#include "train/report.h"
#include <stdio.h>

typedef struct mf_cmd {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} mf_cmd;

int mf_cmd_demo(int argc, char **argv);
int mf_cmd_plan(int argc, char **argv);
int mf_cmd_presets(int argc, char **argv);
int mf_cmd_plan_vqgan(int argc, char **argv);    /* cmd_vqgan.c: memfit plan vqgan */
int mf_cmd_presets_vqgan(int argc, char **argv); /* cmd_vqgan.c: memfit presets vqgan */
/* cmd_onnx.c: `memfit plan MODEL.onnx ...` and `memfit plan --list-unsupported MODEL.onnx`; cli_is_onnx_model
 * says whether plan's first argument is for it (a .onnx name, an existing file, --list-unsupported). */
int mf_cmd_plan_onnx(int argc, char **argv);
int cli_is_onnx_model(const char *arg);
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
/* conv_table.c: --by-layer's table of the plan's convolutions (forward, backward-data, backward-weights): the
 * implementation the planner chose for each (oneDNN and its kernel, or memfit's GEMM algorithm), why, and its
 * workspace, with the conv cache it read. json: fields of the object being printed (a leading comma, no braces). */
void cli_print_convs(const mf_plan *p, int json);
/* report.c moved to src/train/report.c; `memfit report DIR` is cmd_report.c */
int mf_cmd_report(int argc, char **argv);
int mf_cmd_render(int argc, char **argv); /* cmd_render.c: an Image-GS model at any resolution */
int mf_cmd_eval_moco(int argc, char **argv); /* cmd_moco.c: memfit eval moco */

#endif

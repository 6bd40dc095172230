/* main.c — the memfit command: dispatches to subcommands (demo, plan, train, ...). */
#include "cli/cli.h"
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const mf_cmd cmds[] = {
  {"demo", mf_cmd_demo, "train the built-in steganography model on generated images; print plan vs measured memory"},
  {"plan", mf_cmd_plan, "exact memory plan of a workload; with --budget, the fastest settings that fit"},
  {"presets", mf_cmd_presets, "chosen settings and peaks for 4, 6, 8, 12, 16, 24, 48 and 80 GiB"},
  {"train", mf_cmd_train, "train a workload (steg: the steganography network) inside its memory plan"}, {"hide", mf_cmd_hide, "hide an image or a message in a cover image (steg model)"}, {"reveal", mf_cmd_reveal, "recover the hidden image or message from a stego image"}, {"eval", mf_cmd_eval, "hiding / recovery PSNR and SSIM of a steg model over image pairs, 8-bit"},
};
enum { NCMDS = sizeof cmds / sizeof cmds[0] };

const char *cli_opt(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] != 0) return NULL;
  if (*i + 1 >= argc) { fprintf(stderr, "memfit: %s needs a value\n", name); exit(2); }
  return argv[++*i];
}

int cli_print_memory(mf_session *s, const char *rss_note) {
  const mf_plan *p = mf_session_plan(s);
  printf("memory: planned vs measured (runtime high-water per arena)\n");
  int exact = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    if (!pl && !me) continue;
    printf("  %-26s planned %12zu B   measured %12zu B   %s\n", mf_arena_name((mf_arena_kind)a), pl, me, pl == me ? "exact" : "DIFFERENT");
    exact &= pl == me;
  }
  char h[32];
  mf_format_bytes(mf_peak_rss_bytes(), h, sizeof h);
  printf("  process peak RSS %s%s\n", h, rss_note);
  return exact;
}

static void usage(FILE *f) {
  fprintf(f, "memfit — train neural networks inside a hard memory budget\n\nusage: memfit COMMAND [options]\n\ncommands:\n");
  for (int i = 0; i < NCMDS; i++) fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
  fprintf(f, "\n'memfit COMMAND --help' describes a command's options.\n");
}

/* A command's exit status, made an error when its standard output could not be written (a full disk,
 * a closed pipe): results that never arrived are no success. */
static int stdout_check(int rc) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
  fprintf(stderr, "memfit: writing the standard output failed: %s\n", strerror(errno));
  return rc ? rc : 1;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 0; i < NCMDS; i++)
    if (!strcmp(argv[1], cmds[i].name)) return stdout_check(cmds[i].run(argc - 1, argv + 1));
  fprintf(stderr, "memfit: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

/* main.c — the memfit command: dispatches to subcommands (demo, plan, train, ...). */
#include "cli/cli.h"
#include <stdio.h>
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

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 0; i < NCMDS; i++)
    if (!strcmp(argv[1], cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
  fprintf(stderr, "memfit: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

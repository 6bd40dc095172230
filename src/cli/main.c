/* main.c — the memfit command: dispatches to subcommands (demo, plan, train, ...). */
#include "cli/cli.h"
#include "dist/dist.h"
#include "base/omp_wait.h"
#include "backend/cpu/cpu.h"
#include <cblas.h>
#include <jpeglib.h>
#include <omp.h>
#include <png.h>
#include <stdio.h>
#ifdef MEMFIT_HAVE_FFMPEG
#include <libavformat/version.h>
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const mf_cmd cmds[] = {
  {"demo", mf_cmd_demo, "train the built-in steganography model on generated images; print plan vs measured memory"},
  {"plan", mf_cmd_plan, "exact memory plan of a workload; with --budget, the fastest settings that fit"},
  {"presets", mf_cmd_presets, "chosen settings and peaks for 4, 6, 8, 12, 16, 24, 48 and 80 GiB"},
  {"calibrate", mf_cmd_calibrate, "measure this machine for the planner's cost model now; print the figures and the cache file"},
  {"train", mf_cmd_train, "train a workload (steg, moco, imagegs, vqgan, onnx: a model you bring) inside its memory plan"}, {"hide", mf_cmd_hide, "hide an image or a message in a cover image (steg model)"}, {"reveal", mf_cmd_reveal, "recover the hidden image or message from a stego image"}, {"eval", mf_cmd_eval, "a steg model's hiding / recovery PSNR and SSIM over image pairs, 8-bit; eval moco: kNN and linear probe of a MoCo backbone"},
  {"render", mf_cmd_render, "draw an Image-GS model file at any resolution (a PNG)"},
  {"report", mf_cmd_report, "(re)build a training run's report.html (curves, memory plan vs measured, samples)"},
};
enum { NCMDS = sizeof cmds / sizeof cmds[0] };

const mf_cmd *cli_command_find(const char *name) {
  for (int i = 0; i < NCMDS; i++)
    if (!strcmp(name, cmds[i].name)) return &cmds[i];
  return NULL;
}

const char *cli_opt(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] != 0) return NULL;
  if (*i + 1 >= argc) { fprintf(stderr, "memfit: %s needs a value\n", name); exit(2); }
  return argv[++*i];
}

static void usage(FILE *f) {
  fprintf(f, "memfit — train neural networks inside a hard memory budget\n\nusage: memfit COMMAND [options]\n\ncommands:\n");
  for (int i = 0; i < NCMDS; i++) fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
  fprintf(f, "\n'memfit COMMAND --help' describes a command's options and their defaults; 'memfit --version' the build.\n"
             "\nexit status:\n"
             "  0  done\n"
             "  1  failed: a file could not be read or written, the run or the plan failed (the message says why)\n"
             "  2  usage error: an unknown command or option, a bad value, settings that contradict each other\n"
             "  3  nothing fits the memory budget (plan --budget, train --budget)\n"
             "  130, 143  train interrupted by SIGINT (Ctrl-C) / SIGTERM after saving a checkpoint to --resume from\n"
             "  128+N  killed by signal N (e.g. 137 when the kernel's OOM killer sent SIGKILL)\n");
}

/* memfit --version: the version and what this build has in it */
static void version_print(void) {
  printf("memfit %s\n", MEMFIT_VERSION);
  printf("build: %s, %s, C11%s\n", MEMFIT_BUILD_TYPE, MEMFIT_BUILD_COMPILER,
         MEMFIT_BUILD_SANITIZE ? ", AddressSanitizer + UndefinedBehaviorSanitizer" : "");
  const char *dn = mf_cpu_dnnl_version();
  printf("backends: cpu (%s; %s%s; OpenMP, %d cores)", openblas_get_config(), dn ? "f32 convolutions on oneDNN " : "convolutions on OpenBLAS",
         dn ? dn : "", omp_get_num_procs());
  if (MEMFIT_BUILD_CUDA) printf(", cuda (libmemfit_cuda.so, loaded by --backend cuda)\n");
  else printf("; cuda not built in (no nvcc at build time, MEMFIT_CUDA=OFF or a sanitizer build)\n");
#ifdef MEMFIT_HAVE_FFMPEG
  printf("video: FFmpeg (libavformat %s)\n", LIBAVFORMAT_IDENT);
#else
  printf("video: not built (FFmpeg's development files were not found at build time)\n");
#endif
  printf("images: PNG (libpng %s), JPEG (libjpeg API %d)\n", PNG_LIBPNG_VER_STRING, JPEG_LIB_VERSION);
  char dv[256];
  printf("data parallel: %s; %s\n", mf_comm_builtin(dv, sizeof dv),
         MEMFIT_BUILD_NCCL ? "NCCL in libmemfit_cuda.so (device gradients; ranks sharing a device reduce through the host)" : "NCCL not built in");
}

/* A command's exit status, made an error when its standard output could not be written (a full disk,
 * a closed pipe): results that never arrived are no success. */
static int stdout_check(int rc) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
  fprintf(stderr, "memfit: writing the standard output failed: %s\n", strerror(errno));
  return rc ? rc : 1;
}

int main(int argc, char **argv) {
  mf_omp_wait_bounded(argv); /* OpenMP threads spin briefly, then sleep: fast steps, and no long stall on shared cores */
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version")) { version_print(); return stdout_check(0); }
  for (int i = 0; i < NCMDS; i++)
    if (!strcmp(argv[1], cmds[i].name)) return stdout_check(cmds[i].run(argc - 1, argv + 1));
  const char *names[NCMDS + 1];
  for (int i = 0; i < NCMDS; i++) names[i] = cmds[i].name;
  names[NCMDS] = "--version";
  const char *near = cli_nearest(argv[1], names, NCMDS + 1);
  if (near) fprintf(stderr, "memfit: unknown command '%s'; did you mean '%s'?\n\n", argv[1], near);
  else fprintf(stderr, "memfit: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

/* cmd_report.c — `memfit report DIR`: rebuilds a run's report page (src/train/report.c draws it). */
#include "cli/cli.h"
#include "train/report.h"
#include <stdio.h>
#include <string.h>

/* `memfit report DIR [--log FILE]` */
int mf_cmd_report(int argc, char **argv) {
  const char *dir = NULL, *log = NULL;
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: memfit report DIR [--log FILE.jsonl]\n"
             "  (re)builds DIR/report.html from a training run's records: one self-contained page (no scripts, nothing\n"
             "  fetched) with the loss, PSNR, learning-rate and gradient-norm curves, the memory plan next to the measured\n"
             "  arenas, the step's memory timeline (DIR/timeline.svg) and the latest samples (DIR/samples-epochNNN.png).\n"
             "  'memfit train' writes it at every epoch end and at the end of the run; this rebuilds it, e.g. after a kill.\n"
             "  --log FILE.jsonl       the run's records (default DIR/log.jsonl, where train writes them without --log)\n"
             "A damaged line in the records is skipped with a warning naming the file and line.\n");
      return 0;
    }
    if ((v = cli_opt(argc, argv, &i, "--log"))) log = v;
    else if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option("report", argv[i]);
    else if (!dir) dir = argv[i];
    else { fprintf(stderr, "memfit report: one run folder only ('%s' is a second one)\n", argv[i]); return 2; }
  }
  if (!dir) { fprintf(stderr, "usage: memfit report DIR [--log FILE.jsonl]   ('memfit report --help')\n"); return 2; }
  char lp[4096], err[4400];
  if (!log) { snprintf(lp, sizeof lp, "%s/log.jsonl", dir); log = lp; }
  if (mf_report_write(dir, log, "report", err, sizeof err) < 0) { fprintf(stderr, "memfit report: %s\n", err); return 1; }
  printf("report: %s/report.html\n", dir);
  return 0;
}


/* omp_wait.c — the bounded OpenMP spin for memfit's programs, by re-execution (see omp_wait.h): a sleep and a
 * wake-up per parallel region cost a batch-1 step a third of its time; a long spin stalls steps on shared cores. */
#include "base/omp_wait.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void mf_omp_wait_bounded(char **argv) {
  if (!argv || !argv[0] || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("KMP_BLOCKTIME")) return;
  const char *pre = getenv("LD_PRELOAD");
  if (pre && strstr(pre, "vgpreload")) return; /* valgrind: keep its process */
  if (setenv("GOMP_SPINCOUNT", "3000", 1) != 0 || setenv("KMP_BLOCKTIME", "0", 1) != 0) return;
  execv("/proc/self/exe", argv); /* this very binary, whatever argv[0] says */
  /* exec failed: run on as we are (this process's runtime keeps its default policy) */
}

/* omp_wait.c — the passive OpenMP wait policy for memfit's programs, by re-execution (see omp_wait.h):
 * spinning threads of a step stall it for whole scheduler slices when the cores are shared. */
#include "base/omp_wait.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void mf_omp_wait_passive(char **argv) {
  if (!argv || !argv[0] || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  const char *pre = getenv("LD_PRELOAD");
  if (pre && strstr(pre, "vgpreload")) return; /* valgrind: keep its process */
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv); /* this very binary, whatever argv[0] says */
  /* exec failed: run on as we are (this process's runtime keeps its spinning policy) */
}

/* check.h — the tiny test harness every tests/test_*.c uses: CHECK macros that count and
 * report failures, a closing "N passed, N failed" line, and the path to ../shared/data. */
#ifndef MF_CHECK_H
#define MF_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/stat.h>

static int check_pass_count, check_fail_count;

#define CHECK(cond, ...)                                                                          \
  do {                                                                                            \
    if (cond) check_pass_count++;                                                                 \
    else {                                                                                        \
      check_fail_count++;                                                                         \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                             \
      fprintf(stderr, __VA_ARGS__);                                                               \
      fprintf(stderr, "\n");                                                                      \
    }                                                                                             \
  } while (0)

#define CHECK_NEAR(a, b, tol, what)                                                               \
  CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s: %.9g vs %.9g (tol %g)", what, (double)(a), (double)(b), (double)(tol))

static inline int check_finish(const char *name) {
  printf("%s: %d passed, %d failed\n", name, check_pass_count, check_fail_count);
  return check_fail_count ? 1 : 0;
}

/* Directory of the shared test data (../shared/data from the repo root), or NULL if absent. */
static inline const char *check_data_dir(void) {
  static char buf[4096];
  const char *root = getenv("MEMFIT_ROOT");
  snprintf(buf, sizeof buf, "%s/../shared/data", root ? root : ".");
  struct stat st;
  return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? buf : NULL;
}

#endif

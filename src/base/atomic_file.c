/* atomic_file.c — a temporary beside the final name, renamed into place (atomic_file.h). */
#include "base/atomic_file.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p of the folders above path (existing ones are fine; a failure shows when the file is opened) */
static void dirs_make(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0777);
      *p = '/';
    }
}

int mf_atomic_file_open(mf_atomic_file *a, const char *path, char *err, size_t errlen) {
  snprintf(a->path, sizeof a->path, "%s", path);
  snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid());
  dirs_make(path);
  a->now = time(NULL);
  struct tm tm;
  gmtime_r(&a->now, &tm);
  strftime(a->date, sizeof a->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
  a->f = fopen(a->tmp, "w");
  if (!a->f) {
    snprintf(err, errlen, "could not write %s: %s", a->tmp, strerror(errno));
    return -1;
  }
  return 0;
}

int mf_atomic_file_commit(mf_atomic_file *a, char *err, size_t errlen) {
  int bad = ferror(a->f);
  if (fclose(a->f) != 0) bad = 1;
  a->f = NULL;
  if (bad || rename(a->tmp, a->path) != 0) {
    snprintf(err, errlen, "could not write %s: %s", a->path, strerror(errno));
    remove(a->tmp);
    return -1;
  }
  return 0;
}

/* atomic_file.h — files written whole or not at all (caches, tables): a temporary beside the final name, renamed
 * into place once every byte is written, so a reader never sees half a file. */
#ifndef MF_BASE_ATOMIC_FILE_H
#define MF_BASE_ATOMIC_FILE_H
#include <stddef.h>
#include <stdio.h>
#include <time.h>

typedef struct mf_atomic_file {
  FILE *f;          /* write the contents here */
  time_t now;       /* when it was opened, and the same as UTC ISO 8601 text for headers */
  char date[32];
  char path[1024];  /* the final name */
  char tmp[1100];   /* path.tmp.PID */
} mf_atomic_file;

/* Creates the folders above path and opens its temporary; 0, or -1 with err ("could not write TMP: why"). */
int mf_atomic_file_open(mf_atomic_file *a, const char *path, char *err, size_t errlen);
/* Closes the temporary and renames it to the final name; 0, or -1 with err and the temporary removed. */
int mf_atomic_file_commit(mf_atomic_file *a, char *err, size_t errlen);

#endif
